"""Binance public trade archives (the data.binance.vision layout): find, verify, stream, download.

Layout below an archive root (the ``data/`` directory of data.binance.vision)::

    spot/{daily,monthly}/{trades,aggTrades}/SYMBOL/SYMBOL-{trades,aggTrades}-DATE.zip[.CHECKSUM]
    futures/um/{daily,monthly}/...        futures/cm/{daily,monthly}/...

``DATE`` is ``YYYY-MM-DD`` (daily) or ``YYYY-MM`` (monthly); unzipped ``.csv`` files with the same
names are accepted too. The CSV columns we need sit at the same positions in every market:

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

import calendar
import hashlib
import itertools
import logging
import re
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Final, Literal, cast, get_args

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

log = logging.getLogger(__name__)

MarketType = Literal["spot", "um", "cm"]
DataType = Literal["trades", "aggTrades"]
Period = Literal["daily", "monthly"]

#: The public archive; ``download`` fetches ``{base}/data/<layout path>``.
PUBLIC_ARCHIVE_URL: Final = "https://data.binance.vision"

MARKET_TYPES: Final[tuple[str, ...]] = get_args(MarketType)
DATA_TYPES: Final[tuple[str, ...]] = get_args(DataType)
PERIODS: Final[tuple[str, ...]] = get_args(Period)

#: Directory prefix of each market type below an archive root.
MARKET_PREFIX: Final[dict[str, str]] = {"spot": "spot", "um": "futures/um", "cm": "futures/cm"}

_HASH_BLOCK: Final = 1 << 20  # 1 MiB
_PEEK_BYTES: Final = 1 << 16
#: Bytes pyarrow parses per block; fixed so memory does not grow with the file size. 2 MiB was
#: the fastest of 1..64 MiB on a 5M-row file (larger blocks pipeline decompression worse).
DEFAULT_BLOCK_SIZE: Final = 2 << 20

_NAME_RE: Final = re.compile(
    r"^(?P<symbol>[^-/\\]+)-(?P<data_type>trades|aggTrades)-"
    r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.(?P<ext>zip|csv)$"
)
_NUMBER_RE: Final = re.compile(rb"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$")
_INT_PATTERN: Final = r"^\s*[+-]?\d+\s*$"
_BOOL_PATTERN: Final = r"^\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])\s*$"
_FLOAT_PATTERN: Final = (
    r"^\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:nan|inf|infinity))\s*$"
)


def _case_variants(word: str) -> list[str]:
    """Every upper/lower-case spelling of ``word`` (pyarrow matches booleans case-sensitively)."""
    return ["".join(cs) for cs in itertools.product(*((c.lower(), c.upper()) for c in word))]


_TRUE_VALUES: Final = _case_variants("true")
_FALSE_VALUES: Final = _case_variants("false")


class ArchiveError(ValueError):
    """An archive file is missing, corrupt, or not in the expected format."""


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


@dataclass(frozen=True)
class ArchiveFile:
    """One archive file (zip or csv) of one market, stream, and day or month.

    Attributes:
        path: where the file is.
        market_type: ``spot``, ``um`` (USD-M futures) or ``cm`` (COIN-M futures; qty in contracts).
        data_type: ``trades`` (every fill) or ``aggTrades`` (fills aggregated per taker order).
        symbol: exchange symbol as in the file name, e.g. ``BTCUSDT`` or ``BTCUSD_PERP``.
        period: ``daily`` or ``monthly``.
        date: ``YYYY-MM-DD`` for daily files, ``YYYY-MM`` for monthly files.
    """

    path: Path
    market_type: MarketType
    data_type: DataType
    symbol: str
    period: Period
    date: str

    @property
    def day_range(self) -> tuple[int, int]:
        """``[start, end)`` in epoch seconds (UTC) covered by the file: a day or a month."""
        if self.period == "daily":
            d = date.fromisoformat(self.date)
            start = calendar.timegm(d.timetuple())
            return start, start + 86_400
        year, month = (int(x) for x in self.date.split("-"))
        days = calendar.monthrange(year, month)[1]
        start = calendar.timegm((year, month, 1, 0, 0, 0))
        return start, start + days * 86_400

    @property
    def is_zip(self) -> bool:
        return self.path.suffix.lower() == ".zip"


def _layout_market_type(path: Path, symbol: str, data_type: str) -> MarketType | None:
    """Market type from ``<market>/<period>/<data_type>/<SYMBOL>/<file>``, else None."""
    parents = path.parents
    if len(parents) < 5:
        return None
    if parents[0].name != symbol or parents[1].name != data_type:
        return None
    if parents[2].name not in PERIODS:
        return None
    market = parents[3].name
    if market == "spot":
        return "spot"
    if market in ("um", "cm") and len(parents) >= 6 and parents[4].name == "futures":
        return cast(MarketType, market)
    return None


def parse_archive_name(
    path: str | Path, market_type: MarketType | None = None
) -> ArchiveFile | None:
    """Describe an archive file from its name and place in the data.binance.vision layout.

    The market type comes from the path (``spot/``, ``futures/um/``, ``futures/cm/`` followed by
    ``{daily,monthly}/{data_type}/SYMBOL/``). For a bare directory of files without that layout
    pass ``market_type``. Returns None for names that are not trade archives (klines, funding,
    ``.CHECKSUM`` files, ...), for impossible dates, and when the market type is unknown.

    Raises:
        ArchiveError: ``market_type`` contradicts the layout the path is in.
    """
    p = Path(path)
    m = _NAME_RE.match(p.name)
    if m is None:
        return None
    symbol, data_type, day = m["symbol"], m["data_type"], m["date"]
    period: Period = "daily" if len(day) == 10 else "monthly"
    try:
        datetime.strptime(day, "%Y-%m-%d" if period == "daily" else "%Y-%m")
    except ValueError:
        return None
    from_layout = _layout_market_type(p, symbol, data_type)
    if from_layout is not None:
        if p.parents[2].name != period:
            return None  # e.g. a monthly name inside daily/: not the official layout
        if market_type is not None and market_type != from_layout:
            raise ArchiveError(
                f"{p}: market_type={market_type!r} contradicts the layout ({from_layout!r})"
            )
        mt: MarketType | None = from_layout
    else:
        mt = market_type
    if mt is None:
        return None
    if mt not in MARKET_TYPES:
        raise ValueError(f"unknown market_type {mt!r}; expected one of {MARKET_TYPES}")
    return ArchiveFile(p, mt, cast(DataType, data_type), symbol, period, day)


def discover(
    root: Path, symbols: list[str] | None = None, market_type: MarketType | None = None
) -> list[ArchiveFile]:
    """Find trade archive files below ``root``, one file per market, symbol and time span.

    Files in the data.binance.vision layout are recognised anywhere below ``root``; other
    matching names are taken only when ``market_type`` is given (a bare directory of one market).
    ``symbols`` (case-insensitive) and ``market_type`` filter the result.

    Choices when several files cover the same data:

    * a ``.zip`` and a ``.csv`` of the same name: the zip (it can be checksum-verified);
    * ``trades`` and ``aggTrades`` of the same day (or month): ``trades``, the finer stream
      (every fill with its own id, so the per-second trade counts are exact); mixing both for
      one span would count the same volume twice under unrelated id spaces;
    * a daily file whose day lies in a monthly file of the same market and symbol: the monthly
      file (the daily one would duplicate its trades).

    Returns:
        Files sorted by (market_type, symbol, date).
    """
    wanted = {s.upper() for s in symbols} if symbols is not None else None
    found: dict[tuple[str, str, str, str, str], ArchiveFile] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".zip", ".csv") or not path.is_file():
            continue
        af = parse_archive_name(path)
        if af is None and market_type is not None:
            af = parse_archive_name(path, market_type)
        if af is None:
            continue
        if market_type is not None and af.market_type != market_type:
            continue
        if wanted is not None and af.symbol.upper() not in wanted:
            continue
        key = (af.market_type, af.symbol, af.period, af.date, af.data_type)
        other = found.get(key)
        if other is None or (af.is_zip and not other.is_zip):
            found[key] = af

    # One stream per span: trades over aggTrades.
    per_span: dict[tuple[str, str, str, str], ArchiveFile] = {}
    for (mt, sym, period, day, _dt), af in found.items():
        span = (mt, sym, period, day)
        other = per_span.get(span)
        if other is None or (af.data_type == "trades" and other.data_type != "trades"):
            per_span[span] = af

    # Daily files inside a kept month are redundant.
    months = {(mt, sym, day) for (mt, sym, period, day) in per_span if period == "monthly"}
    result = [
        af
        for (mt, sym, period, day), af in per_span.items()
        if period == "monthly" or (mt, sym, day[:7]) not in months
    ]
    result.sort(key=lambda a: (a.market_type, a.symbol, a.date, a.data_type))
    return result


_ARCHIVE_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_]+-(?P<data_type>[A-Za-z0-9_]+)-\d{4}-\d{2}")


def non_trade_archives(root: Path) -> dict[str, int]:
    """Archive files below ``root`` that are not trade streams (fundingRate, klines, ...), by
    data type: ``import`` skips them and counts them in its summary."""
    out: dict[str, int] = {}
    for path in root.rglob("*"):
        if path.suffix.lower() not in (".zip", ".csv") or not path.is_file():
            continue
        parts = path.parent.parts
        periods = [i for i, p in enumerate(parts[:-1]) if p in PERIODS]
        m = _ARCHIVE_NAME_RE.match(path.name)
        kind = parts[periods[-1] + 1] if periods else m.group("data_type") if m else None
        if kind is None or kind in DATA_TYPES or parse_archive_name(path) is not None:
            continue
        out[kind] = out.get(kind, 0) + 1
    return out


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".CHECKSUM")


def _parse_checksum(text: str, source: object) -> str:
    """The sha256 hex digest of a ``<sha256>  <filename>`` CHECKSUM file."""
    fields = text.split()
    if not fields or not re.fullmatch(r"[0-9a-fA-F]{64}", fields[0]):
        raise ArchiveError(f"{source}: not a sha256 CHECKSUM file: {text[:100]!r}")
    return fields[0].lower()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: Path) -> bool | None:
    """Check ``path`` against ``<path>.CHECKSUM`` (``<sha256>  <filename>``).

    Returns:
        True when it matches, None when there is no CHECKSUM file.

    Raises:
        ArchiveError: the hashes differ (the message names the file and both hashes), or the
            CHECKSUM file is malformed.
    """
    path = Path(path)
    cs = _checksum_path(path)
    if not cs.exists():
        return None
    expected = _parse_checksum(cs.read_text(encoding="utf-8", errors="replace"), cs)
    actual = sha256_file(path)
    if actual != expected:
        raise ArchiveError(
            f"checksum mismatch for {path}: expected sha256 {expected} ({cs.name}), got {actual}"
        )
    return True


@contextmanager
def _open_data(path: Path) -> Iterator[IO[bytes]]:
    """Binary stream of the CSV: the zip member (streamed, not extracted) or the csv file."""
    if path.suffix.lower() != ".zip":
        with path.open("rb") as fh:
            yield fh
        return
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{path}: not a valid zip file ({exc})") from exc
    with zf:
        members = [i for i in zf.infolist() if not i.is_dir()]
        csvs = [i for i in members if i.filename.lower().endswith(".csv")]
        wanted = path.with_suffix(".csv").name
        exact = [i for i in csvs if Path(i.filename).name == wanted]
        chosen = exact or csvs or members
        if len(chosen) != 1:
            names = [i.filename for i in members]
            raise ArchiveError(f"{path}: expected one CSV member, found {names}")
        with zf.open(chosen[0]) as fh:
            yield fh


def _first_line(path: Path) -> bytes:
    """The first line of the CSV (without line ending; empty for an empty file)."""
    with _open_data(path) as fh:
        head = fh.read(_PEEK_BYTES)
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    return line.removeprefix(b"\xef\xbb\xbf")


def _split_header(line: bytes) -> tuple[list[str], bool]:
    """Fields of the first line and whether it is a header (first field not a number)."""
    fields = [f.strip().strip('"').strip() for f in line.decode("utf-8", "replace").split(",")]
    return fields, _NUMBER_RE.match(fields[0].encode()) is None


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
        line = _first_line(self.file.path)
        if not line.strip():
            return False
        fields, self.has_header = _split_header(line)
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

    def _batches(self, typed: bool) -> Iterator[dict[str, np.ndarray]]:
        """Clean batches (invalid rows dropped and counted) as numpy columns."""
        positions = _COLUMNS[self.file.data_type].positions()
        with _open_data(self.file.path) as fh:
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

    def _chunks(self, typed: bool, skip: int) -> Iterator[dict[str, np.ndarray]]:
        """Re-slice batches into chunks of exactly ``chunk_rows`` rows, after ``skip`` rows."""
        pending: list[dict[str, np.ndarray]] = []
        n_pending = 0
        for batch in self._batches(typed):
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
        chunk = {k: np.concatenate([p[k] for p in parts]) for k in _OUT_TYPES}
        return chunk, rest, sum(p["ts"].shape[0] for p in rest)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if not self._inspect():
            return
        try:
            for chunk in self._chunks(typed=True, skip=0):
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
                for chunk in self._chunks(typed=False, skip=self.rows):
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


def read_funding(path: Path) -> pd.DataFrame:
    """Funding rates from a ``fundingRate`` archive (zip or csv).

    The file holds ``calc_time`` (ms), ``funding_interval_hours``, ``last_funding_rate`` (with a
    header line in the files published so far; headerless files are accepted too).

    Returns:
        Columns ``date`` (datetime64[ms, UTC], the funding time) and ``funding_rate`` (float64),
        sorted by date.
    """
    path = Path(path)
    line = _first_line(path)
    if not line.strip():
        return pd.DataFrame(
            {
                "date": pd.Series([], dtype="datetime64[ms, UTC]"),
                "funding_rate": pd.Series([], dtype="float64"),
            }
        )
    fields, has_header = _split_header(line)
    if has_header and [f.lower() for f in fields[:3]] != [
        "calc_time",
        "funding_interval_hours",
        "last_funding_rate",
    ]:
        raise ArchiveError(f"{path}: unexpected fundingRate header {fields!r}")
    with _open_data(path) as fh:
        raw = pd.read_csv(
            fh,
            header=None,
            skiprows=1 if has_header else 0,
            usecols=[0, 2],
            dtype={0: "int64", 2: "float64"},
        )
    out = pd.DataFrame(
        {
            "date": pd.to_datetime(raw[0].to_numpy(), unit="ms", utc=True).astype(
                "datetime64[ms, UTC]"
            ),
            "funding_rate": raw[2].to_numpy(dtype=np.float64),
        }
    )
    return out.sort_values("date", kind="stable").reset_index(drop=True)


def archive_relpath(
    market_type: MarketType, data_type: str, symbol: str, date: str, period: Period = "daily"
) -> str:
    """Path of a zip below the archive root, e.g. ``spot/daily/trades/BTCUSDT/BTCUSDT-...zip``."""
    if market_type not in MARKET_PREFIX:
        raise ValueError(f"unknown market_type {market_type!r}")
    fmt = "%Y-%m-%d" if period == "daily" else "%Y-%m"
    try:
        datetime.strptime(date, fmt)
    except ValueError as exc:
        raise ValueError(f"date {date!r} does not match the {period} format {fmt}") from exc
    sym = symbol.upper()
    return f"{MARKET_PREFIX[market_type]}/{period}/{data_type}/{sym}/{sym}-{data_type}-{date}.zip"


def _get_text(client: httpx.Client, url: str) -> str:
    resp = client.get(url)
    if resp.status_code == 404:
        raise ArchiveError(f"not found (404): {url}")
    if resp.status_code != 200:
        raise ArchiveError(f"HTTP {resp.status_code} for {url}")
    return resp.text


def _write_atomic(dest: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(
        dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
    ) as tmp:
        tmp.write(data)
    Path(tmp.name).replace(dest)


def download(
    base_url: str,
    market_type: MarketType,
    data_type: DataType,
    symbol: str,
    date: str,
    dest_root: Path,
    client: httpx.Client,
    period: Period = "daily",
) -> ArchiveFile:
    """Download one archive zip and its ``.CHECKSUM`` into the same layout below ``dest_root``.

    Fetches ``{base_url}/data/{spot|futures/um|futures/cm}/{period}/{data_type}/{SYMBOL}/
    {SYMBOL}-{data_type}-{date}.zip`` (``base_url`` is normally ``PUBLIC_ARCHIVE_URL``). Nothing is
    downloaded when the file is already there and matches its local CHECKSUM; a local file that
    does not match is downloaded again. The zip is streamed to a temporary file in the target
    directory, hashed on the way, and renamed into place only when the hash matches.

    Raises:
        ArchiveError: naming the URL, on 404 (or another HTTP error status) or checksum mismatch.
    """
    rel = archive_relpath(market_type, data_type, symbol, date, period)
    url = f"{base_url.rstrip('/')}/data/{rel}"
    dest = Path(dest_root) / rel
    cs_path = _checksum_path(dest)
    if dest.exists() and cs_path.exists():
        with suppress(ArchiveError):
            if verify_checksum(dest):
                return _described(dest, market_type)

    expected = _parse_checksum(_get_text(client, url + ".CHECKSUM"), url + ".CHECKSUM")
    cs_text = f"{expected}  {dest.name}\n".encode()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and sha256_file(dest) == expected:
        _write_atomic(cs_path, cs_text)
        return _described(dest, market_type)

    tmp = tempfile.NamedTemporaryFile(
        dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
    )
    tmp_path = Path(tmp.name)
    try:
        h = hashlib.sha256()
        with tmp, client.stream("GET", url) as resp:
            if resp.status_code == 404:
                raise ArchiveError(f"not found (404): {url}")
            if resp.status_code != 200:
                raise ArchiveError(f"HTTP {resp.status_code} for {url}")
            for block in resp.iter_bytes(_HASH_BLOCK):
                h.update(block)
                tmp.write(block)
        actual = h.hexdigest()
        if actual != expected:
            raise ArchiveError(
                f"checksum mismatch for {url}: expected sha256 {expected} (.CHECKSUM), got {actual}"
            )
        tmp_path.replace(dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _write_atomic(cs_path, cs_text)
    return _described(dest, market_type)


def _described(path: Path, market_type: MarketType) -> ArchiveFile:
    af = parse_archive_name(path, market_type)
    if af is None:  # cannot happen for paths built by archive_relpath
        raise ArchiveError(f"{path}: not a trade archive name")
    return af


def date_range(start: date, end: date) -> list[str]:
    """Days from ``start`` to ``end`` inclusive as ``YYYY-MM-DD`` (empty when end < start)."""
    n = (end - start).days + 1
    return [(start + timedelta(days=i)).isoformat() for i in range(max(n, 0))]


def month_range(start: date, end: date) -> list[str]:
    """Months from ``start``'s to ``end``'s inclusive as ``YYYY-MM`` (empty when end < start)."""
    out: list[str] = []
    y, m = start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


__all__ = [
    "DATA_TYPES",
    "DEFAULT_BLOCK_SIZE",
    "MARKET_PREFIX",
    "MARKET_TYPES",
    "PUBLIC_ARCHIVE_URL",
    "ArchiveError",
    "ArchiveFile",
    "RawChunkReader",
    "archive_relpath",
    "date_range",
    "discover",
    "download",
    "iter_raw_chunks",
    "month_range",
    "parse_archive_name",
    "read_funding",
    "sha256_file",
    "verify_checksum",
]
