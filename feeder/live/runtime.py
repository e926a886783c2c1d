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
import json
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import ccxt
import numpy as np
import pandas as pd
from aiohttp import web

from feeder.ingest.aggregate import NS, LiveBarBuilder
from feeder.ingest.models import Kind
from feeder.ingest.normalise import IdDeduplicator, Rejects, normalise
from feeder.live.collector import Backoff, Collector
from feeder.live.markets import LiveMarket, select_markets
from feeder.live.spool import Batch, Spool
from feeder.live.writers import LiveItem, RedisPublisher, SinkStats, StoreWriter
from feeder.redact import redact
from feeder.settings import ExchangeSettings, Settings
from feeder.stores import BarStore, open_store
from feeder.stores.redis_stream import MAX_INTERVALS, AsyncRedisBarStream

log = logging.getLogger(__name__)

TRADES_LIMIT = 2_000
#: attempts at loading an exchange's markets at start (backoff up to 1, 2, 4, 8 s) before giving up
STARTUP_ATTEMPTS = 5
#: a trade stamped further than this ahead of the feeder's clock is refused (future_timestamp)
FUTURE_TOLERANCE_S = 300
#: restarts of a task that keeps dying (without running ``HEALTHY_S`` in between) before the
#: feeder gives up and stops with a non-zero exit
MAX_RESTARTS = 5
HEALTHY_S = 60.0


class FeederStartError(RuntimeError):
    """The feeder cannot start (an exchange's markets cannot be loaded)."""


def _extend(cov: list[tuple[int, int]], start: int, end: int) -> None:
    """Add ``[start, end)`` to a session's coverage list (sorted, appended in time order)."""
    if cov and cov[-1][1] >= start:
        cov[-1] = (cov[-1][0], max(cov[-1][1], end))
    else:
        cov.append((start, end))
    if len(cov) > MAX_INTERVALS:  # the oldest coverage is forgotten: less complete, never more
        del cov[0]


