"""The method's parameters (FreqTrade hyperopts them; these are the defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MethodParams:
    """Windows are in candles of the strategy timeframe; thresholds are dimensionless.

    Attributes:
        n: short window (flows, price move).
        m: long window (z-score baselines, volume baseline); m >> n.
        z_div: |gap_z| a divergence needs.
        p_max: largest price_z (in the divergence direction) a divergence may have: price has
            not already run.
        reset_window: candles after an episode starts within which a reset must come.
        reset_frac: how far |gap_z| must fall below the episode peak for a type-A reset.
        perp_margin: rise of the perp flow above its episode trough (toward spot) that counts
            as perp turning.
        vol_mult: volume over its rolling mean needed by a type-B (breakout) reset.
        min_score: score (0..10) an entry needs.
        exit_flow: both short flows beyond this against the position: flow-reversal exit.
        ctx_window: window, in higher-timeframe candles, of the context flows.
        oi_ref: OI rise over an episode that earns the full open-interest part (0.02 = 2 %).
        liq_ref: liquidation share of perp volume that earns the full liquidation part.
    """

    n: int = 12
    m: int = 288
    z_div: float = 1.5
    p_max: float = 1.0
    reset_window: int = 24
    reset_frac: float = 0.3
    perp_margin: float = 0.1
    vol_mult: float = 1.5
    min_score: float = 6.0
    exit_flow: float = 0.1
    ctx_window: int = 6
    oi_ref: float = 0.02
    liq_ref: float = 0.005

    def __post_init__(self) -> None:
        for name in ("n", "m", "reset_window", "ctx_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.m <= self.n:
            raise ValueError(f"m ({self.m}) must be larger than n ({self.n})")
        if not 0 < self.reset_frac < 1:
            raise ValueError(f"reset_frac must be in (0, 1), got {self.reset_frac}")

    @property
    def warmup(self) -> int:
        """Candles before the first signal can be valid (base timeframe only)."""
        return self.m + self.n + self.reset_window
