"""Trade archives of other venues (Bybit, OKX, Tardis.dev CSV): find, read, import, download.

Each venue module (``bybit``, ``okx``, ``tardis``) describes its files as ``VenueFile`` and reads
one file into the raw columns the Binance import produces (``ts, price, qty, is_buyer_maker,
trade_id``). From there the path is the Binance one:
``feeder.ingest.normalise`` (contract conversion,
refusal counting, id dedup) and ``DayBarWriter`` (1s bars + 1m rollups), the store's import
ledger (resumable: files already imported are skipped unless ``force``), progress bars, and a
coverage record per file written only after its bars are.

Market ids and contract conversion are the live feeder's (``feeder.live.markets``):
``BYBIT:btcusdt``, ``BYBIT_SPOT:btcusdt``, ``OKEX:btc-usdt-swap``, ``COINBASE:btc-usd``, ...

Day boundaries: a file's trades must lie in its day, cut at UTC midnight (or, for OKX, at the
venue's UTC+8 midnight, detected per file); rows outside it are refused as ``outside_file_day``.
Tardis cuts its day files by *receive* time, so a few trades of a day's last seconds sit in the
next day's file: consecutive days of one market are imported as one stream, and the last day of
a stream is covered only up to ``TARDIS_TAIL_S`` seconds before midnight (the rest is a gap
until the next day's file is imported together with it).
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import io
import logging
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Final

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from feeder.history.binance import ArchiveError
from feeder.history.importer import progress_bar
from feeder.ingest.normalise import IdDeduplicator, MarketSpec, timestamps_to_ns
from feeder.ingest.pipeline import DayBarWriter, ImportReport
from feeder.live.markets import trade_id_int
from feeder.settings import Settings
from feeder.stores import BarStore

log = logging.getLogger(__name__)

DAY: Final = 86_400
FORMATS: Final = ("bybit", "okx", "tardis")
#: Seconds before midnight up to which the last day of a Tardis stream counts as covered.
TARDIS_TAIL_S: Final = 10
CHUNK_ROWS: Final = 1_000_000
#: Column type of short repeated text (sides, exchange names): decoded once per distinct value.
TEXT: Final = pa.dictionary(pa.int32(), pa.string())
#: Column type of trade ids: int64 when the first row's id is an integer, else text.
AUTO_ID: Final = pa.large_string()


@dataclass(frozen=True)
class VenueFile:
    """One day file of one market of a venue.

    Attributes:
        path: where the file is.
        fmt: ``bybit``, ``okx`` or ``tardis``.
        venue: the venue's own name of the market family (``trading``/``spot`` for Bybit,
            ``trades`` for OKX, the Tardis exchange name such as ``binance-futures``).
        symbol: the venue's symbol as in the file name (``BTCUSDT``, ``BTC-USDT-SWAP``).
        date: ``YYYY-MM-DD``, or None for a Tardis file named without a date (no coverage).
    """

    path: Path
    fmt: str
    venue: str
    symbol: str
    date: str | None

    @property
    def ledger_key(self) -> str:
        return f"{self.fmt}/{self.venue}/{self.symbol}/{self.date or self.path.name}"

    @property
    def day_start(self) -> int | None:
        if self.date is None:
            return None
        return calendar.timegm(date.fromisoformat(self.date).timetuple())


@dataclass
class RawDay:
    """The raw trade columns of one file plus what the reader refused on its own."""

    raw: dict[str, np.ndarray]
    malformed_rows: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    #: [start, end) epoch seconds the file's rows were checked to lie in (None: unchecked).
    window: tuple[int, int] | None = None


@dataclass(frozen=True)
class Adapter:
    """What the generic importer needs from a venue module."""

    fmt: str
    parse_name: Callable[[Path], VenueFile | None]
    spec: Callable[[VenueFile, Settings], MarketSpec]
    read: Callable[[VenueFile], RawDay]


def adapters() -> dict[str, Adapter]:
    from feeder.history import bybit, okx, tardis

    return {"bybit": bybit.ADAPTER, "okx": okx.ADAPTER, "tardis": tardis.ADAPTER}


# -- reading helpers shared by the venue modules ---------------------------------------------------


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
            return io.BytesIO(zf.read(members[0]))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ArchiveError(f"{path}: corrupt zip member ({exc})") from exc
    if name.endswith(".gz"):
        return pa.input_stream(str(path), compression="gzip")
    return path.open("rb")


def read_columns(
    path: Path, columns: dict[str, pa.DataType], aliases: dict[str, tuple[str, ...]] | None = None
) -> tuple[dict[str, pa.ChunkedArray], int]:
    """Read the named columns of a CSV with a header line, typed; returns columns and the count
    of malformed rows skipped (wrong field count, or a value that does not parse, or empty).

    ``aliases`` maps a wanted column to other header spellings accepted for it.
    """
    bad = 0

    def on_invalid(_row: pa_csv.InvalidRow) -> str:
        nonlocal bad
        bad += 1
        return "skip"

    def _read(types: dict[str, pa.DataType]) -> pa.Table:
        with open_member(path) as fh:
            head = fh.read(1 << 16)
        lines = head.split(b"\n", 2)
        first = lines[0].rstrip(b"\r").removeprefix(b"\xef\xbb\xbf")
        header = [h.strip().strip('"') for h in first.decode("utf-8", "replace").split(",")]
        row1 = (
            lines[1].rstrip(b"\r").decode("utf-8", "replace").split(",") if len(lines) > 1 else []
        )
        lower = [h.lower() for h in header]
        rename: dict[str, str] = {}
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
                types = {**types, want: pa.int64() if digits else pa.string()}
        with open_member(path) as fh:
            table = pa_csv.read_csv(
                fh,
                read_options=pa_csv.ReadOptions(use_threads=True, block_size=4 << 20),
                parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid),
                convert_options=pa_csv.ConvertOptions(
                    include_columns=list(rename),
                    column_types={h: types[w] for h, w in rename.items()},
                    null_values=[""],
                    strings_can_be_null=True,
                ),
            )
        return table.rename_columns([rename[c] for c in table.column_names])

    try:
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
    import pandas as pd

    vals = pd.to_numeric(pd.Series(col.to_pylist(), dtype="object"), errors="coerce")
    if pa.types.is_integer(t):
        frac = vals.notna() & (vals != np.floor(vals.fillna(0)))
        vals = vals.mask(frac)
        return pa.array(vals.astype("Int64"), type=t, from_pandas=True)
    return pa.array(vals.to_numpy(np.float64), type=t, from_pandas=True)


def sides_to_seller(side: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``is_buyer_maker`` (the taker sold) from a taker-side column, and a mask of valid sides.
    A dictionary column (``TEXT``) is decided once per distinct value."""
    arr = side.combine_chunks() if isinstance(side, pa.ChunkedArray) else side
    if pa.types.is_dictionary(arr.type):
        low = pc.utf8_lower(arr.dictionary)
        sell_v = np.asarray(pc.equal(low, "sell").to_numpy(zero_copy_only=False), np.bool_)
        buy_v = np.asarray(pc.equal(low, "buy").to_numpy(zero_copy_only=False), np.bool_)
        idx = np.asarray(pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False), np.int64)
        valid = idx >= 0
        safe = np.where(valid, idx, 0)
        if len(sell_v) == 0:
            return np.zeros(len(idx), np.bool_), np.zeros(len(idx), np.bool_)
        sell = sell_v[safe] & valid
        return sell, (sell | buy_v[safe]) & valid
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
    """Rows of 16 hex nibbles -> int64 (the first 63 bits)."""
    acc = np.zeros(nib.shape[0], np.uint64)
    for j in range(16):
        acc = (acc << np.uint64(4)) | nib[:, j].astype(np.uint64)
    return (acc & np.uint64(0x7FFF_FFFF_FFFF_FFFF)).astype(np.int64)


