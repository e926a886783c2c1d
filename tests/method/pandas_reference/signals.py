"""All five phases over one candle frame: features, episodes, scores, entries and exits."""

from __future__ import annotations

import numpy as np
import pandas as pd
from squeezeflow.params import MethodParams

from tests.method.pandas_reference.context import context
from tests.method.pandas_reference.episodes import episodes
from tests.method.pandas_reference.flows import deltas, windowed_flows
from tests.method.pandas_reference.score import WEIGHTS, score

#: Inputs ``compute`` needs (``perp_lbuy``, ``perp_lsell`` and ``oi`` may be absent or NaN).
REQUIRED = (
    "date",
    "high",
    "low",
    "close",
    "spot_vbuy",
    "spot_vsell",
    "perp_vbuy",
    "perp_vsell",
    "cvd_ok",
)

FEATURE_COLUMNS = (
    "spot_delta",
    "perp_delta",
    "spot_vol",
    "perp_vol",
    "spot_cvd",
    "perp_cvd",
    "spot_flow",
    "perp_flow",
    "flow_gap",
    "gap_z",
    "price_z",
    "vol_ratio",
    "context",
)
SIGNAL_COLUMNS = (
    "div_long",
    "div_short",
    "reset_long",
    "reset_short",
    "score_long",
    "score_short",
    "stop_long",
    "stop_short",
    "sf_enter_long",
    "sf_enter_short",
    "sf_exit_long",
    "sf_exit_short",
)


def exits(
    spot_flow: pd.Series, perp_flow: pd.Series, p: MethodParams
) -> tuple[pd.Series, pd.Series]:
    """Flow reversal: both short flows turned against the position beyond ``exit_flow``."""
    exit_long = (spot_flow < -p.exit_flow) & (perp_flow < -p.exit_flow)
    exit_short = (spot_flow > p.exit_flow) & (perp_flow > p.exit_flow)
    return exit_long.fillna(False), exit_short.fillna(False)


def _direction(
    sign: int, f: pd.DataFrame, df: pd.DataFrame, ctx: pd.Series, p: MethodParams
) -> pd.DataFrame:
    lh, ll, lc = np.log(df["high"]), np.log(df["low"]), np.log(df["close"])
    if sign > 0:
        hi, lo, cl = lh, ll, lc
        liq = df["perp_lbuy"] if "perp_lbuy" in df else pd.Series(np.nan, index=df.index)
    else:
        hi, lo, cl = -ll, -lh, -lc
        liq = df["perp_lsell"] if "perp_lsell" in df else pd.Series(np.nan, index=df.index)
    ep = episodes(
        sign * f["gap_z"],
        sign * f["spot_flow"],
        sign * f["perp_flow"],
        sign * f["price_z"],
        hi,
        lo,
        cl,
        f["vol_ratio"],
        p,
    )
    rng = (hi - lo).where(lambda r: r > 0)
    close_loc = ((cl - lo) / rng).fillna(0.5)
    oi = df["oi"] if "oi" in df else pd.Series(np.nan, index=df.index)
    oi_start = oi.where(ep["ep_start"]).ffill().where(ep["ep_age"].notna())
    oi_change = oi / oi_start - 1
    liq_share = liq.where(df["cvd_ok"]).rolling(p.n).sum() / f["perp_vol"].rolling(p.n).sum().where(
        lambda v: v != 0
    )
    s = score(ep, sign * f["price_z"], close_loc, oi_change, ctx == sign, liq_share, p)
    enter = ep["reset"] & (s["score"] >= p.min_score) & df["cvd_ok"].astype(bool)
    stop = np.exp(sign * ep["ep_extreme"])  # back from directional log price to price
    out = pd.DataFrame(
        {
            "div": ep["div"],
            "reset": ep["reset"],
            "score": s["score"],
            "stop": stop,
            "enter": enter.fillna(False),
        },
        index=df.index,
    )
    for part in WEIGHTS:
        out[part] = s[part]
    return out


def compute(
    df: pd.DataFrame, p: MethodParams, timeframe_s: int, htfs_s: tuple[int, ...] = (3600, 14400)
) -> pd.DataFrame:
    """Features and signals for a candle frame (FreqTrade candles merged with flow).

    ``df`` needs ``REQUIRED`` columns; ``cvd_ok`` is False on candles whose flow is missing or
    incomplete: they are treated as gaps (NaN flow), never as zeros, and cannot enter.
    Returns ``FEATURE_COLUMNS`` + ``SIGNAL_COLUMNS`` + score parts, on ``df``'s index.
    """
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise KeyError(f"compute needs columns {missing}")
    d = deltas(df)
    f = windowed_flows(d, df["close"], p.n, p.m)
    total = d["spot_vol"] + d["perp_vol"]
    f["vol_ratio"] = total / total.rolling(p.m).mean().where(lambda v: v != 0)
    ctx = context(df["date"], d, timeframe_s, htfs_s, p.ctx_window)
    out = pd.concat([d, f], axis=1)
    # Plot only, never used by a signal. A plain cumsum's level depends on where the loaded
    # range starts; anchored at each UTC midnight (a session CVD) it does not, once the range
    # holds the whole day, so recursive-analysis and restarts show the same curve.
    day = pd.DatetimeIndex(df["date"]).floor("1D")
    out["spot_cvd"] = d["spot_delta"].fillna(0).groupby(day).cumsum().to_numpy()
    out["perp_cvd"] = d["perp_delta"].fillna(0).groupby(day).cumsum().to_numpy()
    out["context"] = ctx
    for name, sign in (("long", 1), ("short", -1)):
        r = _direction(sign, out, df, ctx, p)
        out[f"div_{name}"] = r["div"]
        out[f"reset_{name}"] = r["reset"]
        out[f"score_{name}"] = r["score"]
        out[f"stop_{name}"] = r["stop"]
        out[f"sf_enter_{name}"] = r["enter"]
        for part in WEIGHTS:
            out[f"{part}_{name}"] = r[part]
    out["sf_exit_long"], out["sf_exit_short"] = exits(f["spot_flow"], f["perp_flow"], p)
    return out
