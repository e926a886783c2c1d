"""Trades to exact 1-second bars, bars to exact rollups, and the live watermark builder.

A bar's ``time`` is the open of its interval in epoch seconds; it holds every trade whose
*exchange* timestamp falls in ``[time, time + interval)``. Open and close are the prices of the
first and last trade by ``(exchange time, trade id)``, so the order in which trades arrive never
changes a bar. Liquidation fills count into ``lbuy``/``lsell`` only; they set a bar's price only
in a second without any taker trade (aggr-server leaves such a second's price empty; a price
from the fill keeps every stored bar complete).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from feeder.ingest.models import BAR_FIELDS, FLOW_FIELDS
from feeder.ingest.normalise import Rejects, TradeBatch

#: Ordering keys kept beside a bar while it can still be merged with others.
KEY_COLUMNS = ("_fts", "_fid", "_lts", "_lid")
NS = 1_000_000_000


def bars_from_trades(batch: TradeBatch) -> pd.DataFrame:
    """Aggregate one market's trades into 1-second bars (with merge keys), sorted by time."""
    n = len(batch)
    if n == 0:
        return empty_bars(keys=True)
    ts, tid = batch.ts, batch.trade_id
    dts = np.diff(ts)
    in_order = bool(np.all((dts > 0) | ((dts == 0) & (np.diff(tid) > 0))))
    if in_order:
        order = None
    else:
        order = np.lexsort((tid, ts))
        ts, tid = ts[order], tid[order]
    price = batch.price if order is None else batch.price[order]
    notional = batch.notional if order is None else batch.notional[order]
    buy = batch.buy if order is None else batch.buy[order]
    liq = batch.liq if order is None else batch.liq[order]

    sec = ts // NS
    starts = np.flatnonzero(np.concatenate(([True], sec[1:] != sec[:-1])))
    ends = np.concatenate((starts[1:], [n])) - 1
    taker = ~liq
    first, last = starts, ends  # the trades that set open/close (and the merge keys)
    hl_price = price
    if liq.any():  # price comes from taker trades; a second of liquidations only uses theirs
        pos = np.arange(n)
        first_tk = np.minimum.reduceat(np.where(taker, pos, n), starts)
        has_tk = first_tk < n
        first = np.where(has_tk, first_tk, starts)
        last = np.where(has_tk, np.maximum.reduceat(np.where(taker, pos, -1), starts), ends)
        use = taker | ~np.repeat(has_tk, ends - starts + 1)
        hl_price = np.where(use, price, np.nan)
    buy_f = buy.astype(np.float64)
    sell_f = 1.0 - buy_f
    tk = taker.astype(np.float64)
    lq = liq.astype(np.float64)
    cols: dict[str, npt.NDArray[np.generic]] = {
        "time": sec[starts],
        "open": price[first],
        "high": np.fmax.reduceat(hl_price, starts),
        "low": np.fmin.reduceat(hl_price, starts),
        "close": price[last],
        "vbuy": np.add.reduceat(notional * buy_f * tk, starts),
        "vsell": np.add.reduceat(notional * sell_f * tk, starts),
        "cbuy": np.add.reduceat(buy_f * tk, starts),
        "csell": np.add.reduceat(sell_f * tk, starts),
        "lbuy": np.add.reduceat(notional * buy_f * lq, starts),
        "lsell": np.add.reduceat(notional * sell_f * lq, starts),
        "_fts": ts[first],
        "_fid": tid[first],
        "_lts": ts[last],
        "_lid": tid[last],
    }
    return pd.DataFrame(cols)


def empty_bars(*, keys: bool = False) -> pd.DataFrame:
    cols: dict[str, npt.NDArray[np.generic]] = {"time": np.empty(0, np.int64)}
    for f in BAR_FIELDS:
        cols[f] = np.empty(0, np.float64)
    if keys:
        for k in KEY_COLUMNS:
            cols[k] = np.empty(0, np.int64)
    return pd.DataFrame(cols)


