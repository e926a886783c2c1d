"""Reading other venues' CSV trade files into raw trade columns (shared by the venue modules).

Typed CSV columns with malformed rows counted, taker sides, trade ids (integers, UUIDs, other
text), the file's day window and ``taker_day``, the day's rows a venue module returns.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from feeder.history import csv_scan
from feeder.history.archive import ArchiveError
from feeder.history.inflate import open_gzip, open_zip_member
from feeder.history.venue_files import DAY, RawDay, VenueFile
from feeder.ingest.normalise import timestamps_to_ns
from feeder.live.markets import trade_id_int

log = logging.getLogger(__name__)


#: Column type of a taker side (``buy``/``sell`` in any case; other text is not a side).
TEXT: Final = pa.dictionary(pa.int32(), pa.string())
#: Column type of trade ids: int64 when the first row's id is an integer, else text.
AUTO_ID: Final = pa.large_string()


def open_member(path: Path) -> IO[bytes]:
    """The CSV bytes of a ``.zip`` (its single CSV member), ``.csv.gz`` or ``.csv``."""
    name = path.name.lower()
    if name.endswith(".zip"):
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise ArchiveError(f"{path}: not a valid zip file ({exc})") from exc
        members = [i for i in zf.infolist() if not i.is_dir()]
        if len(members) != 1:
            raise ArchiveError(
                f"{path}: expected one CSV member, found {[i.filename for i in members]}"
            )
        try:
            return open_zip_member(zf, members[0])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ArchiveError(f"{path}: corrupt zip member ({exc})") from exc
    if name.endswith(".gz"):
        return open_gzip(path)
    return path.open("rb")


def _head(path: Path) -> tuple[list[str], list[str]]:
    """A CSV's header names and its first data row's values (empty without a data row)."""
    with open_member(path) as fh:
        head = fh.read(1 << 16)
    lines = head.split(b"\n", 2)
    first = lines[0].rstrip(b"\r").removeprefix(b"\xef\xbb\xbf")
    header = [h.strip().strip('"') for h in first.decode("utf-8", "replace").split(",")]
    has_row = len(lines) > 1 and lines[1].strip()
    row1 = lines[1].rstrip(b"\r").decode("utf-8", "replace").split(",") if has_row else []
    return header, row1


def first_row(path: Path) -> dict[str, str]:
    """The first data row of a CSV with a header line, by column name (empty for no rows)."""
    header, row1 = _head(path)
    return {n: v.strip() for n, v in zip(header, row1, strict=False)}


def inflated_size(path: Path) -> int | None:
    """The CSV's length once inflated, if the file says (a zip member's size, a one-member
    gzip's ISIZE, a plain file's size): a hint for allocation, never trusted for correctness,
    and at most 32x the file (a lying zip directory must not allocate petabytes)."""
    name = path.name.lower()
    try:
        size = path.stat().st_size
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                hint = sum(i.file_size for i in zf.infolist())
        elif name.endswith(".gz"):
            with path.open("rb") as fh:
                fh.seek(-4, 2)
                hint = int.from_bytes(fh.read(4), "little")
        else:
            return size
    except (OSError, zipfile.BadZipFile):
        return None
    return min(hint, 32 * size) or None


def _resolve(
    path: Path, columns: dict[str, pa.DataType], aliases: dict[str, tuple[str, ...]] | None
) -> tuple[list[str], dict[str, str], dict[str, pa.DataType], bool]:
    """The header, the header name of each wanted column (``rename``: header -> wanted),
    each wanted column's type (``AUTO_ID`` decided by the first row), and whether the line
    after the header is a row."""
    header, row1 = _head(path)
    lower = [h.lower() for h in header]
    rename: dict[str, str] = {}
    types = dict(columns)
    for want in columns:
        names = (want, *((aliases or {}).get(want, ())))
        hit = next((header[lower.index(n.lower())] for n in names if n.lower() in lower), None)
        if hit is None:
            raise ArchiveError(
                f"{path}: header {header!r} has no column {want!r} (expected {names})"
            )
        rename[hit] = want
        if types[want] == AUTO_ID:  # integer ids read as integers, others as text
            pos = header.index(hit)
            digits = pos < len(row1) and row1[pos].strip().isdigit()
            types[want] = pa.int64() if digits else pa.string()
    return header, rename, types, bool(row1)


def _scan_kinds(
    header: list[str],
    rename: dict[str, str],
    types: dict[str, pa.DataType],
    columns: dict[str, pa.DataType],
) -> list[int] | None:
    """The C scanner's kind of every header column, or None if a wanted type is not one it
    converts (integers, floats, taker sides, text ids)."""
    kinds = [csv_scan.SKIP] * len(header)
    for h, want in rename.items():
        t, asked = types[want], columns[want]
        if t == pa.int64():
            kind = csv_scan.INT
        elif t == pa.float64():
            kind = csv_scan.FLOAT
        elif asked == TEXT:
            kind = csv_scan.SIDE
        elif asked == AUTO_ID:  # text ids: UUIDs (anything else is refused by the scanner)
            kind = csv_scan.UUID
        else:
            return None
        kinds[header.index(h)] = kind
    return kinds


def _scanned(
    path: Path, columns: dict[str, pa.DataType], aliases: dict[str, tuple[str, ...]] | None
) -> dict[str, pa.ChunkedArray] | None:
    """The wanted columns through the C scanner, or None (see ``feeder.history.csv_scan``).
    Sides come as a dictionary of ``buy``/``sell``/``other``; text ids as their int64."""
    if not csv_scan.available():
        return None
    header, rename, types, has_row = _resolve(path, columns, aliases)
    kinds = _scan_kinds(header, rename, types, columns)
    if kinds is None or (AUTO_ID in columns.values() and not has_row):
        return None  # (text ids typed by no first row: pyarrow's ids_from_text decides)
    with open_member(path) as fh:
        arrays = csv_scan.scan(fh, kinds, inflated_size(path))
    if arrays is None:
        return None
    order = [rename[header[i]] for i, k in enumerate(kinds) if k != csv_scan.SKIP]
    out: dict[str, pa.ChunkedArray] = {}
    for want, arr in zip(order, arrays, strict=True):
        if columns[want] == TEXT:
            col: pa.Array = pa.DictionaryArray.from_arrays(pa.array(arr), _SIDES)
        else:
            col = pa.array(arr)
        out[want] = pa.chunked_array([col])
    return {k: out[k] for k in columns}


_SIDES: Final = pa.array(["buy", "sell", "other"])


def read_columns(
    path: Path, columns: dict[str, pa.DataType], aliases: dict[str, tuple[str, ...]] | None = None
) -> tuple[dict[str, pa.ChunkedArray], int]:
    """Read the named columns of a CSV with a header line, typed; returns columns and the count
    of malformed rows skipped (wrong field count, or a value that does not parse, or empty).

    ``aliases`` maps a wanted column to other header spellings accepted for it. A file of
    plain rows is converted by the C scanner (``csv_scan``), any other by pyarrow, with the
    same columns for every file the scanner takes.
    """
    bad = 0

    def on_invalid(_row: pa_csv.InvalidRow) -> str:
        nonlocal bad
        bad += 1
        return "skip"

    def _read(types: dict[str, pa.DataType]) -> pa.Table:
        _, rename, resolved, _ = _resolve(path, types, aliases)
        try:
            with open_member(path) as fh:
                table = pa_csv.read_csv(
                    fh,
                    read_options=pa_csv.ReadOptions(use_threads=True, block_size=4 << 20),
                    parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid),
                    convert_options=pa_csv.ConvertOptions(
                        include_columns=list(rename),
                        column_types={h: resolved[w] for h, w in rename.items()},
                        null_values=[""],
                        strings_can_be_null=True,
                    ),
                )
        except pa.ArrowInvalid as exc:  # a header without a newline after it: no rows
            if "Empty CSV file" not in str(exc):
                raise
            table = pa.table({h: pa.array([], resolved[w]) for h, w in rename.items()})
        return table.rename_columns([rename[c] for c in table.column_names])

    try:
        fast = _scanned(path, columns, aliases)
        if fast is not None:
            return fast, 0
        table = _read(columns)
    except pa.ArrowInvalid:
        # A value that does not parse: read as text, turn unparseable values into nulls.
        bad = 0
        table = _read({k: pa.string() for k in columns})
        out = {}
        for k, t in columns.items():
            col = table.column(k)
            text = t == AUTO_ID or pa.types.is_string(t) or pa.types.is_dictionary(t)
            out[k] = col if text else _cast_or_null(col, t)
        table = pa.table(out)
    except (zipfile.BadZipFile, zlib.error) as exc:
        raise ArchiveError(f"{path}: corrupt zip member ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise ArchiveError(f"{path}: cannot read ({exc})") from exc
    ok = None
    for k in columns:
        v = pc.is_valid(table.column(k))
        ok = v if ok is None else pc.and_(ok, v)
    n_bad = table.num_rows - (pc.sum(ok).as_py() or 0) if ok is not None else 0
    if n_bad:
        table = table.filter(ok)
        bad += n_bad
    return {k: table.column(k) for k in columns}, bad


def _cast_or_null(col: pa.ChunkedArray, t: pa.DataType) -> pa.Array:
    vals = pd.to_numeric(pd.Series(col.to_pylist(), dtype="object"), errors="coerce")
    if pa.types.is_integer(t):
        frac = vals.notna() & (vals != np.floor(vals.fillna(0)))
        vals = vals.mask(frac)
        return pa.array(vals.astype("Int64"), type=t, from_pandas=True)
    return pa.array(vals.to_numpy(np.float64), type=t, from_pandas=True)


def sides_to_seller(side: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``is_buyer_maker`` (the taker sold) from a taker-side column, and a mask of valid sides.
    A dictionary column (``TEXT``) is decided once per distinct value of each chunk (chunks of
    one CSV read carry their own dictionaries: no unification, no combined copy)."""
    chunks = side.chunks if isinstance(side, pa.ChunkedArray) else [side]
    if not chunks:
        return np.zeros(0, np.bool_), np.zeros(0, np.bool_)
    parts = [_chunk_sides(c) for c in chunks]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _chunk_sides(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    if pa.types.is_dictionary(arr.type):
        low = pc.utf8_lower(arr.dictionary)
        sell_v = np.asarray(pc.equal(low, "sell").to_numpy(zero_copy_only=False), np.bool_)
        buy_v = np.asarray(pc.equal(low, "buy").to_numpy(zero_copy_only=False), np.bool_)
        if len(sell_v) == 0:
            return np.zeros(len(arr), np.bool_), np.zeros(len(arr), np.bool_)
        if arr.null_count:
            valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), np.bool_)
            idx = np.asarray(pc.fill_null(arr.indices, 0).to_numpy(zero_copy_only=False))
            return sell_v[idx] & valid, (sell_v | buy_v)[idx] & valid
        idx = np.asarray(arr.indices.to_numpy(zero_copy_only=False))
        return sell_v[idx], (sell_v | buy_v)[idx]
    low = pc.utf8_lower(arr)
    sell = np.asarray(pc.fill_null(pc.equal(low, "sell"), False).to_numpy(zero_copy_only=False))
    buy = np.asarray(pc.fill_null(pc.equal(low, "buy"), False).to_numpy(zero_copy_only=False))
    return sell.astype(np.bool_), (sell | buy).astype(np.bool_)


