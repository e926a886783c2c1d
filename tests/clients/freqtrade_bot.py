"""A real ``freqtrade trade --dry-run`` (or ``webserver``) process for client tests, offline.

Runs through ``python -m feeder.tools.offline --markets DIR`` (ccxt builds the markets from saved
exchangeInfo responses, every other exchange call is refused) exactly like
``tests/e2e/test_dry_run.py``, with the API server on a free loopback port and throwaway
credentials. Stopped with SIGTERM (FreqTrade's own handler), killed only if it hangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO

API_USER = "sfuser"
API_PASSWORD = "pw-123456"  # noqa: S105 (throwaway test credential)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FreqtradeProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 90) -> str:
        return self.wait(lambda t: needle in t, timeout, repr(needle))

    def wait(self, cond: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if cond(text):
                return text
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"freqtrade exited ({self.proc.returncode}) before {what}:\n{text[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} in the log:\n{text[-4000:]}")
            time.sleep(0.2)

    def wait_loops(self, n: int, timeout: float = 60) -> None:
        """Wait until the bot's process loop completed ``n`` more times (REST ``/health``)."""
        client = self.rest()
        seen: set[Any] = set()
        deadline = time.monotonic() + timeout
        while len(seen) <= n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {len(seen)} bot loops in {timeout}s:\n{self.text()[-3000:]}"
                )
            health = client.health()
            if isinstance(health, dict) and health.get("last_process_ts"):
                seen.add(health["last_process_ts"])
            time.sleep(0.3)

    def rest(self) -> Any:
        """FreqTrade's own REST client (freqtrade-client) logged in to this bot."""
        from freqtrade_client import FtRestClient

        return FtRestClient(self.url, API_USER, API_PASSWORD)


@contextlib.contextmanager
def freqtrade_process(
    e2e: Any,
    folder: Path,
    env_extra: dict[str, str],
    command: str = "trade",
    extra_args: tuple[str, ...] = (),
) -> Iterator[FreqtradeProcess]:
    """Start ``freqtrade <command>`` offline on the e2e fixture's data; stop it afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **e2e.env,
        "FREQTRADE__API_SERVER__USERNAME": API_USER,
        "FREQTRADE__API_SERVER__PASSWORD": API_PASSWORD,
        "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "k" * 40,
        "FREQTRADE__API_SERVER__WS_TOKEN": "ws-token-123",
        "FREQTRADE__API_SERVER__LISTEN_PORT": str(port),
        "FREQTRADE__INTERNALS__PROCESS_THROTTLE_SECS": "1",
        **env_extra,
    }
    cmd = [
        sys.executable,
        "-m",
        "feeder.tools.offline",
        "--markets",
        str(e2e.markets),
        command,
        "--config",
        str(REPO / "config.json"),
        "--datadir",
        str(e2e.datadir),
        "--userdir",
        str(e2e.userdir),
    ]
    if command == "trade":
        cmd += [
            "--strategy",
            "SqueezeFlow",
            "--strategy-path",
            str(REPO / "user_data/strategies"),
            "--dry-run",
            "--db-url",
            f"sqlite:///{folder / 'dry.sqlite'}",
        ]
    else:  # webserver takes no --strategy options: FreqUI picks the strategy from this folder
        env.setdefault("FREQTRADE__STRATEGY_PATH", str(REPO / "user_data/strategies"))
    cmd += list(extra_args)
    log = folder / f"{command}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        yield FreqtradeProcess(proc, log, port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
