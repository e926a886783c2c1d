"""Phases 2 and 3: divergence episodes and their resets, for one direction at a time.

Every input is *directional*: multiplied by the direction's sign (+1 long, -1 short) and, for
prices, taken as ``sign * log(price)`` with high/low swapped for shorts. The same code then
serves both directions, and mirroring the market mirrors every signal exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from squeezeflow.params import MethodParams

#: Non-divergent candles that may interrupt a divergence without starting a new episode.
RUN_GAP = 2


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
    idx = gap_z.index
    w = p.reset_window
    div = (gap_z >= p.z_div) & (spot_flow > 0) & (perp_flow < 0) & (price_z <= p.p_max)
    # An episode starts at the first candle of a divergent run (a dip of up to RUN_GAP candles
    # does not end the run), so its state depends on at most reset_window + RUN_GAP candles of
    # history: start independence.
    recent = div.shift(1, fill_value=False).astype(float).rolling(RUN_GAP, min_periods=1).max() > 0
    start = div & ~recent
    pos = pd.Series(np.arange(len(idx), dtype=float), index=idx)
    start_pos = pos.where(start).ffill()
    age = pos - start_pos
    active = age.notna() & (age < w)
    ep = start.cumsum().where(active)  # episode label on its active candles, else NaN

    g = pd.DataFrame(
        {"ep": ep, "gz": gap_z, "lo": lo, "hi": hi, "pf": perp_flow}, index=idx
    ).groupby("ep", sort=False)
    peak = g["gz"].cummax()
    extreme = g["lo"].cummin()
    prior_high = g["hi"].cummax().groupby(ep).shift(1)  # the range *before* this candle
    pf_trough = g["pf"].cummin()

    conv = 1 - gap_z / peak.where(peak > 0)
    perp_turned = (perp_flow > 0) | (perp_flow - pf_trough >= p.perp_margin)
    later = active & (age >= 1)
    reset_a = later & (conv >= p.reset_frac) & perp_turned
    reset_b = later & (close > prior_high) & (vol_ratio >= p.vol_mult)
    any_reset = (reset_a | reset_b).fillna(False).astype(bool)
    first = any_reset & (any_reset.astype(int).groupby(ep).cumsum() == 1)
    return pd.DataFrame(
        {
            "div": div.fillna(False).astype(bool),
            "ep_start": start.fillna(False).astype(bool),
            "ep_age": age.where(active),
            "ep_peak": peak.where(active),
            "ep_extreme": extreme.where(active),
            "reset_a": reset_a.fillna(False).astype(bool),
            "reset_b": reset_b.fillna(False).astype(bool),
            "reset": first,
            "conv": conv.where(active),
            "perp_turned": perp_turned.fillna(False).astype(bool) & active,
            "breakout": vol_ratio.where(reset_b.fillna(False).astype(bool)),
        },
        index=idx,
    )
