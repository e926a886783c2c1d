"""method.md's invariants, each as a test (on the labelled-SYNTHETIC planted scenario)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from squeezeflow import FEATURE_COLUMNS, SIGNAL_COLUMNS, MethodParams, compute

from tests.scenario import eq_nan, mirror

P = MethodParams()
TF = 300
CAUSAL = list((*FEATURE_COLUMNS, *SIGNAL_COLUMNS))
SIGNALS = [
    "sf_enter_long",
    "sf_enter_short",
    "sf_exit_long",
    "sf_exit_short",
    "reset_long",
    "reset_short",
    "div_long",
    "div_short",
]


@pytest.fixture(scope="module")
def frame(planted):
    return planted.frame("5m")


@pytest.fixture(scope="module")
def full(frame):
    return compute(frame, P, TF)


def _close(a: pd.Series, b: pd.Series) -> bool:
    x, y = a.to_numpy(float), b.to_numpy(float)
    same_nan = np.isnan(x) == np.isnan(y)
    return bool(
        same_nan.all() and np.allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=1e-9, atol=1e-12)
    )


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(k=st.integers(min_value=P.warmup + 50, max_value=2870))
def test_1_no_lookahead_any_prefix_gives_the_same_values(frame, full, k):
    part = compute(frame.iloc[:k], P, TF)
    for col in CAUSAL:
        assert (
            _close(part[col], full[col].iloc[:k])
            if part[col].dtype.kind == "f"
            else eq_nan(part[col], full[col].iloc[:k])
        ), col


@pytest.mark.parametrize("factor", [1e-3, 1e3])
def test_3_scale_invariance_no_absolute_volume_thresholds(frame, full, factor):
    scaled = frame.copy()
    for c in scaled.columns:
        if c.startswith(("spot_v", "perp_v", "spot_l", "perp_l")):
            scaled[c] = scaled[c] * factor
    out = compute(scaled, P, TF)
    for col in SIGNALS:
        assert eq_nan(out[col], full[col]), col
    assert full["sf_enter_long"].any() and full["sf_enter_short"].any()


def test_4_mirror_symmetry_turns_longs_into_shorts_at_the_same_candle(frame, full):
    out = compute(mirror(frame), P, TF)
    for a, b in (("long", "short"), ("short", "long")):
        for kind in ("sf_enter", "reset", "div", "sf_exit"):
            assert eq_nan(out[f"{kind}_{a}"], full[f"{kind}_{b}"]), f"{kind}_{a}"
        assert _close(out[f"score_{a}"], full[f"score_{b}"])
    assert _close(out["gap_z"], -full["gap_z"])


@pytest.mark.parametrize("start", [1, 37, 200, 288])
def test_5_start_independence_beyond_the_warm_up(frame, full, start):
    out = compute(frame.iloc[start:].reset_index(drop=True), P, TF)
    # Beyond the warm-up (and the higher-timeframe context's own window) values agree.
    settle = P.warmup + 4 * 12 * (P.ctx_window + 2)
    ref = full.iloc[start:].reset_index(drop=True)
    for col in CAUSAL:
        a, b = out[col].iloc[settle:], ref[col].iloc[settle:]
        assert _close(a, b) if a.dtype.kind == "f" else eq_nan(a, b), col


def test_6_gaps_are_flagged_never_enter_and_never_give_nan_prices(frame, full):
    entry_rows = np.flatnonzero(full["sf_enter_long"] | full["sf_enter_short"])
    assert len(entry_rows) >= 4
    holed = frame.copy()
    for r in entry_rows:  # make the entry candles and their window incomplete
        holed.loc[r - 5 : r, "cvd_ok"] = False
        holed.loc[r - 5 : r, ["spot_vbuy", "perp_vbuy"]] = np.nan
    out = compute(holed, P, TF)
    assert not (out["sf_enter_long"] | out["sf_enter_short"]).iloc[entry_rows].any()
    assert not (out["sf_enter_long"] & ~holed["cvd_ok"]).any()
    assert out["spot_flow"].iloc[entry_rows].isna().all()  # a gap is a gap, not a zero
    # The method's price features come from the candles alone: a flow gap leaves them intact
    # (the candle prices reaching the strategy's frame: test_flaw_9 and test_strategy.py).
    assert out["price_z"].iloc[P.n + P.m :].notna().all()
    assert _close(out["price_z"], full["price_z"])


def test_6_incomplete_flags_alone_block_entries_even_with_values(frame, full):
    holed = frame.copy()
    rows = np.flatnonzero(full["sf_enter_long"] | full["sf_enter_short"])
    holed.loc[rows, "cvd_ok"] = False
    out = compute(holed, P, TF)
    assert not (out["sf_enter_long"] | out["sf_enter_short"]).iloc[rows].any()
