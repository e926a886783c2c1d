"""Against the real Redis started by scripts/test."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from feeder.stores.redis_stream import AsyncRedisBarStream, RedisBarStream, stream_key
from tests.store_cases import make_bars

pytestmark = pytest.mark.backend


@pytest.fixture
def prefix():
    return f"sftest{uuid.uuid4().hex[:8]}"


def test_bars_round_trip_through_the_stream_and_latest_key(redis_url, prefix):
    s = RedisBarStream(redis_url, prefix=prefix, maxlen=1000)
    bars = make_bars(1_704_067_200, 50, 1)
    s.publish("BINANCE:btcusdt", "spot", bars)
    got, ids = s.read(["BINANCE:btcusdt"])
    assert got["time"].tolist() == bars["time"].tolist()
    assert got["vbuy"].tolist() == bars["vbuy"].tolist()  # repr round-trips floats exactly
    assert s.latest("BINANCE:btcusdt")["time"] == str(bars["time"].iloc[-1])
    more = make_bars(1_704_067_300, 10, 2)
    s.publish("BINANCE:btcusdt", "spot", more)
    newer, _ = s.read(["BINANCE:btcusdt"], after=ids)
    assert newer["time"].tolist() == more["time"].tolist()


def test_a_corrected_bar_replaces_the_earlier_entry_for_readers(redis_url, prefix):
    s = RedisBarStream(redis_url, prefix=prefix)
    bars = make_bars(1_704_067_200, 5, 1, quiet_every=10**9)
    s.publish("BINANCE:btcusdt", "spot", bars)
    fixed = bars.iloc[[2]].copy()
    fixed["vbuy"] = 123.0
    s.publish("BINANCE:btcusdt", "spot", fixed)
    got, _ = s.read(["BINANCE:btcusdt"])
    assert len(got) == 5
    assert got.set_index("time").loc[bars["time"].iloc[2], "vbuy"] == 123.0


def test_streams_are_bounded(redis_url, prefix):
    s = RedisBarStream(redis_url, prefix=prefix, maxlen=100)
    for i in range(10):
        s.publish(
            "BINANCE:btcusdt", "spot", make_bars(1_704_067_200 + i * 200, 200, i, quiet_every=10**9)
        )
    assert s.r.xlen(stream_key(prefix, "BINANCE:btcusdt")) < 400  # approximate trimming


def test_async_publisher(redis_url, prefix):
    async def run():
        a = AsyncRedisBarStream(redis_url, prefix=prefix)
        await a.publish("BINANCE_FUTURES:btcusdt", "perp", bars)
        await a.close()

    bars = make_bars(1_704_067_200, 20, 3, quiet_every=10**9)  # 20 seconds, none quiet
    asyncio.run(run())
    got, _ = RedisBarStream(redis_url, prefix=prefix).read(["BINANCE_FUTURES:btcusdt"])
    assert len(got) == 20 and set(got["kind"]) == {"perp"}
    assert got["time"].tolist() == bars["time"].tolist()
    assert got["vbuy"].tolist() == bars["vbuy"].tolist()
