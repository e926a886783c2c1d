"""End to end with real FreqTrade, offline: markets from the real Binance exchangeInfo responses
in ../shared (parsed by ccxt itself), data from the labelled-SYNTHETIC planted scenario imported
through the feeder's own command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from feeder.tools.synthetic import Scenario, generate
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.shared]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class E2E:
    root: Path
    datadir: Path
    userdir: Path
    env: dict[str, str]
    markets: Path
    episodes: list[dict]

    def feeder(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([sys.executable, "-m", "feeder.tools.cli", *args])

    def freqtrade(
        self,
        *args: str,
        config: Path | None = None,
        strategy_path: Path | None = REPO / "user_data/strategies",
    ) -> subprocess.CompletedProcess[str]:
        """FreqTrade on the strategy in the repository, or (``strategy_path=None``) on the copy
        a user keeps in their own ``user_data/strategies``."""
        where = ["--strategy-path", str(strategy_path)] if strategy_path else []
        cmd = [
            sys.executable,
            "-m",
            "feeder.tools.offline",
            "--markets",
            str(self.markets),
            *args,
            "--config",
            str(config or REPO / "config.json"),
            "--strategy",
            "SqueezeFlow",
            *where,
            "--datadir",
            str(self.datadir),
            "--userdir",
            str(self.userdir),
            "--pairs",
            "BTC/USDT:USDT",
        ]
        return self._run(cmd)

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=900)
        r.stdout = ANSI.sub("", r.stdout + "\n" + r.stderr)
        return r


@pytest.fixture(scope="session")
def e2e(tmp_path_factory, market_data) -> E2E:
    root = tmp_path_factory.mktemp("e2e")
    manifest = generate(Scenario.planted(), root / "archive")
    userdir = root / "user_data"
    for sub in ("strategies", "hyperopt_results", "backtest_results", "logs"):
        (userdir / sub).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
    env.update(
        {
            "SQUEEZEFLOW_PARQUET_DIR": str(root / "store"),
            "PYTHONPATH": str(REPO),
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
    )
    e = E2E(
        root,
        root / "data" / "binance",
        userdir,
        env,
        market_data / "cryptofeed",
        manifest["episodes"],
    )  # type: ignore[arg-type]
    r = e.feeder("import", "--from", str(root / "archive"), "--no-progress")
    assert r.returncode == 0 and "imported 30 file(s)" in r.stdout, r.stdout[-3000:]
    r = e.feeder(
        "export-candles",
        "--pairs",
        "BTC/USDT:USDT",
        "--timeframes",
        "5m",
        "1h",
        "--datadir",
        str(e.datadir),
        "--archive-dir",
        str(root / "archive"),
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert (e.datadir / "futures" / "BTC_USDT_USDT-1h-funding_rate.feather").exists()
    return e
