"""Streams of raw trades through normalisation and aggregation into a store.

``DayBarWriter`` is the batch path (archive import): trades arrive in chunks in time order;
1-second bars are merged across chunk boundaries and held per UTC day (at most 86,400 rows per
market), and each day is written, with its exact 1-minute rollup, once the stream has moved past
it. Memory therefore stays bounded by one chunk plus one day of bars, whatever the input size.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from feeder.ingest.aggregate import bars_from_trades, merge_bars, rollup, strip_keys
from feeder.ingest.normalise import IdDeduplicator, MarketSpec, Rejects, normalise
from feeder.stores import BarStore

log = logging.getLogger(__name__)
DAY = 86_400


class OutOfOrderError(ValueError):
    """A batch source went back into a day that was already written."""


@dataclass
class ImportReport:
    """The counters of an import: one writer's (``DayBarWriter.stats``) and a whole run's
    (files, markets, failures), with the summary the ``import`` command prints."""

    files_done: int = 0
    files_skipped: int = 0
    trades_in: int = 0
    trades_ok: int = 0
    bars_1s: int = 0
    bars_1m: int = 0
    malformed_rows: int = 0
    rejects: Rejects = field(default_factory=Rejects)
    markets: set[str] = field(default_factory=set)
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    non_trade: dict[str, int] = field(default_factory=dict)  # archives found, not trades: skipped
    synthetic: bool = False

    def add_counts(self, other: ImportReport, market: str) -> None:
        """Add the trade and bar counts of ``other`` (one market's writer) to this report."""
        self.trades_in += other.trades_in
        self.trades_ok += other.trades_ok
        self.bars_1s += other.bars_1s
        self.bars_1m += other.bars_1m
        self.rejects.merge(other.rejects)
        self.markets.add(market)

    def summary(self) -> str:
        rate = self.trades_in / self.seconds if self.seconds else 0.0
        lines = [
            f"imported {self.files_done} file(s), skipped {self.files_skipped} already imported",
            f"trades read {self.trades_in:,}, accepted {self.trades_ok:,}, "
            f"1s bars written {self.bars_1s:,} in {self.seconds:.1f}s ({rate:,.0f} trades/s)",
        ]
        if self.malformed_rows:
            lines.append(f"malformed rows skipped: {self.malformed_rows:,}")
        if self.rejects.total():
            reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(self.rejects.counts.items()))
            lines.append(f"refused trades: {reasons}")
        if self.non_trade:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.non_trade.items()))
            lines.append(
                f"skipped {sum(self.non_trade.values())} archive file(s) that are not "
                f"trades or aggTrades ({kinds})"
            )
        if self.synthetic:
            lines.append(
                "these files are SYNTHETIC (planted squeezes, not market data): "
                "the store is marked so"
            )
        if self.failed:
            lines.append(f"FAILED {len(self.failed)} file(s), not imported (the others are):")
            lines += [f"  {name}: {why}" for name, why in self.failed]
        return "\n".join(lines)


@dataclass
class DayBarWriter:
    """Normalise, aggregate and write one market's time-ordered raw trade chunks."""

    store: BarStore
    spec: MarketSpec
    stats: ImportReport = field(default_factory=ImportReport)
    dedup: IdDeduplicator = field(default_factory=lambda: IdDeduplicator(window=10_000))
    #: ``[start, end)`` seconds the input may hold (an archive file's day or month): rows
    #: outside it are refused and counted (``outside_file_period``), never stored
    within: tuple[int, int] | None = None
    #: per UTC day, the bars held so far as parts in strictly increasing, disjoint ``time``
    #: (one frame once two parts had to be merged): written together at the day's flush
    _days: dict[int, list[pd.DataFrame]] = field(default_factory=dict)
    _flushed_before: int | None = None  # every day < this is written

    def add_raw(self, raw: Mapping[str, np.ndarray]) -> None:
        """Add one chunk of raw columns (``ts, price, qty, is_buyer_maker, trade_id`` and
        optionally ``is_market``, ``liquidation``)."""
        n = len(raw["price"])
        self.stats.trades_in += n
        batch = normalise(
            self.spec,
            ts=raw["ts"],
            price=raw["price"],
            qty=raw["qty"],
            is_buyer_maker=raw["is_buyer_maker"],
            trade_id=raw["trade_id"],
            is_market=raw.get("is_market"),
            liquidation=raw.get("liquidation"),
            dedup=self.dedup,
            rejects=self.stats.rejects,
        )
        if self.within is not None and len(batch):
            sec = batch.ts // 1_000_000_000
            inside = (sec >= self.within[0]) & (sec < self.within[1])
            if not inside.all():
                self.stats.rejects.add("outside_file_period", int((~inside).sum()))
                batch = batch.take(inside)
        self.stats.trades_ok += len(batch)
        if len(batch) == 0:
            return
        bars = bars_from_trades(batch)
        t = bars["time"].to_numpy(np.int64)
        days = t - t % DAY
        if self._flushed_before is not None and int(days[0]) < self._flushed_before:
            raise OutOfOrderError(
                f"{self.spec.market}: trades at {pd.Timestamp(int(t[0]), unit='s', tz='UTC')} "
                "arrive after their day was written; the input is not in time order"
            )
        for day in np.unique(days):
            self._add_part(int(day), bars[days == day])
        # Sorted input: every day before the newest one seen in this chunk is final.
        self._flush(before=int(days.max()))

    def _add_part(self, day: int, part: pd.DataFrame) -> None:
        """Hold ``part`` (bars sorted by time) with the day's earlier bars: the same bars as
        ``merge_bars(earlier, part)``, without regrouping the whole day on every chunk. Time-ordered
        input meets the day's held bars at most in their last second: only that second is merged.
        """
        parts = self._days.setdefault(day, [])
        if not parts:
            parts.append(part)
            return
        last = parts[-1]
        last_t = int(last["time"].iat[-1])
        first_t = int(part["time"].iat[0])
        if first_t > last_t:
            parts.append(part)
        elif first_t == last_t:  # a second split between chunks: merge that second alone
            joint = merge_bars(last.iloc[-1:], part.iloc[:1])[list(part.columns)]
            parts[-1:] = [p for p in (last.iloc[:-1], joint, part.iloc[1:]) if len(p)]
        else:  # out of order within the day: one merge over everything held
            self._days[day] = [merge_bars(_held(parts), part)]

    def _flush(self, before: int | None) -> None:
        for day in sorted(d for d in self._days if before is None or d < before):
            bars_1s = strip_keys(_held(self._days.pop(day)))
            kind = self.spec.kind.value
            self.stats.bars_1s += self.store.write_bars(self.spec.market, kind, bars_1s, "1s")
            bars_1m = rollup(bars_1s, 60)
            self.stats.bars_1m += self.store.write_bars(self.spec.market, kind, bars_1m, "1m")
            self._flushed_before = max(self._flushed_before or 0, day + DAY)

    def close(self) -> ImportReport:
        """Write every day still held."""
        self._flush(before=None)
        return self.stats


def _held(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One frame of a day's held parts (disjoint and in time order: a concatenation)."""
    parts = [p for p in parts if len(p)]
    if len(parts) == 1:
        return parts[0].reset_index(drop=True)
    return pd.concat(parts, ignore_index=True)