_HEX = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


#: Positions of the first 16 hex digits in a canonical UUID ``8-4-4-4-12``.
_UUID_HEX16 = np.r_[0:8, 9:13, 14:18]


def _nibbles_to_int(nib: np.ndarray) -> np.ndarray:
    """Rows of 16 hex nibbles -> int64 (the first 63 bits): nibbles packed into 8 bytes, read
    as one big-endian integer."""
    packed = np.ascontiguousarray((nib[:, 0::2] << 4) | nib[:, 1::2], np.uint8)
    acc = packed.view(">u8").ravel().astype(np.uint64)
    return (acc & np.uint64(0x7FFF_FFFF_FFFF_FFFF)).astype(np.int64)


def dedup_to_row_ids(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Keep each id's first row; return the kept rows' mask and the number dropped. Callers
    then number rows by file order: the venue's match order breaks ties in a second, not the
    order of hashed ids."""
    if len(ids) < 2:
        return np.ones(len(ids), np.bool_), 0
    ordered = np.sort(ids)  # no two neighbours equal (the usual file): no duplicates at all
    if not (ordered[1:] == ordered[:-1]).any():
        return np.ones(len(ids), np.bool_), 0
    keep = ~pd.Series(ids).duplicated(keep="first").to_numpy()
    return keep, len(ids) - int(keep.sum())


def ids_from_text(col: pa.ChunkedArray) -> np.ndarray:
    """Trade ids as int64: integers as they are; UUIDs by their first 63 bits (vectorised);
    anything else by the live feeder's stable hash (``trade_id_int``)."""
    if isinstance(col, pa.ChunkedArray):
        arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    else:
        arr = col
    n = len(arr)
    if n == 0:
        return np.empty(0, np.int64)
    if pa.types.is_integer(arr.type):
        return np.asarray(arr.to_numpy(zero_copy_only=False), np.int64)
    if str(arr[0].as_py()).strip().isdigit():
        try:
            return np.asarray(pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False), np.int64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if isinstance(arr, pa.StringArray) and arr.null_count == 0:  # canonical UUIDs: no kernels
        offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + n + 1]
        if offsets[-1] - offsets[0] == 36 * n and bool(np.all(np.diff(offsets) == 36)):
            raw36 = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
            nib = _HEX[raw36.reshape(n, 36)[:, _UUID_HEX16]]
            if not (nib == 255).any():
                return _nibbles_to_int(nib)
    hexed = pc.utf8_slice_codeunits(pc.replace_substring(arr, "-", ""), 0, 16)
    if isinstance(hexed, pa.ChunkedArray):
        hexed = hexed.combine_chunks()
    lens = pc.utf8_length(hexed)
    if pc.min(lens).as_py() == 16 and hexed.null_count == 0:
        offsets = np.frombuffer(hexed.buffers()[1], np.int32)[hexed.offset : hexed.offset + n + 1]
        raw = np.frombuffer(hexed.buffers()[2], np.uint8)[offsets[0] : offsets[0] + 16 * n]
        nib = _HEX[raw.reshape(n, 16)]
        if not (nib == 255).any():
            return _nibbles_to_int(nib)
    return np.fromiter((trade_id_int(x) for x in arr.to_pylist()), np.int64, n)


