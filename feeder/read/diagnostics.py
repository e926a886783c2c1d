"""What the strategy tells the user about its flow: loud where a silent result would mislead.

Kept apart from ``feeder.read.flow_source`` (which only calls these): the text of the warnings and
of the dry-run catch-up line.

- ``history_warnings``: a backtest's flow is SYNTHETIC, missing for most candles (coin, markets,
  store, range and what to import), or read from a market id the store does not know (with the
  closest known id).
- ``market_lines`` / ``composition_lines``: configured markets without history for the range,
  stored markets no coin uses, and which markets made up each candle's flow (runs of candles).
- ``catch_up_message``: the dry-run start line; "store complete until" only when the store
  really is complete until then, staleness in human units.
"""

from __future__ import annotations

import difflib
import logging
import time

import numpy as np
import pandas as pd

from feeder.ingest.models import Kind
from feeder.settings import MarketSettings, Settings
from feeder.stores import MINUTE_SUFFIX, BarStore
from feeder.stores.coverage import covered, merge_intervals
from feeder.stores.provenance import LABEL, provenance, where

#: A backtest warns when at least this share of its candles lacks flow.
MISSING_SHARE = 0.5

_ARCHIVE_TYPE = {"BINANCE": "spot", "BINANCE_FUTURES": "um"}


def closest_market(market: str, known: list[str]) -> str | None:
    """The known market id that ``market`` is most likely a typo of: the closest symbol on the
    same exchange, else the same symbol on the closest exchange name; None when none is close."""
    ex, _, sym = market.partition(":")
    split = [(k, *k.split(":", 1)) for k in known if ":" in k]
    same_ex = {ksym: k for k, kex, ksym in split if kex == ex}
    found = difflib.get_close_matches(sym, list(same_ex), n=1, cutoff=0.8)
    if found:
        return same_ex[found[0]]
    same_sym = {kex: k for k, kex, ksym in split if ksym == sym}
    found = difflib.get_close_matches(ex, list(same_sym), n=1, cutoff=0.8)
    return same_sym[found[0]] if found else None


def _day(t: pd.Timestamp) -> str:
    return str(t.strftime("%Y-%m-%d"))


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


def _coverage(store: BarStore, market: str, timeframe_s: int) -> np.ndarray:
    """A market's coverage as ``load_flow`` counts it: with its kline minutes at whole-minute
    timeframes."""
    cov = store.coverage(market)
    if timeframe_s % 60 == 0:
        minutes = store.coverage(market + MINUTE_SUFFIX)
        if len(minutes):
            cov = merge_intervals(np.concatenate([cov.reshape(-1, 2), minutes]))
    return cov


def log_history(
    log: logging.Logger,
    store: BarStore,
    settings: Settings,
    coin: str,
    df: pd.DataFrame,
    timeframe_s: int,
    t0: float,
) -> None:
    """Log a backtest's flow of ``coin`` to ``log`` once, as loaded (``t0``: ``perf_counter`` at
    the start): its range and completeness, then its warnings and which markets made it up."""
    log.info(
        "SqueezeFlow: %s flow %s..%s (%d candles, %d incomplete) from %s in %.2fs",
        coin,
        df.index[0] if len(df) else "-",
        df.index[-1] if len(df) else "-",
        len(df),
        int((~df["complete"]).sum()),
        store.name,
        time.perf_counter() - t0,
    )
    for warning in history_warnings(store, settings, coin, df, timeframe_s):
        log.warning(warning)
    for line in composition_lines(settings, coin, df, timeframe_s):
        log.info(line)


