"""The method's numpy implementation equals its first, all-pandas formulation exactly.

``squeezeflow`` was rewritten for the live bot's signal latency (issue 8 section 5: FreqTrade
analyses every pair before it enters any). ``tests/method/pandas_reference`` keeps the pandas
formulation verbatim; every column, dtype and value (NaN where NaN) must be the same, on the
planted scenario and its mirror at several timeframes and parameter sets, and on random frames
with gaps, open interest (NaN stretches included) and liquidations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from squeezeflow import MethodParams, compute

from tests.method.pandas_reference.signals import compute as reference_compute
from tests.scenario import mirror

PARAMS = [
    MethodParams(),
    MethodParams(n=6, m=144, z_div=1.0, p_max=0.25, reset_window=6, reset_frac=0.1, vol_mult=1.1),
    MethodParams(n=36, m=576, z_div=3.0, p_max=2.0, reset_window=48, reset_frac=0.7, min_score=4),
]


def with_oi_and_liquidations(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The planted scenario carries neither: add both (sparse liquidations, OI with holes), and
    flat candles (high == low, as quiet 1m candles have: no range to close in)."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    n = len(out)
    flat = rng.random(n) < 0.03
    for col in ("open", "high", "low"):
        out.loc[flat, col] = out.loc[flat, "close"]
    oi = 1e9 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    oi[rng.random(n) < 0.05] = np.nan
    out["oi"] = oi
    for col in ("perp_lbuy", "perp_lsell"):
        out[col] = np.where(rng.random(n) < 0.1, rng.uniform(0, 5e4, n), 0.0)
    return out


def assert_same(frame: pd.DataFrame, params: MethodParams, timeframe_s: int) -> None:
    got = compute(frame, params, timeframe_s)
    want = reference_compute(frame, params, timeframe_s)
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


@pytest.mark.parametrize("params", PARAMS, ids=["defaults", "low_ends", "high_ends"])
@pytest.mark.parametrize("tf", ["1m", "5m"])
def test_the_planted_scenario_gives_the_reference_values(planted, params, tf):
    frame = planted.frame(tf)
    full = reference_compute(frame, params, int(pd.Timedelta(tf).total_seconds()))
    assert full["reset_long"].any() and full["reset_short"].any()  # episodes were compared
    assert_same(frame, params, int(pd.Timedelta(tf).total_seconds()))


@pytest.mark.parametrize("params", PARAMS[:2], ids=["defaults", "low_ends"])
def test_the_mirrored_scenario_with_oi_and_liquidations_gives_the_reference_values(planted, params):
    frame = with_oi_and_liquidations(mirror(planted.frame("5m")), seed=3)
    assert_same(frame, params, 300)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**31),
    start=st.integers(0, 2000),
    length=st.integers(40, 1500),
    gap_share=st.sampled_from([0.0, 0.02, 0.3]),
)
def test_random_windows_with_gaps_give_the_reference_values(
    planted, seed, start, length, gap_share
):
    rng = np.random.default_rng(seed)
    frame = with_oi_and_liquidations(planted.frame("5m"), seed).iloc[start : start + length]
    frame = frame.copy()
    frame["cvd_ok"] = frame["cvd_ok"].to_numpy() & (rng.random(len(frame)) >= gap_share)
    assert_same(frame, PARAMS[1], 300)
