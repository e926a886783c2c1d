"""InfluxDB stopped for 60 s and Redis for 20 s while the feeder runs: nothing lost or doubled."""

from __future__ import annotations

import asyncio
import time

import pandas as pd
import pytest

from feeder.replay.binance import ReplayServer
from feeder.settings import InfluxSettings
from feeder.stores.influx import InfluxStore
from tests.live.conftest import RECORDINGS, bars_of, expected_trades, feeder_settings, run_feeder
from tests.live.servers import PrivateInflux, PrivateRedis

pytestmark = [pytest.mark.shared, pytest.mark.slow, pytest.mark.backend]


def test_influx_down_60s_and_redis_down_20s_lose_and_duplicate_nothing(
    market_data, imported, tmp_path
):
    influx, redis = PrivateInflux(tmp_path / "influx"), PrivateRedis(tmp_path / "redis")
    influx.start()
    redis.start()
    try:
        settings = feeder_settings(tmp_path, redis.url)
        s = InfluxSettings(url=influx.url, database="sf_outage", max_retries=1, timeout_s=5)
        store = InfluxStore(s)
        store.setup()
        events: dict[str, float] = {}

        async def outages(feeder):
            t0 = time.monotonic()
            await asyncio.sleep(8)
            await asyncio.to_thread(influx.stop)
            events["influx_down"] = time.monotonic() - t0
            await asyncio.sleep(5)
            await asyncio.to_thread(redis.stop)
            await asyncio.sleep(20)
            await asyncio.to_thread(redis.start)
            await asyncio.sleep(35)
            await asyncio.to_thread(influx.start)
            events["influx_up"] = time.monotonic() - t0
            events["spooled"] = feeder.stats.counters["spooled_batches"]

        async def go():
            recs = [(market_data / raw, mt) for raw, mt, _csv, _spec in RECORDINGS.values()]
            async with ReplayServer(recs, speed=3.5) as server:  # ~100 s of recorded time
                return await run_feeder(
                    server,
                    settings,
                    store,
                    expected_trades(market_data),
                    during=outages,
                    timeout=240,
                )

        run = asyncio.run(go())
        assert events["influx_up"] - events["influx_down"] >= 60
        c = run.feeder.stats.counters
        assert events["spooled"] > 0 and c["spool_replayed_batches"] >= events["spooled"]
        assert c["redis_failed"] > 0 and c["redis_published"] > 0  # down, then back
        assert not run.feeder.writer.spool.path.exists()
        check = InfluxStore(s)
        for market in RECORDINGS:
            got, want = bars_of(check, market), bars_of(imported, market)
            assert len(got) == len(want)
            pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
            n = check.query(
                f'SELECT count(close) FROM "sf_outage"."aggr_1s"."trades_1s" '
                f"WHERE market = '{market}'",
                chunked=False,
            )
            assert int(n["count"].iloc[0]) == len(want)  # each second stored once
    finally:
        influx.stop()
        redis.stop()
