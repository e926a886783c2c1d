"""The live feeder (real ccxt pro) against recorded real Binance sessions served on 127.0.0.1."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pandas as pd
import pytest

from feeder.replay.binance import ReplayServer
from feeder.replay.binance_inputs import Fault
from feeder.stores.parquet import ParquetStore
from feeder.stores.redis_stream import RedisBarStream
from tests.live.conftest import RECORDINGS, bars_of, expected_trades, feeder_settings, run_feeder

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def _server(market_data, **kw):
    recs = [(market_data / raw, mt) for raw, mt, _csv, _spec in RECORDINGS.values()]
    return ReplayServer(recs, speed=0, **kw)


def _same_bars(store, imported):
    for market in RECORDINGS:
        got, want = bars_of(store, market), bars_of(imported, market)
        assert len(got) == len(want) > 300, market
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
        trades = got["cbuy"].sum() + got["csell"].sum()
        assert trades == want["cbuy"].sum() + want["csell"].sum()  # none lost, none twice


def test_live_bars_equal_the_import_bars_of_the_same_recording(
    market_data, imported, tmp_path, redis_url
):
    settings = feeder_settings(tmp_path, redis_url)
    store = ParquetStore(tmp_path / "store")

    async def go():
        async with _server(market_data) as server:
            return await run_feeder(server, settings, store, expected_trades(market_data))

    run = asyncio.run(go())
    _same_bars(store, imported)
    assert run.feeder.rejects.counts.get("duplicate_id", 0) == 0
    # 1-minute rollups equal the rollups of the import
    for market in RECORDINGS:
        got = store.read_bars(market, 1_723_000_000, 1_724_000_000, "1m")
        want = imported.read_bars(market, 1_723_000_000, 1_724_000_000, "1m")
        # the live session's first minute is partial and is not rolled up
        want = want[want["time"] >= got["time"].min()].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
        assert len(got) >= 4
    # live bars reached Redis with a watermark per market
    stream = RedisBarStream(settings.redis.url, prefix=settings.redis.prefix)
    live, _ = stream.read(list(RECORDINGS), count=100_000)
    assert set(live["market"]) == set(RECORDINGS)
    marks = stream.watermarks(list(RECORDINGS))
    assert all(marks.values())
    # the live state publishes exactly the coverage the store holds (one completeness rule)
    for market, st in stream.states(list(RECORDINGS)).items():
        assert st is not None and st.watermark == marks[market]
        np.testing.assert_array_equal(st.coverage, store.coverage(market))
    # coverage spans the session
    cov = store.coverage("BINANCE_FUTURES:btcusdt")
    assert len(cov) == 1 and cov[0, 1] - cov[0, 0] > 300


def test_forced_disconnects_lose_and_duplicate_nothing_after_backfill(
    market_data, imported, tmp_path
):
    settings = feeder_settings(tmp_path, None)
    store = ParquetStore(tmp_path / "store")
    faults = [Fault("disconnect", at=n) for n in (2500, 9000, 16000, 24000)]

    async def go():
        async with _server(market_data, faults=faults) as server:
            return await run_feeder(server, settings, store, expected_trades(market_data))

    run = asyncio.run(go())
    reconnects = sum(c.stats.reconnects for c in run.feeder.collectors)
    backfilled = sum(c.stats.backfilled_trades for c in run.feeder.collectors)
    # faults that fall inside an outage are skipped: the replay runs on while nobody listens
    assert reconnects >= 2
    assert backfilled > 0 or run.feeder.counters["trades_backfilled"] > 0
    assert not run.feeder.gaps
    _same_bars(store, imported)


def test_malformed_duplicate_and_out_of_order_frames_are_counted_and_survived(
    market_data, imported, tmp_path
):
    settings = feeder_settings(tmp_path, None, quiet_s=3.0)
    store = ParquetStore(tmp_path / "store")
    faults = [
        Fault("garbage", at=1000),
        Fault("missing_fields", at=3000, fields=("p",)),
        Fault("duplicate", at=5000),
        Fault("swap", at=7000),
        Fault("duplicate", at=9000),
        Fault("truncated", at=12000),  # ccxt's receive loop stalls: the watchdog must act
    ]

    async def go():
        async with _server(market_data, faults=faults) as server:
            return await run_feeder(server, settings, store, expected_trades(market_data))

    run = asyncio.run(go())
    rej = run.feeder.rejects.counts
    assert rej["duplicate_id"] >= 2
    assert rej["price_invalid"] >= 1  # the frame without a price
    assert sum(c.stats.watchdog_reconnects for c in run.feeder.collectors) >= 1
    _same_bars(store, imported)


def test_health_and_metrics_are_served_on_loopback(market_data, tmp_path):
    settings = feeder_settings(tmp_path, None)
    store = ParquetStore(tmp_path / "store")
    seen = {}

    async def probe(feeder):
        while not hasattr(feeder, "http_port"):  # noqa: ASYNC110 - polling a started server
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient() as c:
            seen["health"] = (await c.get(f"http://127.0.0.1:{feeder.http_port}/health")).json()
            seen["metrics"] = (await c.get(f"http://127.0.0.1:{feeder.http_port}/metrics")).text

    async def go():
        async with _server(market_data) as server:
            return await run_feeder(
                server, settings, store, expected_trades(market_data), during=probe
            )

    asyncio.run(go())
    h = seen["health"]
    assert set(h["markets"]) == set(RECORDINGS)
    assert {"streams", "queues", "spool", "gaps", "rejects"} <= set(h)
    assert "squeezeflow_trades_total" in seen["metrics"]
    assert 'squeezeflow_last_trade_age_seconds{market="BINANCE:btcusdt"}' in seen["metrics"]