def dedup_to_row_ids(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Keep each id's first row; return the kept rows' mask and the number dropped. Callers
    then number rows by file order: the venue's match order breaks ties in a second, not the
    order of hashed ids."""
    if len(ids) < 2:
        return np.ones(len(ids), np.bool_), 0
    _, first = np.unique(ids, return_index=True)
    keep = np.zeros(len(ids), np.bool_)
    keep[first] = True
    return keep, len(ids) - len(first)


def ids_from_text(col: pa.ChunkedArray) -> np.ndarray:
    """Trade ids as int64: integers as they are; UUIDs by their first 63 bits (vectorised);
    anything else by the live feeder's stable hash (``trade_id_int``)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
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


# -- discovery ------------------------------------------------------------------------------------


def discover_venue_files(
    root: Path, fmt: str | None = None, symbols: list[str] | None = None
) -> list[VenueFile]:
    """Venue files below ``root`` (or ``root`` itself), recognised by layout and file name.
    ``fmt`` restricts to one format (and for a single file forces it)."""
    ads = adapters()
    use = [ads[fmt]] if fmt else list(ads.values())
    wanted = {s.upper() for s in symbols} if symbols else None
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    found: dict[str, VenueFile] = {}
    for p in paths:
        if ".CHECKSUM" in p.name or p.name.startswith("."):
            continue
        for ad in use:
            vf = ad.parse_name(p)
            if vf is None:
                continue
            if wanted is None or vf.symbol.upper() in wanted:
                found.setdefault(vf.ledger_key, vf)
            break
    return sorted(found.values(), key=lambda v: (v.fmt, v.venue, v.symbol, v.date or ""))


# -- import ---------------------------------------------------------------------------------------


def _runs(files: list[VenueFile]) -> list[list[VenueFile]]:
    """Per market, runs of consecutive days (a Tardis day file holds the previous day's tail)."""
    by_market: dict[tuple[str, str, str], list[VenueFile]] = {}
    for f in files:
        by_market.setdefault((f.fmt, f.venue, f.symbol), []).append(f)
    runs: list[list[VenueFile]] = []
    for group in by_market.values():
        group.sort(key=lambda v: v.date or "")
        cur: list[VenueFile] = []
        for f in group:
            consecutive = (
                cur
                and f.day_start is not None
                and cur[-1].day_start is not None
                and f.day_start - (cur[-1].day_start or 0) == DAY
            )
            if cur and not consecutive:
                runs.append(cur)
                cur = []
            cur.append(f)
        if cur:
            runs.append(cur)
    return runs


def import_venue_files(
    files: Iterable[VenueFile],
    store: BarStore,
    settings: Settings,
    *,
    force: bool = False,
    progress: bool = True,
    report: ImportReport | None = None,
) -> ImportReport:
    """Import venue day files into ``store`` (see the module docstring)."""
    ads = adapters()
    files = list(files)
    done = store.imported()
    report = report or ImportReport()
    t0 = time.perf_counter()
    todo = []
    for f in files:
        if not force and f.ledger_key in done:
            report.files_skipped += 1
        else:
            todo.append(f)
    with progress_bar(progress) as bar:
        task = bar.add_task("import", total=len(todo), trades=0)
        for run in _runs(todo):
            ad = ads[run[0].fmt]
            spec = ad.spec(run[0], settings)
            writer = DayBarWriter(store, spec)
            run_start = run[0].day_start
            pending: list[tuple[VenueFile, dict[str, object], tuple[int, int] | None]] = []
            for i, f in enumerate(run):
                bar.update(task, description=f"{f.fmt} {f.symbol} {f.date or f.path.name}")
                before = (
                    writer.stats.trades_in,
                    writer.stats.trades_ok,
                    dict(writer.stats.rejects.counts),
                )
                day = ad.read(f)
                raw = day.raw
                # ids are unique within a file, not across them (Bybit spot counts rows from 1)
                writer.dedup = IdDeduplicator(window=writer.dedup.window)
                for reason, n in day.refused.items():
                    writer.stats.rejects.add(reason, n)
                    writer.stats.trades_in += n
                if run_start is not None and f.fmt == "tardis" and len(raw["ts"]):
                    # rows of the day before the stream starts belong to a day not in this run
                    ns, _ = timestamps_to_ns(raw["ts"])
                    early = (ns // 1_000_000_000 < run_start) & (ns > 0)
                    if early.any():
                        writer.stats.rejects.add("outside_file_day", int(early.sum()))
                        writer.stats.trades_in += int(early.sum())
                        raw = {k: v[~early] for k, v in raw.items()}
                n = len(raw["ts"])
                for s in range(0, n, CHUNK_ROWS):
                    writer.add_raw({k: v[s : s + CHUNK_ROWS] for k, v in raw.items()})
                    bar.update(task, trades=report.trades_in + writer.stats.trades_in)
                after = writer.stats
                refused = {
                    k: v - before[2].get(k, 0)
                    for k, v in after.rejects.counts.items()
                    if v - before[2].get(k, 0)
                }
                info: dict[str, object] = {
                    "market": spec.market,
                    "file": f.path.name,
                    "format": f.fmt,
                    "checksum": "none published",
                    "trades": after.trades_in - before[0],
                    "accepted": after.trades_ok - before[1],
                    "refused": refused,
                    "malformed_rows": day.malformed_rows,
                }
                report.malformed_rows += day.malformed_rows
                cover = day.window
                if f.fmt == "tardis" and f.day_start is not None:
                    nxt = run[i + 1] if i + 1 < len(run) else None
                    tail = 0 if nxt is not None else TARDIS_TAIL_S
                    cover = (f.day_start, f.day_start + DAY - tail)
                pending.append((f, info, cover))
                # Everything of the files before this one is written once this one is added.
                while len(pending) > 1:
                    _finish(store, spec.market, *pending.pop(0), report=report)
                bar.advance(task)
            stats = writer.close()
            for item in pending:
                _finish(store, spec.market, *item, report=report)
            report.add_counts(stats, spec.market)
    report.seconds += time.perf_counter() - t0
    return report


def _finish(
    store: BarStore,
    market: str,
    f: VenueFile,
    info: dict[str, object],
    cover: tuple[int, int] | None,
    *,
    report: ImportReport,
) -> None:
    if cover is not None:
        store.add_coverage(market, *cover)
    else:
        info["coverage"] = "none: the file name carries no date"
        log.warning(
            "%s: no date in the file name: bars imported, no coverage recorded "
            "(candles over it stay flagged incomplete)",
            f.path,
        )
    store.mark_imported(f.ledger_key, info)
    report.files_done += 1
    log.info("%s -> %s: %s trades", f.path.name, market, info["accepted"])


# -- download -------------------------------------------------------------------------------------


def fetch(
    client: httpx.Client, url: str, dest: Path, headers: dict[str, str] | None = None
) -> Path:
    """Download ``url`` to ``dest`` (atomically; kept when already there).

    Raises:
        ArchiveError: 404 (missing upstream) or another HTTP status, naming the URL.
    """
    if dest.exists() and dest.stat().st_size > 0:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(
        dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
    )
    tmp_path = Path(tmp.name)
    try:
        with tmp, client.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 404:
                raise ArchiveError(f"not found upstream (404): {url}")
            if resp.status_code != 200:
                raise ArchiveError(f"HTTP {resp.status_code} for {url}")
            for block in resp.iter_bytes(1 << 20):
                tmp.write(block)
        tmp_path.replace(dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return dest


def sha256_hex(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def valid_date(s: str) -> bool:
    if not _DATE_RE.fullmatch(s):
        return False
    try:
        date.fromisoformat(s)
    except ValueError:
        return False
    return True


def chunks(raw: dict[str, np.ndarray], n: int) -> Iterator[dict[str, np.ndarray]]:
    for s in range(0, len(raw["ts"]), n):
        yield {k: v[s : s + n] for k, v in raw.items()}


def download_files(
    fmt: str,
    symbols: list[str],
    days: list[str],
    dest_root: Path,
    client: httpx.Client,
    *,
    base_url: str | None = None,
    spot: bool = False,
    api_key: str | None = None,
) -> tuple[list[VenueFile], list[str]]:
    """Download venue day files into ``dest_root/<fmt>/...`` (the venue's own layout).

    ``symbols``: Bybit symbols (``spot`` picks the spot archive), OKX instruments, or Tardis
    ``<exchange>:<SYMBOL>``. Returns the files and one message per file missing upstream (404)
    or refused by the server: a missing day is reported, not fatal.
    """
    from feeder.history import bybit, okx, tardis

    got: list[VenueFile] = []
    missing: list[str] = []
    for sym in symbols:
        for day in days:
            headers = None
            if fmt == "bybit":
                rel = bybit.relpath(sym, day, spot)
                url = f"{(base_url or bybit.BASE_URL).rstrip('/')}/{rel}"
                dest = dest_root / "bybit" / rel
            elif fmt == "okx":
                rel = okx.relpath(sym, day)
                url = f"{(base_url or okx.BASE_URL).rstrip('/')}/{rel}"
                dest = dest_root / "okx" / rel.split("traderecords/", 1)[1]
            elif fmt == "tardis":
                if ":" not in sym:
                    raise ValueError(f"Tardis symbols are <exchange>:<SYMBOL>, got {sym!r}")
                ex, s = sym.split(":", 1)
                url = f"{(base_url or tardis.BASE_URL).rstrip('/')}/{tardis.relpath(ex, s, day)}"
                dest = dest_root / "tardis" / tardis.local_name(ex, s, day)
                headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
            else:
                raise ValueError(f"unknown format {fmt!r}")
            try:
                path = fetch(client, url, dest, headers)
            except ArchiveError as e:
                missing.append(str(e))
                continue
            except httpx.TransportError as e:
                raise ArchiveError(f"cannot reach {url}: {e!r}") from e
            vf = adapters()[fmt].parse_name(path)
            if vf is None:  # cannot happen for paths built above
                raise ArchiveError(f"{path}: not a {fmt} file name")
            got.append(vf)
    return got, missing


def cmd_import(
    args: argparse.Namespace,
    settings: Settings,
    store: BarStore,
    console: object,
    print_status: Callable[..., None],
) -> int:
    """``import`` for the Bybit, OKX and Tardis formats (``feeder.tools.cli``)."""
    import os

    from rich.console import Console

    a = args
    con = console if isinstance(console, Console) else Console(stderr=True)
    fmt = getattr(a, "format", None)
    if a.download:
        from feeder.history.binance import date_range

        if not (fmt and a.symbols and a.start and a.end):
            raise ValueError("--download needs --format, --symbols, --start and --end")
        days = date_range(a.start, a.end)
        files: list[VenueFile] = []
        with httpx.Client(timeout=60, follow_redirects=True) as client:
            kinds = [True, False] if fmt == "bybit" else [False]
            if fmt == "bybit" and a.market_types:
                kinds = [mt == "spot" for mt in dict.fromkeys(a.market_types)]
            for spot in kinds:
                got, missing = download_files(
                    fmt,
                    a.symbols,
                    days,
                    a.archive_dir,
                    client,
                    base_url=a.base_url,
                    spot=spot,
                    api_key=os.environ.get("TARDIS_API_KEY"),
                )
                files += got
                for m in missing:
                    con.print(f"[yellow]missing upstream, skipped:[/] {m}")
        if not files:
            raise ArchiveError("nothing was downloaded")
    else:
        files = discover_venue_files(a.source, fmt, a.symbols)
        if not files:
            raise ArchiveError(
                f"no {fmt or 'Bybit/OKX/Tardis'} trade files under {a.source} (expected e.g. "
                "trading/BTCUSDT/BTCUSDT2025-01-01.csv.gz, spot/BTCUSDT/BTCUSDT_2025-01-01.csv.gz, "
                "BTC-USDT-SWAP-trades-2025-01-01.zip, binance_trades_2025-01-01_BTCUSDT.csv.gz)"
            )
    report = import_venue_files(files, store, settings, force=a.force, progress=not a.no_progress)
    con.print(report.summary())
    print_status(store, settings, only=report.markets or None)
    return 0
