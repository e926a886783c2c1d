"""The IStrategy in-process: what FreqUI plots exists, callbacks follow the score bands and caps."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest
from SqueezeFlow import SqueezeFlow, startup_candles

from feeder.settings import ConfigError
from tests.conftest import REPO

SIDES = ("long", "short")


@pytest.fixture(scope="module")
def strategy(planted):
    cfg = json.loads((REPO / "config.json").read_text())
    cfg["squeezeflow"]["store"]["parquet_dir"] = str(planted.store.root)
    cfg["squeezeflow"]["max_leverage"] = 2.0
    return SqueezeFlow(cfg)


@pytest.fixture(scope="module")
def analyzed(strategy, planted):
    candles = planted.frame("5m")[["date", "open", "high", "low", "close", "volume"]]
    return strategy.analyze_ticker(candles, {"pair": "BTC/USDT:USDT"})


def test_everything_plot_config_shows_is_in_the_analyzed_frame(strategy, analyzed):
    cols = set(strategy.plot_config["main_plot"])
    for sub in strategy.plot_config["subplots"].values():
        cols |= set(sub)
    assert cols <= set(analyzed.columns)
    assert (
        analyzed[["spot_cvd", "perp_cvd", "spot_flow", "gap_z", "score_long"]].notna().any().all()
    )


def test_entries_carry_direction_and_rounded_score_tags(analyzed):
    tags = analyzed.loc[analyzed["enter_long"] == 1, "enter_tag"].tolist()
    tags += analyzed.loc[analyzed["enter_short"] == 1, "enter_tag"].tolist()
    assert len(tags) == 5
    assert all(t.split("_")[0] == "sf" and t.split("_")[1] in ("long", "short") for t in tags)
    assert all(6 <= int(t.split("_")[2]) <= 10 for t in tags)
    assert analyzed["close"].notna().all()  # prices never touched by the merge


def test_entry_tags_are_the_rounded_score_of_the_entrys_direction_on_every_candle(analyzed):
    """Tags are formatted only where an entry is: the same tags as formatting every candle."""
    rounded = {
        side: analyzed[f"score_{side}"].round().astype("Int64").astype(str) for side in SIDES
    }
    every = pd.Series(None, index=analyzed.index, dtype=object)
    every[analyzed["sf_enter_short"]] = "sf_short_" + rounded["short"]
    every[analyzed["sf_enter_long"]] = "sf_long_" + rounded["long"]  # a long wins a tie
    assert analyzed["enter_tag"].notna().sum() == 5
    assert analyzed["enter_tag"].tolist() == every.tolist()


def test_leverage_by_score_band_capped_by_config_and_exchange(strategy):
    now = datetime.now(UTC)
    lev = [
        strategy.leverage("BTC/USDT:USDT", now, 1.0, 1.0, 10.0, f"sf_long_{s}", "long")
        for s in (6, 7, 9)
    ]
    assert lev == [1.0, 2.0, 2.0]  # band 3x at score 9, capped at squeezeflow.max_leverage 2
    assert strategy.leverage("BTC/USDT:USDT", now, 1.0, 1.0, 1.5, "sf_long_9", "long") == 1.5


def test_stake_by_score_band_within_freqtrade_limits(strategy):
    now = datetime.now(UTC)
    args = ("BTC/USDT:USDT", now, 1.0, 1000.0, 10.0, 900.0, 1.0)
    assert strategy.custom_stake_amount(*args, "sf_long_6", "long") == 500.0
    assert strategy.custom_stake_amount(*args, "sf_short_7", "short") == 750.0
    assert strategy.custom_stake_amount(*args, "sf_long_8", "long") == 900.0  # max_stake


@pytest.mark.parametrize(("tf", "at_least"), [("1m", 1680), ("5m", 660), ("1h", 660)])
def test_startup_candles_cover_the_windows_and_context_at_every_timeframe(tf, at_least):
    assert startup_candles(tf) >= at_least


def test_a_bad_squeezeflow_key_is_refused_naming_it():
    cfg = json.loads((REPO / "config.json").read_text())
    cfg["squeezeflow"]["coins"]["BTC"]["prep"] = ["BINANCE_FUTURES:btcusdt"]
    with pytest.raises(ConfigError, match=r"squeezeflow\.coins\.BTC\.prep: unknown key"):
        SqueezeFlow(cfg)


def test_incomplete_flow_candles_cannot_enter(strategy, planted):
    candles = planted.frame("5m")[["date", "open", "high", "low", "close", "volume"]]
    full = strategy.analyze_ticker(candles.copy(), {"pair": "BTC/USDT:USDT"})
    rows = full.index[(full["enter_long"] == 1) | (full["enter_short"] == 1)]
    cut = candles.copy()
    strategy.flow._history.clear()
    flow = strategy.flow.history("BTC", cut["date"].iloc[0], cut["date"].iloc[-1])
    flow.loc[flow.index.isin(pd.DatetimeIndex(cut.loc[rows, "date"])), "complete"] = False
    strategy._computed_with.clear()
    again = strategy.analyze_ticker(cut, {"pair": "BTC/USDT:USDT"})
    assert not again.loc[rows, "cvd_ok"].any()
    assert (again.loc[rows, ["enter_long", "enter_short"]] == 0).all().all()
    strategy.flow._history.clear()


def test_open_interest_reaches_the_method_as_observed_by_each_candle_close(tmp_path):
    """OI polled into the store reaches the method's frame (causally: the last value before each
    candle's close), so the score's open-interest part can count."""
    from feeder.ingest.aggregate import rollup
    from feeder.read.flow import load_flow
    from feeder.stores.parquet import ParquetStore
    from tests.store_cases import make_bars

    cfg = json.loads((REPO / "config.json").read_text())
    cfg["squeezeflow"]["store"]["parquet_dir"] = str(tmp_path)
    strat = SqueezeFlow(cfg)
    store = strat.flow.store
    assert isinstance(store, ParquetStore)
    t0 = 1_704_067_200
    for i, m in enumerate(strat.settings.markets("BTC")):
        b = make_bars(t0, 6 * 3600, seed=i)
        store.write_bars(m.id, m.kind.value, b, "1s")
        store.write_bars(m.id, m.kind.value, rollup(b, 60), "1m")
        store.add_coverage(m.id, t0, t0 + 6 * 3600)
        if m.kind.value == "perp":  # polled every 7 minutes: most 5m candles hold none
            t = pd.Series(range(t0 + 30, t0 + 6 * 3600, 420), dtype="int64")
            store.write_oi(m.id, pd.DataFrame({"time": t, "oi": 1e9 + (t - t0) * 1e3}))
    dates = pd.date_range(pd.Timestamp(t0, unit="s", tz="UTC"), periods=72, freq="5min")
    candles = pd.DataFrame(
        {"date": dates, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "volume": 1.0}
    )
    merged = strat._merge_flow(candles, "BTC/USDT:USDT")
    flow = load_flow(store, strat.settings, "BTC", t0, t0 + 6 * 3600, "5m")
    assert merged["oi"].notna().all()  # forward filled: every candle has an OI as of its close
    assert merged["oi"].tolist() == flow["oi"].tolist()
    # Candle [t0+300, t0+600): the newest observation before its close is t0+450, in every perp.
    perps = sum(m.kind.value == "perp" for m in strat.settings.markets("BTC"))
    assert perps == 4  # config.json: Binance USD-M and COIN-M, Bybit, OKX
    assert merged.loc[1, "oi"] == perps * (1e9 + 450 * 1e3)
    assert merged.loc[0, "oi"] == perps * (1e9 + 30 * 1e3)


def test_liquidations_score_only_when_configured_so_no_run_mode_scores_differently(planted):
    """Archives carry no liquidations and live bars do: by default they are not scored (s_liq is
    0 everywhere), so a candle's score cannot depend on where its flow came from."""
    cfg = json.loads((REPO / "config.json").read_text())
    cfg["squeezeflow"]["store"]["parquet_dir"] = str(planted.store.root)
    candles = planted.frame("5m")[["date", "open", "high", "low", "close", "volume"]]
    scores = {}
    for name, liq, on in (("plain", False, False), ("liq", True, False), ("liq_on", True, True)):
        cfg["squeezeflow"]["score_liquidations"] = on
        strat = SqueezeFlow(cfg)
        flow = strat.flow.history("BTC", candles["date"].iloc[0], candles["date"].iloc[-1])
        if liq:  # as live bars carry them: liquidations on every candle
            flow["perp_lbuy"] = 0.01 * (flow["perp_vbuy"] + flow["perp_vsell"])
            flow["perp_lsell"] = flow["perp_lbuy"]
        out = strat.analyze_ticker(candles.copy(), {"pair": "BTC/USDT:USDT"})
        scores[name] = out[["score_long", "score_short", "enter_long", "enter_short"]]
    pd.testing.assert_frame_equal(scores["plain"], scores["liq"])
    assert (scores["liq_on"]["score_long"] > scores["plain"]["score_long"]).any()
