"""What a Redis stream entry and a market's live state hash hold, both ways: bars to stream
entries and intervals to JSON (publish), entries and state hashes back to frames (read), where
anything that is not a bar of the stream's market is skipped and counted, never folded in.
The keys and the stream protocol are in ``feeder.stores.redis_stream``."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from feeder.ingest.models import BAR_FIELDS

log = logging.getLogger(__name__)

#: Fields of a stream entry; ``wm`` is optional (entries of older feeders lack it).
ENTRY_FIELDS = frozenset({"market", "kind", "time", *BAR_FIELDS})
OPTIONAL_FIELDS = frozenset({"wm"})


def encode_bars(
    market: str, kind: str, bars: pd.DataFrame, watermark: int | None = None
) -> list[dict[str, str]]:
    cols = {f: bars[f].to_numpy(np.float64).tolist() for f in BAR_FIELDS}
    times = bars["time"].to_numpy(np.int64).tolist()
    wm = {} if watermark is None else {"wm": str(int(watermark))}
    return [
        {
            "market": market,
            "kind": kind,
            "time": str(t),
            **{f: repr(cols[f][i]) for f in BAR_FIELDS},
            **wm,
        }
        for i, t in enumerate(times)
    ]


def encode_intervals(iv: Sequence[Sequence[int]] | np.ndarray) -> str:
    return json.dumps([[int(s), int(e)] for s, e in iv])


@dataclass
class LiveState:
    """A market's published live state (see the module docstring)."""

    watermark: int
    coverage: np.ndarray  # (n, 2) int64 [start, end)
    lost: np.ndarray  # (n, 2) int64 [start, end)


@dataclass
class BadEntries:
    """Counts what was skipped on read, by reason; each reason is logged once."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, reason: str, what: str, n: int = 1) -> None:
        if reason not in self.counts:
            log.warning("Redis: skipped %s (%s); counted as %r, logged once", what, reason, reason)
        self.counts[reason] += n


def empty_frame() -> pd.DataFrame:
    cols = {
        "market": pd.Series(dtype=str),
        "kind": pd.Series(dtype=str),
        "time": pd.Series(dtype="int64"),
        "wm": pd.Series(dtype="int64"),
    }
    cols.update({f: pd.Series(dtype="float64") for f in BAR_FIELDS})
    return pd.DataFrame(cols)


def parse_int(v: str) -> int | None:
    try:
        return int(v)
    except ValueError:
        return None


def decode_entries(
    entries: list[Mapping[bytes | str, bytes | str]],
    market: str | None = None,
    bad: BadEntries | None = None,
) -> pd.DataFrame:
    """Stream entries to a bar frame (market, kind, time, wm, fields); last entry per key wins.

    An entry that is not a valid bar (of ``market``, when given) is skipped and counted in
    ``bad``: missing or foreign fields, a non-integer time or wm, a non-finite value, a
    different market.
    """
    bad = bad if bad is not None else BadEntries()
    rows = []
    for e in entries:
        try:
            row = {as_str(k): as_str(v) for k, v in e.items()}
        except UnicodeDecodeError:
            bad.add("not_utf8", "an entry that is not UTF-8")
            continue
        keys = set(row)
        if not ENTRY_FIELDS <= keys or keys - ENTRY_FIELDS - OPTIONAL_FIELDS:
            bad.add("fields", f"an entry with fields {sorted(keys)[:20]}")
            continue
        if market is not None and row["market"] != market:
            bad.add("market", f"an entry naming {row['market'][:80]!r} on {market}'s stream")
            continue
        t = parse_int(row["time"])
        wm = parse_int(row.get("wm", "0"))
        if t is None or wm is None:
            bad.add("time", "an entry whose time or wm is not an integer")
            continue
        try:
            vals = [float(row[f]) for f in BAR_FIELDS]
        except ValueError:
            bad.add("value", "an entry with a non-numeric value")
            continue
        if not all(np.isfinite(vals)):
            bad.add("non_finite", "an entry with a NaN or infinite value")
            continue
        rows.append((row["market"], row["kind"], t, wm, *vals))
    if not rows:
        return empty_frame()
    df = pd.DataFrame(rows, columns=["market", "kind", "time", "wm", *BAR_FIELDS])
    df = df.astype({"time": np.int64, "wm": np.int64, **dict.fromkeys(BAR_FIELDS, np.float64)})
    return df.drop_duplicates(["market", "time"], keep="last").reset_index(drop=True)


def decode_intervals(raw: str) -> np.ndarray:
    """``"[[s, e], ...]"`` -> (n, 2) int64; refuses anything else (ValueError)."""
    val = json.loads(raw)
    if not isinstance(val, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(type(x) is int for x in p) for p in val
    ):
        raise ValueError("not a list of [start, end] integer pairs")
    return np.asarray(val, dtype=np.int64).reshape(-1, 2)


def decode_state(raw: Mapping[bytes | str, bytes | str], bad: BadEntries) -> LiveState | None:
    """A state hash, or None (counted) when it is missing or malformed."""
    if not raw:
        return None
    try:
        row = {as_str(k): as_str(v) for k, v in raw.items()}
        return LiveState(
            int(row["watermark"]),
            decode_intervals(row.get("coverage", "[]")),
            decode_intervals(row.get("lost", "[]")),
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        bad.add("state", "a malformed live state (watermark, coverage, lost)")
        return None


def as_str(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
