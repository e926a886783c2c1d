"""``squeezeflow-feeder run``: the live feeder process.

Tasks (all tracked in one set and supervised): collectors (trades, liquidations),
open-interest pollers, the bar clock (closes seconds on the watermark), the store writer (with
its spool), the Redis publisher and the health server. A task that dies is logged, counted and
restarted after a backoff; one that keeps dying (``MAX_RESTARTS`` in a row), or a store writer
that can neither write nor spool, makes ``/health`` say ``failing`` and stops the feeder, which
then exits non-zero (``fatal``): it never goes on without writing.
SIGTERM/SIGINT stop collection, close every second that is final, and flush every sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feeder.ingest.aggregate import NS, LiveBarBuilder
from feeder.ingest.normalise import IdDeduplicator, Rejects
from feeder.live import health
from feeder.live.backoff import Backoff
from feeder.live.bars import EventClock, MarketRuntime, close_seconds, fold_trades
from feeder.live.collector import Collector
from feeder.live.exchanges import FeederStartError, load_markets, make_exchange
from feeder.live.markets import LiveMarket, select_markets
from feeder.live.oi_liquidations import liquidation_loop, oi_loop
from feeder.live.spool import Spool
from feeder.live.writers import RedisPublisher, SinkStats, StoreWriter
from feeder.settings import ExchangeSettings, Settings
from feeder.stores import BarStore, open_store
from feeder.stores.redis_stream import AsyncRedisBarStream

log = logging.getLogger(__name__)

#: restarts of a task that keeps dying (without running ``HEALTHY_S`` in between) before the
#: feeder gives up and stops with a non-zero exit
MAX_RESTARTS = 5
HEALTHY_S = 60.0


@dataclass
class Feeder:
    settings: Settings
    store: BarStore | None = None
    exchange_factory: Callable[[ExchangeSettings], Any] | None = None
    clock: Callable[[], int] = time.time_ns
    tick_s: float = 0.1
    redis: bool = True
    stats: SinkStats = field(default_factory=SinkStats)
    rejects: Rejects = field(default_factory=Rejects)
    markets: dict[str, MarketRuntime] = field(default_factory=dict)
    collectors: list[Collector] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    #: why the feeder stopped on its own (a task that kept dying, batches lost), else None
    fatal: str | None = None
    task_restarts: Counter[str] = field(default_factory=Counter)
    _exchanges: list[Any] = field(default_factory=list)
    _stopping: asyncio.Event | None = None

    # ----- setup ------------------------------------------------------------------------------
    async def setup(self) -> None:
        fs = self.settings.feeder
        if self.store is None:
            self.store = open_store(self.settings)
        coins = list(fs.coins or self.settings.coins)
        self.writer = StoreWriter(
            self.store,
            Spool(fs.spool_dir),
            self.stats,
            fs.queue_size,
            flush_s=fs.flush_interval_s,
            spool_max_bytes=int(fs.spool_max_mb * 2**20),
            refused_max_bytes=int(fs.refused_max_mb * 2**20),
        )
        r = self.settings.redis
        self.publisher = (
            RedisPublisher(
                AsyncRedisBarStream(r.url, r.prefix, r.maxlen), self.stats, fs.queue_size
            )
            if self.redis and r.enabled
            else None
        )
        for entry in fs.exchanges:
            factory = self.exchange_factory or make_exchange
            ex = factory(entry)
            self._exchanges.append(ex)
            try:
                markets = await load_markets(ex, entry, fs.backoff_max_s)
            except FeederStartError:
                for x in self._exchanges:
                    with contextlib.suppress(Exception):
                        await x.close()
                raise
            chosen = [
                m
                for m in select_markets(entry.id, markets, entry, coins)
                if m.market not in self.markets
            ]
            if not chosen:
                log.warning("%s %s: no market for %s", entry.id, entry.kind.value, coins)
                continue
            # ccxt keeps every market it loaded (Binance: spot, USD-M and COIN-M, thousands);
            # keep the chosen ones only, which is all its parsers and REST calls look up
            ex.set_markets([markets[m.symbol] for m in chosen])
            col = Collector(
                entry,
                ex,
                chosen,
                self.on_trades,
                self.on_gap,
                fs.backoff_max_s,
                now_ms=lambda: self.clock() // 1_000_000,
            )
            self.collectors.append(col)
            for m in chosen:
                self.markets[m.market] = MarketRuntime(
                    m,
                    LiveBarBuilder(m.market, self.settings.grace_s, fs.retain_s, self.rejects),
                    IdDeduplicator(window=20_000),
                    col,
                )
            log.info(
                "%s %s: %d markets: %s%s",
                entry.id,
                entry.kind.value,
                len(chosen),
                ", ".join(m.market for m in chosen[:12]),
                " ..." if len(chosen) > 12 else "",
            )
        configured = {
            m.id for c in coins if c in self.settings.coins for m in self.settings.markets(c)
        }
        missing = sorted(configured - set(self.markets))
        if missing:
            log.warning("configured in squeezeflow.coins but not collected: %s", ", ".join(missing))

    # ----- trades in --------------------------------------------------------------------------
    def on_trades(
        self,
        m: LiveMarket,
        raw: dict[str, np.ndarray],
        recv_ns: int,
        backfill: bool,
        liquidation: bool = False,
    ) -> int:
        """Fold trades (or liquidation fills) into the market's bars; returns how many were
        accepted (new)."""
        rt = self.markets[m.market]
        args = (self.clock, self.rejects, self.counters)
        return fold_trades(rt, raw, recv_ns, backfill, liquidation, *args)

    async def on_gap(self, m: LiveMarket, start: int, end: int, reason: str) -> None:
        self.gaps.append({"market": m.market, "start": start, "end": end, "reason": reason})
        assert self.store is not None
        await asyncio.to_thread(self.store.record_gap, m.market, start, end, reason)
        rt = self.markets[m.market]
        rt.covered_until = max(rt.covered_until or end, end)  # coverage resumes after the gap

    # ----- the bar clock ----------------------------------------------------------------------
    def tick(self, final: bool = False) -> None:
        now = self.clock()
        cover_limit = None
        if final and isinstance(self.clock, EventClock):
            # the stop writes every trade received (a replay that ended: all seconds final) but
            # covers only what the clock had closed: a stop mid-replay leaves its last seconds
            # partial, and partial seconds are never covered
            cover_limit = int((now - self.settings.grace_s * NS) // NS)
            now += int((self.settings.grace_s + 1) * NS)
        grace_s, sinks = self.settings.grace_s, (self.writer, self.publisher)
        for rt in self.markets.values():
            try:
                close_seconds(rt, now, final, cover_limit, grace_s, *sinks, self.counters)
            except Exception:  # one market's failure must not stop every other market's bars
                self.counters["tick_errors"] += 1
                log.exception("bar clock: %s failed", rt.live_market.market)

    async def _clock_loop(self) -> None:
        while True:
            self.tick()
            if self.writer.failure is not None:  # batches are being lost: stop, loudly
                self._fail(f"store writer: {self.writer.failure}")
            await asyncio.sleep(self.tick_s)

    # ----- health ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return health.health(self)

    def metrics(self) -> str:
        return health.metrics(self)

    # ----- running ----------------------------------------------------------------------------
    def _spawn(self, make: Callable[[], Coroutine[Any, Any, Any]], name: str) -> asyncio.Task[Any]:
        """Run ``make()`` as a supervised task: restarted after a backoff when it dies."""
        task = asyncio.get_running_loop().create_task(self._supervise(make, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _supervise(self, make: Callable[[], Coroutine[Any, Any, Any]], name: str) -> None:
        backoff = Backoff(base=0.5, cap=self.settings.feeder.backoff_max_s)
        in_a_row = 0
        while True:
            started = time.monotonic()
            try:
                await make()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - every death is logged, counted, handled
                self.counters["task_deaths"] += 1
                self.task_restarts[name] += 1
                if time.monotonic() - started > HEALTHY_S:
                    in_a_row, backoff.attempt = 0, 0
                in_a_row += 1
                if in_a_row > MAX_RESTARTS:
                    self._fail(f"task {name} died {in_a_row} times in a row: {e!r}")
                    return
                delay = backoff.next()
                log.error("task %s died (%r); restarting in %.1f s", name, e, delay, exc_info=e)
                await asyncio.sleep(delay)

    def _fail(self, reason: str) -> None:
        """Stop the feeder on its own: ``run`` returns and the process exits non-zero."""
        if self.fatal is None:
            self.fatal = reason
            log.critical("stopping: %s", reason)
        if self._stopping is not None:
            self._stopping.set()

    async def run(self, until: asyncio.Event | None = None, install_signals: bool = True) -> None:
        """Collect until ``until`` is set (or SIGTERM/SIGINT), then flush everything."""
        self._stopping = until or asyncio.Event()
        if not self.markets:
            await self.setup()
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stopping.set)
        runner, self.http_port = await health.serve(self)
        self._spawn(self.writer.run, "store-writer")
        if self.publisher is not None:
            self._spawn(self.publisher.run, "redis-publisher")
        clock_task = self._spawn(self._clock_loop, "bar-clock")
        collecting = []
        for col in self.collectors:
            collecting.append(self._spawn(col.run, f"collect:{col.name}"))
            fs = self.settings.feeder
            liqs = functools.partial(
                liquidation_loop, col, self.on_trades, self.counters, fs.backoff_max_s
            )
            collecting.append(self._spawn(liqs, f"liquidations:{col.name}"))
            oi = functools.partial(oi_loop, col, self.writer, self.counters, fs.oi_interval_s)
            collecting.append(self._spawn(oi, f"oi:{col.name}"))
        await self._stopping.wait()
        log.info("stopping: closing streams and flushing every sink")
        for t in collecting:
            t.cancel()
        await asyncio.gather(*collecting, return_exceptions=True)
        for ex in self._exchanges:
            try:
                await ex.close()
            except Exception:  # noqa: BLE001,S110 - closing anyway
                pass
        # A backfill the stop cut short: its seconds are written with what arrived, and flagged.
        end_s = self.clock() // NS + int(self.settings.grace_s) + 2
        for rt in self.markets.values():
            hold = rt.hold_ms()
            if hold is not None:
                market = rt.live_market
                try:
                    await self.on_gap(
                        market, hold // 1000, end_s, "stopped before its backfill finished"
                    )
                except Exception:  # noqa: BLE001 - the store may be down: flush the rest anyway
                    log.exception("%s: could not record the gap at stop", market.market)
        # The bar clock stops before the final tick: ticking on while the sinks drain would cover
        # the seconds the final tick left partial (past its cover limit) in the store alone.
        clock_task.cancel()
        await asyncio.gather(clock_task, return_exceptions=True)
        self.tick(final=True)
        await self.writer.drain(timeout=5 if self.writer.failure else 30)
        if self.publisher is not None:
            await self.publisher.drain(timeout=5)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await runner.cleanup()
        if self.publisher is not None:
            await self.publisher.stream.close()
        log.info("stopped: %s", dict(self.counters))

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