def history_warnings(
    store: BarStore, settings: Settings, coin: str, flow: pd.DataFrame, timeframe_s: int
) -> list[str]:
    """Warnings for a backtest's flow of ``coin`` (``flow`` as ``load_flow`` returned it)."""
    out: list[str] = []
    if not len(flow):
        return out
    kinds = settings.markets(coin)
    markets = [m.id for m in kinds]
    stored = list(store.markets())
    prov = provenance(store)
    syn = [m for m in markets if m in prov.synthetic]
    if syn:
        out.append(
            f"SqueezeFlow: {coin} flow is {LABEL} ({', '.join(syn)} in the {where(store)}): "
            "these results say nothing about real markets"
        )
    first, last = flow.index[0], flow.index[-1]
    typos: dict[str, str] = {}
    for m in markets:
        if m in stored or len(store.coverage(m)):
            continue
        guess = closest_market(m, sorted(set(stored) - {m}))
        if guess:  # a likely typo: said on its own; other absent markets are in market_lines
            typos[m] = guess
            out.append(
                f"SqueezeFlow: market {m} (squeezeflow.coins.{coin}) is not in the "
                f"{where(store)}; did you mean {guess}?"
            )
    missing = int((~flow["complete"].to_numpy(bool)).sum())
    if missing >= MISSING_SHARE * len(flow):
        opens = flow.index.as_unit("s").asi8.astype(np.int64)
        ok = {m.id: covered(opens, timeframe_s, _coverage(store, m.id, timeframe_s)) for m in kinds}
        kind_ok = {k: np.logical_or.reduce([ok[m.id] for m in kinds if m.kind is k]) for k in Kind}
        # the markets the rule lacks: every uncovered one (all), or those of a kind no market
        # covers everywhere (each_kind: a covered market of its kind stands in for the others)
        lacking = [
            m.id
            for m in kinds
            if not ok[m.id].all() and (settings.flow.require == "all" or not kind_ok[m.kind].all())
        ]
        to_import = [m for m in lacking if m not in typos]
        todo = [
            f"fix {m} in squeezeflow.coins.{coin} (did you mean {g}?)" for m, g in typos.items()
        ]
        if to_import:
            todo.append(_import_hint(to_import, first, last))
        out.append(
            f"SqueezeFlow: {coin} flow is missing for {missing} of {len(flow)} candles "
            f"({_day(first)}..{_day(last)}; markets {', '.join(markets)}; {where(store)}): "
            "those candles can never enter, so the backtest will have few or no trades. "
            f"Not covered: {', '.join(lacking)}; {'; '.join(todo)}; then check with "
            "squeezeflow-feeder status"
        )
    return out + market_lines(store, settings, coin, flow, typos=set(typos), stored=stored)


#: A flow segment: first and last candle open (epoch s) and the markets whose flow made them.
Segment = tuple[int, int, tuple[str, ...]]
#: Segments kept per frame (and lines logged per load); the rest are counted.
MAX_SEGMENTS = 12


def flow_segments(opens: np.ndarray, used: list[tuple[str, np.ndarray]]) -> list[Segment]:
    """Runs of consecutive candles made of the same markets (``used``: each market's mask of the
    candles its flow went into), at most ``MAX_SEGMENTS`` + 1 (the last one is the newest)."""
    n = len(opens)
    if not n:
        return []
    ids = [m for m, _ in used]
    masks = np.stack([u for _, u in used]) if used else np.zeros((0, n), np.bool_)
    change = np.flatnonzero((masks[:, 1:] != masks[:, :-1]).any(axis=0)) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [n]]).astype(np.int64) - 1
    out = [
        (int(opens[a]), int(opens[b]), tuple(m for m, u in zip(ids, masks[:, a], strict=True) if u))
        for a, b in zip(starts, ends, strict=True)
    ]
    if len(out) <= MAX_SEGMENTS + 1:
        return out
    return [*out[:MAX_SEGMENTS], (-1, -1, ()), out[-1]]  # (-1, -1, ()): runs left out


def _markets_text(settings: Settings, coin: str, markets: tuple[str, ...]) -> str:
    kinds = {m.id: m.kind for m in settings.markets(coin)}
    spot = [m for m in markets if kinds.get(m) is Kind.SPOT]
    perp = [m for m in markets if kinds.get(m) is Kind.PERP]
    return f"spot {', '.join(spot) or 'none'}; perp {', '.join(perp) or 'none'}"


def composition_lines(
    settings: Settings, coin: str, flow: pd.DataFrame, timeframe_s: int
) -> list[str]:
    """Which markets made up each candle's flow: one line per run of candles made of the same
    markets (a backtest says it once per range; live says the newest run when it changes)."""
    segs: list[Segment] = flow.attrs.get("markets", [])
    out = []
    for a, b, markets in segs:
        if a < 0:
            out.append(f"SqueezeFlow: {coin} flow: more changes of its markets (status shows gaps)")
            continue
        n = (b - a) // timeframe_s + 1
        out.append(
            f"SqueezeFlow: {coin} flow {_utc(a)}..{_utc(b + timeframe_s)} UTC ({n} candles) "
            "made of "
            + (_markets_text(settings, coin, markets) if markets else "no market (no flow)")
        )
    return out


def newest_markets(flow: pd.DataFrame) -> tuple[int, tuple[str, ...]] | None:
    """The newest complete candle's open and the markets that made its flow (None: none is
    complete). Live uses it: the forming candle has no market yet and must not count as a change."""
    ok = np.flatnonzero(flow["complete"].to_numpy(bool))
    if not len(ok):
        return None
    t = int(flow.index[ok[-1]].timestamp())
    for a, b, markets in reversed(flow.attrs.get("markets", [])):
        if a <= t <= b:
            return a, markets
    return None