def check_window(
    f: VenueFile, ts: np.ndarray, offsets_s: Iterable[int] = (0,)
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Which rows lie in the file's day, for the first day cut (seconds from UTC midnight, e.g.
    -28800 for UTC+8) that holds all of them (else the one holding most). Returns the mask of
    rows inside and the window; everything passes (window None) for a file without a date."""
    start = f.day_start
    if start is None or len(ts) == 0:
        return np.ones(len(ts), np.bool_), None
    ns, bad = timestamps_to_ns(ts)
    sec = ns // 1_000_000_000
    best: tuple[int, np.ndarray, tuple[int, int]] | None = None
    for off in offsets_s:
        lo, hi = start + off, start + off + DAY
        inside = (sec >= lo) & (sec < hi) | bad  # rows with unknown units are refused later
        n_in = int(inside.sum())
        if best is None or n_in > best[0]:
            best = (n_in, inside, (lo, hi))
        if n_in == len(ts):
            break
    assert best is not None
    return best[1], best[2]


def taker_day(
    f: VenueFile,
    side: pa.ChunkedArray,
    columns: dict[str, np.ndarray],
    malformed_rows: int,
    *,
    day_ts: np.ndarray | None = None,
    offsets_s: Iterable[int] = (0,),
    record_window: bool = True,
) -> RawDay:
    """One file's trades: the rows whose taker side is buy or sell (others are malformed) and
    that lie in the file's day (others are refused as ``outside_file_day``).

    ``columns`` holds ``ts, price, qty, trade_id`` (one value per row); ``day_ts`` the times the
    venue cuts its day files by (default ``ts``), ``offsets_s`` the day cuts to try (see
    ``check_window``); ``record_window``: the day checked is the file's coverage.
    """
    seller, side_ok = sides_to_seller(side)
    inside, window = check_window(f, columns["ts"] if day_ts is None else day_ts, offsets_s)
    keep = side_ok & inside
    refused = {"outside_file_day": int((side_ok & ~inside).sum())}
    raw = {**columns, "is_buyer_maker": seller}
    if not keep.all():
        raw = {k: v[keep] for k, v in raw.items()}
    return RawDay(
        raw,
        malformed_rows=malformed_rows + int((~side_ok).sum()),
        refused=refused,
        window=window if record_window else None,
    )
