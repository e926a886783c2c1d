"""A sink task (the store writer, the Redis publisher) that dies of an unexpected exception (a
bug, not an outage it handles) never dies unnoticed: it is restarted with what it held (nothing
lost), and one that keeps dying makes `run` say ``failing`` in /health and exit non-zero."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import numpy as np
import pytest

from feeder.replay.binance import ReplayServer
from feeder.stores.parquet import ParquetStore
from feeder.stores.redis_stream import RedisBarStream
from tests.live.conftest import (
    RECORDINGS,
    bars_of,
    expected_trades,
    feeder_settings,
    run_feeder,
)
from tests.live.coverage_check import assert_never_wrong_and_covered
from tests.live.test_cli_run import _health, _processes, _trades
from tests.live.test_feeder_replay import _same_bars

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def _recordings(market_data) -> list:
    return [(market_data / raw, mt) for raw, mt, _csv, _spec in RECORDINGS.values()]


def test_a_store_writer_killed_by_a_bug_is_restarted_with_the_batches_it_held(
    market_data, imported, tmp_path
):
    settings = feeder_settings(tmp_path, None)
    store = ParquetStore(tmp_path / "store")
    held: list[Any] = []

    async def inject(feeder):
        while feeder.counters["trades_live"] < 3_000:  # noqa: ASYNC110 - mid-session
            await asyncio.sleep(0.01)
        real = feeder.writer._try

        async def once(batches):
            if not held and any(b.bars is not None and len(b.bars) for b in batches):
                held.extend(batches)
                raise RuntimeError("injected: a bug in the store writer")
            return await real(batches)

        feeder.writer._try = once

    async def go():
        async with ReplayServer(_recordings(market_data), speed=0) as server:
            return await run_feeder(
                server, settings, store, expected_trades(market_data), during=inject
            )

    run = asyncio.run(go())
    assert held, "the writer never died"  # it died holding bars
    assert run.feeder.task_restarts == {"store-writer": 1}, run.feeder.task_restarts
    health = run.feeder.health()
    assert health["status"] != "failing" and health["fatal"] is None, health
    _same_bars(store, imported)  # the bars it held were written after its restart
    covered = assert_never_wrong_and_covered(store, imported, tmp_path)
    assert all(n > 300 for n in covered.values()), covered


@pytest.mark.backend
def test_a_redis_publisher_killed_by_a_bug_is_restarted_with_the_item_it_held(
    market_data, tmp_path, redis_url
):
    settings = feeder_settings(tmp_path, redis_url)
    store = ParquetStore(tmp_path / "store")
    held: list[Any] = []

    async def inject(feeder):
        while feeder.counters["trades_live"] < 3_000:  # noqa: ASYNC110 - mid-session
            await asyncio.sleep(0.01)
        real = feeder.publisher.stream.publish

        async def once(market, kind, bars, **kw):
            if not held and len(bars):
                held.append((market, bars))
                raise RuntimeError("injected: a bug in the Redis publisher")
            return await real(market, kind, bars, **kw)

        feeder.publisher.stream.publish = once

    async def go():
        async with ReplayServer(_recordings(market_data), speed=0) as server:
            return await run_feeder(
                server, settings, store, expected_trades(market_data), during=inject
            )

    run = asyncio.run(go())
    assert held, "the publisher never died"
    assert run.feeder.task_restarts == {"redis-publisher": 1}, run.feeder.task_restarts
    assert not run.feeder.publisher.lost, run.feeder.publisher.lost  # nothing given up
    stream = RedisBarStream(settings.redis.url, prefix=settings.redis.prefix)
    live, _ = stream.read(list(RECORDINGS), count=100_000)
    for market in RECORDINGS:  # every second stored live reached Redis, the held ones too
        got = np.sort(live.loc[live["market"] == market, "time"].to_numpy(np.int64))
        want = bars_of(store, market)["time"].to_numpy(np.int64)
        np.testing.assert_array_equal(got, want, err_msg=market)
    market, bars = held[0]
    assert set(bars["time"]) <= set(live.loc[live["market"] == market, "time"])


_ALWAYS_DYING_WRITER = """
import sys
from feeder.live.writers import StoreWriter
async def _try(self, batches):
    raise RuntimeError("injected: a bug in the store writer")
StoreWriter._try = _try
from feeder.tools.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_store_writer_that_keeps_dying_makes_run_failing_and_exit_non_zero(market_data, tmp_path):
    entry = ["-c", _ALWAYS_DYING_WRITER]
    with _processes(market_data, tmp_path, speed=10, entry=entry) as (_r, feeder, _w, hport, log):
        deadline = time.monotonic() + 180
        failing = None
        trades = 0
        while feeder.poll() is None and time.monotonic() < deadline:
            h = _health(hport)
            if h is not None:
                trades = max(trades, _trades(h))
                if h["status"] == "failing":
                    failing = h
            time.sleep(0.1)
        assert feeder.wait(60) == 3, log.read_text()[-3000:]
    text = log.read_text()
    assert trades > 0, text[-3000:]  # it was collecting when its writer kept dying
    assert failing is not None, text[-3000:]
    assert re.match(r"task store-writer died \d+ times in a row", failing["fatal"]), failing
    assert failing["task_restarts"]["store-writer"] > 1, failing
    assert re.search(
        r"^error: the feeder stopped: task store-writer died \d+ times in a row", text, re.M
    ), text[-3000:]
