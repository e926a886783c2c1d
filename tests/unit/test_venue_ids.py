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
