"""Real FreqTrade runs of SqueezeFlow: backtesting, hyperopt, lookahead and recursive analysis.

FreqTrade exits 0 on some configuration errors, so every test asserts on what was produced.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import pandas as pd
import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.shared]
RANGE = ("--timerange", "20240104-20240111")


def test_backtest_trades_the_planted_squeezes_in_their_direction(e2e):
    out = e2e.root / "bt"
    out.mkdir()
    r = e2e.freqtrade(
        "backtesting",
        *RANGE,
        "--export",
        "trades",
        "--backtest-directory",
        str(out),
        "--cache",
        "none",
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert "0 incomplete" in r.stdout  # flow for every candle
    from freqtrade.data.btanalysis import load_backtest_data

    trades = load_backtest_data(out, "SqueezeFlow")
    assert len(trades) == len(e2e.episodes) == 5
    for e in e2e.episodes:
        start = pd.Timestamp(e["start"], unit="s", tz="UTC")
        t = trades[
            (trades["open_date"] >= start) & (trades["open_date"] <= start + pd.Timedelta("3h"))
        ]
        assert len(t) == 1, e
        assert bool(t["is_short"].iloc[0]) == (e["direction"] == -1)
        assert t["enter_tag"].iloc[0].startswith("sf_long_" if e["direction"] == 1 else "sf_short_")
    assert trades["profit_abs"].sum() > 0
    assert not r.stdout.count("MISSING FUNDING")


def test_hyperopt_runs_epochs_and_finds_a_result(e2e):
    # FreqTrade's default job count: the epochs run in joblib/loky worker processes, which must
    # import the method package beside the strategy themselves.
    r = e2e.freqtrade(
        "hyperopt",
        *RANGE,
        "--hyperopt-loss",
        "SharpeHyperOptLoss",
        "--spaces",
        "buy",
        "sell",
        "--epochs",
        "6",
        "--disable-param-export",
        "--print-json",
        "--random-state",
        "42",
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert "ModuleNotFoundError" not in r.stdout
    assert "Best result:" in r.stdout
    m = re.search(r"(\d+) trades\.", r.stdout[r.stdout.index("Best result:") :])
    assert m and int(m.group(1)) > 0
    params = json.loads(r.stdout[r.stdout.index('{"params"') :].splitlines()[0])["params"]
    assert {"n", "m", "z_div", "min_score", "exit_flow", "max_hold"} <= set(params)
    assert "static start value" not in r.stdout  # every sampled value is really used
    assert not (REPO / "user_data/strategies/SqueezeFlow.json").exists()


def test_hyperopt_in_parallel_from_a_users_own_user_data(e2e, tmp_path):
    """A user copies the strategy and its method package into their own user_data/strategies
    (no --strategy-path, no PYTHONPATH to it): parallel hyperopt workers still import it."""
    userdir = tmp_path / "my_user_data"
    for sub in ("hyperopt_results", "backtest_results", "logs"):
        (userdir / sub).mkdir(parents=True)
    src = REPO / "user_data/strategies"
    shutil.copytree(
        src, userdir / "strategies", ignore=shutil.ignore_patterns("__pycache__", "*.json")
    )
    e2e_user = dataclasses.replace(e2e, userdir=userdir)
    r = e2e_user.freqtrade(
        "hyperopt",
        *RANGE,
        "--hyperopt-loss",
        "SharpeHyperOptLoss",
        "--spaces",
        "buy",
        "sell",
        "--epochs",
        "6",
        "-j",
        "2",
        "--disable-param-export",
        "--random-state",
        "42",
        strategy_path=None,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert "ModuleNotFoundError" not in r.stdout
    assert "Best result:" in r.stdout
    assert str(userdir / "strategies") in r.stdout  # the user's copy was the one loaded


def test_lookahead_analysis_finds_no_biased_signal(e2e):
    csv = e2e.root / "lookahead.csv"
    r = e2e.freqtrade(
        "lookahead-analysis",
        *RANGE,
        "--minimum-trade-amount",
        "4",
        "--targeted-trade-amount",
        "5",
        "--lookahead-analysis-exportfilename",
        str(csv),
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert "no bias detected" in r.stdout
    table = pd.read_csv(csv)
    row = table[table["strategy"] == "SqueezeFlow"].iloc[-1]
    assert row["total_signals"] >= 4
    assert row["biased_entry_signals"] == 0 and row["biased_exit_signals"] == 0
    assert str(row["has_bias"]).lower() in ("false", "no")


def test_recursive_analysis_shows_under_0_1_percent_past_warm_up(e2e):
    r = e2e.freqtrade(
        "recursive-analysis", "--timerange", "20240105-20240111", "--startup-candle", "700", "900"
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert "No lookahead bias on indicators found" in r.stdout
    table = r.stdout[r.stdout.index("Recursive Analysis") :]
    pct = [float(x) for x in re.findall(r"(-?\d+\.\d+)%", table)]
    assert pct, table
    assert max(abs(p) for p in pct) < 0.1, table


def test_a_bad_squeezeflow_key_stops_freqtrade_naming_the_key(e2e, tmp_path):
    cfg = json.loads((REPO / "config.json").read_text())
    cfg["squeezeflow"]["store"]["bakend"] = "influx"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    r = e2e.freqtrade("backtesting", *RANGE, "--export", "none", config=path)
    assert "squeezeflow.store.bakend: unknown key" in r.stdout
    assert "BACKTESTING REPORT" not in r.stdout


def test_a_backtest_without_flow_warns_at_start_naming_the_market_and_what_to_import(e2e, tmp_path):
    """A configured spot market id with a typo: its flow is missing for every candle. FreqTrade
    still runs (no trades), but the log says so at start, naming the closest stored id."""
    cfg = json.loads((REPO / "config.json").read_text())
    cfg["squeezeflow"]["coins"]["BTC"]["spot"] = ["BINANCE:btcusdtt"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    r = e2e.freqtrade("backtesting", *RANGE, "--export", "none", config=path)
    assert r.returncode == 0, r.stdout[-3000:]
    flat = " ".join(r.stdout.split())  # FreqTrade's console wraps long log lines
    warn = r"(?:WARNING:feeder\.read\.flow_source:|feeder\.read\.flow_source - WARNING - )"
    warn += "SqueezeFlow: "
    assert re.search(
        warn + r"market BINANCE:btcusdtt \(squeezeflow\.coins\.BTC\) is not in the "
        r"parquet store \S+; did you mean BINANCE:btcusdt\?",
        flat,
    ), flat[-6000:]
    missing = re.findall(
        warn + r"BTC flow is missing for \d+ of \d+ candles \(2024-01-\d\d\.\."
        r"2024-01-\d\d; markets BINANCE:btcusdtt, .*? Not covered: "
        r"BINANCE:btcusdtt; fix BINANCE:btcusdtt in squeezeflow\.coins\.BTC "
        r"\(did you mean BINANCE:btcusdt\?\)",
        flat,
    )
    assert len(missing) == 1, flat[-6000:]
    assert flat.index("BTC flow is missing for") < flat.index("Backtesting with data from")


def test_plot_dataframe_writes_the_chart_with_the_flow_subplots(e2e):
    r = e2e.freqtrade("plot-dataframe", "--timerange", "20240105-20240106", "--no-trades")
    assert r.returncode == 0, r.stdout[-3000:]
    charts = list((e2e.userdir / "plot").glob("freqtrade-plot-BTC_USDT_USDT-5m.html"))
    assert charts, r.stdout[-3000:]
    html = charts[0].read_text()
    assert "spot_flow" in html and "perp_flow" in html
