"""No credential of an InfluxDB or Redis URL is ever printed: the real commands are run with
passwords in their URLs (servers unreachable, and the real ones) and everything they print,
log and serve (/health, /metrics) is searched for the passwords."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from feeder.read.flow_source import FlowSource
from feeder.redact import redact
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from tests.conftest import REPO

SECRET_I = "Infl0x-S3cret"
SECRET_R = "Red1s-S3cret"
COINS = {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": ["BINANCE_FUTURES:btcusdt"]}}


def test_redact_every_form_of_credentials():
    cases = {
        "http://admin:pa:ss@127.0.0.1:8086/x": "http://***@127.0.0.1:8086/x",
        "redis://:p@ss@127.0.0.1:6379/0": "redis://***@127.0.0.1:6379/0",
        "rediss://user:pw@h/0?password=pw2&db=1": "rediss://***@h/0?password=***&db=1",
        "redis://127.0.0.1:6379/0?password=pw": "redis://127.0.0.1:6379/0?password=***",
        "Error at 'http://u:pw@h:1/write?db=a'": "Error at 'http://***@h:1/write?db=a'",
        "http://127.0.0.1:8086/ping": "http://127.0.0.1:8086/ping",
        "mail me at a@b.c": "mail me at a@b.c",
    }
    for raw, want in cases.items():
        assert redact(raw) == want, raw


def _cli(*argv: str, env: dict[str, str], timeout: float = 120) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "feeder.tools.cli", *argv],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.stdout + out.stderr


def _assert_clean(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, text[-3000:]


def test_status_and_errors_with_unreachable_servers_print_no_password(tmp_path):
    env = {
        "SQUEEZEFLOW_INFLUX_URL": f"http://admin:{SECRET_I}@127.0.0.1:1",
        "SQUEEZEFLOW_REDIS_URL": f"redis://:{SECRET_R}@127.0.0.1:1/0",
    }
    text = _cli("-v", "--backend", "influx", "status", env=env)
    assert "error: InfluxDB at http://***@127.0.0.1:1 unreachable" in text, text[-3000:]
    _assert_clean(text, SECRET_I, SECRET_R)
    text = _cli("-v", "--store-dir", str(tmp_path / "store"), "status", env=env)
    assert "error:" not in text
    _assert_clean(text, SECRET_I, SECRET_R)


@pytest.mark.backend
def test_status_and_setup_on_the_real_influx_print_no_password(influx_db):
    url, db = influx_db
    scheme, rest = url.split("://", 1)
    env = {
        "SQUEEZEFLOW_INFLUX_URL": f"{scheme}://admin:{SECRET_I}@{rest}",
        "SQUEEZEFLOW_INFLUX_DATABASE": db,
    }
    text = _cli("-v", "--backend", "influx", "setup-influx", env=env)
    assert "retention policy" in text, text[-3000:]
    text += _cli("-v", "--backend", "influx", "status", env=env)
    _assert_clean(text, SECRET_I)


@pytest.mark.shared
@pytest.mark.slow
def test_run_with_passwords_in_its_urls_prints_and_serves_none(market_data, tmp_path):
    from tests.live.test_cli_run import _processes, _trades

    redis_url = f"redis://:{SECRET_R}@127.0.0.1:1/0?password={SECRET_R}"
    top = {"redis": {"enabled": True, "url": redis_url, "prefix": "sfredact"}}
    served = ""
    with _processes(market_data, tmp_path, speed=10, top=top, argv=("-v",)) as (
        _r,
        feeder,
        wait_health,
        hport,
        log,
    ):
        health = wait_health(lambda h: _trades(h) > 500 and not h["redis_up"])
        served += str(health)
        served += httpx.get(f"http://127.0.0.1:{hport}/metrics", timeout=5).text
        feeder.send_signal(signal.SIGTERM)
        assert feeder.wait(60) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "Redis unreachable" in text, text[-3000:]  # the failure was logged ...
    _assert_clean(text + served, SECRET_R)  # ... without the password


def test_the_strategys_read_path_logs_no_redis_password(tmp_path, caplog):
    settings = settings_from_dict(
        {
            "coins": COINS,
            "store": {"parquet_dir": str(tmp_path / "store")},
            "redis": {"enabled": True, "url": f"redis://:{SECRET_R}@127.0.0.1:1/0"},
        },
        env=False,
    )
    src = FlowSource(
        settings, "5m", store=ParquetStore(tmp_path / "store"), clock=lambda: time.time()
    )
    with caplog.at_level(logging.DEBUG):
        src.catch_up("BTC", 12)  # as the strategy's first live loop does
        src.poll(["BTC"])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Redis unreachable at redis://***@127.0.0.1:1/0" in text, text
    _assert_clean(text, SECRET_R)
