"""`squeezeflow-feeder rehearse` as a user runs it, on both stores: the SYNTHETIC planted
scenario at 1m on the paper exchange, the real feeder and the real `freqtrade trade --dry-run`
over the live segment, then `freqtrade backtesting` of the same window from the store. The live
bot must take exactly the backtest's trades, at least one long and one short.

Each rehearsal spends most of its ~9 minutes waiting on the wall clock for its 1m candles, so
the module starts both at once (``rehearsals``) and each test asserts on its own result. They
cannot collide: each has its own workdir, Redis prefix (``...:rehearse:<run id>``), InfluxDB
database (the Parquet one writes no InfluxDB), Telegram fake (Parquet only), and every port is
chosen free (paper exchange bound to port 0; feeder and FreqTrade API ports from the OS)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.telegram import check_trade_notifications
from tests.conftest import REPO

# both rehearsals run in the first test's setup (~10 min on a loaded machine)
pytestmark = [pytest.mark.slow, pytest.mark.shared, pytest.mark.backend, pytest.mark.timeout(1800)]

PARQUET = "test_rehearse_on_parquet_live_equals_backtest_and_notifies_through_telegram"
INFLUX = "test_rehearse_on_influxdb_live_equals_backtest"


@dataclass
class Rehearsal:
    """A ``rehearse`` subprocess started in the background, its workdir and report file."""

    workdir: Path
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    extra: dict[str, Any]

    @classmethod
    def start(cls, workdir: Path, env_extra: dict[str, str], **extra: Any) -> Rehearsal:
        workdir.mkdir(parents=True)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("FREQTRADE__", "SQUEEZEFLOW_"))
        }
        env.update({"COLUMNS": "200", "NO_COLOR": "1", **env_extra})
        cmd = [
            sys.executable,
            "-m",
            "feeder.tools.cli",
            "--config",
            str(REPO / "config.json"),
            "rehearse",
            "--timeframe",
            "1m",
            "--seed",
            "7",
            "--workdir",
            str(workdir / "work"),
            "--report",
            str(workdir / "report.json"),
        ]
        out, err = workdir / "stdout.txt", workdir / "stderr.txt"
        with out.open("wb") as o, err.open("wb") as e:
            # its own process group: a timeout ends the feeder and FreqTrade it started too
            proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=o, stderr=e, start_new_session=True
            )
        return cls(workdir, proc, out, err, extra)

    def wait(self, deadline: float) -> None:
        try:
            self.proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def result(self) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        r = subprocess.CompletedProcess(
            self.proc.args,
            self.proc.returncode,
            self.out.read_text(errors="replace"),
            self.err.read_text(errors="replace"),
        )
        report = self.workdir / "report.json"
        assert report.exists(), r.stdout[-3000:] + r.stderr[-5000:]
        return r, json.loads(report.read_text())


@pytest.fixture(scope="module")
def rehearsals(
    request: pytest.FixtureRequest, tmp_path_factory, redis_url, influx_url
) -> Iterator[dict[str, Rehearsal]]:
    """The rehearsals the selected tests of this module need, run concurrently to the end."""
    from tests.clients.telegram import FakeTelegram

    selected = {i.name for i in request.session.items if i.module is request.module}
    base = tmp_path_factory.mktemp("rehearse")
    db = f"sf_test_{uuid.uuid4().hex[:10]}"
    with FakeTelegram.started(base / "telegram") as tg:
        runs: dict[str, Rehearsal] = {}
        try:
            if PARQUET in selected:
                env = {"SQUEEZEFLOW_REDIS_URL": redis_url, **tg.env()}
                runs[PARQUET] = Rehearsal.start(base / "parquet", env, telegram=tg)
            if INFLUX in selected:
                env = {
                    "SQUEEZEFLOW_REDIS_URL": redis_url,
                    "SQUEEZEFLOW_BACKEND": "influx",
                    "SQUEEZEFLOW_INFLUX_URL": influx_url,
                    "SQUEEZEFLOW_INFLUX_DATABASE": db,
                }
                runs[INFLUX] = Rehearsal.start(base / "influx", env)
            deadline = time.monotonic() + 1500
            for run in runs.values():
                run.wait(deadline)
            yield runs
        finally:
            for run in runs.values():
                run.kill()
            if INFLUX in runs:
                httpx.post(
                    f"{influx_url}/query",
                    params={"q": f'DROP DATABASE "{db}_rehearse"'},
                    timeout=30,
                )


def _check(r: subprocess.CompletedProcess, report: dict) -> None:
    out = r.stdout + r.stderr
    live, backtest = report["live_trades"], report["backtest_trades"]
    assert backtest, out[-4000:]  # the planted episodes entered in the backtest
    assert live == backtest, json.dumps(report, indent=1)
    assert report["matched"] is True and r.returncode == 0, out[-4000:]
    directions = {t["direction"] for t in live}
    assert directions == {"long", "short"}, live
    assert {t["pair"] for t in live} == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert all(t["entry_tag"].startswith(f"sf_{t['direction']}_") for t in live)
    # every entry decided inside the window, one latency per live entry
    lo, hi = report["window"]["live_from"], report["window"]["live_end"]
    assert all(lo <= t["entry_candle"] < hi for t in live), (lo, hi, live)
    assert len(report["signal_latency_s"]) == len(live)
    assert all(x > 0 for x in report["signal_latency_s"])
    assert report["paper_exchange"]["unserved"] == []
    assert "MATCHED" in r.stdout


def test_rehearse_on_parquet_live_equals_backtest_and_notifies_through_telegram(rehearsals):
    run = rehearsals[PARQUET]
    r, report = run.result()
    assert report["store"] == "parquet"
    _check(r, report)
    # FreqTrade's real Telegram client announced each live trade's entry (and exit, if closed)
    telegram = run.extra["telegram"]
    check_trade_notifications(telegram, report["live_trades"])
    assert not [h for h in telegram.proxy.refused if "api.telegram.org" in h]


def test_rehearse_on_influxdb_live_equals_backtest(rehearsals):
    run = rehearsals[INFLUX]
    r, report = run.result()
    assert report["store"] == "influx"
    assert not (run.workdir / "work" / "store").exists()  # nothing went to Parquet
    _check(r, report)
