"""Store behaviour every backend must have: run on Parquet (unit) and InfluxDB (integration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feeder.ingest.aggregate import rollup
from feeder.ingest.models import BAR_FIELDS
from feeder.read.flow import load_flow
from feeder.settings import settings_from_dict
from feeder.stores import BarStore

DAY0 = 1_704_067_200  # 2024-01-01 00:00:00 UTC
SETTINGS = settings_from_dict(
    {
        "coins": {
            "BTC": {
                "spot": ["BINANCE:btcusdt", "COINBASE:btc-usd"],
                "perp": ["BINANCE_FUTURES:btcusdt", "BINANCE_FUTURES:btcusd_perp"],
            }
        },
        "flow": {"require": "all"},  # the strict rule: every market's gap shows
    },
    env=False,
)


def make_bars(start: int, seconds: int, seed: int, quiet_every: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(start, start + seconds, dtype=np.int64)
    t = t[(t % quiet_every) != 0]  # quiet seconds: no bar at all
    n = len(t)
    close = 100 + np.cumsum(rng.normal(0, 0.1, n))
    return pd.DataFrame(
        {
            "time": t,
            "open": close + rng.normal(0, 0.01, n),
            "high": close + 0.5,
            "low": close - 0.5,
            "close": close,
            "vbuy": rng.uniform(0, 1e4, n),
            "vsell": rng.uniform(0, 1e4, n),
            "cbuy": rng.integers(0, 20, n).astype(float),
            "csell": rng.integers(0, 20, n).astype(float),
            "lbuy": np.where(rng.random(n) < 0.01, 5000.0, 0.0),
            "lsell": 0.0,
        }
    )


def fill(store: BarStore, seconds: int = 3 * 3600, cover: bool = True) -> dict[str, pd.DataFrame]:
    out = {}
    for i, m in enumerate(SETTINGS.markets("BTC")):
        bars = make_bars(DAY0, seconds, seed=i)
        store.write_bars(m.id, m.kind.value, bars, "1s")
        store.write_bars(m.id, m.kind.value, rollup(bars, 60), "1m")
        if cover:
            store.add_coverage(m.id, DAY0, DAY0 + seconds)
        out[m.id] = bars
    return out


def check_round_trip_and_idempotent_rewrite(store: BarStore) -> None:
    bars = make_bars(DAY0 + 86_400 - 100, 200, seed=3)  # spans a day boundary
    store.write_bars("BINANCE:btcusdt", "spot", bars, "1s")
    store.write_bars("BINANCE:btcusdt", "spot", bars, "1s")
    got = store.read_bars("BINANCE:btcusdt", DAY0, DAY0 + 2 * 86_400, "1s")
    pd.testing.assert_frame_equal(
        got[["time", *BAR_FIELDS]], bars.reset_index(drop=True), check_dtype=False
    )
    changed = bars.iloc[:5].copy()
    changed["vbuy"] = 1.0
    store.write_bars("BINANCE:btcusdt", "spot", changed, "1s")
    got = store.read_bars("BINANCE:btcusdt", DAY0, DAY0 + 2 * 86_400, "1s")
    assert len(got) == len(bars)
    assert got["vbuy"].iloc[:5].tolist() == [1.0] * 5


def check_flow_sums_markets_of_each_kind(store: BarStore) -> None:
    bars = fill(store)
    for tf in ("1m", "5m", "1h", "15s"):
        flow = load_flow(store, SETTINGS, "BTC", DAY0, DAY0 + 3 * 3600, tf)
        sec = pd.Timedelta(tf).total_seconds()
        assert len(flow) == 3 * 3600 / sec
        assert flow["complete"].all()
        spot = bars["BINANCE:btcusdt"]["vbuy"].sum() + bars["COINBASE:btc-usd"]["vbuy"].sum()
        perp = (
            bars["BINANCE_FUTURES:btcusdt"]["vsell"].sum()
            + bars["BINANCE_FUTURES:btcusd_perp"]["vsell"].sum()
        )
        assert flow["spot_vbuy"].sum() == pytest.approx(spot, rel=1e-9)
        assert flow["perp_vsell"].sum() == pytest.approx(perp, rel=1e-9)
        first = bars["BINANCE:btcusdt"]
        in_first = first[first["time"] < DAY0 + sec]
        assert flow["spot_close"].iloc[0] == pytest.approx(in_first["close"].iloc[-1])
        assert flow.index[0] == pd.Timestamp(DAY0, unit="s", tz="UTC")


def check_gaps_are_flagged_not_zero(store: BarStore) -> None:
    fill(store, cover=False)
    for m in SETTINGS.markets("BTC"):
        store.add_coverage(m.id, DAY0, DAY0 + 3600)
        if m.id != "BINANCE_FUTURES:btcusd_perp":
            store.add_coverage(m.id, DAY0 + 3600, DAY0 + 3 * 3600)
    flow = load_flow(store, SETTINGS, "BTC", DAY0, DAY0 + 4 * 3600, "5m", per_market=True)
    assert flow["complete"].iloc[:12].all()
    assert not flow["complete"].iloc[12:].any()  # one perp market uncovered after 1h
    beyond = flow.iloc[36:]  # nothing covered, nothing stored: NaN, never zero
    assert beyond["spot_vbuy"].isna().all() and beyond["perp_vbuy"].isna().all()
    assert beyond["spot_close"].isna().all()
    part = flow.iloc[12:36]
    assert part["BINANCE_FUTURES:btcusdt|complete"].all()
    assert not part["BINANCE_FUTURES:btcusd_perp|complete"].any()


def check_open_interest_is_the_last_value_in_each_candle_summed_over_perps(store: BarStore) -> None:
    fill(store, seconds=3600)
    perps = [m.id for m in SETTINGS.markets("BTC") if m.kind.value == "perp"]
    t = np.arange(DAY0, DAY0 + 3600, 60, dtype=np.int64)
    store.write_oi(perps[0], pd.DataFrame({"time": t, "oi": 1e6 + t - DAY0}))
    flow = load_flow(store, SETTINGS, "BTC", DAY0, DAY0 + 3600, "5m")
    assert flow["oi"].isna().all()  # the second perp has no OI: never a partial sum
    store.write_oi(perps[1], pd.DataFrame({"time": t[:30], "oi": np.full(30, 5e5)}))
    flow = load_flow(store, SETTINGS, "BTC", DAY0, DAY0 + 3600, "5m")
    assert flow["oi"].iloc[0] == 1e6 + 240 + 5e5  # the last values before the close (300)
    # the second perp stopped after 30 minutes: its last value is carried forward, causally
    assert flow["oi"].iloc[6] == 1e6 + 2040 + 29 * 60 + 5e5 - 29 * 60
    later = load_flow(store, SETTINGS, "BTC", DAY0 + 2 * 3600, DAY0 + 3 * 3600, "5m")
    assert later["oi"].isna().all()  # at most an hour old: never an OI from long ago
