"""The read API the strategy uses: flow for a coin, a time range and any timeframe from 1s up.

``load_flow`` returns a frame indexed by candle open time (UTC) with spot and perp taker flow
summed over the coin's configured markets of each kind, and a ``complete`` flag per candle:
False when any configured market lacks coverage for the whole candle. Uncovered candles carry
NaN, never zeros; covered quiet candles carry real zeros.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

from feeder.ingest.models import FLOW_FIELDS, Kind
from feeder.read.diagnostics import flow_segments
from feeder.settings import MarketSettings, Settings
from feeder.stores import MINUTE_SUFFIX, BarStore
from feeder.stores.coverage import (
    Intervals,
    as_intervals,
    covered,
    merge_intervals,
    subtract_intervals,
)

log = logging.getLogger(__name__)

_TF_RE = re.compile(r"^(\d+)([smhdw])$")
_TF_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def timeframe_seconds(tf: str) -> int:
    """``"5m" -> 300``. Refuses anything that is not a whole number of seconds >= 1."""
    m = _TF_RE.match(tf.strip())
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"timeframe {tf!r} is not of the form <n><s|m|h|d|w>, e.g. 1s, 5m, 1h")
    return int(m.group(1)) * _TF_UNIT[m.group(2)]


def _to_epoch(t: pd.Timestamp | str | int) -> int:
    if isinstance(t, int | np.integer):
        return int(t)
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.timestamp())


def bucket_bars(bars: pd.DataFrame, opens_start: int, tf: int, n: int) -> dict[str, np.ndarray]:
    """Sum one market's bars into ``n`` candles of ``tf`` seconds starting at ``opens_start``."""
    t = bars["time"].to_numpy(np.int64)
    idx = (t - opens_start) // tf
    ok = (idx >= 0) & (idx < n)
    idx = idx[ok]
    out: dict[str, np.ndarray] = {}
    for f in FLOW_FIELDS:
        out[f] = np.bincount(idx, weights=bars[f].to_numpy(np.float64)[ok], minlength=n)
    present = np.bincount(idx, minlength=n) > 0
    close = np.full(n, np.nan)
    # Bars are sorted by time: the last write per candle wins, i.e. the candle's last close;
    # as in ``rollup``, bars with taker trades set it where the candle has any (a bar of
    # liquidations only does not), so a candle summed from 1 s bars and from 1 m rollups agree.
    price = bars["close"].to_numpy(np.float64)[ok]
    taker = ~((bars["cbuy"].to_numpy(np.float64) + bars["csell"].to_numpy(np.float64))[ok] == 0)
    close[idx[~taker]] = price[~taker]
    close[idx[taker]] = price[taker]
    out["close"] = close
    out["_present"] = present
    return out


