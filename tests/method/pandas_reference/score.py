"""Phase 4: the 0-10 score and its six parts (weights sum to 10; each part clipped)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from squeezeflow.params import MethodParams

WEIGHTS = {
    "s_div": 3.0,
    "s_reset": 2.0,
    "s_absorb": 2.0,
    "s_oi": 1.5,
    "s_ctx": 1.0,
    "s_liq": 0.5,
}


def _clip01(x: pd.Series) -> pd.Series:
    return x.clip(0.0, 1.0).fillna(0.0)


def score(
    ep: pd.DataFrame,
    price_z: pd.Series,
    close_loc: pd.Series,
    oi_change: pd.Series,
    ctx_agrees: pd.Series,
    liq_share: pd.Series,
    p: MethodParams,
) -> pd.DataFrame:
    """Score parts for one direction (directional inputs, see ``episodes``).

    - divergence strength: episode peak gap_z beyond ``z_div`` (0 at z_div, full at 3 x z_div);
    - reset quality: type A by convergence (full at 2 x reset_frac) plus a perp flip, type B by
      breakout volume (full at 2 x vol_mult); the better of the two;
    - absorption: price_z well below ``p_max`` (price did not run while flow pushed) plus where
      the candle closed in its range;
    - open-interest build-up: OI rise over the episode (full at ``oi_ref``); missing OI -> 0;
    - context alignment: Phase 1 agrees with the direction;
    - liquidation fuel: liquidations of the side about to be squeezed, as a share of perp
      volume over the short window (full at ``liq_ref``); missing -> 0.
    """
    s = pd.DataFrame(index=ep.index)
    s["s_div"] = 3.0 * _clip01((ep["ep_peak"] - p.z_div) / (2 * p.z_div))
    a = _clip01(ep["conv"] / (2 * p.reset_frac)) + ep["perp_turned"].astype(float)
    b = 1.0 + _clip01((ep["breakout"] - p.vol_mult) / p.vol_mult)
    s["s_reset"] = np.maximum(a.where(ep["reset_a"], 0.0), b.where(ep["reset_b"], 0.0))
    s["s_absorb"] = _clip01((p.p_max - price_z) / (2 * p.p_max)) + _clip01(close_loc)
    s["s_oi"] = 1.5 * _clip01(oi_change / p.oi_ref)
    s["s_ctx"] = ctx_agrees.astype(float)
    s["s_liq"] = 0.5 * _clip01(liq_share / p.liq_ref)
    for col, wgt in WEIGHTS.items():
        s[col] = s[col].clip(0.0, wgt)
    s["score"] = s[list(WEIGHTS)].sum(axis=1)
    return s
