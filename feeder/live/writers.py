"""The live feeder's sinks: the store writer (with its spool) and the Redis publisher.

Overflow policies (both queues are bounded):
- store: a batch that finds the queue full goes to the on-disk spool instead; a batch that can
  be neither written nor spooled (a full disk) is counted as lost and the writer reports the
  failure (``failure``): the feeder then stops with a non-zero exit, it never goes on silently.
  The spool is bounded (``spool_max_mb``): beyond it new batches are dropped and counted, their
  seconds are never covered (a gap, recorded when the store is back) and ``alert`` says so;
- a store that refuses a batch itself (InfluxDB 4xx: a field type conflict, a bad point) is not
  an outage: that market's batch goes to ``refused.jsonl`` beside the spool with the server's
  message, its seconds are recorded as a gap, and every other market keeps flowing; that file
  is bounded (``refused_max_bytes``): beyond it, it becomes ``refused.jsonl.1`` (one previous
  file kept), the batches of the ``.1`` it replaces are dropped, counted and alerted;
- Redis (live only, the store is the record): the oldest queued item is dropped and counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from feeder.live.spool import Batch, Spool, SpoolError
from feeder.stores import BarStore
from feeder.stores.coverage import as_intervals, merge_intervals, subtract_intervals
from feeder.stores.redis_stream import MAX_INTERVALS, AsyncRedisBarStream

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    counters: Counter[str] = field(default_factory=Counter)
    store_up: bool = True
    redis_up: bool = True


class StoreWriter:
    """Writes batches in order; on failure spools them (fsync) and replays when the store is back.

    While the spool holds anything, new batches are appended behind it, so the store always
    receives batches in the order they were produced. Writes overwrite by key, so a batch
    replayed after a partial failure never duplicates anything.
    """

    def __init__(
        self,
        store: BarStore,
        spool: Spool,
        stats: SinkStats,
        queue_size: int = 10_000,
        retry_s: float = 2.0,
        flush_s: float = 1.0,
        spool_max_bytes: int = 1 << 30,
        refused_max_bytes: int = 64 << 20,
    ) -> None:
        self.store = store
        self.spool = spool
        self.stats = stats
        self.queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=queue_size)
        self.retry_s = retry_s
        self.flush_s = flush_s
        self._last_try = 0.0
        self._idle = asyncio.Event()
        self._idle.set()
        #: why batches are being lost (the store down and the spool unwritable), else None
        self.failure: str | None = None
        self.spool_max_bytes = spool_max_bytes
        #: the spool is full: batches are being dropped (their seconds left uncovered)
        self.alert: str | None = None
        #: seconds whose bars were dropped or refused, per market: never covered, gaps to record
        self._uncovered: dict[str, list[tuple[int, int]]] = {}
        self._gaps_due: list[tuple[str, int, int, str]] = []
        self.refused: str | None = None  # the last refusal's message
        self._in_hand: list[Batch] = []  # taken off the queue, not yet written nor spooled
        self.refused_max_bytes = refused_max_bytes
        #: refused batches dropped by rotating refused.jsonl, else None
        self.refused_alert: str | None = None

    def put(self, batch: Batch) -> None:
        self._idle.clear()
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.stats.counters["store_queue_overflow_spooled"] += 1
            self._spool([batch])

    def _lose(self, batch: Batch, reason: str) -> None:
        """``batch`` will never be stored: its seconds must never be covered; a gap is due."""
        if batch.bars is None or not len(batch.bars) or batch.series == "oi":
            return
        t = batch.bars["time"].to_numpy()
        span = (int(t.min()), int(t.max()) + (60 if batch.series == "1m" else 1))
        self._uncovered.setdefault(batch.market, []).append(span)
        self._gaps_due.append((batch.market, *span, reason))

    def _spool(self, batches: list[Batch]) -> bool:
        size = sum(len(b.to_json()) + 1 for b in batches)
        if self.spool.bytes + size > self.spool_max_bytes:
            self.stats.counters["spool_full_dropped"] += len(batches)
            if self.alert is None:
                log.critical(
                    "spool %s is full (%d MB): dropping new batches, their seconds become gaps",
                    self.spool.path,
                    self.spool_max_bytes >> 20,
                )
            self.alert = f"spool full ({self.spool_max_bytes >> 20} MB): batches dropped"
            for b in batches:
                self._lose(b, "spool full while the store was down")
            return False
        try:
            self.spool.append(batches)
        except SpoolError as e:
            self.stats.counters["spool_write_failed"] += 1
            self.stats.counters["batches_lost"] += len(batches)
            if self.failure is None:
                log.critical(
                    "store %s down and %s: %d batch(es) lost", self.store.name, e, len(batches)
                )
            self.failure = f"store down and {e}"
            return False
        return True

    def _write(self, batches: list[Batch]) -> None:
        """Bars and open interest first (merged per market and timeframe: one write each),
        then coverage."""
        bars: dict[tuple[str, str, str], list[pd.DataFrame]] = {}
        for b in batches:
            if b.bars is not None:
                bars.setdefault((b.market, b.kind, b.series), []).append(b.bars)
        for (market, kind, res), frames in bars.items():
            df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            df = df.drop_duplicates("time", keep="last").sort_values("time", ignore_index=True)
            try:
                if res == "oi":
                    self.store.write_oi(market, df)
                else:
                    self.store.append_bars(market, kind, df, res)
            except Exception as e:
                if not getattr(e, "permanent", False):
                    raise  # an outage: the whole group is spooled and retried
                self._refuse(Batch(market, kind, res, df), str(e))
        while self._gaps_due:
            market, start, end, reason = self._gaps_due[0]
            self.store.record_gap(market, start, end, reason[:200])
            self._gaps_due.pop(0)
        for b in batches:
            if b.series == "coverage":
                lost = self._uncovered.get(b.market)
                keep = as_intervals([(b.start, b.end)])
                if lost:
                    keep = subtract_intervals(keep, merge_intervals(as_intervals(lost)))
                for start, end in keep:
                    self.store.add_coverage(b.market, int(start), int(end))

    def _refuse(self, batch: Batch, message: str) -> None:
        """The store refused these points themselves: keep them aside with its message."""
        self.stats.counters["store_refused_batches"] += 1
        line = json.dumps({"error": message, "batch": json.loads(batch.to_json())})
        self.spool.dir.mkdir(parents=True, exist_ok=True)
        path = self.spool.dir / "refused.jsonl"
        self._rotate_refused(path, len(line.encode()) + 1)
        with path.open("a") as fh:
            fh.write(line + "\n")
        if self.stats.counters["store_refused_batches"] == 1:
            log.error(
                "store %s refused %s %s bars: %s (kept in %s; other markets go on)",
                self.store.name,
                batch.market,
                batch.series,
                message,
                self.spool.dir / "refused.jsonl",
            )
        self.refused = message
        self._lose(batch, f"refused by the store: {message}")

    def _rotate_refused(self, path: Path, incoming: int) -> None:
        """The bound of ``refused.jsonl``: a line that would take it past ``refused_max_bytes``
        first moves it to ``refused.jsonl.1`` (one previous file kept); the batches of the
        previous ``.1`` are dropped then: counted (``refused_dropped_batches``) and alerted."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.refused_max_bytes:
            return
        previous = path.with_name(path.name + ".1")
        if previous.exists():
            with previous.open("rb") as fh:
                dropped = sum(c.count(b"\n") for c in iter(lambda: fh.read(1 << 20), b""))
            self.stats.counters["refused_dropped_batches"] += dropped
            total = self.stats.counters["refused_dropped_batches"]
            mb = self.refused_max_bytes / 2**20
            self.refused_alert = (
                f"refused.jsonl rotated: {total} refused batch(es) dropped so far (bound "
                f"{mb:g} MB and one previous file: feeder.refused_max_mb)"
            )
            log.error("%s; the newest are in %s and %s", self.refused_alert, path, previous)
        path.replace(previous)

    async def _try(self, batches: list[Batch]) -> bool:
        try:
            await asyncio.to_thread(self._write, batches)
        except Exception as e:  # noqa: BLE001 - any store failure: keep the data on disk
            if self.stats.store_up:
                log.error(
                    "store %s failed (%s): spooling to %s", self.store.name, e, self.spool.path
                )
            self.stats.store_up = False
            return False
        if not self.stats.store_up:
            log.info("store %s is back", self.store.name)
        self.stats.store_up = True
        return True

    async def _replay(self) -> None:
        if not len(self.spool) or time.monotonic() - self._last_try < self.retry_s:
            return
        self._last_try = time.monotonic()
        batches = list(self.spool.read())
        if await self._try(batches):
            self.stats.counters["spool_replayed_batches"] += len(batches)
            log.info("replayed %d spooled batches into %s", len(batches), self.store.name)
            self.spool.clear()

    async def run(self) -> None:
        """The writer's loop. Batches taken off the queue stay in ``_in_hand`` until they are
        written or spooled: a run that dies of an unexpected exception leaves them there and
        the restarted run (the feeder supervises it) handles them first, in order."""
        while True:
            if self._in_hand:
                batches = self._in_hand
            else:
                try:
                    first = await asyncio.wait_for(self.queue.get(), timeout=self.retry_s)
                except TimeoutError:
                    await self._replay()
                    self._mark_idle()
                    continue
                self._idle.clear()
                batches = self._in_hand = [first]
                # Gather for one flush interval: one small write per market, not one per tick.
                deadline = time.monotonic() + self.flush_s
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        batches.append(await asyncio.wait_for(self.queue.get(), timeout=left))
                    except TimeoutError:
                        break
            await self._replay()
            if len(self.spool) or not await self._try(batches):
                if self._spool(batches):
                    self.stats.counters["spooled_batches"] += len(batches)
            else:
                self.stats.counters["written_batches"] += len(batches)
            self._in_hand = []
            self._mark_idle()

    def _mark_idle(self) -> None:
        if (
            not self._in_hand
            and self.queue.empty()
            and (not len(self.spool) or not self.stats.store_up)
        ):
            self._idle.set()

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline, not I/O
        """Wait until everything queued is written (or spooled, while the store is down); a
        spool left from a store that was down at the last try gets its replay before the stop
        (the writer's own loop replays it within ``retry_s``)."""
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        self._last_try = 0.0  # the next replay is due now
        while len(self.spool) and time.monotonic() < deadline and self.failure is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return self.queue.empty()


