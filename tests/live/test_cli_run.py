"""`squeezeflow-feeder run` as a user runs it: its own process, settings from a config file,
against `squeezeflow-feeder replay` in another process; SIGTERM ends it with every bar stored."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from feeder.replay.binance import ccxt_overrides
from feeder.stores.parquet import ParquetStore
from tests.live.conftest import RECORDINGS, bars_of, expected_trades
from tests.live.servers import free_port
from tests.live.test_feeder_replay import _same_bars

pytestmark = [pytest.mark.shared, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _health(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
    except httpx.HTTPError:
        return None


def _config(tmp: Path, url: str, top: dict | None = None, **feeder: Any) -> Path:
    """The feeder's config for the replay at ``url``; ``top``'s sections are merged into it."""

    def exchange(ccxt_id: str, kind: str, symbol: str) -> dict:
        over = ccxt_overrides(url, ccxt_id)  # what `replay` prints for this exchange
        return {
            "id": ccxt_id,
            "kind": kind,
            "symbols": [symbol],
            "urls": over["urls"],
            "options": over["options"],
            "open_interest": False,
            "liquidations": False,
            "quiet_s": 20,
        }

    config = {
        "squeezeflow": {
            "coins": {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": ["BINANCE_FUTURES:btcusdt"]}},
            "store": {"parquet_dir": str(tmp / "store")},
            "redis": {"enabled": False},
            "feeder": {
                "spool_dir": str(tmp / "spool"),
                "exchanges": [
                    exchange("binance", "spot", "BTC/USDT"),
                    exchange("binanceusdm", "perp", "BTC/USDT:USDT"),
                ],
                **feeder,
            },
        }
    }
    for key, section in (top or {}).items():  # merged one level deep
        config["squeezeflow"][key] = {**config["squeezeflow"].get(key, {}), **section}
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(config))
    return cfg


@contextlib.contextmanager
def _processes(
    market_data: Path,
    tmp: Path,
    speed: float,
    entry: list[str] | None = None,
    top: dict | None = None,
    argv: tuple[str, ...] = (),
) -> Iterator[Any]:
    """A replay process and a feeder process (`run --clock event`) reading from it; ``entry``
    replaces ``-m feeder.tools.cli`` in the feeder's command (a fault-injecting driver), ``top``
    is merged into the config (``_config``), ``argv`` goes before ``run`` (``-v``)."""
    rport, hport = free_port(), free_port()
    replay_cmd = [
        sys.executable,
        "-m",
        "feeder.tools.cli",
        "replay",
        "--port",
        str(rport),
        "--speed",
        str(speed),
        "--start-on-subscribe",
        "2",
    ]
    for raw, mt, _csv, _spec in RECORDINGS.values():
        replay_cmd += ["--recording", f"{market_data / raw}:{mt}"]
    cfg = _config(tmp, f"http://127.0.0.1:{rport}", top)
    env = {
        **os.environ,
        "SQUEEZEFLOW_API_KEY_BINANCE": "replay-no-key",
        "SQUEEZEFLOW_API_KEY_BINANCEUSDM": "replay-no-key",
    }
    log = tmp / "feeder.log"
    with log.open("w") as out:
        replay = subprocess.Popen(
            replay_cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while _closed(rport) and time.monotonic() < deadline:
            time.sleep(0.1)
        feeder = subprocess.Popen(
            [
                sys.executable,
                *(entry or ["-m", "feeder.tools.cli"]),
                "--config",
                str(cfg),
                *argv,
                "run",
                "--clock",
                "event",
                "--http-port",
                str(hport),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

        def wait_health(until: Callable[[dict], bool], timeout: float = 150) -> dict:
            deadline = time.monotonic() + timeout
            health = None
            while time.monotonic() < deadline:
                time.sleep(0.3)
                assert feeder.poll() is None, log.read_text()
                health = _health(hport)
                if health is not None and until(health):
                    return health
            raise AssertionError(f"timed out; last /health: {health}\n{log.read_text()[-3000:]}")

        try:
            yield replay, feeder, wait_health, hport, log
        finally:
            for p in (feeder, replay):
                if p.poll() is None:
                    p.kill()
                    p.wait()


def _trades(health: dict) -> int:
    return sum(m["trades"] for m in health["markets"].values())


def test_feeder_cli_collects_a_replayed_session_and_flushes_on_sigterm(
    market_data, imported, tmp_path
):
    want = expected_trades(market_data)
    with _processes(market_data, tmp_path, speed=40) as (_replay, feeder, wait_health, hport, log):
        health = wait_health(
            lambda h: _trades(h) >= want and not any(m["held"] for m in h["markets"].values())
        )
        assert set(health["markets"]) == set(RECORDINGS)
        metrics = httpx.get(f"http://127.0.0.1:{hport}/metrics", timeout=2).text
        assert re.search(r"^squeezeflow_\w+", metrics, re.M)
        feeder.send_signal(signal.SIGTERM)
        assert feeder.wait(60) == 0
    text = log.read_text()
    # only the configured exchanges' ccxt modules were imported
    m = re.search(r"ccxt: loaded binance, binanceusdm; (\d+) other exchange modules", text)
    assert m and int(m.group(1)) > 200, text[-3000:]
    store = ParquetStore(tmp_path / "store")
    _same_bars(store, imported)  # every trade once, bars equal to the import path's
    assert all(len(bars_of(store, k)) for k in RECORDINGS)


def test_exchange_gone_then_sigterm_keeps_every_trade_received_and_flags_the_rest(
    market_data, tmp_path
):
    """The exchange disappears mid-stream; the feeder cannot backfill; SIGTERM. Every trade that
    arrived is in the bars (none stranded behind the pending backfill), and the seconds from the
    last trade on are recorded as a gap."""
    with _processes(market_data, tmp_path, speed=10) as (replay, feeder, wait_health, _h, log):
        wait_health(lambda h: _trades(h) > 8_000)
        replay.kill()  # the exchange is gone: websocket and REST
        replay.wait()
        health = wait_health(lambda h: not any(s["connected"] for s in h["streams"].values()))
        seen = {k: m["trades"] for k, m in health["markets"].items()}  # at least these arrived
        feeder.send_signal(signal.SIGTERM)
        assert feeder.wait(60) == 0, log.read_text()[-3000:]
    # Every trade the feeder accepted, counted by the process itself at its stop (no race with
    # frames still being handled when /health was read).
    stopped = re.search(r"stopped: (\{.*\})", log.read_text())
    assert stopped, log.read_text()[-3000:]
    counters = ast.literal_eval(stopped.group(1))
    accepted = counters.get("trades_live", 0) + counters.get("trades_backfilled", 0)
    store = ParquetStore(tmp_path / "store")
    stored = {}
    for market, n in seen.items():
        bars = bars_of(store, market)
        stored[market] = int(bars["cbuy"].sum() + bars["csell"].sum())  # count fields
        assert stored[market] >= n > 0, market
    assert sum(stored.values()) == accepted, (stored, counters)
    for market in seen:
        bars = bars_of(store, market)
        gaps = store.gaps(market)
        assert len(gaps), (market, log.read_text()[-2000:])
        # the flagged range starts at or before the last stored second and runs past it
        assert gaps["start"].min() <= bars["time"].max() + 1 < gaps["end"].max(), (market, gaps)


def test_feeder_cli_refuses_to_start_when_an_exchange_is_unreachable(tmp_path):
    port = free_port()  # nothing listens there
    cfg = _config(tmp_path, f"http://127.0.0.1:{port}", http_port=0, backoff_max_s=0.2)
    out = subprocess.run(
        [sys.executable, "-m", "feeder.tools.cli", "--config", str(cfg), "run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert text.count("markets not loaded (ExchangeNotAvailable); retrying") == 4, text
    assert "binance (spot): cannot load its markets after 5 attempts" in text, text
    assert f"127.0.0.1:{port}" in text and "Traceback" not in text, text
