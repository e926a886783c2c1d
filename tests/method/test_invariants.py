"""method.md's invariants, each as a test (on the labelled-SYNTHETIC planted scenario)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from squeezeflow import FEATURE_COLUMNS, SIGNAL_COLUMNS, MethodParams, compute
from squeezeflow.score import WEIGHTS

from tests.method.conftest import OI_OUTAGE
from tests.scenario import eq_nan, mirror

P = MethodParams()
TF = 300
CAUSAL = list((*FEATURE_COLUMNS, *SIGNAL_COLUMNS))  # with PARTS below
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


PARTS = [f"{part}_{side}" for part in WEIGHTS for side in ("long", "short")]


@pytest.fixture(scope="module", params=["planted", "planted_oi"])
def built(request):
    """The planted scenario, and the same with open interest and liquidations (so every score
    part, OI's 1.5 and liquidations' 0.5 points too, is inside the invariants)."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def frame(built):
    return built.frame("5m")


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
    for col in CAUSAL + PARTS:
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
    for col in PARTS:
        assert _close(out[col], full[col]), col
    assert full["sf_enter_long"].any() and full["sf_enter_short"].any()


def test_4_mirror_symmetry_turns_longs_into_shorts_at_the_same_candle(frame, full):
    out = compute(mirror(frame), P, TF)
    for a, b in (("long", "short"), ("short", "long")):
        for kind in ("sf_enter", "reset", "div", "sf_exit"):
            assert eq_nan(out[f"{kind}_{a}"], full[f"{kind}_{b}"]), f"{kind}_{a}"
        assert _close(out[f"score_{a}"], full[f"score_{b}"])
        for part in WEIGHTS:
            assert _close(out[f"{part}_{a}"], full[f"{part}_{b}"]), f"{part}_{a}"
    assert _close(out["gap_z"], -full["gap_z"])


@pytest.mark.parametrize("start", [1, 37, 200, 288])
def test_5_start_independence_beyond_the_warm_up(frame, full, start):
    out = compute(frame.iloc[start:].reset_index(drop=True), P, TF)
    # Beyond the warm-up (and the higher-timeframe context's own window) values agree.
    settle = P.warmup + 4 * 12 * (P.ctx_window + 2)
    ref = full.iloc[start:].reset_index(drop=True)
    for col in CAUSAL + PARTS:
        a, b = out[col].iloc[settle:], ref[col].iloc[settle:]
        assert _close(a, b) if a.dtype.kind == "f" else eq_nan(a, b), col


def test_open_interest_and_liquidations_score_in_the_planted_oi_scenario(planted_oi):
    """The scenario the invariants run on really exercises both parts: OI and liquidations
    reach the frame, score at entries, and the OI outage is a gap (NaN), never a value."""
    df = planted_oi.frame("5m")
    out = compute(df, P, TF)
    assert df["oi"].notna().sum() > 2800 and (df["perp_lbuy"] > 0).any()
    assert (df["perp_lsell"] > 0).any()
    for side in ("long", "short"):
        at = out[f"sf_enter_{side}"].to_numpy(bool)
        assert (out[f"s_oi_{side}"][at] > 0.5).any() and (out[f"s_liq_{side}"][at] > 0).any()
    hole = (df["date"] >= pd.Timestamp(planted_oi.t0 + OI_OUTAGE[0] + 3600, unit="s", tz="UTC")) & (
        df["date"] < pd.Timestamp(planted_oi.t0 + OI_OUTAGE[1] - 300, unit="s", tz="UTC")
    )
    assert hole.sum() >= 10 and df.loc[hole, "oi"].isna().all()


def _ends(built) -> list[int]:
    """Prefix ends: inside the OI outage, an hour after it, inside every episode's reset."""
    out = [built.t0 + OI_OUTAGE[0] + 4500, built.t0 + OI_OUTAGE[1] + 3600]
    out += [e["start"] + e["div_len"] + 900 for e in built.episodes]
    return out


def test_1_no_lookahead_from_the_store_prefix_loads_give_the_same_flow_and_signals(planted_oi):
    """Invariant 1 through the whole read path: flow loaded from the store up to a time (open
    interest and liquidations included) equals the full load there, and so does the method."""
    full_df = planted_oi.frame("5m")
    full = compute(full_df, P, TF)
    for end in _ends(planted_oi):
        part_df = planted_oi.frame("5m", end=end)
        k = len(part_df)
        assert k == (end - planted_oi.t0) // TF
        pd.testing.assert_frame_equal(part_df, full_df.iloc[:k], check_exact=False, rtol=1e-12)
        part = compute(part_df, P, TF)
        for col in CAUSAL + PARTS:
            a, b = part[col], full[col].iloc[:k]
            assert _close(a, b) if a.dtype.kind == "f" else eq_nan(a, b), (end, col)


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
