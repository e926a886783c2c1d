"""One test per flaw of the first SqueezeFlow implementation (method.md), proving it is gone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from squeezeflow import MethodParams, compute
from squeezeflow.episodes import episodes
from squeezeflow.flows import deltas, windowed_flows

from feeder.ingest.aggregate import bars_from_trades
from feeder.ingest.models import Kind
from feeder.ingest.normalise import TradeBatch
from tests.scenario import entries

P = MethodParams()


@pytest.fixture(scope="module")
def frame(planted):
    return planted.frame("5m")


def test_flaw_1_falling_price_is_detected_and_short_setups_fire(planted, frame):
    out = compute(frame, P, 300)
    assert entries(out, frame["date"], "short"), "short setups must fire"
    assert (out["price_z"] < -1).any() and (out["price_z"] > 1).any()  # signed, not absolute


def test_flaw_2_no_absolute_volume_threshold_small_markets_trade(frame):
    tiny = frame.copy()
    for c in tiny.columns:
        if c.startswith(("spot_v", "perp_v")):
            tiny[c] = tiny[c] * 1e-6  # a market a million times smaller
    out = compute(tiny, P, 300)
    assert out["sf_enter_long"].any() and out["sf_enter_short"].any()


def test_flaw_3_windows_are_candles_of_the_strategy_timeframe_not_rescaled(planted):
    df = planted.frame("1m")
    out = compute(df, P, 60)
    d = deltas(df)
    direct = d["spot_delta"].rolling(P.n).sum() / d["spot_vol"].rolling(P.n).sum()
    pd.testing.assert_series_equal(out["spot_flow"], direct, check_names=False)


def test_flaw_4_breakout_range_excludes_the_candle_tested():
    n = 6
    idx = pd.RangeIndex(n)
    gap_z = pd.Series([3.0, 3.0, 3.0, 2.9, 2.9, 2.9], idx)
    spot = pd.Series(0.5, idx)
    perp = pd.Series(-0.5, idx)
    pz = pd.Series(0.0, idx)
    hi = pd.Series([1.0, 1.0, 1.0, 1.0, 2.0, 2.0], idx)  # candle 4 breaks the prior high
    lo = pd.Series(0.0, idx)
    close = pd.Series([0.5, 0.5, 0.5, 0.5, 1.5, 1.5], idx)
    vol = pd.Series([1.0, 1.0, 1.0, 1.0, 3.0, 1.0], idx)
    ep = episodes(
        gap_z,
        spot,
        perp,
        pz,
        hi,
        lo,
        close,
        vol,
        MethodParams(n=2, m=5, reset_window=6, vol_mult=1.5),
    )
    # With the candle's own high in the range, close (1.5) < high (2.0) would never break out.
    assert ep["reset_b"].tolist() == [False, False, False, False, True, False]


def test_flaw_5_no_signal_depends_on_cvd_levels(frame):
    out = compute(frame, P, 300)
    later = frame.iloc[100:].reset_index(drop=True)
    out2 = compute(later, P, 300)
    # A plain cumulative delta depends on the start: the hazard the first system fell into.
    plain = (frame["spot_vbuy"] - frame["spot_vsell"]).cumsum().iloc[-1]
    plain2 = (later["spot_vbuy"] - later["spot_vsell"]).cumsum().iloc[-1]
    assert plain != pytest.approx(plain2)
    # Signals never use a level; even the plotted (session-anchored) CVD agrees on the last day.
    tail = 288
    for col in ("sf_enter_long", "sf_enter_short", "gap_z", "spot_cvd", "perp_cvd"):
        a = out[col].iloc[-tail:].to_numpy().astype(float)
        b = out2[col].iloc[-tail:].to_numpy().astype(float)
        assert np.allclose(a, b, equal_nan=True), col


def test_flaw_6_one_sign_convention_gap_is_spot_minus_perp():
    n = 40
    df = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC"),
            "high": 101.0,
            "low": 99.0,
            "close": 100.0,
            "spot_vbuy": 90.0,
            "spot_vsell": 10.0,  # spot takers buy
            "perp_vbuy": 10.0,
            "perp_vsell": 90.0,  # perp takers sell
            "cvd_ok": True,
        }
    )
    f = windowed_flows(deltas(df), df["close"], 3, 10)
    assert (f["flow_gap"].dropna() > 0).all()  # positive: long bias
    assert f["flow_gap"].iloc[-1] == pytest.approx(
        f["spot_flow"].iloc[-1] - f["perp_flow"].iloc[-1]
    )


def test_flaw_7_bars_and_candles_are_half_open_and_labelled_by_open_time():
    ns = 1_000_000_000
    t0 = 1_704_067_200
    ts = np.array([t0 * ns, (t0 + 299) * ns + 999_999_999, (t0 + 300) * ns])
    b = TradeBatch(
        "BINANCE:btcusdt",
        Kind.SPOT,
        ts,
        np.ones(3),
        np.ones(3),
        np.ones(3),
        np.ones(3, bool),
        np.arange(3),
        np.zeros(3, bool),
    )
    bars = bars_from_trades(b)
    assert bars["time"].tolist() == [t0, t0 + 299, t0 + 300]
    from feeder.ingest.aggregate import rollup, strip_keys

    five = rollup(strip_keys(bars), 300)
    assert five["time"].tolist() == [t0, t0 + 300]  # the trade at t0+300 opens the next candle
    assert five["cbuy"].tolist() == [2.0, 1.0]


def test_flaw_8_backtests_never_fetch_live_data(planted, monkeypatch):
    """History comes from the store only: Redis and the network are never touched."""
    from feeder.read.flow_source import FlowSource

    settings = planted.settings.model_copy(
        update={"redis": planted.settings.redis.model_copy(update={"url": "redis://127.0.0.1:9/0"})}
    )
    src = FlowSource(settings, "5m", store=planted.store)
    monkeypatch.setattr(src, "_redis_client", lambda: pytest.fail("Redis used in a backtest"))
    flow = src.history(
        "BTC", pd.Timestamp(planted.t0, unit="s"), pd.Timestamp(planted.t1 - 300, unit="s")
    )
    assert flow["complete"].all()
    out = compute(planted.frame("5m"), P, 300)  # no OI in the store: its part scores 0
    assert (out["s_oi_long"] == 0).all() and out["sf_enter_long"].any()


def test_flaw_9_flow_is_merged_by_candle_time_and_prices_never_become_nan(planted):
    """The strategy's own merge (``SqueezeFlow._merge_flow``) with the flow of three candles
    missing: prices stay, those candles are gaps (not entries), the rest lines up by time."""
    import json

    from SqueezeFlow import SqueezeFlow

    from tests.conftest import REPO

    cfg = json.loads((REPO / "config.json").read_text())
    cfg["squeezeflow"]["store"]["parquet_dir"] = str(planted.store.root)
    strat = SqueezeFlow(cfg)
    df = planted.frame("5m")
    candles = df[["date", "open", "high", "low", "close", "volume"]]
    first, last = candles["date"].iloc[0], candles["date"].iloc[-1]
    flow = strat.flow.history("BTC", first, last)
    holed = flow.drop(index=pd.DatetimeIndex(candles.loc[10:12, "date"]))
    assert len(holed) == len(flow) - 3
    strat.flow._history = {k: holed for k in strat.flow._history}  # what the store would give
    merged = strat._merge_flow(candles, "BTC/USDT:USDT")
    assert len(merged) == len(candles)
    pd.testing.assert_frame_equal(merged[list(candles.columns)], candles)  # prices untouched
    assert merged[["open", "high", "low", "close"]].notna().all().all()
    assert merged.loc[10:12, "spot_vbuy"].isna().all()
    assert not merged.loc[10:12, "cvd_ok"].any()  # a missing candle is a gap, never complete
    assert merged.loc[13, "spot_vbuy"] == df.loc[13, "spot_vbuy"]  # by time, not by position
    assert merged.loc[13, "spot_vbuy"] != df.loc[16, "spot_vbuy"]
    assert merged.loc[13:, "cvd_ok"].all()
    out = compute(merged, P, 300)
    assert not (out["sf_enter_long"] | out["sf_enter_short"]).iloc[10:13].any()


def test_flaw_10_spot_and_perp_flow_come_from_their_own_markets(planted):
    from feeder.read.flow import load_flow

    flow = load_flow(
        planted.store, planted.settings, "BTC", planted.t0, planted.t1, "1h", per_market=True
    )
    assert np.allclose(flow["spot_vbuy"], flow["BINANCE:btcusdt|vbuy"])
    perp = flow["BINANCE_FUTURES:btcusdt|vbuy"] + flow["BINANCE_FUTURES:btcusd_perp|vbuy"]
    assert np.allclose(flow["perp_vbuy"], perp)
    assert not np.allclose(
        flow["spot_vbuy"] / flow["spot_vsell"], flow["perp_vbuy"] / flow["perp_vsell"]
    )