def merge_bars(*frames: pd.DataFrame) -> pd.DataFrame:
    """Merge partial bars of the same market (with merge keys) into exact bars per ``time``."""
    parts = [f for f in frames if len(f)]
    if not parts:
        return empty_bars(keys=True)
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if not df["time"].duplicated().any():
        return df.sort_values("time", ignore_index=True)
    liq_only = (df["cbuy"] + df["csell"]).to_numpy() == 0
    if liq_only.any():  # a part with taker trades sets the price: drop liquidation-only prices
        has_tk = pd.Series(~liq_only).groupby(df["time"].to_numpy()).transform("any").to_numpy()
        drop = liq_only & has_tk
        if drop.any():
            df = df.copy()
            df.loc[drop, ["open", "high", "low", "close"]] = np.nan  # skipped by first/max/...
            df.loc[drop, "_fts"] = np.iinfo(np.int64).max
            df.loc[drop, "_lts"] = np.iinfo(np.int64).min
    first = df.sort_values(["time", "_fts", "_fid"]).groupby("time", sort=True)
    last = df.sort_values(["time", "_lts", "_lid"]).groupby("time", sort=True)
    g = df.groupby("time", sort=True)
    out = pd.DataFrame(
        {
            "time": np.asarray(g.size().index, np.int64),
            "open": first["open"].first().to_numpy(),
            "high": g["high"].max().to_numpy(),
            "low": g["low"].min().to_numpy(),
            "close": last["close"].last().to_numpy(),
        }
    )
    sums = g[list(FLOW_FIELDS)].sum()
    for f in FLOW_FIELDS:
        out[f] = sums[f].to_numpy()
    out["_fts"] = first["_fts"].first().to_numpy()
    out["_fid"] = first["_fid"].first().to_numpy()
    out["_lts"] = last["_lts"].last().to_numpy()
    out["_lid"] = last["_lid"].last().to_numpy()
    return out


def strip_keys(bars: pd.DataFrame) -> pd.DataFrame:
    return bars.drop(columns=[k for k in KEY_COLUMNS if k in bars.columns])


def rollup(bars: pd.DataFrame, seconds: int) -> pd.DataFrame:
    """Exact rollup of sorted, single-market bars into ``seconds``-long bars.

    ``time`` of each output bar is the interval's open (a multiple of ``seconds``). Prices come
    from bars with taker trades (``cbuy + csell`` not 0) when the interval has any, so a rollup
    equals the bar ``bars_from_trades`` makes of the interval's trades at once.
    """
    if len(bars) == 0:
        return empty_bars()
    t = bars["time"].to_numpy(np.int64)
    bucket = t - t % seconds
    if not bool(np.all(t[1:] > t[:-1])):
        raise ValueError("rollup needs bars sorted by time without duplicates")
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [len(t)])) - 1
    high, low = bars["high"].to_numpy(np.float64), bars["low"].to_numpy(np.float64)
    first, last = starts, ends
    # As in bars_from_trades and merge_bars: taker trades set the price; a bar without taker
    # trades (liquidations only) sets it only where its whole interval has none. Unknown counts
    # (kline minutes: NaN) count as taker trades.
    taker = ~((bars["cbuy"].to_numpy(np.float64) + bars["csell"].to_numpy(np.float64)) == 0)
    if not taker.all():
        n = len(t)
        has_tk = np.logical_or.reduceat(taker, starts)
        use = taker | ~np.repeat(has_tk, ends - starts + 1)
        pos = np.arange(n)
        first = np.minimum.reduceat(np.where(use, pos, n), starts)
        last = np.maximum.reduceat(np.where(use, pos, -1), starts)
        high, low = np.where(use, high, np.nan), np.where(use, low, np.nan)
    out: dict[str, npt.NDArray[np.generic]] = {
        "time": bucket[starts],
        "open": bars["open"].to_numpy()[first],
        "high": np.fmax.reduceat(high, starts),
        "low": np.fmin.reduceat(low, starts),
        "close": bars["close"].to_numpy()[last],
    }
    for f in FLOW_FIELDS:
        out[f] = np.add.reduceat(bars[f].to_numpy(np.float64), starts)
    return pd.DataFrame(out)


@dataclass
class LiveBars:
    """Bars a live builder emits on one ``advance``: new and corrected, 1-second and 1-minute."""

    bars_1s: pd.DataFrame
    bars_1m: pd.DataFrame
    corrected_seconds: int = 0


