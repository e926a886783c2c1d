"""docker-compose.yml's healthcheck commands, run against the real servers they probe.

The images cannot be pulled here, so each service's probe runs on this machine against the same
kind of server (the private InfluxDB and Redis of scripts/test, a real `freqtrade webserver`, a
real `squeezeflow-feeder run`), with only the published port swapped for the test server's. Each
probe must pass against the live server and fail against a closed port.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from urllib.parse import urlparse

import pytest
import yaml

from tests.conftest import REPO
from tests.e2e.test_docs_recipes import webserver  # noqa: F401 - the fixture
from tests.live.servers import free_port


def probe(service: str) -> list[str]:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    test = doc["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    argv = list(test[1:])
    return [sys.executable if a == "python" else a for a in argv]


def run(argv: list[str], old: str, new: str) -> int:
    return subprocess.run(
        [a.replace(old, new) for a in argv], capture_output=True, timeout=30
    ).returncode


def closed_port() -> int:
    port = free_port()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    return port


@pytest.mark.backend
def test_influxdb_probe(influx_url):
    argv = probe("influxdb")
    assert "http://127.0.0.1:8086/ping" in argv
    live = urlparse(influx_url)
    assert run(argv, "127.0.0.1:8086", f"{live.hostname}:{live.port}") == 0
    assert run(argv, "127.0.0.1:8086", f"127.0.0.1:{closed_port()}") != 0


@pytest.mark.backend
def test_redis_probe(redis_url):
    argv = probe("redis")
    assert argv == ["redis-cli", "ping"]
    live = urlparse(redis_url)
    ok = subprocess.run(
        [*argv[:1], "-h", str(live.hostname), "-p", str(live.port), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0 and ok.stdout.strip() == "PONG"
    bad = subprocess.run([*argv[:1], "-p", str(closed_port()), *argv[1:]], capture_output=True)
    assert bad.returncode != 0


@pytest.mark.slow
def test_freqtrade_probe(webserver):  # noqa: F811
    argv = probe("freqtrade")
    port = webserver["FREQTRADE__API_SERVER__LISTEN_PORT"]
    assert run(argv, "127.0.0.1:8080", f"127.0.0.1:{port}") == 0
    assert run(argv, "127.0.0.1:8080", f"127.0.0.1:{closed_port()}") != 0


@pytest.mark.slow
@pytest.mark.shared
def test_feeder_probe(market_data, tmp_path):
    from tests.live.test_cli_run import _processes

    argv = probe("feeder")
    with _processes(market_data, tmp_path, speed=40) as (_replay, _feeder, wait_health, hport, _):
        wait_health(lambda h: bool(h["markets"]))
        assert run(argv, "127.0.0.1:8765", f"127.0.0.1:{hport}") == 0
    assert run(argv, "127.0.0.1:8765", f"127.0.0.1:{closed_port()}") != 0
