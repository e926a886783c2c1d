"""The fast path of ``venue_csv.read_columns``: the C scanner ``_csvscan.c``, loaded with ctypes.

The scanner converts the wanted columns of plain rows in one pass over the inflated bytes and
refuses anything else (a quote, a wrong field count, an empty or unusual value): ``scan``
then returns None and the caller reads the file with pyarrow's general reader, which counts
malformed rows. So both paths give the same columns for every file the scanner takes
(``tests/unit/test_csv_scan.py`` compares them on real and generated files), and the scanner
only decides speed. It is built by ``pip install`` (an optional extension: without a C
compiler the install still succeeds and every file is read by pyarrow, logged once).

Speed: the Tardis and Bybit derivatives files' rows are long (87 and 120 bytes a trade);
pyarrow tokenises every field and builds Arrow text for ids and sides, the scanner only
converts the fields it is asked for (``bench/venue_import.py``, ``bench/RESULTS.md``).
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
from collections.abc import Sequence
from functools import cache
from typing import IO, Final

import numpy as np

log = logging.getLogger(__name__)

#: Column kinds the scanner converts (``_csvscan.c``); SKIP columns are only stepped over.
SKIP, INT, FLOAT, SIDE, UUID = range(5)
#: The scanner's ABI version this module speaks (``SF_SCAN_VERSION`` in ``_csvscan.c``).
VERSION: Final = 1
#: Inflated bytes handed to the scanner per call.
PIECE: Final = 4 << 20
_DTYPES: Final = {INT: np.int64, FLOAT: np.float64, SIDE: np.int8, UUID: np.int64}


@cache
def _lib() -> ctypes.CDLL | None:
    spec = importlib.util.find_spec("feeder.history._csvscan")
    origin = spec.origin if spec is not None else None
    try:
        if origin is None:
            raise OSError("the extension feeder.history._csvscan is not built")
        lib = ctypes.CDLL(origin)
        if lib.sf_scan_version() != VERSION:
            raise OSError(f"{origin} is another version: reinstall (pip install -e .)")
    except (OSError, AttributeError) as exc:
        log.info("venue CSVs are read by pyarrow alone (the C scanner is unavailable: %s)", exc)
        return None
    lib.sf_scan.restype = ctypes.c_int64
    lib.sf_scan.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int32,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_int64),
    ]
    return lib


def available() -> bool:
    """Whether the C scanner is built and loadable."""
    return _lib() is not None


def scan(
    fh: IO[bytes], kinds: Sequence[int], size_hint: int | None = None
) -> list[np.ndarray] | None:
    """The columns of a CSV stream (header line included) whose kind is not SKIP, in column
    order; ``kinds`` has one entry per header column, ``size_hint`` is the stream's length if
    known (the outputs are then allocated once). None: the scanner is unavailable or refused a
    row, and the caller must read the stream again with its general reader."""
    lib = _lib()
    if lib is None:
        return None
    ncols = len(kinds)
    wanted = [i for i, k in enumerate(kinds) if k != SKIP]
    kind_arr = np.asarray(kinds, np.int8)
    min_row = ncols + len(wanted)  # separators and newline, one byte per converted value
    cap = (size_hint // min_row + 1) if size_hint else PIECE // min_row + 1
    outs = [np.empty(cap, _DTYPES[kinds[i]]) for i in wanted]
    total = 0
    buf = np.empty(PIECE, np.uint8)
    fill, header_done, eof = 0, False, False
    consumed = ctypes.c_int64()
    ptrs = (ctypes.c_void_p * ncols)()
    while True:
        if not eof:
            n = fh.readinto(memoryview(buf)[fill:])  # type: ignore[attr-defined,arg-type]
            eof = not n
            fill += n or 0
        if eof and fill and buf[fill - 1] != 0x0A:  # a last line without its newline
            if fill == len(buf):
                buf = np.concatenate((buf, np.empty(1, np.uint8)))
            buf[fill] = 0x0A
            fill += 1
        start = 0
        if not header_done:
            nl = np.flatnonzero(buf[:fill] == 0x0A)
            if len(nl) == 0:
                if eof:
                    break
                buf = np.concatenate((buf, np.empty(len(buf), np.uint8)))
                continue
            start, header_done = int(nl[0]) + 1, True
        need = total + (fill - start) // min_row + 1
        if need > cap:  # the size hint was short (or absent): grow, keeping what is converted
            cap = max(need, 2 * cap)
            outs = [np.concatenate((o[:total], np.empty(cap - total, o.dtype))) for o in outs]
        for i, o in zip(wanted, outs, strict=True):
            ptrs[i] = o.ctypes.data + total * o.itemsize
        rows = lib.sf_scan(
            buf.ctypes.data + start,
            fill - start,
            ncols,
            kind_arr.ctypes.data,
            ctypes.addressof(ptrs),
            cap - total,
            ctypes.byref(consumed),
        )
        if rows < 0:
            return None
        total += rows
        used = start + consumed.value
        rest = fill - used
        if eof and rest == 0:
            break
        if used == 0:
            if eof:  # cannot happen (the last line ends in a newline): refuse, never guess
                return None
            if fill == len(buf):  # a line longer than the buffer
                buf = np.concatenate((buf, np.empty(len(buf), np.uint8)))
            continue
        buf[:rest] = buf[used:fill].copy()
        fill = rest
    return [o[:total] for o in outs]