def live_markets_line(settings: Settings, coin: str, since: int, markets: tuple[str, ...]) -> str:
    return f"SqueezeFlow: {coin} flow since {_utc(since)} UTC made of " + _markets_text(
        settings, coin, markets
    )


def without_history(settings: Settings, coin: str, flow: pd.DataFrame) -> list[str]:
    """Configured markets of ``coin`` whose flow went into none of ``flow``'s candles."""
    used = set(flow.attrs.get("markets_used", ()))
    return [m.id for m in settings.markets(coin) if m.id not in used]


def unused_stored(stored: list[str], settings: Settings) -> list[str]:
    """Markets the store holds (``store.markets()``) that no coin in ``coins`` uses."""
    configured = {m.id for m in settings.all_markets()}
    return sorted(m for m in stored if m and m not in configured)


def market_lines(
    store: BarStore,
    settings: Settings,
    coin: str,
    flow: pd.DataFrame,
    *,
    typos: set[str],
    stored: list[str] | None = None,
) -> list[str]:
    """The start-up lines naming configured markets without history for the range (except
    ``typos``, warned about on their own) and stored markets no coin uses."""
    out = []
    if len(flow):
        none = [m for m in without_history(settings, coin, flow) if m not in typos]
        if none:
            span = (
                f"{_utc(int(flow.index[0].timestamp()))}..{_utc(int(flow.index[-1].timestamp()))}"
            )
            out.append(
                f"SqueezeFlow: {coin} markets without history for {span} UTC, so in no candle's "
                f"flow: {', '.join(none)} (flow.require={settings.flow.require}; import their "
                f"archives or drop them from squeezeflow.coins.{coin})"
            )
    unused = unused_stored(list(store.markets()) if stored is None else stored, settings)
    if unused:
        out.append(
            f"SqueezeFlow: the {where(store)} holds markets no coin in squeezeflow.coins uses: "
            f"{', '.join(unused)}"
        )
    return out


def _utc(t: int) -> str:
    return str(pd.Timestamp(t, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M"))


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


def staleness_text(age: float, now: float) -> str:
    """``newest bar 1053 days old, since 2024-01-10 00:00 UTC`` (or ``no flow recorded``)."""
    if age == float("inf"):
        return "no flow recorded"
    since = pd.Timestamp(now - age, unit="s", tz="UTC")
    return f"newest bar {human_age(age)} old, since {since:%Y-%m-%d %H:%M} UTC"


def complete_until(
    store: BarStore,
    markets: list[MarketSettings],
    window_until: int | None,
    *,
    require: str = "all",
) -> int | None:
    """Until when the store's flow of a coin is complete: the end of the last complete candle of
    the catch-up window, else, by the ``flow.require`` rule, the end of the slowest market's
    coverage (``all``; None: a market has none) or of the slower kind's furthest-reaching market
    (``each_kind``; None: a kind has no coverage)."""
    if window_until is not None:
        return window_until
    ends: dict[Kind, list[int]] = {Kind.SPOT: [], Kind.PERP: []}
    for m in markets:
        cov = store.coverage(m.id)
        if not len(cov):
            if require == "all":
                return None
            continue
        ends[m.kind].append(int(cov[-1, 1]))
    if require == "all":
        every = ends[Kind.SPOT] + ends[Kind.PERP]
        return min(every) if every else None
    if not ends[Kind.SPOT] or not ends[Kind.PERP]:
        return None
    return min(max(ends[Kind.SPOT]), max(ends[Kind.PERP]))


def catch_up_message(
    coin: str,
    store_name: str,
    candles: int,
    complete_until: int | None,
    now: float,
    timeframe_s: int,
) -> str:
    """The dry-run catch-up line: when the store is complete up to the current candle it says
    so; otherwise how far behind the store's complete flow is (or that it has none)."""
    head = f"SqueezeFlow: {coin} caught up from {store_name}: {candles} candles"
    if complete_until is None:
        return f"{head}; the store holds no flow for a market of {coin}: flow must come from Redis"
    until = pd.Timestamp(complete_until, unit="s", tz="UTC")
    behind = now - complete_until
    if behind <= timeframe_s:
        return f"{head}, store complete until {until:%Y-%m-%d %H:%M} UTC"
    return (
        f"{head}; the store is complete only until {until:%Y-%m-%d %H:%M} UTC "
        f"({human_age(behind)} behind, since {until:%Y-%m-%d}): newer flow must come from Redis"
    )
