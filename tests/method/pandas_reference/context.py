"""Phase 1: context from higher timeframes, built from the same base candles, no lookahead.

A higher-timeframe candle opening at H covers base candles [H, H + htf). Its value becomes
visible on the base candle opening at H + htf - tf (the one that closes when the higher candle
closes), exactly FreqTrade's ``merge_informative_pair`` semantics. A higher candle missing any
base candle (or holding an incomplete one) has no value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def htf_context(
    dates: pd.Series, d: pd.DataFrame, timeframe_s: int, htf_s: int, window: int
) -> pd.Series:
    """+1 / -1 / 0 per base candle for one higher timeframe ``htf_s`` (seconds)."""
    if htf_s <= timeframe_s or htf_s % timeframe_s:
        return pd.Series(0.0, index=d.index)
    per = htf_s // timeframe_s
    t = pd.DatetimeIndex(dates)
    key = t.floor(f"{htf_s}s")
    cols = ["spot_delta", "spot_vol", "perp_delta", "perp_vol"]
    frame = d[cols].set_axis(t)
    grp = frame.groupby(key)
    sums = grp.sum(min_count=1)
    full = (grp.count().min(axis=1) == per) & sums.notna().all(axis=1)
    sums = sums.where(full)
    spot = sums["spot_delta"].rolling(window).sum() / sums["spot_vol"].rolling(window).sum().where(
        lambda v: v != 0
    )
    perp = sums["perp_delta"].rolling(window).sum() / sums["perp_vol"].rolling(window).sum().where(
        lambda v: v != 0
    )
    gap = spot - perp
    rising = spot >= spot.shift(1)
    falling = spot <= spot.shift(1)
    ctx = pd.Series(
        np.select([(gap > 0) & rising, (gap < 0) & falling], [1.0, -1.0], 0.0), index=sums.index
    )
    ctx[gap.isna()] = np.nan
    visible_at = ctx.index + pd.Timedelta(seconds=htf_s - timeframe_s)
    ctx = pd.Series(ctx.to_numpy(), index=visible_at)
    # A base candle sees the newest higher candle already closed at its own close.
    merged = ctx.reindex(t, method="ffill")
    return pd.Series(merged.fillna(0.0).to_numpy(), index=d.index)


def context(
    dates: pd.Series, d: pd.DataFrame, timeframe_s: int, htfs_s: tuple[int, ...], window: int
) -> pd.Series:
    """+1 when every usable higher timeframe says +1, -1 when every one says -1, else 0."""
    usable = [h for h in htfs_s if h > timeframe_s and h % timeframe_s == 0]
    if not usable:
        return pd.Series(0.0, index=d.index)
    parts = np.stack([htf_context(dates, d, timeframe_s, h, window).to_numpy() for h in usable])
    out = np.where((parts == 1).all(axis=0), 1.0, np.where((parts == -1).all(axis=0), -1.0, 0.0))
    return pd.Series(out, index=d.index)