@dataclass
class LiveItem:
    market: str
    kind: str
    bars: pd.DataFrame
    watermark: int
    coverage: list[tuple[int, int]] = field(default_factory=list)  # the session's, as stored
    prev_watermark: int | None = None  # the watermark of the market's previous item


class RedisPublisher:
    """Publishes live items in order. An item that never reaches Redis (dropped on overflow,
    failed publish) leaves its range in the market's ``lost`` list, published with every later
    state, so readers treat it as a gap, never as a quiet (zero) stretch."""

    def __init__(self, stream: AsyncRedisBarStream, stats: SinkStats, queue_size: int = 10_000):
        self.stream = stream
        self.stats = stats
        self.queue: asyncio.Queue[LiveItem] = asyncio.Queue(maxsize=queue_size)
        self.lost: dict[str, list[tuple[int, int]]] = {}
        self._in_hand: LiveItem | None = None

    def put(self, item: LiveItem) -> None:
        if self.queue.full():
            self._lose(self.queue.get_nowait())
            self.stats.counters["redis_dropped_oldest"] += 1
        self.queue.put_nowait(item)

    def _lose(self, item: LiveItem) -> None:
        """Record the range an item covered: its bars and the seconds since the previous item."""
        if not len(item.bars):
            return
        start = int(item.bars["time"].min())
        if item.prev_watermark is not None:
            start = min(start, item.prev_watermark)
        end = max(item.watermark, int(item.bars["time"].max()) + 1)
        lost = self.lost.setdefault(item.market, [])
        lost.append((start, end))
        lost.sort()
        merged: list[tuple[int, int]] = []
        for s, e in lost:
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        while len(merged) > MAX_INTERVALS:  # join the two oldest: more lost, never less
            merged[:2] = [(merged[0][0], merged[1][1])]
        self.lost[item.market] = merged

    async def run(self) -> None:
        import redis

        while True:
            # an item taken off the queue stays in hand until it is published or given up: a
            # run that dies of an unexpected exception leaves it to the restarted run
            if self._in_hand is None:
                self._in_hand = await self.queue.get()
            item = self._in_hand
            try:
                await self.stream.publish(
                    item.market,
                    item.kind,
                    item.bars,
                    watermark=item.watermark,
                    coverage=item.coverage,
                    lost=self.lost.get(item.market, []),
                )
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                self._in_hand = None
                self._lose(item)
                self.stats.counters["redis_failed"] += 1
                if self.stats.redis_up:
                    log.warning(
                        "Redis unreachable (%s): live bars not published; storage goes on", e
                    )
                self.stats.redis_up = False
                continue
            self._in_hand = None
            if not self.stats.redis_up:
                log.info("Redis is back: publishing live bars again")
            self.stats.redis_up = True
            self.stats.counters["redis_published"] += 1

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a deadline, not I/O
        deadline = time.monotonic() + timeout
        while (  # noqa: ASYNC110
            not self.queue.empty() or self._in_hand is not None
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def depth(self) -> dict[str, Any]:
        return {"size": self.queue.qsize(), "max": self.queue.maxsize}
