"""Coverage: which time a store has complete data for, per market, as half-open second intervals.

Quiet seconds inside covered time are real zeros (nobody traded). Time outside coverage (before
collection, during an outage that could not be backfilled) is a gap: candles touching it are
flagged incomplete, never filled with zeros.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Intervals = npt.NDArray[np.int64]  # shape (n, 2): [start, end) epoch seconds, sorted, disjoint


def as_intervals(pairs: object) -> Intervals:
    arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return arr


def merge_intervals(intervals: Intervals) -> Intervals:
    """Union of intervals: sorted, disjoint, touching intervals joined."""
    iv = as_intervals(intervals)
    iv = iv[iv[:, 1] > iv[:, 0]]
    if len(iv) <= 1:
        return iv.copy()
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    ends = np.maximum.accumulate(iv[:, 1])
    # A new run starts where an interval begins after everything before it has ended.
    new_run = np.concatenate(([True], iv[1:, 0] > ends[:-1]))
    starts_idx = np.flatnonzero(new_run)
    run_ends = np.concatenate((starts_idx[1:], [len(iv)])) - 1
    return np.stack([iv[starts_idx, 0], ends[run_ends]], axis=1)


def subtract_intervals(a: Intervals, b: Intervals) -> Intervals:
    """Parts of ``a`` not covered by ``b`` (both merged)."""
    out: list[tuple[int, int]] = []
    b = merge_intervals(b)
    for s, e in merge_intervals(a):
        cur = int(s)
        for bs, be in b:
            if be <= cur or bs >= e:
                continue
            if bs > cur:
                out.append((cur, int(bs)))
            cur = max(cur, int(be))
            if cur >= e:
                break
        if cur < e:
            out.append((cur, int(e)))
    return as_intervals(out)


def covered(
    starts: npt.NDArray[np.int64], length: int, intervals: Intervals
) -> npt.NDArray[np.bool_]:
    """For each candle ``[s, s + length)``: is it inside one covered interval?"""
    iv = merge_intervals(intervals)
    if len(iv) == 0:
        return np.zeros(len(starts), np.bool_)
    idx = np.searchsorted(iv[:, 0], starts, side="right") - 1
    ok = idx >= 0
    safe = np.where(ok, idx, 0)
    covered: npt.NDArray[np.bool_] = ok & (iv[safe, 1] >= starts + length)
    return covered


def in_intervals(t: np.ndarray, iv: Intervals) -> np.ndarray:
    """Which of the times ``t`` lie inside one of the sorted, disjoint ``iv``."""
    i = np.searchsorted(iv[:, 0], t, side="right") - 1
    inside: np.ndarray = (i >= 0) & (t < iv[np.maximum(i, 0), 1])
    return inside
