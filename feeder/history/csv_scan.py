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
from collections.abc import Iterator, Sequence
from functools import cache
from typing import IO, Final

import numpy as np

log = logging.getLogger(__name__)

#: Column kinds the scanner converts (``_csvscan.c``); SKIP columns are only stepped over.
SKIP, INT, FLOAT, SIDE, UUID, BOOL = range(6)
#: The scanner's ABI version this module speaks (``SF_SCAN_VERSION`` in ``_csvscan.c``).
VERSION: Final = 2
#: Inflated bytes handed to the scanner per call.
PIECE: Final = 4 << 20
_DTYPES: Final = {INT: np.int64, FLOAT: np.float64, SIDE: np.int8, UUID: np.int64, BOOL: np.bool_}


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
        log.warning(
            "trade CSVs are read by pyarrow alone, 1.3-1.6x slower: the C scanner is "
            "unavailable (%s); install a C compiler and reinstall (pip install -e .) for it",
            exc,
        )
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


class Refused(Exception):
    """The scanner met a row (or a header) it does not convert."""


class _Stream:
    """A CSV stream fed to the C scanner piece by piece: whole lines only, the header skipped."""

    def __init__(self, lib: ctypes.CDLL, fh: IO[bytes], kinds: Sequence[int], header: bool) -> None:
        self.lib, self.fh = lib, fh
        self.ncols = len(kinds)
        self.wanted = [i for i, k in enumerate(kinds) if k != SKIP]
        self.dtypes = [_DTYPES[kinds[i]] for i in self.wanted]
        self.kinds = np.asarray(kinds, np.int8)
        self.min_row = self.ncols + len(self.wanted)  # separators, newline, a byte per value
        self.buf = np.empty(PIECE, np.uint8)
        self.fill, self.start = 0, 0
        self.header_done, self.eof = not header, False
        self._consumed = ctypes.c_int64()
        self._ptrs = (ctypes.c_void_p * self.ncols)()

    def pending(self) -> int | None:
        """Read on; an upper bound of the rows the bytes held now can make, None at the end."""
        while True:
            if self.fill == len(self.buf):
                if self.header_done and bool((self.buf[self.start : self.fill] == 0x0A).any()):
                    return (self.fill - self.start) // self.min_row + 1  # lines not yet taken
                self.buf = np.concatenate(
                    (self.buf, np.empty(len(self.buf), np.uint8))
                )  # a long line
            if not self.eof:
                n = self.fh.readinto(memoryview(self.buf)[self.fill :])  # type: ignore[attr-defined,arg-type]
                self.eof = not n
                self.fill += n or 0
            if self.eof and self.fill and self.buf[self.fill - 1] != 0x0A:  # no last newline
                if self.fill == len(self.buf):
                    self.buf = np.concatenate((self.buf, np.empty(1, np.uint8)))
                self.buf[self.fill] = 0x0A
                self.fill += 1
            if not self.header_done:
                nl = np.flatnonzero(self.buf[: self.fill] == 0x0A)
                if len(nl) == 0:
                    if self.eof:
                        return None
                    continue
                if not _plain_header(bytes(self.buf[: int(nl[0])])):
                    raise Refused
                self.start, self.header_done = int(nl[0]) + 1, True
            if self.fill > self.start:
                return (self.fill - self.start) // self.min_row + 1
            if self.eof:
                return None

    def convert(self, outs: Sequence[np.ndarray], offset: int) -> int:
        """Convert the whole lines held into ``outs`` (one per wanted column) from row
        ``offset``; the rows written. Raises ``Refused``."""
        for i, o in zip(self.wanted, outs, strict=True):
            self._ptrs[i] = o.ctypes.data + offset * o.itemsize
        rows = int(
            self.lib.sf_scan(
                self.buf.ctypes.data + self.start,
                self.fill - self.start,
                self.ncols,
                self.kinds.ctypes.data,
                ctypes.addressof(self._ptrs),
                len(outs[0]) - offset,
                ctypes.byref(self._consumed),
            )
        )
        if rows < 0:
            raise Refused
        used = self.start + self._consumed.value
        rest = self.fill - used
        if used:
            self.buf[:rest] = self.buf[used : self.fill].copy()
        elif self.eof:  # cannot happen (the last line ends in a newline): refuse, never guess
            raise Refused
        self.fill, self.start = rest, 0
        return rows


def _plain_header(line: bytes) -> bool:
    """A header line pyarrow splits as ``split(",")`` does: no quotes, no CR but a final one,
    no spaces around a name (``venue_csv`` matches names stripped, pyarrow does not strip)."""
    line = line.removesuffix(b"\r")
    if b'"' in line or b"\r" in line:
        return False
    return all(name == name.strip() for name in line.split(b","))


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
    s = _Stream(lib, fh, kinds, header=True)
    cap = (size_hint // s.min_row + 1) if size_hint else PIECE // s.min_row + 1
    total = 0
    try:
        outs: list[np.ndarray] = [np.empty(cap, d) for d in s.dtypes]
        while (bound := s.pending()) is not None:
            if total + bound > cap:  # the size hint was short (or absent): grow, keep rows
                cap = max(total + bound, 2 * cap)
                outs = [np.concatenate((o[:total], np.empty(cap - total, o.dtype))) for o in outs]
            total += s.convert(outs, total)
    except (Refused, MemoryError):
        return None
    return [o[:total] for o in outs]


def iter_scan(
    fh: IO[bytes], kinds: Sequence[int], header: bool, batch_rows: int | None = None
) -> Iterator[list[np.ndarray]]:
    """The wanted columns in batches of ``batch_rows`` rows (the last one shorter; default: as
    the stream's pieces come), memory bounded by the batch, for a stream with or without a
    header line. Raises ``Refused`` at a row the scanner does not take; the caller reads on with
    its general reader after the rows of the batches it was given."""
    lib = _lib()
    if lib is None:
        raise Refused
    s = _Stream(lib, fh, kinds, header)
    outs: list[np.ndarray] | None = None
    n = 0
    while (bound := s.pending()) is not None:
        if outs is None:
            outs = [np.empty(batch_rows or bound, d) for d in s.dtypes]
        n += s.convert(outs, n)
        if n and (batch_rows is None or n == batch_rows):
            yield outs if n == len(outs[0]) else [o[:n] for o in outs]
            outs, n = None, 0
    if outs is not None and n:
        yield [o[:n] for o in outs]
