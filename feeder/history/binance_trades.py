"""Binance trade archive CSVs streamed as raw trade columns in bounded chunks.

The CSV columns we need sit at the same positions in every market:

* trades: ``id, price, qty, <quote_qty|base_qty>, time, is_buyer_maker[, is_best_match]``
* aggTrades: ``agg_trade_id, price, quantity, first_trade_id, last_trade_id, transact_time,
  is_buyer_maker[, is_best_match]``

Newer futures files start with a header line, spot and older files do not; a header is recognised
by the first field of the first line not being a number. ``qty`` is in contracts for COIN-M (cm)
files and timestamps are raw (ms, or us for spot from 2025):
``feeder.ingest.normalise.normalise`` turns
both into the normalised form.
"""

from __future__ import annotations

import itertools
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from feeder.history import csv_scan
from feeder.history.archive import ArchiveError
from feeder.history.binance_archive import ArchiveFile, first_line, open_data, split_header

#: Bytes pyarrow parses per block; fixed so memory does not grow with the file size. 2 MiB was
#: the fastest of 1..64 MiB on a 5M-row file (larger blocks pipeline decompression worse).
DEFAULT_BLOCK_SIZE: Final = 2 << 20

_INT_PATTERN: Final = r"^\s*[+-]?\d+\s*$"
_BOOL_PATTERN: Final = r"^\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])\s*$"
_FLOAT_PATTERN: Final = (
    r"^\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:nan|inf|infinity))\s*$"
)

log = logging.getLogger(__name__)


def _case_variants(word: str) -> list[str]:
    """Every upper/lower-case spelling of ``word`` (pyarrow matches booleans case-sensitively)."""
    return ["".join(cs) for cs in itertools.product(*((c.lower(), c.upper()) for c in word))]


_TRUE_VALUES: Final = _case_variants("true")
_FALSE_VALUES: Final = _case_variants("false")


@dataclass(frozen=True, slots=True)
class _Columns:
    """Positions of the fields we read, and header names accepted at those positions."""

    trade_id: int
    price: int
    qty: int
    ts: int
    is_buyer_maker: int
    header_names: dict[str, frozenset[str]]

    @property
    def min_fields(self) -> int:
        return max(self.trade_id, self.price, self.qty, self.ts, self.is_buyer_maker) + 1

    def positions(self) -> dict[str, int]:
        return {
            "trade_id": self.trade_id,
            "price": self.price,
            "qty": self.qty,
            "ts": self.ts,
            "is_buyer_maker": self.is_buyer_maker,
        }


_COMMON_HEADER = {
    "price": frozenset({"price", "p"}),
    "qty": frozenset({"qty", "quantity", "q"}),
    "is_buyer_maker": frozenset({"is_buyer_maker", "isbuyermaker", "m"}),
}
_COLUMNS: Final[dict[str, _Columns]] = {
    "trades": _Columns(
        0,
        1,
        2,
        4,
        5,
        {
            **_COMMON_HEADER,
            "trade_id": frozenset({"id", "trade_id"}),
            "ts": frozenset({"time", "timestamp", "t"}),
        },
    ),
    "aggTrades": _Columns(
        0,
        1,
        2,
        5,
        6,
        {
            **_COMMON_HEADER,
            "trade_id": frozenset({"agg_trade_id", "a"}),
            "ts": frozenset({"transact_time", "time", "timestamp", "t"}),
        },
    ),
}
_OUT_TYPES: Final[dict[str, pa.DataType]] = {
    "ts": pa.int64(),
    "price": pa.float64(),
    "qty": pa.float64(),
    "is_buyer_maker": pa.bool_(),
    "trade_id": pa.int64(),
}


_NP_TYPES: Final[dict[str, type[np.generic]]] = {
    "ts": np.int64,
    "price": np.float64,
    "qty": np.float64,
    "is_buyer_maker": np.bool_,
    "trade_id": np.int64,
}


#: The C scanner's kind of each column we read (``csv_scan``).
_SCAN_KINDS: Final = {
    "ts": csv_scan.INT,
    "price": csv_scan.FLOAT,
    "qty": csv_scan.FLOAT,
    "is_buyer_maker": csv_scan.BOOL,
    "trade_id": csv_scan.INT,
}


