"""What the strategy tells the user about its flow: loud where a silent result would mislead.

Kept apart from ``feeder.flow_source`` (which only calls these): the text of the warnings and
of the dry-run catch-up line.

- ``history_warnings``: a backtest's flow is SYNTHETIC, missing for most candles (coin, markets,
  store, range and what to import), or read from a market id the store does not know (with the
  closest known id).
- ``catch_up_message``: the dry-run start line; "store complete until" only when the store
  really is complete until then, staleness in human units.
"""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from feeder.coverage import covered
from feeder.provenance import LABEL, provenance, where
from feeder.settings import Settings
from feeder.store import BarStore

#: A backtest warns when at least this share of its candles lacks flow.
MISSING_SHARE = 0.5

_ARCHIVE_TYPE = {"BINANCE": "spot", "BINANCE_FUTURES": "um"}


def closest_market(market: str, known: list[str]) -> str | None:
    """The known market id closest to ``market`` (a typo), if any is close."""
    found = difflib.get_close_matches(market, known, n=1, cutoff=0.6)
    if not found:
        found = difflib.get_close_matches(market.lower(), [k.lower() for k in known], n=1)
        found = [k for k in known if found and k.lower() == found[0]]
    return found[0] if found else None


def _day(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%d")


def _import_hint(markets: list[str], first: pd.Timestamp, last: pd.Timestamp) -> str:
    types: dict[str, set[str]] = {}
    for m in markets:
        ex, sym = m.split(":", 1)
        if ex not in _ARCHIVE_TYPE and ex != "BINANCE_FUTURES":
            continue
        mt = "cm" if sym.endswith("_perp") else _ARCHIVE_TYPE[ex]
        types.setdefault(sym.upper(), set()).add(mt)
    if not types:
        return f"import trades of {', '.join(markets)} for {_day(first)}..{_day(last)}"
    cmds = [
        f"squeezeflow-feeder import --download --symbols {sym} --market-types "
        f"{' '.join(sorted(mts))} --start {_day(first)} --end {_day(last)}"
        for sym, mts in sorted(types.items())
    ]
    return "import them, e.g. " + "; ".join(cmds)


def history_warnings(
    store: BarStore, settings: Settings, coin: str, flow: pd.DataFrame, timeframe_s: int
) -> list[str]:
    """Warnings for a backtest's flow of ``coin`` (``flow`` as ``load_flow`` returned it)."""
    out: list[str] = []
    if not len(flow):
        return out
    markets = [m.id for m in settings.markets(coin)]
    stored = list(store.markets())
    prov = provenance(store)
    syn = [m for m in markets if m in prov.synthetic]
    if syn:
        out.append(
            f"SqueezeFlow: {coin} flow is {LABEL} ({', '.join(syn)} in the {where(store)}): "
            "these results say nothing about real markets"
        )
    first, last = flow.index[0], flow.index[-1]
    for m in markets:
        if m in stored or len(store.coverage(m)):
            continue
        guess = closest_market(m, sorted(set(stored) | {x.id for x in settings.all_markets()}
                                         - {m}))  # fmt: skip
        out.append(
            f"SqueezeFlow: market {m} (squeezeflow.coins.{coin}) is not in the {where(store)}"
            + (f"; did you mean {guess}?" if guess else f"; it holds {', '.join(stored) or 'none'}")
        )
    missing = int((~flow["complete"].to_numpy(bool)).sum())
    if missing >= MISSING_SHARE * len(flow):
        opens = (flow.index.asi8 // 1_000_000_000).astype(np.int64)
        lacking = [
            m for m in markets if not covered(opens, timeframe_s, store.coverage(m)).all()
        ]
        out.append(
            f"SqueezeFlow: {coin} flow is missing for {missing} of {len(flow)} candles "
            f"({_day(first)}..{_day(last)}; markets {', '.join(markets)}; {where(store)}): "
            "those candles can never enter, so the backtest will have few or no trades. "
            f"Not covered: {', '.join(lacking)}; {_import_hint(lacking, first, last)}, or check "
            "squeezeflow.coins and store in the config (squeezeflow-feeder status)"
        )
    return out


def human_age(seconds: float) -> str:
    """``1053 days`` / ``5 h 3 min`` / ``42 s``."""
    s = int(seconds)
    if s >= 2 * 86_400:
        return f"{s // 86_400} days"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"


def catch_up_message(
    coin: str, store_name: str, candles: int, complete_until: int | None, now: float,
    tf_s: int,
) -> str:  # fmt: skip
    """The dry-run catch-up line: when the store is complete up to the current candle it says
    so; otherwise how far behind the store's complete flow is (or that it has none)."""
    head = f"SqueezeFlow: {coin} caught up from {store_name}: {candles} candles"
    if complete_until is None:
        return f"{head}; the store has no complete candle in that window: flow comes from Redis"
    until = pd.Timestamp(complete_until, unit="s", tz="UTC")
    behind = now - complete_until
    if behind <= tf_s:
        return f"{head}, store complete until {until:%Y-%m-%d %H:%M} UTC"
    return (
        f"{head}; the store is complete only until {until:%Y-%m-%d %H:%M} UTC "
        f"({human_age(behind)} behind, since {until:%Y-%m-%d}): newer flow must come from Redis"
    )
