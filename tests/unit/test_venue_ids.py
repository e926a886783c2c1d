"""UUID trade ids: the vectorised conversion equals the former nibble loop."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.history.venue_csv import ids_from_text


def _nibbles_loop(nib: np.ndarray) -> np.ndarray:
    """The former nibble-by-nibble conversion (the reference)."""
    acc = np.zeros(nib.shape[0], np.uint64)
    for j in range(16):
        acc = (acc << np.uint64(4)) | nib[:, j].astype(np.uint64)
    return (acc & np.uint64(0x7FFF_FFFF_FFFF_FFFF)).astype(np.int64)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.uuids().map(str), min_size=1, max_size=200), st.booleans())
def test_uuid_ids_equal_the_nibble_by_nibble_conversion(uuids, upper):
    """Trade ids of UUIDs (packed bytewise) equal the former per-nibble loop's, in both cases."""
    from feeder.history.venue_csv import _HEX, _UUID_HEX16

    text = [u.upper() if upper else u for u in uuids]
    raw = np.frombuffer("".join(text).encode(), np.uint8).reshape(len(text), 36)
    expected = _nibbles_loop(_HEX[raw[:, _UUID_HEX16]])
    got = ids_from_text(pa.chunked_array([pa.array(text)]))
    assert got.tolist() == expected.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(0, 5), max_size=60))
def test_duplicate_ids_keep_the_first_row_like_a_stable_unique(ids):
    """The duplicate check (a sort, then a hash only when some id repeats) keeps exactly each
    id's first row, as ``np.unique(return_index=True)`` does."""
    from feeder.history.venue_csv import dedup_to_row_ids

    arr = np.array(ids, np.int64)
    keep, dropped = dedup_to_row_ids(arr)
    expected = np.zeros(len(arr), np.bool_)
    if len(arr):
        expected[np.unique(arr, return_index=True)[1]] = True
    assert keep.tolist() == expected.tolist()
    assert dropped == len(arr) - int(expected.sum())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["buy", "sell", "Buy", "SELL", "bid", "", None]), max_size=12),
        max_size=4,
    ),
    st.booleans(),
)
def test_taker_sides_per_chunk_equal_a_row_by_row_reading(chunks, as_dictionary):
    """Sides are decided per chunk (each CSV block has its own dictionary): the result equals
    reading every row on its own, nulls and unknown words invalid, case ignored."""
    from feeder.history.venue_csv import TEXT, sides_to_seller

    typ = TEXT if as_dictionary else pa.string()
    col = pa.chunked_array([pa.array(c, pa.string()).cast(typ) for c in chunks], typ)
    seller, valid = sides_to_seller(col)
    rows = [v for c in chunks for v in c]
    assert seller.tolist() == [(v or "").lower() == "sell" for v in rows]
    assert valid.tolist() == [(v or "").lower() in ("buy", "sell") for v in rows]