class EventClock:
    """Replay clock: "now" is the newest exchange event time seen (rehearsals, tests)."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns

    def saw(self, ts_ns: int) -> None:
        self.now_ns = max(self.now_ns, ts_ns)


@dataclass
class MarketRuntime:
    m: LiveMarket
    builder: LiveBarBuilder
    dedup: IdDeduplicator
    collector: Collector | None = None
    covered_until: int | None = None
    trades: int = 0
    last_trade_recv: float = 0.0
    #: this session's coverage as written to the store (published with the watermark)
    session_cov: list[tuple[int, int]] = field(default_factory=list)
    published_wm: int | None = None


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
    def _make_exchange(self, entry: ExchangeSettings) -> Any:
        if self.exchange_factory is not None:
            return self.exchange_factory(entry)
        import ccxt.pro as ccxtpro

        cls = getattr(ccxtpro, entry.id)
        config: dict[str, Any] = {
            "enableRateLimit": True,
            # ccxt keeps this many parsed trades per symbol between watch calls: enough for a
            # burst (a loop that still falls behind leaves an id hole, which is backfilled),
            # small enough that 150 markets stay light.
            "options": {"tradesLimit": TRADES_LIMIT, "fetchCurrencies": False, **entry.options},
        }
        key = os.environ.get(f"SQUEEZEFLOW_API_KEY_{entry.id.upper()}")
        if key:  # read-only key: Binance's historical-trades backfill needs one
            config["apiKey"] = key
        ex = cls(config)
        for key, val in entry.urls.items():
            ex.urls[key] = val
        return ex

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
            ex = self._make_exchange(entry)
            self._exchanges.append(ex)
            markets = await self._load_markets(ex, entry)
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

    async def _load_markets(self, ex: Any, entry: ExchangeSettings) -> dict[str, Any]:
        """The exchange's markets; a network failure is retried with backoff a few times, then
        the feeder refuses to start with an error naming the exchange and the URL."""
        backoff = Backoff(base=1.0, cap=self.settings.feeder.backoff_max_s)
        for attempt in range(1, STARTUP_ATTEMPTS + 1):
            try:
                return dict(await ex.load_markets())
            except ccxt.NetworkError as e:
                error = e
            if attempt < STARTUP_ATTEMPTS:
                delay = backoff.next()
                log.warning(
                    "%s %s: markets not loaded (%s); retrying in %.1f s",
                    entry.id,
                    entry.kind.value,
                    type(error).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
        for x in self._exchanges:
            with contextlib.suppress(Exception):
                await x.close()
        raise FeederStartError(
            f"{entry.id} ({entry.kind.value}): cannot load its markets after {STARTUP_ATTEMPTS} "
            f"attempts: {type(error).__name__}: {str(error)[:300]}. Check the network, or "
            "squeezeflow.feeder.exchanges[].urls"
        ) from error

    # ----- trades in --------------------------------------------------------------------------
    def on_trades(
        self,
        m: LiveMarket,
        raw: dict[str, np.ndarray],
        recv_ns: int,
        backfill: bool,
        liquidation: bool = False,
    ) -> int:
        """Normalise, deduplicate and fold trades into the market's bars; returns how many
        were accepted (new)."""
        rt = self.markets[m.market]
        n = len(raw["price"])
        batch = normalise(
            m.spec,
            ts=raw["ts"],
            price=raw["price"],
            qty=raw["qty"],
            is_buyer_maker=raw["is_buyer_maker"],
            trade_id=raw["trade_id"],
            is_market=raw.get("is_market"),
            liquidation=np.ones(n, np.bool_) if liquidation else None,
            ts_recv=recv_ns,
            dedup=None if liquidation else rt.dedup,
            rejects=self.rejects,
        )
        if liquidation:  # not trades: neither the trade counters nor the stream's liveness
            self.counters["liquidations"] += len(batch)
        else:
            self.counters["trades_in"] += n
            self.counters["trades_backfilled" if backfill else "trades_live"] += len(batch)
        now = self.clock()
        if now > 0 and len(batch):  # (an event clock that has seen nothing yet cannot judge)
            ahead = batch.ts > now + FUTURE_TOLERANCE_S * NS
            if ahead.any():  # a broken venue clock must not close (and cover) years of seconds
                self.rejects.add("future_timestamp", int(ahead.sum()))
                if self.rejects.counts["future_timestamp"] == int(ahead.sum()):
                    log.warning(
                        "%s: trade(s) stamped more than %d s ahead of the clock refused",
                        m.market,
                        FUTURE_TOLERANCE_S,
                    )
                batch = batch.take(~ahead)
        if len(batch) == 0:
            return 0
        if not liquidation:
            rt.trades += len(batch)
            rt.last_trade_recv = time.time()
        if isinstance(self.clock, EventClock):
            self.clock.saw(int(batch.ts.max()))
        rt.builder.add(batch)
        return len(batch)

    async def on_gap(self, m: LiveMarket, start: int, end: int, reason: str) -> None:
        self.gaps.append({"market": m.market, "start": start, "end": end, "reason": reason})
        assert self.store is not None
        await asyncio.to_thread(self.store.record_gap, m.market, start, end, reason)
        rt = self.markets[m.market]
        rt.covered_until = max(rt.covered_until or end, end)  # coverage resumes after the gap

    # ----- the bar clock ----------------------------------------------------------------------
    def _limit_ns(self, rt: MarketRuntime, now_ns: int) -> int:
        col = rt.collector
        hold = col.state(rt.m).hold_ms if col is not None else None
        if hold is None:
            return now_ns
        # Seconds from the last trade before the outage on stay open for the backfill.
        return min(now_ns, (hold // 1000) * NS + int(self.settings.grace_s * NS))

    def tick(self, final: bool = False) -> None:
        now = self.clock()
        cover_limit = None
        if final and isinstance(self.clock, EventClock):
            # the stop writes every trade received (a replay that ended: all seconds final) but
            # covers only what the clock had closed: a stop mid-replay leaves its last seconds
            # partial, and partial seconds are never covered
            cover_limit = int((now - self.settings.grace_s * NS) // NS)
            now += int((self.settings.grace_s + 1) * NS)
        for rt in self.markets.values():
            try:
                self._tick_market(rt, now, final, cover_limit)
            except Exception:  # one market's failure must not stop every other market's bars
                self.counters["tick_errors"] += 1
                log.exception("bar clock: %s failed", rt.m.market)

    def _tick_market(
        self, rt: MarketRuntime, now: int, final: bool, cover_limit: int | None = None
    ) -> None:
        """Close the market's final seconds and queue its bars, rollups, coverage, live item."""
        out = rt.builder.advance(now if final else self._limit_ns(rt, now))
        self.counters["corrected_seconds"] += out.corrected_seconds
        if final:
            out.bars_1m = pd.concat([out.bars_1m, rt.builder.finish()], ignore_index=True)
        kind = rt.m.kind.value
        wm = rt.builder.watermark
        if len(out.bars_1s):
            self.writer.put(Batch(rt.m.market, kind, "1s", out.bars_1s))
        if len(out.bars_1m):
            self.writer.put(Batch(rt.m.market, kind, "1m", out.bars_1m))
        if wm is not None:
            # a session covers only what it received whole: from after its first trade's second
            start = rt.builder.covered_from
            assert start is not None
            if rt.covered_until is None or rt.covered_until < start:
                rt.covered_until = start
            end = wm if cover_limit is None else min(wm, cover_limit)
            if end > rt.covered_until:
                self.writer.put(Batch(rt.m.market, kind, "coverage", None, rt.covered_until, end))
                _extend(rt.session_cov, rt.covered_until, end)
                rt.covered_until = end
            # Every new watermark is published, quiet seconds too: readers' completeness must not
            # wait for the next trade.
            if self.publisher is not None and (len(out.bars_1s) or final or wm != rt.published_wm):
                self.publisher.put(
                    LiveItem(
                        rt.m.market, kind, out.bars_1s, wm, list(rt.session_cov), rt.published_wm
                    )
                )
                rt.published_wm = wm

    async def _clock_loop(self) -> None:
        while True:
            self.tick()
            if self.writer.failure is not None:  # batches are being lost: stop, loudly
                self._fail(f"store writer: {self.writer.failure}")
            await asyncio.sleep(self.tick_s)

    # ----- open interest and liquidations ----------------------------------------------------
    async def _oi_loop(self, col: Collector) -> None:
        perps = [m for m in col.markets.values() if m.kind is Kind.PERP]
        if not perps or not col.entry.open_interest or not col.ex.has.get("fetchOpenInterest"):
            return
        while True:
            for m in perps:
                try:
                    oi = await col.ex.fetch_open_interest(m.symbol)
                    value = oi.get("openInterestValue")
                    amount = oi.get("openInterestAmount")
                    if value is None and amount is not None:
                        if m.spec.contract_size is not None:
                            # inverse (Binance COIN-M): contracts of contract_size USD each
                            value = float(amount) * m.spec.contract_size
                        else:
                            # linear: base units x mark price. Binance's openInterest has no
                            # price in it: ask for the mark price (premiumIndex)
                            mark = (oi.get("info") or {}).get("markPrice")
                            if mark is None:
                                mark = (await col.ex.fetch_mark_price(m.symbol)).get("markPrice")
                            if mark is None:
                                raise ValueError("no mark price to value the open interest")
                            value = float(amount) * float(mark)
                    if value is None or not np.isfinite(value) or value < 0:
                        raise ValueError(f"no USD open interest in {oi.get('info')!r}")
                    t = int((oi.get("timestamp") or time.time() * 1000) // 1000)
                    df = pd.DataFrame({"time": [t], "oi": [float(value)]})
                    # through the writer: a store outage spools OI like bars, nothing lost
                    self.writer.put(Batch(m.market, m.kind.value, "oi", df))
                    self.counters["oi_points"] += 1
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - OI is optional: log and go on
                    self.counters["oi_errors"] += 1
                    log.debug("open interest %s: %s", m.market, e)
            await asyncio.sleep(self.settings.feeder.oi_interval_s)

    async def _liquidation_loop(self, col: Collector) -> None:
        perps = [m for m in col.markets.values() if m.kind is Kind.PERP]
        if (
            not perps
            or not col.entry.liquidations
            or not col.ex.has.get("watchLiquidationsForSymbols")
        ):
            return
        by_symbol = {m.symbol: m for m in perps}
        backoff = Backoff(base=1.0, cap=self.settings.feeder.backoff_max_s)
        while True:
            try:
                liqs = await col.ex.watch_liquidations_for_symbols(list(by_symbol))
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - liquidations are optional: retry
                self.counters["liquidation_errors"] += 1
                log.debug("liquidations %s: %s", col.name, e)
                await asyncio.sleep(backoff.next())
                continue
            # ccxt resolves the watch with the one liquidation that woke it; others handled in
            # the same socket read (a burst, several symbols) are only in its cache: take every
            # entry that is new since the last look
            cache = getattr(col.ex, "liquidations", None)
            if cache is not None and hasattr(cache, "getLimit"):
                new = cache.getLimit(None, None) or 0
                liqs = list(cache[-new:]) if new else []
            for lq in liqs:
                m = by_symbol.get(str(lq.get("symbol")))
                if m is None:
                    continue
                raw = {
                    "ts": np.array([lq.get("timestamp") or np.nan], np.float64),
                    "price": np.array([lq.get("price") or np.nan], np.float64),
                    "qty": np.array([lq.get("contracts") or np.nan], np.float64),
                    "is_buyer_maker": np.array([lq.get("side") == "sell"]),
                    "trade_id": np.array([int(lq.get("timestamp") or 0)], np.int64),
                }
                self.on_trades(m, raw, time.time_ns(), False, liquidation=True)

    # ----- health -----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        now = time.time()
        streams = {}
        for c in self.collectors:
            streams[c.name] = {
                "connected": c.stats.connected_since is not None,
                "reconnects": c.stats.reconnects,
                "watchdog_reconnects": c.stats.watchdog_reconnects,
                "backfilled_trades": c.stats.backfilled_trades,
                "unfilled_gaps": c.stats.unfilled_gaps,
                "last_error": c.stats.last_error,
            }
        markets = {
            k: {
                "last_trade_age_s": round(now - rt.last_trade_recv, 3)
                if rt.last_trade_recv
                else None,
                "watermark": rt.builder.watermark,
                "trades": rt.trades,
                "held": rt.collector.state(rt.m).hold_ms is not None if rt.collector else False,
            }
            for k, rt in self.markets.items()
        }
        up = all(s["connected"] for s in streams.values()) and self.stats.store_up
        failing = self.fatal or self.writer.failure
        refused = self.writer.refused and f"store refused points: {self.writer.refused}"
        alerts = [a for a in (failing, self.writer.alert, refused, self.writer.refused_alert) if a]
        return {
            "status": "failing" if alerts else "ok" if up else "degraded",
            "fatal": failing,
            "alerts": alerts,
            "task_restarts": dict(self.task_restarts),
            "streams": streams,
            "markets": markets,
            "queues": {
                "store": {"size": self.writer.queue.qsize(), "max": self.writer.queue.maxsize},
                "redis": self.publisher.depth() if self.publisher else None,
            },
            "spool": {
                "batches": len(self.writer.spool),
                "bytes": self.writer.spool.bytes,
                "quarantined": self.writer.spool.quarantined,
            },
            "store_up": self.stats.store_up,
            "redis_up": self.stats.redis_up,
            "gaps": self.gaps[-100:],
            "rejects": dict(self.rejects.counts),
            "counters": dict(self.counters) | dict(self.stats.counters),
        }

    def metrics(self) -> str:
        h = self.health()
        lines = [
            "# HELP squeezeflow_trades_total Trades received, by path.",
            "# TYPE squeezeflow_trades_total counter",
        ]
        for k in ("trades_live", "trades_backfilled"):
            lines.append(f'squeezeflow_trades_total{{path="{k[7:]}"}} {self.counters[k]}')
        lines += [
            "# HELP squeezeflow_rejected_total Trades refused, by reason.",
            "# TYPE squeezeflow_rejected_total counter",
        ]
        for reason, n in sorted(self.rejects.counts.items()):
            lines.append(f'squeezeflow_rejected_total{{reason="{reason}"}} {n}')
        lines += [
            "# HELP squeezeflow_last_trade_age_seconds Seconds since the last trade.",
            "# TYPE squeezeflow_last_trade_age_seconds gauge",
        ]
        for k, v in h["markets"].items():
            if v["last_trade_age_s"] is not None:
                lines.append(
                    f'squeezeflow_last_trade_age_seconds{{market="{k}"}} {v["last_trade_age_s"]}'
                )
        lines += [
            "# HELP squeezeflow_liquidations_total Liquidation fills received (lbuy/lsell).",
            "# TYPE squeezeflow_liquidations_total counter",
            f"squeezeflow_liquidations_total {self.counters['liquidations']}",
            "# HELP squeezeflow_open_interest_total Open-interest points polled, by outcome.",
            "# TYPE squeezeflow_open_interest_total counter",
            f'squeezeflow_open_interest_total{{outcome="stored"}} {self.counters["oi_points"]}',
            f'squeezeflow_open_interest_total{{outcome="error"}} {self.counters["oi_errors"]}',
        ]
        lines += ["# TYPE squeezeflow_reconnects_total counter"]
        for k, v in h["streams"].items():
            lines.append(f'squeezeflow_reconnects_total{{stream="{k}"}} {v["reconnects"]}')
        redis_depth = h["queues"]["redis"]["size"] if h["queues"]["redis"] else 0
        lines += [
            "# TYPE squeezeflow_queue_depth gauge",
            f'squeezeflow_queue_depth{{queue="store"}} {h["queues"]["store"]["size"]}',
            f'squeezeflow_queue_depth{{queue="redis"}} {redis_depth}',
            "# TYPE squeezeflow_spool_batches gauge",
            f"squeezeflow_spool_batches {h['spool']['batches']}",
            "# TYPE squeezeflow_gaps_total counter",
            f"squeezeflow_gaps_total {len(self.gaps)}",
            "# TYPE squeezeflow_store_up gauge",
            f"squeezeflow_store_up {int(self.stats.store_up)}",
            "# TYPE squeezeflow_redis_up gauge",
            f"squeezeflow_redis_up {int(self.stats.redis_up)}",
        ]
        return "\n".join(lines) + "\n"

    async def _http(self) -> web.AppRunner:
        async def health(_: web.Request) -> web.Response:
            return web.json_response(self.health(), dumps=lambda d: redact(json.dumps(d)))

        async def metrics(_: web.Request) -> web.Response:
            text = redact(self.metrics())
            return web.Response(text=text, content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        fs = self.settings.feeder
        site = web.TCPSite(runner, fs.http_host, fs.http_port)
        await site.start()
        self.http_port = runner.addresses[0][1] if runner.addresses else fs.http_port
        log.info("health on http://%s:%s/health and /metrics", fs.http_host, self.http_port)
        return runner

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
        runner = await self._http()
        self._spawn(self.writer.run, "store-writer")
        if self.publisher is not None:
            self._spawn(self.publisher.run, "redis-publisher")
        clock_task = self._spawn(self._clock_loop, "bar-clock")
        collecting = []
        for col in self.collectors:
            collecting.append(self._spawn(col.run, f"collect:{col.name}"))
            liquidations = functools.partial(self._liquidation_loop, col)
            collecting.append(self._spawn(liquidations, f"liquidations:{col.name}"))
            collecting.append(self._spawn(functools.partial(self._oi_loop, col), f"oi:{col.name}"))
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
            hold = rt.collector.state(rt.m).hold_ms if rt.collector is not None else None
            if hold is not None:
                try:
                    await self.on_gap(
                        rt.m, hold // 1000, end_s, "stopped before its backfill finished"
                    )
                except Exception:  # noqa: BLE001 - the store may be down: flush the rest anyway
                    log.exception("%s: could not record the gap at stop", rt.m.market)
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
