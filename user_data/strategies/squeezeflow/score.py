"""Phase 4: the 0-10 score and its six parts (weights sum to 10; each part clipped)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from squeezeflow.params import MethodParams

Array = npt.NDArray[np.float64]
#: Named columns of one direction (floats and booleans), as numpy arrays.
Columns = dict[str, npt.NDArray[Any]]

WEIGHTS = {
    "s_div": 3.0,
    "s_reset": 2.0,
    "s_absorb": 2.0,
    "s_oi": 1.5,
    "s_ctx": 1.0,
    "s_liq": 0.5,
}


def _clip01(values: Array) -> Array:
    """Clipped to [0, 1]; NaN (a missing input) scores 0."""
    clipped = np.clip(values, 0.0, 1.0)
    return np.where(np.isnan(clipped), 0.0, clipped)


def score(
    episode: Columns,
    price_z: Array,
    close_loc: Array,
    oi_change: Array,
    ctx_agrees: npt.NDArray[np.bool_],
    liq_share: Array,
    params: MethodParams,
) -> dict[str, Array]:
    """Score parts and ``score`` for one direction (directional inputs, see ``episodes``).

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
    reset_a_quality = _clip01(episode["conv"] / (2 * params.reset_frac)) + episode["perp_turned"]
    reset_b_quality = 1.0 + _clip01((episode["breakout"] - params.vol_mult) / params.vol_mult)
    parts = {
        "s_div": 3.0 * _clip01((episode["ep_peak"] - params.z_div) / (2 * params.z_div)),
        "s_reset": np.maximum(
            np.where(episode["reset_a"], reset_a_quality, 0.0),
            np.where(episode["reset_b"], reset_b_quality, 0.0),
        ),
        "s_absorb": _clip01((params.p_max - price_z) / (2 * params.p_max)) + _clip01(close_loc),
        "s_oi": 1.5 * _clip01(oi_change / params.oi_ref),
        "s_ctx": ctx_agrees.astype(float),
        "s_liq": 0.5 * _clip01(liq_share / params.liq_ref),
    }
    total = np.zeros(len(price_z))
    for name, weight in WEIGHTS.items():
        parts[name] = np.clip(parts[name], 0.0, weight)
        total = total + parts[name]
    parts["score"] = total
    return parts
