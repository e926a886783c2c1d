"""Restarts and crashes of the live feeder: nothing it stores as covered is ever wrong.

A live session that starts in the middle of a market's stream (a restart, a crash, a wall clock
start) cannot vouch for the second of its first trade (earlier trades of that second were never
received) nor for anything before it: its coverage begins after that second."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from feeder.live.bars import EventClock
from feeder.live.runtime import Feeder
from feeder.live.spool import Batch, Spool
from feeder.replay.binance import ReplayServer
from feeder.stores.parquet import ParquetStore
from tests.live.conftest import (
    RECORDINGS,
    bars_of,
    expected_trades,
    feeder_settings,
    replay_factory,
    run_feeder,
)
from tests.live.coverage_check import assert_never_wrong_and_covered
from tests.live.servers import free_port
from tests.live.test_cli_run import REPO, _closed, _config, _health, _processes, _trades
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
    while not (
        server.done
        and feeder.counters["trades_live"] > 0
        and not any(
            c.state(m).hold_ms is not None for c in feeder.collectors for m in c.markets.values()
        )
    ):
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
            feeder = Feeder(
                settings,
                store=store,
                exchange_factory=replay_factory(server),
                clock=EventClock(),
                tick_s=0.05,
            )
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
    saved = pd.DataFrame(
        {
            "time": [1_722_000_000],
            "open": [1.0],
            "high": [2.0],
            "low": [0.5],
            "close": [1.5],
            "vbuy": [3.0],
            "vsell": [4.0],
            "cbuy": [1.0],
            "csell": [2.0],
            "lbuy": [0.0],
            "lsell": [0.0],
        }
    )
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
            return await run_feeder(
                server, settings, store, expected_trades(market_data), during=probe
            )

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
    (tmp_path / "store").mkdir()  # the store opens (its writer lock is taken) ...
    for sub in ("bars_1s", "bars_1m"):
        (tmp_path / "store" / sub).write_text("not a directory")  # ... but every write fails
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


def test_sigkill_at_random_points_never_leaves_a_wrong_second_covered(
    market_data, imported, tmp_path
):
    """`run` (a process, against `replay` in another) is killed with SIGKILL at random points
    four times during the replay and restarted on the same store each time; after the last
    session every stored second and minute is either exactly the import reference or outside
    coverage, and so is every complete candle the strategy reads."""
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    kills = 4
    rport = free_port()
    replay_cmd = [
        sys.executable,
        "-m",
        "feeder.tools.cli",
        "replay",
        "--port",
        str(rport),
        "--speed",
        "3",
        "--start-on-subscribe",
        "2",
    ]
    for raw, mt, _csv, _spec in RECORDINGS.values():
        replay_cmd += ["--recording", f"{market_data / raw}:{mt}"]
    cfg = _config(tmp_path, f"http://127.0.0.1:{rport}")
    env = {
        **os.environ,
        "SQUEEZEFLOW_API_KEY_BINANCE": "replay-no-key",
        "SQUEEZEFLOW_API_KEY_BINANCEUSDM": "replay-no-key",
    }
    last_second = {m: int(bars_of(imported, m)["time"].max()) for m in RECORDINGS}
    first = min(int(bars_of(imported, m)["time"].min()) for m in RECORDINGS)
    span = min(last_second.values()) - first
    log = tmp_path / "feeder.log"
    procs: list[subprocess.Popen] = []

    def start_feeder() -> tuple[subprocess.Popen, int]:
        hport = free_port()
        with log.open("a") as out:
            cmd = [
                sys.executable,
                "-m",
                "feeder.tools.cli",
                "--config",
                str(cfg),
                "run",
                "--clock",
                "event",
                "--http-port",
                str(hport),
            ]
            p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(p)
        return p, hport

    def wait_health(p: subprocess.Popen, hport: int, until) -> dict:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert p.poll() is None, log.read_text()[-3000:]
            h = _health(hport)
            if h is not None and until(h):
                return h
            time.sleep(0.05)
        raise AssertionError(f"seed {seed}: timed out\n{log.read_text()[-3000:]}")

    killed_at = []
    try:
        procs.append(
            subprocess.Popen(
                replay_cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        deadline = time.monotonic() + 30
        while _closed(rport):
            assert time.monotonic() < deadline and procs[0].poll() is None
            time.sleep(0.1)
        for i in range(kills):
            feeder, hport = start_feeder()
            n = rng.randint(300, 3_000)  # trades this session collects before its SIGKILL
            # ... or sooner, so that every kill falls in the first half of the recording and the
            # last session, however slow the restarts on a loaded machine, still has whole
            # minutes to cover (the replay runs on while the feeder is down)
            by = first + (i + 1) * span // (2 * kills)

            def due(h: dict, n: int = n, by: int = by) -> bool:
                wm = max(m["watermark"] or 0 for m in h["markets"].values())
                return _trades(h) >= n or wm >= by

            h = wait_health(feeder, hport, due)
            feeder.send_signal(signal.SIGKILL)
            feeder.wait(30)
            killed_at.append(max(m["watermark"] or 0 for m in h["markets"].values()))
        feeder, hport = start_feeder()  # the last session runs to the end of the replay
        # ... until it has reached the recording's end and the replay has gone quiet (every
        # trade delivered; at 3x pace a live market trades several times a second)
        wait_health(
            feeder,
            hport,
            lambda h: all(
                (m["watermark"] or 0) >= last_second[k] - 3
                and not m["held"]
                and (m["last_trade_age_s"] or 0) > 5
                for k, m in h["markets"].items()
            ),
        )
        feeder.send_signal(signal.SIGTERM)
        assert feeder.wait(60) == 0, log.read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert len(killed_at) == kills and killed_at == sorted(killed_at), (seed, killed_at)
    store = ParquetStore(tmp_path / "store")
    try:
        covered = assert_never_wrong_and_covered(store, imported, tmp_path)
    except AssertionError as e:
        raise AssertionError(f"seed {seed}, killed at watermarks {killed_at}: {e}") from e
    assert all(n > 30 for n in covered.values()), (seed, covered)
    # the kills fell inside the replay: sessions are separated by uncovered time
    assert max(len(store.coverage(m)) for m in RECORDINGS) >= 2, seed


def test_a_second_writer_on_a_store_being_written_is_refused_clearly(market_data, tmp_path):
    """While `run` writes a store, a second `run` and an `import` on it are refused with a
    message naming the writer, and exit 2 without touching it; once `run` has ended (even by
    SIGKILL) the store takes a writer again."""
    archive = market_data / "binance_datatool/tommy-ca/data"
    with _processes(market_data, tmp_path, speed=10) as (_replay, feeder, wait_health, _h, log):
        wait_health(lambda h: _trades(h) > 500)
        cfg = str(tmp_path / "config.json")
        for argv in (
            ["run", "--clock", "event", "--http-port", "0"],
            ["import", "--from", str(archive), "--no-progress"],
        ):
            out = subprocess.run(
                [sys.executable, "-m", "feeder.tools.cli", "--config", cfg, *argv],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
            )
            text = out.stdout + out.stderr
            assert out.returncode == 2, text
            assert (
                f"is being written by another process (pid {feeder.pid}: squeezeflow-feeder "
                "run, since" in text
            ), text
            assert "Traceback" not in text
        assert not ParquetStore(tmp_path / "store").imported()  # the import wrote nothing
        feeder.send_signal(signal.SIGKILL)
        feeder.wait(30)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "feeder.tools.cli",
            "--config",
            cfg,
            "import",
            "--from",
            str(archive),
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert ParquetStore(tmp_path / "store").imported()


def test_a_trade_dated_far_in_the_future_is_refused_and_covers_nothing(
    market_data, imported, tmp_path
):
    """A trade stamped 2099 reaches the feeder's intake mid-session (a broken venue clock):
    it is refused and counted; no second beyond the session is covered or stored, and every
    real trade is stored as the import has it."""
    settings = feeder_settings(tmp_path, None)
    store = ParquetStore(tmp_path / "store")
    future_ms = 4_070_908_800_000  # 2099-01-01

    async def inject(feeder):
        while feeder.counters["trades_live"] < 2_000:  # noqa: ASYNC110 - mid-session
            await asyncio.sleep(0.01)
        rt = feeder.markets["BINANCE:btcusdt"]
        raw = {
            "ts": np.array([future_ms]),
            "price": np.array([42_000.0]),
            "qty": np.array([0.1]),
            "is_buyer_maker": np.array([False]),
            "trade_id": np.array([10**15]),
        }
        feeder.on_trades(rt.live_market, raw, time.time_ns(), False)

    async def go():
        recs = [(market_data / raw, mt) for raw, mt, _csv, _spec in RECORDINGS.values()]
        async with ReplayServer(recs, speed=0) as server:
            return await run_feeder(
                server, settings, store, expected_trades(market_data), during=inject
            )

    run = asyncio.run(go())
    assert run.feeder.rejects.counts.get("future_timestamp") == 1
    _same_bars(store, imported)
    for market in RECORDINGS:
        cov = store.coverage(market)
        assert len(cov) and cov[-1, 1] < 1_724_000_000, (market, cov)
        assert (
            store.bar_days(market, "1s")
            == ["2024-08-08", "2024-08-09"][: len(store.bar_days(market, "1s"))]
        )
