"""Phases 2 and 3: divergence episodes and their resets, for one direction at a time.

Every input is *directional*: multiplied by the direction's sign (+1 long, -1 short) and, for
prices, taken as ``sign * log(price)`` with high/low swapped for shorts. The same code then
serves both directions, and mirroring the market mirrors every signal exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from squeezeflow.params import MethodParams
from squeezeflow.score import Array, Columns

#: Non-divergent candles that may interrupt a divergence without starting a new episode.
RUN_GAP = 2


def _running(accumulate: np.ufunc, values: Array) -> Array:
    """Running max/min skipping NaN, NaN where the value is NaN (``Series.cummax`` semantics);
    ``accumulate`` is ``np.fmax`` or ``np.fmin``."""
    out: Array = accumulate.accumulate(values)
    out[np.isnan(values)] = np.nan
    return out


def episode_columns(
    gap_z: Array,
    spot_flow: Array,
    perp_flow: Array,
    price_z: Array,
    high: Array,
    low: Array,
    close: Array,
    vol_ratio: Array,
    params: MethodParams,
) -> Columns:
    """``episodes`` on numpy arrays (directional inputs); the columns as numpy arrays."""
    n = len(gap_z)
    window = params.reset_window
    with np.errstate(invalid="ignore"):
        div = (
            (gap_z >= params.z_div) & (spot_flow > 0) & (perp_flow < 0) & (price_z <= params.p_max)
        )
    # An episode starts at the first candle of a divergent run (a dip of up to RUN_GAP candles
    # does not end the run), so its state depends on at most reset_window + RUN_GAP candles of
    # history: start independence.
    recent = np.zeros(n, dtype=bool)
    for lag in range(1, RUN_GAP + 1):
        recent[lag:] |= div[:-lag]
    start = div & ~recent
    position = np.arange(n)
    last_start = np.where(start, position, -1)
    np.maximum.accumulate(last_start, out=last_start)
    age = np.where(last_start >= 0, position - last_start, np.nan).astype(float)
    active = (last_start >= 0) & (age < window)

    peak = np.full(n, np.nan)
    extreme = np.full(n, np.nan)
    prior_high = np.full(n, np.nan)
    perp_trough = np.full(n, np.nan)
    # Each episode's active candles are one run from its start, ended by reset_window or by the
    # next episode's start.
    starts = np.flatnonzero(start)
    ends = np.minimum(starts + window, np.append(starts[1:], n))
    for first, last in zip(starts.tolist(), ends.tolist(), strict=True):
        span = slice(first, last)
        peak[span] = _running(np.fmax, gap_z[span])
        extreme[span] = _running(np.fmin, low[span])
        high_so_far = _running(np.fmax, high[span])
        prior_high[first + 1 : last] = high_so_far[:-1]  # the range *before* this candle
        perp_trough[span] = _running(np.fmin, perp_flow[span])

    with np.errstate(invalid="ignore", divide="ignore"):
        conv = 1 - gap_z / np.where(peak > 0, peak, np.nan)
        perp_turned = (perp_flow > 0) | (perp_flow - perp_trough >= params.perp_margin)
        later = active & (age >= 1)
        reset_a = later & (conv >= params.reset_frac) & perp_turned
        reset_b = later & (close > prior_high) & (vol_ratio >= params.vol_mult)
    any_reset = reset_a | reset_b
    first_reset = np.zeros(n, dtype=bool)
    resets = np.flatnonzero(any_reset)
    if len(resets):
        # the first reset of each episode: the earliest reset with that episode's start
        _, first_of_episode = np.unique(last_start[resets], return_index=True)
        first_reset[resets[first_of_episode]] = True
    return {
        "div": div,
        "ep_start": start,
        "ep_age": np.where(active, age, np.nan),
        "ep_peak": np.where(active, peak, np.nan),
        "ep_extreme": np.where(active, extreme, np.nan),
        "reset_a": reset_a,
        "reset_b": reset_b,
        "reset": first_reset,
        "conv": np.where(active, conv, np.nan),
        "perp_turned": perp_turned & active,
        "breakout": np.where(reset_b, vol_ratio, np.nan),
    }


def episodes(
    gap_z: pd.Series,
    spot_flow: pd.Series,
    perp_flow: pd.Series,
    price_z: pd.Series,
    hi: pd.Series,
    lo: pd.Series,
    close: pd.Series,
    vol_ratio: pd.Series,
    p: MethodParams,
) -> pd.DataFrame:
    """Divergence, episode bookkeeping and the first reset of each episode (directional inputs).

    Returns columns: ``div`` (divergent candle), ``ep_start``, ``ep_age`` (candles since the
    episode started, NaN outside an active episode), ``ep_peak`` (peak directional gap_z so
    far), ``ep_extreme`` (lowest directional low so far: the structure the stop sits beyond),
    ``reset_a``, ``reset_b``, ``reset`` (first reset of the episode), ``conv`` (fraction the gap
    fell from its peak), ``perp_turned`` (perp flow positive, or risen ``perp_margin`` above
    its episode trough), ``breakout`` (volume ratio on a type-B reset).
    """
    columns = episode_columns(
        gap_z.to_numpy(dtype=float),
        spot_flow.to_numpy(dtype=float),
        perp_flow.to_numpy(dtype=float),
        price_z.to_numpy(dtype=float),
        hi.to_numpy(dtype=float),
        lo.to_numpy(dtype=float),
        close.to_numpy(dtype=float),
        vol_ratio.to_numpy(dtype=float),
        p,
    )
    return pd.DataFrame(columns, index=gap_z.index)