def _utc(t: int) -> str:
    return str(pd.Timestamp(t, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M"))


def infers_coverage(store: BarStore, market: str, cov: Intervals, minutes: Intervals) -> bool:
    """Whether ``market``'s coverage is inferred from its 1-minute bars: only for bars another
    program wrote (aggr-server, into InfluxDB), i.e. in a store with foreign writers, for a
    market without a coverage record of either timeframe and without a recorded gap. Bars a
    SqueezeFlow writer left outside coverage (the partial seconds of an outage, even before the
    market's first covered second) are a gap, never inferred complete. The one rule for every
    reader (``load_flow``, ``status``), given the market's coverage ``cov`` and minute coverage
    ``minutes`` the caller already read."""
    if not store.foreign_writers or len(cov) or len(minutes):
        return False
    return not len(store.gaps(market))


def inferred_coverage(bars_1m: pd.DataFrame) -> Intervals:
    """Coverage of a market without coverage records (plain aggr-server): the minutes that have
    1-minute bars. The one rule for every reader (``load_flow``, ``status``)."""
    t = bars_1m["time"].to_numpy(np.int64)
    return merge_intervals(np.stack([t, t + 60], axis=1)) if len(t) else as_intervals([])


def load_flow(
    store: BarStore,
    settings: Settings,
    coin: str,
    start: pd.Timestamp | str | int,
    end: pd.Timestamp | str | int,
    timeframe: str = "5m",
    *,
    per_market: bool = False,
) -> pd.DataFrame:
    """Flow of ``coin`` for candles opening in ``[start, end)`` at ``timeframe``.

    Columns: ``spot_vbuy, spot_vsell, spot_cbuy, spot_csell, spot_lbuy, spot_lsell, spot_close``
    and the same for ``perp_``, ``oi`` (summed perp open interest, USD, as observed at or before
    the candle's close: see ``open_interest``; NaN when not recorded) and ``complete``. With
    ``per_market`` also ``<market>|<field>`` columns for every configured market. vbuy/vsell
    are USD taker notional.
    """
    tf = timeframe_seconds(timeframe)
    s = _to_epoch(start)
    e = _to_epoch(end)
    s -= s % tf
    e = e + (-e) % tf
    n = max(0, (e - s) // tf)
    opens = s + tf * np.arange(n, dtype=np.int64)
    markets = settings.markets(coin)
    grouped: dict[str, pd.DataFrame] | None = None
    use_1m = tf % 60 == 0
    if store.name == "influx" and n:  # every market's query in flight together
        grouped = store.read_grouped([m.id for m in markets], s, e, tf)  # type: ignore[attr-defined]

    parts = []
    notes: list[str] = []
    for m in markets:
        cov = store.coverage(m.id)
        minutes = store.coverage(m.id + MINUTE_SUFFIX)  # kline minutes: no 1s bars behind them
        if grouped is not None:
            sums = bucket_bars(grouped[m.id], s, tf, n)
            if infers_coverage(store, m.id, cov, minutes):
                cov = inferred_coverage(store.read_bars(m.id, s, e, "1m"))
                if len(cov) and not use_1m:
                    log.warning("%s has no coverage records; inferred from its 1m bars", m.id)
        else:
            bars = store.read_bars(m.id, s, e, "1m" if use_1m else "1s")
            sums = bucket_bars(bars, s, tf, n)
            if infers_coverage(store, m.id, cov, minutes):
                cov = inferred_coverage(bars if use_1m else store.read_bars(m.id, s, e, "1m"))
                if len(cov):
                    log.warning("%s has no coverage records; inferred from its 1m bars", m.id)
        if len(minutes) and use_1m:
            cov = merge_intervals(np.concatenate([cov.reshape(-1, 2), minutes]))
        elif len(minutes):
            only = subtract_intervals(minutes, cov)
            only = only[(only[:, 1] > s) & (only[:, 0] < e)] if len(only) else only
            if len(only):
                notes.append(
                    f"{m.id}: only 1-minute bars (klines) exist for "
                    f"{_utc(max(int(only[0, 0]), s))}..{_utc(min(int(only[-1, 1]), e))}; "
                    f"{timeframe} candles need 1-second bars there and are flagged incomplete "
                    "(use a whole-minute timeframe, or import trades for that range)"
                )
                log.warning(notes[-1])
        parts.append((m, sums, covered(opens, tf, cov)))
    df = assemble(opens, parts, per_market=per_market, require=settings.flow.require)
    if notes:
        df.attrs["notes"] = notes
    perps = [m.id for m in markets if m.kind is Kind.PERP]
    df["oi"] = open_interest(store, perps, s, e, tf, n, require=settings.flow.require)
    return df


#: Oldest open-interest observation a candle may carry forward (seconds before its close).
OI_MAX_AGE_S = 3600


def open_interest(
    store: BarStore,
    perps: list[str],
    s: int,
    e: int,
    tf: int,
    n: int,
    *,
    require: str = "all",
) -> np.ndarray:
    """Summed perp open interest (USD) as observed at or before each candle's close.

    Each market's last observation with ``time < candle end``, carried forward (causal) for at
    most ``max(tf, OI_MAX_AGE_S)`` seconds; NaN where any summed perp market has none (never a
    partial sum). ``require="each_kind"`` (``flow.require``) sums the perps that have any OI in
    the range and leaves out those with none at all (a venue without OI history); ``all`` needs
    every perp. The same function serves history (``load_flow``) and live (``FlowSource``).
    """
    if not perps:
        return np.full(n, np.nan)
    ends = s + tf * (np.arange(n, dtype=np.int64) + 1)
    reach = max(tf, OI_MAX_AGE_S)
    total = np.zeros(n)
    summed = 0
    for market in perps:
        oi = store.read_oi(market, s - reach, e)
        if len(oi) == 0 and require == "each_kind":
            continue
        if len(oi) == 0:
            return np.full(n, np.nan)
        summed += 1
        order = np.argsort(oi["time"].to_numpy(np.int64), kind="stable")
        t = oi["time"].to_numpy(np.int64)[order]
        v = oi["oi"].to_numpy(np.float64)[order]
        j = np.searchsorted(t, ends, side="left") - 1  # the last observation before the close
        safe = np.maximum(j, 0)
        ok = (j >= 0) & (ends - t[safe] <= reach)
        total += np.where(ok, v[safe], np.nan)
    return total if summed else np.full(n, np.nan)


def final_candles(
    complete: pd.Series | np.ndarray, start: int, tf: int, watermarks: list[int], retain_s: int
) -> int:
    """How many candles from ``start`` (the live boundary) have final flow: complete, and ended
    before every published watermark less the feeder's correction window ``retain_s`` (no late
    trade can change them any more). Counted up to the first that is not: an incomplete candle
    stops the count (a lost range may still be read from the store and complete it)."""
    ok = np.asarray(complete, np.bool_)
    if not watermarks or not len(ok):
        return 0
    ends = start + tf * (np.arange(len(ok), dtype=np.int64) + 1)
    done = ok & (ends <= min(watermarks) - retain_s)
    return len(done) if done.all() else int(np.argmin(done))


def assemble(
    opens: np.ndarray,
    parts: list[tuple[MarketSettings, dict[str, np.ndarray], np.ndarray]],
    *,
    per_market: bool = False,
    require: str = "all",
) -> pd.DataFrame:
    """Sum per-market candle sums by kind; flag incomplete candles by the ``require`` rule.

    ``all``: a candle is complete when every market covers it; a market contributes to a
    candle it covers (quiet: real zeros) or has bars in. ``each_kind``: complete when at least
    one market of each kind covers it; only covering markets contribute. A kind whose markets
    contribute nothing to a candle gets NaN there, never zero.
    """
    if require not in ("all", "each_kind"):
        raise ValueError(f"flow.require must be 'all' or 'each_kind', not {require!r}")
    n = len(opens)
    cols: dict[str, np.ndarray] = {}
    complete = np.ones(n, np.bool_)
    used: list[tuple[str, np.ndarray]] = []
    for kind in (Kind.SPOT, Kind.PERP):
        acc = {f: np.full(n, np.nan) for f in (*FLOW_FIELDS, "close")}
        any_ok = np.zeros(n, np.bool_)
        for m, sums, ok in (p for p in parts if p[0].kind is kind):
            any_ok |= ok
            if require == "all":
                complete &= ok
            has = ok | sums["_present"] if require == "all" else ok
            used.append((m.id, has))
            for f in FLOW_FIELDS:
                v = np.where(has, sums[f], np.nan)
                acc[f] = np.where(np.isnan(acc[f]), v, acc[f] + np.nan_to_num(v))
                if per_market:
                    cols[f"{m.id}|{f}"] = v
            acc["close"] = np.where(np.isnan(acc["close"]), sums["close"], acc["close"])
            if per_market:
                cols[f"{m.id}|close"] = sums["close"]
                cols[f"{m.id}|complete"] = ok
        if require == "each_kind":
            complete &= any_ok
        for f, v in acc.items():
            cols[f"{kind.value}_{f}"] = v
    order = [f"{k}_{f}" for k in ("spot", "perp") for f in (*FLOW_FIELDS, "close")]
    index = pd.DatetimeIndex(pd.to_datetime(opens, unit="s", utc=True), name="date")
    df = pd.DataFrame({c: cols[c] for c in order}, index=index)
    df["complete"] = complete
    df.attrs["markets"] = flow_segments(opens, used)  # which markets made each candle's flow
    df.attrs["markets_used"] = tuple(m for m, u in used if u.any())
    if per_market:
        extra = {c: v for c, v in cols.items() if "|" in c}
        df = pd.concat([df, pd.DataFrame(extra, index=df.index)], axis=1)
    return df


def flow_age(markets: list[tuple[Kind, int | None]], require: str, now: float) -> float:
    """Seconds since a coin's flow was last final, from each market's (kind, watermark): since
    the slowest market's newest final bar (``all``), or since the slower kind's freshest market's
    (``each_kind``: a market that never had a bar, a venue without history, is not waited for,
    as it does not make a candle incomplete). Infinite when nothing was ever final."""
    marks: dict[Kind, list[float]] = {Kind.SPOT: [], Kind.PERP: []}
    each_kind = require == "each_kind"
    for kind, wm in markets:
        if wm is None and not each_kind:
            return float("inf")
        if wm is not None:
            marks[kind].append(float(wm))
    if not marks[Kind.SPOT] or not marks[Kind.PERP]:
        return float("inf")
    if each_kind:
        return now - min(max(marks[Kind.SPOT]), max(marks[Kind.PERP]))
    return now - min(marks[Kind.SPOT] + marks[Kind.PERP])
