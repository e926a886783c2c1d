"""Project-level promises: the compose file, the quick-start command, the CI entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

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


def _quickstart(tmp_path, *args, offline=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
    env.update({"SQUEEZEFLOW_PARQUET_DIR": str(tmp_path / "store"), "COLUMNS": "200"})
    if offline:
        env["SQUEEZEFLOW_OFFLINE"] = "1"
    return subprocess.run(
        ["bash", "scripts/quickstart", *args, "--datadir", str(tmp_path / "data"),
         "--workdir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.mark.slow
def test_quickstart_offline_uses_the_labelled_synthetic_sample_and_backtests(tmp_path):
    r = _quickstart(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "using the labelled SYNTHETIC sample" in out
    assert "BINANCE_FUTURES:btcusd_perp" in out  # the store status
    summary = out[out.index("STRATEGY SUMMARY") :]
    trades = int(summary.split("SqueezeFlow")[1].split("│")[1])
    assert trades >= 4
    assert "Those results are on SYNTHETIC data" in out
    # A store of its own: the default (real) store is never written.
    syn = tmp_path / "synthetic"
    assert (syn / "store" / "bars_1s" / "BINANCE_FUTURES.btcusdt").is_dir()
    assert not (tmp_path / "store").exists()
    assert (syn / "archive" / "SYNTHETIC.txt").exists()
    # It says where things are and what to do next, and the backtest can be opened again.
    flat = " ".join(out.split())
    for part in ("SYNTHETIC store:", "SYNTHETIC candles:", "what to do next", "backtesting-show"):
        assert part in flat, part
    results = tmp_path / "backtest_results"
    assert list(results.glob("backtest-result-*.zip")), list(results.iterdir())
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
    show = subprocess.run(
        [sys.executable, "-m", "feeder.offline", "--offline", "backtesting-show", "--config",
         "config.json", "--backtest-directory", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert show.returncode == 0, (show.stdout + show.stderr)[-3000:]
    assert "SqueezeFlow" in show.stdout and "STRATEGY SUMMARY" in show.stdout
    # The backtest command it prints works as printed (on the SYNTHETIC store, and says so).
    line = next(x.strip() for x in out.splitlines() if "squeezeflow-freqtrade" in x
                and " backtesting " in x)  # fmt: skip
    env.pop("SQUEEZEFLOW_PARQUET_DIR", None)
    again = subprocess.run([*line.split(), "--export", "none"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-3000:]
    assert "flow is SYNTHETIC" in log and "0 incomplete" in log
    summary = log[log.index("STRATEGY SUMMARY") :]
    assert int(summary.split("SqueezeFlow")[1].split("│")[1]) == trades


def test_generated_and_downloaded_archives_are_ignored_by_git():
    r = subprocess.run(
        ["git", "check-ignore", "user_data/synthetic/archive/SYNTHETIC.txt",
         "user_data/synthetic/store/imports.json", "user_data/archive/spot/x.zip"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert len(r.stdout.split()) == 3, r.stdout


@pytest.mark.slow
def test_quickstart_imports_a_given_archive_folder(tmp_path):
    from feeder.synthetic import Scenario, generate

    generate(Scenario.planted(), tmp_path / "given")
    r = _quickstart(tmp_path, str(tmp_path / "given"))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "importing the archive files under" in out
    assert "SYNTHETIC sample" not in out.split("importing")[0]
    assert "BACKTESTING REPORT" in out
    assert (tmp_path / "store" / "bars_1s" / "BINANCE_FUTURES.btcusd_perp").is_dir()


@pytest.mark.slow
def test_offline_freqtrade_refuses_every_exchange_call_but_markets(tmp_path):
    """With --offline, ccxt parses built-in exchangeInfo; anything else fails loudly."""
    code = (
        "import ccxt, sys\n"
        "from feeder.offline import install\n"
        "install(None)\n"
        "ex = ccxt.binance({'options': {'defaultType': 'swap'}})\n"
        "m = ex.load_markets()\n"
        "assert m['BTC/USDT:USDT']['linear'] and m['ETH/USDT:USDT']['contract'], list(m)\n"
        "try:\n"
        "    ex.fetch_ticker('BTC/USDT:USDT')\n"
        "except ccxt.ExchangeNotAvailable as e:\n"
        "    print('refused:', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "refused: offline mode: refused GET https://fapi.binance.com" in r.stdout


@pytest.mark.slow
def test_building_the_package_emits_no_setuptools_deprecation_warning(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "SetuptoolsDeprecationWarning" not in out, out[-3000:]
    assert "project.license" not in out


def test_freqtrade_is_required_with_the_plot_extra():
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    ft = next(d for d in deps if d.startswith("freqtrade["))
    assert "plot" in ft[ft.index("[") + 1 : ft.index("]")].split(",")
    import plotly  # noqa: F401 - installed with it