@dataclass
class LiveBarBuilder:
    """Builds one market's 1-second bars live, closing each second on a watermark.

    A second ``s`` closes once the clock passes ``s + 1 + grace`` seconds, whether or not another
    trade arrives. ``add`` only queues trades; ``advance`` aggregates every second that closed, in
    one vectorised pass. A trade for a second already emitted (late) re-emits that second's
    corrected bar and its minute's rollup; sinks overwrite by key, so writes stay idempotent.
    Emitted bars are kept ``retain_s`` seconds for such corrections; a trade later than that is
    counted as ``late_dropped`` in ``rejects`` (it cannot be merged without re-reading the store).
    """

    market: str
    grace_s: float = 2.0
    retain_s: int = 600
    rejects: Rejects = field(default_factory=Rejects)
    watermark: int | None = None  # every second < watermark has been emitted
    #: the first second this session can vouch for entirely: the one after its first trade's
    #: (trades of that second before the first one received were never seen), None before
    covered_from: int | None = None
    late_trades: int = 0
    _pending: list[TradeBatch] = field(default_factory=list)
    _emitted: pd.DataFrame = field(default_factory=lambda: empty_bars(keys=True))
    _dirty: set[int] = field(default_factory=set)
    _minutes_done: int | None = None  # every minute < this has been emitted

    def add(self, batch: TradeBatch) -> None:
        """Queue accepted trades; trades of already-emitted seconds become corrections."""
        if len(batch) == 0:
            return
        if self.watermark is not None:
            sec = batch.ts // NS
            late = sec < self.watermark
            if late.any():
                self._correct(batch.take(late), sec[late])
                batch = batch.take(~late)
                if len(batch) == 0:
                    return
        self._pending.append(batch)

    def _correct(self, late: TradeBatch, sec: np.ndarray) -> None:
        assert self.watermark is not None
        oldest = self.watermark - self.retain_s
        too_old = sec < oldest
        self.rejects.add("late_dropped", int(too_old.sum()))
        keep = late.take(~too_old)
        if len(keep) == 0:
            return
        self.late_trades += len(keep)
        bars = bars_from_trades(keep)
        self._emitted = merge_bars(self._emitted, bars)
        self._dirty.update(int(t) for t in bars["time"])

    def finish(self) -> pd.DataFrame:
        """At shutdown: the rollup of the last, partial minute (its emitted seconds only).

        Coverage stops at the watermark, so readers flag that minute incomplete; the rollup still
        holds every second that was final.
        """
        if self.watermark is None or self._minutes_done is None:
            return empty_bars()
        em = self._emitted
        part = em[(em["time"] // 60 >= self._minutes_done) & (em["time"] < self.watermark)]
        self._minutes_done = self.watermark // 60 + 1
        return rollup(strip_keys(part), 60)

    def advance(self, now_ns: int) -> LiveBars:
        """Close every second that ended more than ``grace`` ago; return what must be written."""
        closable = int((now_ns - self.grace_s * NS) // NS)  # seconds < closable are final
        if self.watermark is None:
            if not self._pending:  # nothing seen yet: the session starts with the first trade
                return LiveBars(_EMPTY, _EMPTY)
            first = min(int(b.ts.min()) for b in self._pending) // NS
            self.watermark = min(closable, first)
            self.covered_from = first + 1
            # minutes from the first one that is covered whole are rolled up (not a partial one)
            self._minutes_done = -(-self.covered_from // 60)
        closable = max(closable, self.watermark)
        if closable == self.watermark and not self._dirty:
            return LiveBars(_EMPTY, _EMPTY)

        new = _EMPTY_KEYS
        if self._pending:
            batch = TradeBatch.concat(self._pending)
            due = batch.ts // NS < closable
            if due.all():
                self._pending = []
            else:
                self._pending = [batch.take(~due)]
                batch = batch.take(due)
            if len(batch):
                new = bars_from_trades(batch)
        corrected = sorted(self._dirty)
        self._dirty.clear()
        if len(new):
            self._emitted = pd.concat([self._emitted, new], ignore_index=True)
        out_1s = new
        if corrected:
            fixed = self._emitted[self._emitted["time"].isin(corrected)]
            out_1s = pd.concat([fixed, new], ignore_index=True).sort_values(
                "time", ignore_index=True
            )
        old_watermark = self.watermark
        self.watermark = closable

        # Rollups: minutes that just became complete, and minutes touched by corrections.
        assert self._minutes_done is not None
        full_minutes_end = closable // 60  # minutes < this are complete
        rolled = _EMPTY
        if full_minutes_end > self._minutes_done or corrected:
            em = self._emitted
            em_min = em["time"].to_numpy() // 60
            want = (em_min >= self._minutes_done) & (em_min < full_minutes_end)
            if corrected:
                want |= np.isin(em_min, [c // 60 for c in corrected if c // 60 < full_minutes_end])
            if want.any():
                rolled = rollup(strip_keys(em[want]), 60)
            self._minutes_done = max(self._minutes_done, full_minutes_end)
        # Trim the correction window now and then, not on every tick.
        if closable // 60 != old_watermark // 60 and len(self._emitted):
            self._emitted = self._emitted[
                self._emitted["time"] >= closable - self.retain_s
            ].reset_index(drop=True)
        return LiveBars(strip_keys(out_1s) if len(out_1s) else _EMPTY, rolled, len(corrected))


_EMPTY = empty_bars()
_EMPTY_KEYS = empty_bars(keys=True)
