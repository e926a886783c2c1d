"""Project-level promises: the compose file, the quick-start command, the CI entry point."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

SECRETS = {
    "FREQTRADE__API_SERVER__USERNAME": "u",
    "FREQTRADE__API_SERVER__PASSWORD": "p",
    "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "k" * 32,
    "FREQTRADE__API_SERVER__WS_TOKEN": "t",
}


def test_docker_compose_file_validates_offline():
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose missing: scripts/test installs it")
        pytest.skip("docker-compose (Debian package) is not installed")
    r = subprocess.run(
        [exe, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        env={**os.environ, **SECRETS},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [exe, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        env={k: v for k, v in os.environ.items() if k not in SECRETS},
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "set it in .env" in r.stderr  # no default passwords


def test_every_published_port_is_on_loopback():
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    ports = [p for s in doc["services"].values() for p in s.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci/run").read_text()
    assert "bash scripts/test" in readme.split("```")[1]
    assert "exec bash scripts/test" in ci


@pytest.mark.shared
def test_quickstart_imports_a_local_archive_and_shows_the_store(market_data, tmp_path):
    env = {**os.environ, "SQUEEZEFLOW_PARQUET_DIR": str(tmp_path)}
    r = subprocess.run(
        ["bash", "scripts/quickstart", str(market_data / "binance_datatool/tommy-ca/data")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "BINANCE_FUTURES:btcusd_perp" in r.stdout
    assert "2026-05-08 00:00:00" in r.stdout
    assert (tmp_path / "bars_1s" / "BINANCE_FUTURES.btcusd_perp" / "2026-05-08.parquet").exists()
