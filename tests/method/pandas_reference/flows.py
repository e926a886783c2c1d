"""Windowed flows: spot_flow, perp_flow, flow_gap, gap_z, price_z (method.md, causal)."""

from __future__ import annotations

import numpy as np
import pandas as pd

FLOW_INPUTS = ("spot_vbuy", "spot_vsell", "perp_vbuy", "perp_vsell")


def _safe_div(a: pd.Series, b: pd.Series) -> pd.Series:
    """a / b with NaN where b is 0 or NaN (a window without any volume has no flow)."""
    return a / b.where(b != 0)


def deltas(df: pd.DataFrame) -> pd.DataFrame:
    """Per-candle deltas and volumes; NaN on candles whose flow is incomplete (never 0)."""
    ok = df["cvd_ok"].astype(bool)
    out = pd.DataFrame(index=df.index)
    for k in ("spot", "perp"):
        buy = df[f"{k}_vbuy"].where(ok)
        sell = df[f"{k}_vsell"].where(ok)
        out[f"{k}_delta"] = buy - sell
        out[f"{k}_vol"] = buy + sell
    return out


def windowed_flows(d: pd.DataFrame, close: pd.Series, n: int, m: int) -> pd.DataFrame:
    """spot_flow, perp_flow in [-1, 1]; flow_gap; gap_z; price_z. Windows end at each candle.

    ``price_z`` uses log returns so that mirroring the market (inverting prices) negates it
    exactly; the method's simple return is its first-order approximation.
    """
    out = pd.DataFrame(index=d.index)
    for k in ("spot", "perp"):
        out[f"{k}_flow"] = _safe_div(
            d[f"{k}_delta"].rolling(n).sum(), d[f"{k}_vol"].rolling(n).sum()
        )
    out["flow_gap"] = out["spot_flow"] - out["perp_flow"]
    gap = out["flow_gap"]
    out["gap_z"] = _safe_div(gap - gap.rolling(m).mean(), gap.rolling(m).std())
    ret = np.log(close) - np.log(close.shift(n))
    out["price_z"] = _safe_div(ret, ret.rolling(m).std())
    return out
