"""Binance public archives (the data.binance.vision layout): names, discovery, checksums, opening.

Layout below an archive root (the ``data/`` directory of data.binance.vision)::

    spot/{daily,monthly}/{trades,aggTrades}/SYMBOL/SYMBOL-{trades,aggTrades}-DATE.zip[.CHECKSUM]
    futures/um/{daily,monthly}/...        futures/cm/{daily,monthly}/...

``DATE`` is ``YYYY-MM-DD`` (daily) or ``YYYY-MM`` (monthly); unzipped ``.csv`` files with the same
names are accepted too. Reading the trade files: ``feeder.history.binance_trades``; downloading
them: ``feeder.history.binance_download``.
"""

from __future__ import annotations

import calendar
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Final, Literal, cast, get_args

from feeder.history.archive import ArchiveError, sha256_file
from feeder.history.inflate import open_zip_member

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

_PEEK_BYTES: Final = 1 << 16

_NAME_RE: Final = re.compile(
    r"^(?P<symbol>[^-/\\]+)-(?P<data_type>trades|aggTrades)-"
    r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.(?P<ext>zip|csv)$"
)
_NUMBER_RE: Final = re.compile(rb"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$")


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


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".CHECKSUM")


def parse_checksum(text: str, source: object) -> str:
    """The sha256 hex digest of a ``<sha256>  <filename>`` CHECKSUM file."""
    fields = text.split()
    if not fields or not re.fullmatch(r"[0-9a-fA-F]{64}", fields[0]):
        raise ArchiveError(f"{source}: not a sha256 CHECKSUM file: {text[:100]!r}")
    return fields[0].lower()


def verify_checksum(path: Path) -> bool | None:
    """Check ``path`` against ``<path>.CHECKSUM`` (``<sha256>  <filename>``).

    Returns:
        True when it matches, None when there is no CHECKSUM file.

    Raises:
        ArchiveError: the hashes differ (the message names the file and both hashes), or the
            CHECKSUM file is malformed.
    """
    path = Path(path)
    cs = checksum_path(path)
    if not cs.exists():
        return None
    expected = parse_checksum(cs.read_text(encoding="utf-8", errors="replace"), cs)
    actual = sha256_file(path)
    if actual != expected:
        raise ArchiveError(
            f"checksum mismatch for {path}: expected sha256 {expected} ({cs.name}), got {actual}"
        )
    return True


@contextmanager
def open_data(path: Path) -> Iterator[IO[bytes]]:
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
        with open_zip_member(zf, chosen[0]) as fh:
            yield fh


def first_line(path: Path) -> bytes:
    """The first line of the CSV (without line ending; empty for an empty file)."""
    with open_data(path) as fh:
        head = fh.read(_PEEK_BYTES)
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    return line.removeprefix(b"\xef\xbb\xbf")


def split_header(line: bytes) -> tuple[list[str], bool]:
    """Fields of the first line and whether it is a header (first field not a number)."""
    fields = [f.strip().strip('"').strip() for f in line.decode("utf-8", "replace").split(",")]
    return fields, _NUMBER_RE.match(fields[0].encode()) is None


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
