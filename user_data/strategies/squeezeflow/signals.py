"""All five phases over one candle frame: features, episodes, scores, entries and exits."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from squeezeflow.context import context
from squeezeflow.episodes import episode_columns
from squeezeflow.flows import deltas, windowed_flows
from squeezeflow.params import MethodParams
from squeezeflow.score import WEIGHTS, Array, Columns, score

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
    spot_flow: pd.Series, perp_flow: pd.Series, params: MethodParams
) -> tuple[pd.Series, pd.Series]:
    """Flow reversal: both short flows turned against the position beyond ``exit_flow``."""
    exit_long = (spot_flow < -params.exit_flow) & (perp_flow < -params.exit_flow)
    exit_short = (spot_flow > params.exit_flow) & (perp_flow > params.exit_flow)
    return exit_long.fillna(False), exit_short.fillna(False)


def _column(candles: pd.DataFrame, name: str) -> Array:
    """A float column of the candles, all NaN when absent (OI, liquidations are optional)."""
    if name in candles:
        column: Array = candles[name].to_numpy(dtype=float)
        return column
    return np.full(len(candles), np.nan)


def _ffill(values: Array) -> Array:
    """Forward fill of NaN (as ``pd.Series.ffill``): each NaN takes the last value before it."""
    last = np.where(np.isnan(values), 0, np.arange(len(values)))
    np.maximum.accumulate(last, out=last)
    return values[last] if len(values) else values


def _direction(
    sign: int,
    features: pd.DataFrame,
    candles: pd.DataFrame,
    context_sign: Array,
    params: MethodParams,
) -> Columns:
    """Divergence, reset, score parts, stop and entry for one direction, as numpy columns."""
    log_high = np.log(candles["high"].to_numpy(dtype=float))
    log_low = np.log(candles["low"].to_numpy(dtype=float))
    log_close = np.log(candles["close"].to_numpy(dtype=float))
    if sign > 0:
        high, low, close = log_high, log_low, log_close
        liquidations = _column(candles, "perp_lbuy")
    else:
        high, low, close = -log_low, -log_high, -log_close
        liquidations = _column(candles, "perp_lsell")
    episode = episode_columns(
        sign * features["gap_z"].to_numpy(),
        sign * features["spot_flow"].to_numpy(),
        sign * features["perp_flow"].to_numpy(),
        sign * features["price_z"].to_numpy(),
        high,
        low,
        close,
        features["vol_ratio"].to_numpy(),
        params,
    )
    candle_range = high - low
    candle_range = np.where(candle_range > 0, candle_range, np.nan)
    close_loc = (close - low) / candle_range
    close_loc = np.where(np.isnan(close_loc), 0.5, close_loc)
    oi = _column(candles, "oi")
    oi_start = _ffill(np.where(episode["ep_start"], oi, np.nan))
    oi_start = np.where(np.isnan(episode["ep_age"]), np.nan, oi_start)
    oi_change = oi / oi_start - 1
    cvd_ok = candles["cvd_ok"].to_numpy(dtype=bool)
    liq_sum = pd.Series(np.where(cvd_ok, liquidations, np.nan)).rolling(params.n).sum()
    perp_vol_sum = features["perp_vol"].rolling(params.n).sum().to_numpy()
    liq_share = liq_sum.to_numpy() / np.where(perp_vol_sum != 0, perp_vol_sum, np.nan)
    price_z = sign * features["price_z"].to_numpy()
    parts = score(episode, price_z, close_loc, oi_change, context_sign == sign, liq_share, params)
    enter = episode["reset"] & (parts["score"] >= params.min_score) & cvd_ok
    return {
        "div": episode["div"],
        "reset": episode["reset"],
        "score": parts["score"],
        "stop": np.exp(sign * episode["ep_extreme"]),  # directional log price back to price
        "enter": enter,
        **{part: parts[part] for part in WEIGHTS},
    }


def compute(
    df: pd.DataFrame,
    params: MethodParams,
    timeframe_s: int,
    htfs_s: tuple[int, ...] = (3600, 14400),
) -> pd.DataFrame:
    """Features and signals for a candle frame (FreqTrade candles merged with flow).

    ``df`` needs ``REQUIRED`` columns; ``cvd_ok`` is False on candles whose flow is missing or
    incomplete: they are treated as gaps (NaN flow), never as zeros, and cannot enter.
    Returns ``FEATURE_COLUMNS`` + ``SIGNAL_COLUMNS`` + score parts, on ``df``'s index.
    """
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise KeyError(f"compute needs columns {missing}")
    candle_deltas = deltas(df)
    flows = windowed_flows(candle_deltas, df["close"], params.n, params.m)
    total = candle_deltas["spot_vol"] + candle_deltas["perp_vol"]
    flows["vol_ratio"] = total / total.rolling(params.m).mean().where(lambda v: v != 0)
    context_sign = context(df["date"], candle_deltas, timeframe_s, htfs_s, params.ctx_window)
    features = pd.concat([candle_deltas, flows], axis=1)
    columns: dict[str, npt.ArrayLike] = {
        name: features[name].to_numpy() for name in features.columns
    }
    # Plot only, never used by a signal. A plain cumsum's level depends on where the loaded
    # range starts; anchored at each UTC midnight (a session CVD) it does not, once the range
    # holds the whole day, so recursive-analysis and restarts show the same curve.
    day = pd.DatetimeIndex(df["date"]).floor("1D")
    columns["spot_cvd"] = candle_deltas["spot_delta"].fillna(0).groupby(day).cumsum().to_numpy()
    columns["perp_cvd"] = candle_deltas["perp_delta"].fillna(0).groupby(day).cumsum().to_numpy()
    columns["context"] = context_sign.to_numpy()
    for name, sign in (("long", 1), ("short", -1)):
        side = _direction(sign, features, df, context_sign.to_numpy(), params)
        columns[f"div_{name}"] = side["div"]
        columns[f"reset_{name}"] = side["reset"]
        columns[f"score_{name}"] = side["score"]
        columns[f"stop_{name}"] = side["stop"]
        columns[f"sf_enter_{name}"] = side["enter"]
        for part in WEIGHTS:
            columns[f"{part}_{name}"] = side[part]
    exit_long, exit_short = exits(flows["spot_flow"], flows["perp_flow"], params)
    columns["sf_exit_long"] = exit_long.to_numpy()
    columns["sf_exit_short"] = exit_short.to_numpy()
    return pd.DataFrame(columns, index=df.index)
