"""Live completeness means what the store's coverage means (issue 8): against the real Redis.

The feeder side runs the real bar clock and publisher (``Feeder.tick`` + ``RedisPublisher``) with
trades put in by hand; the strategy side is ``FlowSource`` reading the real Redis.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pandas as pd
import pytest

from feeder.ingest.aggregate import NS, LiveBarBuilder, rollup
from feeder.ingest.normalise import IdDeduplicator, MarketSpec
from feeder.live.bars import MarketRuntime
from feeder.live.markets import LiveMarket
from feeder.live.runtime import Feeder
from feeder.live.spool import Spool
from feeder.live.writers import RedisPublisher, StoreWriter
from feeder.read.flow import load_flow
from feeder.read.flow_source import FlowSource
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from feeder.stores.redis_stream import AsyncRedisBarStream, RedisBarStream, stream_key
from tests.store_cases import make_bars

pytestmark = pytest.mark.backend

T0 = 1_704_067_200
SPOT, PERP = "BINANCE:btcusdt", "BINANCE_FUTURES:btcusdt"
MARKETS = {"spot": [SPOT], "perp": [PERP]}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def ns(self) -> int:
        return int(self.t * NS)


def make_settings(redis_url: str, tmp_path, **extra):
    prefix = f"sfpar{uuid.uuid4().hex[:8]}"
    return settings_from_dict(
        {
            "coins": {"BTC": MARKETS},
            "redis": {"url": redis_url, "prefix": prefix},
            "store": {"parquet_dir": str(tmp_path / "store")},
            **extra,
        },
        env=False,
    )


class LiveRig:
    """A feeder (real bar clock, store writer, Redis publisher) with trades put in by hand."""

    def __init__(self, settings, store, clock: Clock, tmp_path, queue_size: int = 10_000):
        self.clock = clock
        self.f = Feeder(settings, store=store, clock=clock.ns, redis=True)
        self.f.writer = StoreWriter(store, Spool(tmp_path / "spool"), self.f.stats)
        r = settings.redis
        self.stream = AsyncRedisBarStream(r.url, r.prefix, r.maxlen)
        self.f.publisher = RedisPublisher(self.stream, self.f.stats, queue_size)
        for m in settings.markets("BTC"):
            lm = LiveMarket("binance", m.id, "BTC", MarketSpec(m.id, m.kind))
            self.f.markets[m.id] = MarketRuntime(
                lm, LiveBarBuilder(m.id, settings.grace_s, 600), IdDeduplicator(window=1000)
            )
        self.next_id = 1

    def trades(self, market: str, secs: list[float], qty: float = 1.0, buy: bool = True) -> None:
        rt = self.f.markets[market]
        n = len(secs)
        raw = {
            "ts": (np.asarray(secs) * 1000).astype(np.int64),
            "price": np.full(n, 100.0),
            "qty": np.full(n, qty),
            "is_buyer_maker": np.full(n, not buy),
            "trade_id": np.arange(self.next_id, self.next_id + n),
        }
        self.next_id += n
        self.f.on_trades(rt.live_market, raw, self.clock.ns(), backfill=False)

    def tick(self, t: float) -> None:
        self.clock.t = t
        self.f.tick()

    def flush(self, store: bool = True) -> None:
        """Publish every queued live item and write every queued batch to the store."""

        async def go() -> None:
            while not self.f.publisher.queue.empty():
                item = self.f.publisher.queue.get_nowait()
                await self.stream.publish(
                    item.market,
                    item.kind,
                    item.bars,
                    watermark=item.watermark,
                    coverage=item.coverage,
                    lost=self.f.publisher.lost.get(item.market, []),
                )
            batches = []
            while store and not self.f.writer.queue.empty():
                batches.append(self.f.writer.queue.get_nowait())
            if batches:
                self.f.writer._write(batches)
            await self.stream.close()

        asyncio.run(go())
        r = self.f.settings.redis
        self.stream = self.f.publisher.stream = AsyncRedisBarStream(r.url, r.prefix, r.maxlen)


def ts(t: int) -> pd.Timestamp:
    return pd.Timestamp(t, unit="s", tz="UTC")


def test_a_quiet_second_moves_the_published_watermark(redis_url, tmp_path):
    settings = make_settings(redis_url, tmp_path)
    clock = Clock(T0)
    rig = LiveRig(settings, ParquetStore(tmp_path / "store"), clock, tmp_path)
    for m in (SPOT, PERP):
        rig.trades(m, [T0 + 0.5])
    rig.tick(T0 + 4)
    rig.flush()
    first = RedisBarStream(redis_url, prefix=settings.redis.prefix).watermarks([SPOT, PERP])
    rig.tick(T0 + 30)  # nobody traded since: the seconds are still final (real zeros)
    rig.flush()
    later = RedisBarStream(redis_url, prefix=settings.redis.prefix).watermarks([SPOT, PERP])
    closed_by = int(T0 + 30 - settings.grace_s)  # every second ending grace_s before the tick
    assert first[SPOT] is not None and first[SPOT] <= T0 + 4 - settings.grace_s
    assert later == {SPOT: closed_by, PERP: closed_by}


def _session(rig: LiveRig, start: int, end: int, skip: tuple[int, int] | None = None) -> None:
    """Trades every 3 s in [start, end) on both markets (none inside ``skip``), ticked along."""
    for t in range(start, end, 3):
        if skip and skip[0] <= t < skip[1]:
            continue
        for m in (SPOT, PERP):
            rig.trades(m, [t + 0.25])
        rig.tick(t + 3.5)
    rig.tick(end + settings_grace(rig) + 1)
    rig.flush()


def settings_grace(rig: LiveRig) -> float:
    return rig.f.settings.grace_s


def _reader(settings, tmp_path, clock: Clock) -> FlowSource:
    return FlowSource(settings, "1m", store=ParquetStore(tmp_path / "store"), clock=clock)


def test_a_recorded_gap_is_incomplete_live_exactly_as_in_the_store(redis_url, tmp_path):
    settings = make_settings(redis_url, tmp_path)
    clock = Clock(T0)
    store = ParquetStore(tmp_path / "store")
    rig = LiveRig(settings, store, clock, tmp_path)
    src = _reader(settings, tmp_path, clock)
    src.catch_up("BTC", 10)
    _session(rig, T0 - 6, T0 + 120)  # the session's coverage starts a few seconds before T0
    # An outage the venue's REST could not fill: recorded as a gap, coverage resumes after it.
    asyncio.run(rig.f.on_gap(rig.f.markets[PERP].live_market, T0 + 125, T0 + 200, "test outage"))
    _session(rig, T0 + 123, T0 + 360, skip=(T0 + 125, T0 + 200))
    clock.t = T0 + 400
    src.poll(["BTC"])
    live = src.live("BTC")
    stored = load_flow(store, settings, "BTC", T0, T0 + 360, "1m")
    got = live.loc[stored.index]
    assert not got.loc[ts(T0 + 120), "complete"]  # the outage: a gap, not a quiet minute
    assert not got.loc[ts(T0 + 180), "complete"]
    assert got.loc[ts(T0 + 240), "complete"] and got.loc[ts(T0), "complete"]
    assert got["complete"].tolist() == stored["complete"].tolist()
    ok = stored["complete"]
    pd.testing.assert_frame_equal(got[ok], stored[got.columns][ok], check_freq=False)


def test_a_live_item_dropped_on_overflow_is_a_gap_not_zero_flow(redis_url, tmp_path):
    settings = make_settings(redis_url, tmp_path)
    clock = Clock(T0)
    store = ParquetStore(tmp_path / "store")
    rig = LiveRig(settings, store, clock, tmp_path, queue_size=10)
    src = _reader(settings, tmp_path, clock)
    src.catch_up("BTC", 10)
    for t in range(T0, T0 + 180):  # one item per second and market, never published meanwhile
        for m in (SPOT, PERP):
            rig.trades(m, [t + 0.5])
        rig.tick(t + 3.5)
    assert rig.f.stats.counters["redis_dropped_oldest"] > 0
    rig.flush(store=False)  # Redis now; the store writer has not written yet
    clock.t = T0 + 240
    src.poll(["BTC"])
    live = src.live("BTC")
    # The first two minutes' bars never reached the stream: a gap (NaN), never complete zeros.
    assert not live.loc[ts(T0), "complete"] and not live.loc[ts(T0 + 60), "complete"]
    assert np.isnan(live.loc[ts(T0), "spot_vbuy"]) or live.loc[ts(T0), "spot_vbuy"] > 0
    # Once the store (the record) holds them, they are read from it: the same as the backtest.
    rig.flush()
    src.poll(["BTC"])
    live = src.live("BTC")
    stored = load_flow(store, settings, "BTC", T0 + 60, T0 + 180, "1m")  # the session's minutes
    assert stored["complete"].all()
    got = live.loc[stored.index]
    pd.testing.assert_frame_equal(got, stored[got.columns], check_freq=False, rtol=1e-12)


def test_one_poll_drains_the_whole_stream(redis_url, tmp_path):
    settings = make_settings(redis_url, tmp_path)
    store = ParquetStore(tmp_path / "store")
    clock = Clock(T0 + 60)
    src = FlowSource(settings, "5m", store=store, clock=clock)
    src.catch_up("BTC", 10)
    pub = RedisBarStream(redis_url, prefix=settings.redis.prefix)
    n = 15_000  # more than one 10,000-entry page
    bars = {m: make_bars(T0, n, seed=i) for i, m in enumerate((SPOT, PERP))}
    for i, (m, kind) in enumerate(((SPOT, "spot"), (PERP, "perp"))):
        pub.publish(m, kind, bars[m], watermark=T0 + n, coverage=[[T0, T0 + n]])
        store.write_bars(m, kind, bars[m], "1s")
        store.write_bars(m, kind, rollup(bars[m], 60), "1m")
        store.add_coverage(m, T0, T0 + n)
        assert i < 2
    clock.t = T0 + n + 3
    src.poll(["BTC"])
    live = src.live("BTC")
    want = load_flow(store, settings, "BTC", T0, T0 + n, "5m")
    got = live.loc[want.index]
    assert got["complete"].all()
    pd.testing.assert_frame_equal(got, want[got.columns], check_freq=False)


def test_reading_starts_at_the_store_boundary_not_at_the_oldest_entry(redis_url, tmp_path):
    settings = make_settings(redis_url, tmp_path)
    store = ParquetStore(tmp_path / "store")
    pub = RedisBarStream(redis_url, prefix=settings.redis.prefix)
    old, new = 25_000, 1_100  # a long stream behind the store boundary (ends on a 5m candle)
    boundary = T0 + old
    later = {}
    for i, (m, kind) in enumerate(((SPOT, "spot"), (PERP, "perp"))):
        b = make_bars(T0, old + new, seed=i)
        for lo in range(T0, T0 + old + new, 300):  # published in 5-minute items, as a feeder would
            part = b[(b["time"] >= lo) & (b["time"] < lo + 300)]
            pub.publish(m, kind, part, watermark=lo + 300, coverage=[[T0, lo + 300]])
        stored = b[b["time"] < boundary]
        store.write_bars(m, kind, stored, "1s")
        store.write_bars(m, kind, rollup(stored, 60), "1m")
        store.add_coverage(m, T0, boundary)
        later[m] = (kind, b)
    clock = Clock(boundary + 10)
    src = FlowSource(settings, "5m", store=store, clock=clock)
    src.catch_up("BTC", 20)
    for m, (kind, b) in later.items():  # the feeder goes on writing the store
        store.write_bars(m, kind, b[b["time"] >= T0 + old - old % 86400], "1s")
        store.write_bars(m, kind, rollup(b, 60), "1m")
        store.add_coverage(m, boundary, boundary + new)
    clock.t = boundary + new + 3
    src.poll(["BTC"])
    want = load_flow(store, settings, "BTC", boundary - 3000, boundary + new, "5m")
    got = src.live("BTC").loc[want.index]
    assert got["complete"].all()
    pd.testing.assert_frame_equal(got, want[got.columns], check_freq=False)


def test_entries_trimmed_before_they_were_read_are_a_gap(redis_url, tmp_path):
    # Lost entries may hold corrections up to retain_s back: that much before them is a gap too.
    settings = make_settings(redis_url, tmp_path, feeder={"retain_s": 60})
    settings = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"maxlen": 200})}
    )
    store = ParquetStore(tmp_path / "store")
    pub = RedisBarStream(redis_url, prefix=settings.redis.prefix, maxlen=200)
    clock = Clock(T0 + 5)
    src = FlowSource(settings, "1m", store=store, clock=clock)
    src.catch_up("BTC", 10)
    bars = {m: make_bars(T0, 3600, seed=i, quiet_every=10**9) for i, m in enumerate((SPOT, PERP))}
    for lo in range(T0, T0 + 3600, 60):
        for m, kind in ((SPOT, "spot"), (PERP, "perp")):
            part = bars[m][(bars[m]["time"] >= lo) & (bars[m]["time"] < lo + 60)]
            pub.publish(m, kind, part, watermark=lo + 60, coverage=[[T0, lo + 60]])
        if lo == T0 + 120:
            clock.t = lo + 62
            src.poll(["BTC"])  # read the first three minutes, then fall behind
    assert pub.r.xlen(stream_key(settings.redis.prefix, SPOT)) < 1000
    clock.t = T0 + 3602
    src.poll(["BTC"])
    live = src.live("BTC")
    assert live.loc[ts(T0) : ts(T0 + 60), "complete"].all()
    assert not live.loc[ts(T0 + 600) : ts(T0 + 2400), "complete"].any()  # trimmed unread
    assert live.loc[ts(T0 + 3540), "complete"]  # still in the stream
    assert np.isnan(live.loc[ts(T0 + 1200), "spot_vbuy"])  # never zero flow
    assert src.trimmed >= 1
