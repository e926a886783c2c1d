"""Restarts and crashes of the live feeder: nothing it stores as covered is ever wrong.

A live session that starts in the middle of a market's stream (a restart, a crash, a wall clock
start) cannot vouch for the second of its first trade (earlier trades of that second were never
received) nor for anything before it: its coverage begins after that second."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pandas as pd
import pytest

from feeder.live.runtime import EventClock, Feeder
from feeder.live.spool import Batch, Spool
from feeder.replay import ReplayServer
from feeder.sinks.parquet import ParquetStore
from tests.live.conftest import (
    RECORDINGS,
    bars_of,
    expected_trades,
    feeder_settings,
    replay_factory,
    run_feeder,
)
from tests.live.coverage_check import assert_never_wrong_and_covered
from tests.live.test_cli_run import _health, _processes
from tests.live.test_feeder_replay import _same_bars

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


def test_a_torn_spool_line_left_by_a_crash_is_quarantined_and_writing_goes_on(
    market_data, imported, tmp_path
):
    """A crash left a whole spooled batch and half a line; the restarted feeder finds the store
    down and appends behind it. When the store is back, the whole batch reaches it, the torn
    part is quarantined and counted, and every bar of the session is written (the store writer
    never dies)."""
    settings = feeder_settings(tmp_path, None)
    root = tmp_path / "store"
    root.write_text("not a directory")  # the store is down: every write fails (a real I/O error)
    store = ParquetStore(root)
    spool = Spool(settings.feeder.spool_dir)
    saved = pd.DataFrame({"time": [1_722_000_000], "open": [1.0], "high": [2.0], "low": [0.5],
                          "close": [1.5], "vbuy": [3.0], "vsell": [4.0], "cbuy": [1.0],
                          "csell": [2.0], "lbuy": [0.0], "lsell": [0.0]})  # fmt: skip
    spool.append([Batch("BINANCE:btcusdt", "spot", "1s", saved)])
    with spool.path.open("ab") as fh:  # the crash: half a line, no newline
        fh.write(b'{"m":"BINANCE:btcusdt","k":"spot","r":"1s","t":[17231')
    seen: dict = {}

    async def probe(feeder):
        while len(spool) < 4:  # noqa: ASYNC110 - new batches spooled behind the torn line
            await asyncio.sleep(0.05)
        root.unlink()  # the store is back
        async with httpx.AsyncClient() as c:
            while True:
                seen["health"] = (await c.get(f"http://127.0.0.1:{feeder.http_port}/health")).json()
                await asyncio.sleep(0.2)

    async def go():
        recs = [(market_data / raw, mt) for raw, mt, _csv, _spec in RECORDINGS.values()]
        async with ReplayServer(recs, speed=0) as server:
            return await run_feeder(server, settings, store, expected_trades(market_data),
                                    during=probe)  # fmt: skip

    run = asyncio.run(go())
    assert run.feeder.counters["task_deaths"] == 0
    _same_bars(store, imported)  # every bar of the session written
    got = store.read_bars("BINANCE:btcusdt", 1_722_000_000, 1_722_000_001, "1s")
    pd.testing.assert_frame_equal(got, saved, check_dtype=False)  # the whole record replayed
    assert len(Spool(settings.feeder.spool_dir)) == 0
    quarantine = spool.dir / "spool.quarantine"
    assert quarantine.read_bytes() == b'{"m":"BINANCE:btcusdt","k":"spot","r":"1s","t":[17231\n'
    assert seen["health"]["spool"]["quarantined"] == 1, seen["health"]["spool"]


def test_run_exits_non_zero_when_bars_can_be_neither_stored_nor_spooled(market_data, tmp_path):
    """The store is down and the spool directory unusable (a full or read-only disk): `run` says
    so in /health (failing) and in one clear line, and exits non-zero instead of going on
    without writing."""
    (tmp_path / "store").write_text("not a directory")  # every store write fails
    (tmp_path / "spool").write_text("not a directory")  # and so does every spool write
    with _processes(market_data, tmp_path, speed=10) as (_replay, feeder, _wait, hport, log):
        deadline = time.monotonic() + 120
        failing = None
        while feeder.poll() is None and time.monotonic() < deadline:
            h = _health(hport)
            if h is not None and h["status"] == "failing":
                failing = h
            time.sleep(0.1)
        assert feeder.wait(60) == 3, log.read_text()[-3000:]
    text = log.read_text()
    line = "error: the feeder stopped: store writer: store down and cannot create the spool "
    assert re.search(f"^{line}directory .*/spool: File exists$", text, re.M), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert failing is not None and failing["fatal"], failing
    assert failing["counters"]["batches_lost"] > 0, failing
