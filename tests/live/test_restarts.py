"""Restarts and crashes of the live feeder: nothing it stores as covered is ever wrong.

A live session that starts in the middle of a market's stream (a restart, a crash, a wall clock
start) cannot vouch for the second of its first trade (earlier trades of that second were never
received) nor for anything before it: its coverage begins after that second."""

from __future__ import annotations

import asyncio
import time

import pytest

from feeder.live.runtime import EventClock, Feeder
from feeder.replay import ReplayServer
from feeder.sinks.parquet import ParquetStore
from tests.live.conftest import RECORDINGS, bars_of, feeder_settings, replay_factory
from tests.live.coverage_check import assert_never_wrong_and_covered

pytestmark = [pytest.mark.shared, pytest.mark.slow]


async def _join_mid_stream(server: ReplayServer, feeder: Feeder, after_frames: int) -> None:
    """Start the replay clock, let ``after_frames`` go by unheard, then run the feeder to the
    end of the replay."""
    server.start_replay()
    deadline = time.monotonic() + 60
    while server.position < after_frames:
        assert time.monotonic() < deadline, server.position
        await asyncio.sleep(0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(feeder.run(until=stop, install_signals=False))
    deadline = time.monotonic() + 120
    while not (server.done and feeder.counters["trades_live"] > 0
               and not any(c.state(m).hold_ms is not None for c in feeder.collectors
                           for m in c.markets.values())):  # fmt: skip
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 60)


def test_a_session_joining_mid_stream_covers_only_seconds_it_received_whole(
    market_data, imported, tmp_path
):
    settings = feeder_settings(tmp_path, None)
    store = ParquetStore(tmp_path / "store")
    recs = [(market_data / raw, mt) for raw, mt, _csv, _spec in RECORDINGS.values()]

    async def go():
        # 20x the recorded pace: the feeder connects while trades are flowing
        async with ReplayServer(recs, speed=20, start_on_subscribe=None) as server:
            feeder = Feeder(settings, store=store, exchange_factory=replay_factory(server),
                            clock=EventClock(), tick_s=0.05)  # fmt: skip
            await _join_mid_stream(server, feeder, after_frames=40_000)
            return feeder

    feeder = asyncio.run(go())
    assert feeder.counters["trades_live"] > 5_000  # the session did collect
    for market in RECORDINGS:
        first_stored = int(bars_of(store, market)["time"].min())
        full_first = int(bars_of(imported, market)["time"].min())
        assert first_stored > full_first + 30, market  # it really joined mid-stream
        cov = store.coverage(market)
        # coverage begins after the second of the first trade received, not before it
        assert len(cov) == 1 and cov[0, 0] == first_stored + 1, (market, cov, first_stored)
    covered = assert_never_wrong_and_covered(store, imported, tmp_path)
    assert all(n > 60 for n in covered.values()), covered