class RawChunkReader:
    """Streams the raw trade columns of one archive file in chunks of ``chunk_rows`` rows.

    Iterating yields dicts of numpy arrays (fresh, writable copies):

    * ``ts`` int64, raw exchange time in the file's unit (ms, or us for spot from 2025);
    * ``price`` float64; ``qty`` float64 (contracts for cm files);
    * ``is_buyer_maker`` bool; ``trade_id`` int64 (the agg trade id for aggTrades).

    Every chunk holds exactly ``chunk_rows`` rows except the last. Only the five needed columns
    are converted, with fixed types, from ``block_size``-byte blocks read by pyarrow's streaming
    reader straight from the zip member, so memory depends on ``chunk_rows`` and ``block_size``,
    not on the file size.

    Malformed rows are skipped and counted in ``invalid_rows`` (never silently): rows with the
    wrong number of fields (pyarrow's ``invalid_row_handler``), rows with an empty needed field,
    and rows whose needed fields do not parse (e.g. a stray header line mid-file). The last kind
    makes pyarrow's typed conversion fail; the reader then re-reads the file in a slower
    string-based mode, skipping the rows already yielded (``fallback`` becomes True). The first
    few offending lines are kept in ``invalid_samples``. ``rows`` counts the rows yielded.
    An iterator can be consumed once; create a new reader to read the file again.
    """

    def __init__(
        self, f: ArchiveFile, chunk_rows: int = 1_000_000, block_size: int = DEFAULT_BLOCK_SIZE
    ) -> None:
        if chunk_rows <= 0 or block_size <= 0:
            raise ValueError("chunk_rows and block_size must be positive")
        self.file = f
        self.chunk_rows = chunk_rows
        self.block_size = block_size
        self.invalid_rows = 0
        self.invalid_samples: list[str] = []
        self.rows = 0
        self.fallback = False
        self.has_header = False
        self.n_fields = 0

    # -- setup ---------------------------------------------------------------------------------

    def _inspect(self) -> bool:
        """Read the first line: header or not, number of fields. False for an empty file."""
        line = first_line(self.file.path)
        if not line.strip():
            return False
        fields, self.has_header = split_header(line)
        self.n_fields = len(fields)
        cols = _COLUMNS[self.file.data_type]
        if self.n_fields < cols.min_fields:
            raise ArchiveError(
                f"{self.file.path}: first line has {self.n_fields} fields, a "
                f"{self.file.data_type} file needs at least {cols.min_fields}: {line[:200]!r}"
            )
        if self.has_header:
            for key, pos in cols.positions().items():
                name = fields[pos].lower()
                if name not in cols.header_names[key]:
                    raise ArchiveError(
                        f"{self.file.path}: unexpected header {fields!r}: column {pos} is "
                        f"{fields[pos]!r}, expected {key} ({sorted(cols.header_names[key])})"
                    )
        return True

    def _on_invalid(self, row: pa_csv.InvalidRow) -> str:
        self._count_invalid(1, row.text)
        return "skip"

    def _count_invalid(self, n: int, sample: str | None = None) -> None:
        self.invalid_rows += n
        if sample is not None and len(self.invalid_samples) < 5:
            self.invalid_samples.append(sample[:200])

    def _open_reader(self, fh: IO[bytes], typed: bool) -> pa_csv.CSVStreamingReader:
        cols = _COLUMNS[self.file.data_type]
        names = [f"c{i}" for i in range(self.n_fields)]
        positions = cols.positions()
        include = [f"c{positions[k]}" for k in _OUT_TYPES]
        if typed:
            types = {f"c{positions[k]}": t for k, t in _OUT_TYPES.items()}
        else:
            types = {name: pa.binary() for name in include}  # bytes: a non-UTF-8 row is one bad row
        return pa_csv.open_csv(
            fh,
            read_options=pa_csv.ReadOptions(
                column_names=names,
                skip_rows=1 if self.has_header else 0,
                block_size=self.block_size,
                use_threads=True,
            ),
            parse_options=pa_csv.ParseOptions(
                invalid_row_handler=self._on_invalid, quote_char=False
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=types,
                include_columns=include,
                null_values=[""],
                strings_can_be_null=True,
                true_values=_TRUE_VALUES,
                false_values=_FALSE_VALUES,
            ),
        )

    # -- batches -------------------------------------------------------------------------------

    def _scanned(self) -> Iterator[dict[str, np.ndarray]]:
        """Batches converted by the C scanner (``csv_scan``): plain rows only; raises
        ``csv_scan.Refused`` at the first other row."""
        positions = _COLUMNS[self.file.data_type].positions()
        kinds = [csv_scan.SKIP] * self.n_fields
        for k, pos in positions.items():
            kinds[pos] = _SCAN_KINDS[k]
        order = sorted(positions, key=positions.__getitem__)
        with open_data(self.file.path) as fh:
            batches = csv_scan.iter_scan(fh, kinds, self.has_header, batch_rows=self.chunk_rows)
            for arrays in batches:
                yield dict(zip(order, arrays, strict=True))

    def _batches(self, typed: bool) -> Iterator[dict[str, np.ndarray]]:
        """Clean batches (invalid rows dropped and counted) as numpy columns."""
        positions = _COLUMNS[self.file.data_type].positions()
        with open_data(self.file.path) as fh:
            reader = self._open_reader(fh, typed)
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                arrays = {k: batch.column(f"c{positions[k]}") for k in _OUT_TYPES}
                if typed:
                    arrays = self._drop_nulls(arrays)
                else:
                    arrays = self._convert_strings(arrays)
                if len(arrays["ts"]) == 0:
                    continue
                yield {
                    k: np.asarray(a.to_numpy(zero_copy_only=False), dtype=_NP_TYPES[k])
                    for k, a in arrays.items()
                }

    def _drop_nulls(self, arrays: dict[str, pa.Array]) -> dict[str, pa.Array]:
        if not any(a.null_count for a in arrays.values()):
            return arrays
        masks = [pc.is_valid(a) for a in arrays.values()]
        ok = masks[0]
        for m in masks[1:]:
            ok = pc.and_(ok, m)
        n_bad = len(ok) - (pc.sum(ok).as_py() or 0)
        self._count_invalid(n_bad, "row with an empty field")
        return {k: pc.filter(a, ok) for k, a in arrays.items()}

    def _convert_strings(self, arrays: dict[str, pa.Array]) -> dict[str, pa.Array]:
        """Slow path: validate the raw bytes by pattern (a row with bytes that are not UTF-8
        fails it like any other unparseable row), drop and count the rest, then cast."""
        masks = [
            pc.match_substring_regex(arrays["ts"], _INT_PATTERN),
            pc.match_substring_regex(arrays["trade_id"], _INT_PATTERN),
            pc.match_substring_regex(arrays["price"], _FLOAT_PATTERN),
            pc.match_substring_regex(arrays["qty"], _FLOAT_PATTERN),
            pc.match_substring_regex(arrays["is_buyer_maker"], _BOOL_PATTERN),
        ]
        ok = masks[0]
        for m in masks[1:]:
            ok = pc.and_kleene(ok, m)
        ok = pc.fill_null(ok, False)
        n_bad = len(ok) - (pc.sum(ok).as_py() or 0)
        if n_bad:
            bad_idx = pc.indices_nonzero(pc.invert(ok))
            first = bad_idx[0].as_py()
            sample = ",".join(
                str(arrays[k][first].as_py()) for k in ("trade_id", "price", "qty", "ts")
            )
            self._count_invalid(n_bad, f"unparseable fields: {sample},...")
        out: dict[str, pa.Array] = {}
        for k in ("ts", "trade_id", "price", "qty"):  # ASCII only now: safe as text
            col = pc.utf8_trim_whitespace(pc.cast(pc.filter(arrays[k], ok), pa.string()))
            out[k] = pc.cast(col, _OUT_TYPES[k])
        bm = pc.cast(pc.filter(arrays["is_buyer_maker"], ok), pa.string())
        out["is_buyer_maker"] = pc.equal(pc.utf8_lower(pc.utf8_trim_whitespace(bm)), "true")
        return out

    # -- chunking ------------------------------------------------------------------------------

    def _chunks(
        self, batches: Iterator[dict[str, np.ndarray]], skip: int
    ) -> Iterator[dict[str, np.ndarray]]:
        """Re-slice batches into chunks of exactly ``chunk_rows`` rows, after ``skip`` rows."""
        pending: list[dict[str, np.ndarray]] = []
        n_pending = 0
        for batch in batches:
            n = batch["ts"].shape[0]
            if skip:
                if skip >= n:
                    skip -= n
                    continue
                batch = {k: v[skip:] for k, v in batch.items()}
                n -= skip
                skip = 0
            pending.append(batch)
            n_pending += n
            while n_pending >= self.chunk_rows:
                chunk, pending, n_pending = self._take(pending, self.chunk_rows)
                yield chunk
        if n_pending:
            chunk, pending, n_pending = self._take(pending, n_pending)
            yield chunk

    @staticmethod
    def _take(
        pending: list[dict[str, np.ndarray]], n: int
    ) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]], int]:
        """First ``n`` rows of the pending pieces as one fresh chunk, plus the remainder."""
        parts: list[dict[str, np.ndarray]] = []
        need = n
        rest: list[dict[str, np.ndarray]] = []
        for i, piece in enumerate(pending):
            m = piece["ts"].shape[0]
            if m <= need:
                parts.append(piece)
                need -= m
                if need == 0:
                    rest = pending[i + 1 :]
                    break
            else:
                parts.append({k: v[:need] for k, v in piece.items()})
                rest = [{k: v[need:] for k, v in piece.items()}, *pending[i + 1 :]]
                break
        if len(parts) == 1:  # one whole piece (the scanner's batches): copied unless owned
            own = all(v.flags.owndata and v.flags.writeable for v in parts[0].values())
            chunk = parts[0] if own else {k: v.copy() for k, v in parts[0].items()}
        else:
            chunk = {k: np.concatenate([p[k] for p in parts]) for k in _OUT_TYPES}
        return chunk, rest, sum(p["ts"].shape[0] for p in rest)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if not self._inspect():
            return
        if csv_scan.available():
            try:  # plain rows by the C scanner; from its first refusal on, pyarrow reads
                for chunk in self._chunks(self._scanned(), skip=0):
                    self.rows += chunk["ts"].shape[0]
                    yield chunk
                return
            except csv_scan.Refused:
                log.debug("%s: read by pyarrow from row %d", self.file.path, self.rows)
            except (OSError, EOFError, zlib.error) as exc:
                raise ArchiveError(f"{self.file.path}: cannot read: {exc}") from exc
        try:
            for chunk in self._chunks(self._batches(typed=True), skip=self.rows):
                self.rows += chunk["ts"].shape[0]
                yield chunk
        except pa.ArrowInvalid as exc:
            log.warning(
                "%s: unparseable values (%s); re-reading in the tolerant mode after row %d",
                self.file.path,
                str(exc).splitlines()[0],
                self.rows,
            )
            self.fallback = True
            self.invalid_rows = 0  # the tolerant pass recounts from the start
            self.invalid_samples = []
            try:
                for chunk in self._chunks(self._batches(typed=False), skip=self.rows):
                    self.rows += chunk["ts"].shape[0]
                    yield chunk
            except pa.ArrowException as exc2:
                raise ArchiveError(f"{self.file.path}: cannot parse CSV: {exc2}") from exc2
        except pa.ArrowException as exc:
            raise ArchiveError(f"{self.file.path}: cannot parse CSV: {exc}") from exc
        if self.invalid_rows:
            log.warning(
                "%s: skipped %d malformed rows, e.g. %s",
                self.file.path,
                self.invalid_rows,
                self.invalid_samples[:2],
            )


def iter_raw_chunks(f: ArchiveFile, chunk_rows: int = 1_000_000) -> Iterator[dict[str, np.ndarray]]:
    """Stream an archive file's raw trade columns in chunks (see ``RawChunkReader``).

    Use ``RawChunkReader`` directly to read the count of skipped malformed rows afterwards.
    """
    return iter(RawChunkReader(f, chunk_rows))
