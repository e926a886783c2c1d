"""Smoke test on the real BTC spot + perp recordings (../shared: hftbacktest, 2024-08-08/09).

Window E of the manifest: spot BTCUSDT and COIN-M BTCUSD_PERP overlap for 10 m 47 s; USD-M
BTCUSDT for the first 5 m 43 s. The flow goes through the real pipeline into a Parquet store and
the method runs on 5-second candles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from squeezeflow import MethodParams, compute

from feeder.ingest.pipeline import DayBarWriter
from feeder.read.flow import load_flow
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from tests.helpers import COINM, SPOT, USDM, raw_columns, read_derived_trades

pytestmark = pytest.mark.shared

FILES = {
    SPOT: ["spot_btcusdt_20240808_trades.csv", "spot_btcusdt_20240809_trades.csv"],
    COINM: ["cm_btcusd_perp_20240808_trades.csv", "cm_btcusd_perp_20240809_trades.csv"],
    USDM: ["usdm_btcusdt_20240808_trades.csv"],
}
OVERLAP = (1723161318, 1723161904)  # 23:55:18 .. 00:05:04 (whole seconds inside window E)


def _settings(perp: str):
    return settings_from_dict(
        {"coins": {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": [perp]}}}, env=False
    )


@pytest.fixture(scope="module")
def store(market_data, tmp_path_factory):
    st = ParquetStore(tmp_path_factory.mktemp("real"))
    for spec, names in FILES.items():
        w = DayBarWriter(st, spec)
        bounds = []
        for name in names:
            df = read_derived_trades(market_data / "hftbacktest/derived_trades" / name)
            w.add_raw(raw_columns(df))
            bounds += [
                int(df["trade_time_ms"].min()) // 1000,
                int(df["trade_time_ms"].max()) // 1000,
            ]
        w.close()
        st.add_coverage(spec.market, min(bounds) + 1, max(bounds) + 1)  # the recorded span
    return st


def test_spot_and_coin_m_flow_over_the_real_overlap(store):
    s = _settings("BINANCE_FUTURES:btcusd_perp")
    flow = load_flow(store, s, "BTC", OVERLAP[0], OVERLAP[1], "5s")
    assert flow["complete"].all()
    assert (flow["spot_vbuy"] + flow["spot_vsell"] > 0).mean() > 0.9  # spot trades most seconds
    assert np.isfinite(flow[["spot_vbuy", "perp_vbuy", "perp_vsell"]]).all().all()
    spot_close = flow["spot_close"].dropna()
    perp_close = flow["perp_close"].dropna()
    assert spot_close.between(58_000, 64_000).all() and perp_close.between(58_000, 64_000).all()
    frame = flow.reset_index()
    frame["high"] = frame["perp_close"].ffill().bfill() * 1.0001
    frame["low"] = frame["perp_close"].ffill().bfill() * 0.9999
    frame["close"] = frame["perp_close"].ffill().bfill()
    frame["cvd_ok"] = frame["complete"]
    out = compute(frame, MethodParams(n=6, m=24, reset_window=6), 5)
    assert len(out) == len(frame)
    flows = out[["spot_flow", "perp_flow"]].dropna()
    assert len(flows) > 60 and flows.abs().le(1).all().all()
    assert out["flow_gap"].std() > 0


def test_the_usd_m_market_ends_at_midnight_and_is_flagged_after(store):
    s = _settings("BINANCE_FUTURES:btcusdt")
    flow = load_flow(store, s, "BTC", OVERLAP[0], OVERLAP[1], "1m")
    midnight = pd.Timestamp("2024-08-09", tz="UTC")
    assert flow.loc[: midnight - pd.Timedelta("1min"), "complete"].iloc[1:].all()
    assert not flow.loc[midnight:, "complete"].any()  # the USD-M recording stops: a gap
    assert flow.loc[midnight:, "perp_vbuy"].isna().all()
