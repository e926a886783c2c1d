"""`squeezeflow-feeder rehearse` as a user runs it, on both stores: the SYNTHETIC planted
scenario at 1m on the paper exchange, the real feeder and the real `freqtrade trade --dry-run`
over the live segment, then `freqtrade backtesting` of the same window from the store. The live
bot must take exactly the backtest's trades, at least one long and one short."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.clients.telegram import check_trade_notifications
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.shared, pytest.mark.backend]


def _rehearse(tmp_path, env_extra: dict[str, str]) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FREQTRADE__", "SQUEEZEFLOW_"))}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", **env_extra})
    report = tmp_path / "report.json"
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
        str(tmp_path / "work"),
        "--report",
        str(report),
    ]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert report.exists(), r.stdout[-3000:] + r.stderr[-5000:]
    return r, json.loads(report.read_text())


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


def test_rehearse_on_parquet_live_equals_backtest_and_notifies_through_telegram(
    redis_url, tmp_path, telegram
):
    r, report = _rehearse(tmp_path, {"SQUEEZEFLOW_REDIS_URL": redis_url, **telegram.env()})
    assert report["store"] == "parquet"
    _check(r, report)
    # FreqTrade's real Telegram client announced each live trade's entry (and exit, if closed)
    check_trade_notifications(telegram, report["live_trades"])
    assert not [h for h in telegram.proxy.refused if "api.telegram.org" in h]


def test_rehearse_on_influxdb_live_equals_backtest(redis_url, influx_url, tmp_path):
    db = f"sf_test_{uuid.uuid4().hex[:10]}"
    try:
        r, report = _rehearse(
            tmp_path,
            {
                "SQUEEZEFLOW_REDIS_URL": redis_url,
                "SQUEEZEFLOW_BACKEND": "influx",
                "SQUEEZEFLOW_INFLUX_URL": influx_url,
                "SQUEEZEFLOW_INFLUX_DATABASE": db,
            },
        )
        assert report["store"] == "influx"
        assert not (tmp_path / "work" / "store").exists()  # nothing went to Parquet
        _check(r, report)
    finally:
        httpx.post(
            f"{influx_url}/query", params={"q": f'DROP DATABASE "{db}_rehearse"'}, timeout=30
        )
