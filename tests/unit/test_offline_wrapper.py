"""``squeezeflow-freqtrade``: FreqTrade commands a newcomer runs first work without API secrets,
``--offline trade`` is refused, a typo in the squeezeflow section is one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from feeder.settings import ConfigError, settings_from_dict
from tests.conftest import REPO


def _wrapper(*args, cwd=REPO):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    r = subprocess.run(
        [sys.executable, "-m", "feeder.tools.offline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    r.stdout = r.stdout + "\n" + r.stderr
    return r


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "shows"),
    [
        ("list-strategies", "SqueezeFlow"),
        ("list-data", ""),
        ("list-timeframes", "5m"),
        ("list-hyperoptloss", "SharpeHyperOptLoss"),
    ],
)
def test_commands_that_never_start_the_api_server_run_without_secrets(command, shows, tmp_path):
    r = _wrapper("--offline", command, "--config", "config.json", "--datadir", str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:]
    assert "Invalid configuration" not in r.stdout
    assert shows in r.stdout, r.stdout[-3000:]


def test_every_command_but_trade_and_webserver_gets_throwaway_secrets(monkeypatch):
    from feeder.tools.offline import throwaway_api_secrets

    for cmd in (
        "list-strategies",
        "show-trades",
        "plot-dataframe",
        "backtesting-show",
        "list-timeframes",
        "trade",
        "webserver",
    ):
        for var in ("ENABLED", "USERNAME", "PASSWORD", "JWT_SECRET_KEY", "WS_TOKEN"):
            monkeypatch.delenv(f"FREQTRADE__API_SERVER__{var}", raising=False)
        throwaway_api_secrets(cmd)
        has = "FREQTRADE__API_SERVER__JWT_SECRET_KEY" in os.environ
        assert has == (cmd not in ("trade", "webserver")), cmd


def test_offline_trade_is_refused_with_a_message():
    r = _wrapper("--offline", "trade", "--config", "config.json", "--strategy", "SqueezeFlow")
    assert r.returncode == 2
    assert "--offline" in r.stdout and "trade" in r.stdout
    assert "Traceback" not in r.stdout


def test_a_typo_in_the_squeezeflow_section_says_did_you_mean():
    with pytest.raises(ConfigError) as e:
        settings_from_dict({"store": {"bakend": "influx"}}, env=False)
    msg = str(e.value)
    assert msg.count("\n") == 0, msg
    assert "squeezeflow.store.bakend: unknown key (did you mean 'backend'?)" in msg
    with pytest.raises(ConfigError, match=r"coins\.BTC\.prep: unknown key \(did you mean 'perp'"):
        settings_from_dict({"coins": {"BTC": {"spot": ["BINANCE:btcusdt"], "prep": []}}}, env=False)
    with pytest.raises(
        ConfigError,
        match=r"feeder\.exchanges\.0\.quote: unknown key "
        r"\(did you mean 'quotes'",
    ):
        settings_from_dict(
            {"feeder": {"exchanges": [{"id": "binance", "kind": "spot", "quote": ["USDT"]}]}},
            env=False,
        )


@pytest.mark.slow
def test_a_typo_under_freqtrade_is_one_clear_line_without_traceback(tmp_path):
    cfg = json.loads((REPO / "config.json").read_text())
    cfg["squeezeflow"]["store"]["bakend"] = "influx"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    r = _wrapper(
        "--offline",
        "backtesting",
        "--config",
        str(path),
        "--strategy",
        "SqueezeFlow",
        "--datadir",
        str(tmp_path),
        "--timerange",
        "20240104-20240105",
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stdout
    lines = [x for x in r.stdout.splitlines() if "squeezeflow.store.bakend" in x]
    assert len(lines) == 1 and "did you mean 'backend'?" in lines[0], r.stdout[-3000:]
