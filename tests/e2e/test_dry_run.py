"""`freqtrade trade --dry-run` for real, offline: live data path, staleness guard, REST API."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.shared, pytest.mark.backend]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _loops_after_stale(text: str) -> int:
    """Bot loops that ended after the stale notice (heartbeats logged after it)."""
    at = text.find("SqueezeFlow BTC: flow feed stale")
    return 0 if at < 0 else text[at:].count("Bot heartbeat.")


def test_dry_run_notifies_a_stale_feed_once_and_serves_the_api(e2e, redis_url, tmp_path):
    port = _port()
    env = {
        **e2e.env,
        "SQUEEZEFLOW_REDIS_URL": redis_url,
        "FREQTRADE__API_SERVER__USERNAME": "sfuser",
        "FREQTRADE__API_SERVER__PASSWORD": "pw-123456",
        "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "k" * 40,
        "FREQTRADE__API_SERVER__WS_TOKEN": "ws-token-123",
        "FREQTRADE__API_SERVER__LISTEN_PORT": str(port),
        "FREQTRADE__INTERNALS__PROCESS_THROTTLE_SECS": "1",
        # FreqTrade's worker logs a heartbeat at the end of a loop when more than this many
        # seconds passed since the last one: with loops of >= 1 s, one per loop or two.
        "FREQTRADE__INTERNALS__HEARTBEAT_INTERVAL": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "feeder.tools.offline",
        "--markets",
        str(e2e.markets),
        "trade",
        "--dry-run",
        "--config",
        str(REPO / "config.json"),
        "--strategy",
        "SqueezeFlow",
        "--strategy-path",
        str(REPO / "user_data/strategies"),
        "--datadir",
        str(e2e.datadir),
        "--userdir",
        str(e2e.userdir),
        "--db-url",
        f"sqlite:///{tmp_path / 'dry.sqlite'}",
    ]
    log = tmp_path / "dry.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        api = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and _loops_after_stale(log.read_text()) < 3:
            time.sleep(0.5)  # poll the log: the stale notice, then at least 3 more bot loops
        api = httpx.get(f"http://127.0.0.1:{port}/api/v1/show_config", auth=("sfuser", "pw-123456"))
        denied = httpx.get(f"http://127.0.0.1:{port}/api/v1/show_config", auth=("sfuser", "wrong"))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    text = log.read_text()
    assert _loops_after_stale(text) >= 3, text[-4000:]  # the guard ran loops after notifying
    btc = [
        ln
        for ln in text.splitlines()
        if "SqueezeFlow BTC: flow feed stale" in ln and "WARNING" in ln
    ]
    assert len(btc) == 1, text[-4000:]  # once, not once per loop
    assert "days old, since 2024-01-1" in btc[0], btc[0]  # human units, not seconds
    caught = [ln for ln in text.splitlines() if "BTC caught up from parquet" in ln]
    assert len(caught) == 1, caught
    # The store ends in January 2024: never "store complete until", but how far behind it is.
    assert "store complete until" not in caught[0]
    assert re.search(r"\d+ days behind, since 2024-01-1\d", caught[0]), caught[0]
    assert text.count("Sending rpc strategy_msg: SqueezeFlow BTC: flow feed stale") == 1
    assert api is not None and api.status_code == 200 and api.json()["strategy"] == "SqueezeFlow"
    assert api.json()["dry_run"] is True
    assert denied.status_code == 401
