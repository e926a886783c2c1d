"""``import``: Binance public archive files -> normalise -> 1s bars + 1m rollups -> the store.

Resumable: every imported file is recorded in the store's own ledger (``imports.json`` in the
Parquet store, measurement ``sf_imports`` in InfluxDB) and skipped next time unless ``force``.
Coverage for a file's whole day (or month) is recorded only after all its bars are written, so
an interrupted import leaves no false coverage behind.
"""

from __future__ import annotations

import logging
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeVar

import pyarrow as pa
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from feeder.history.archive import ArchiveError
from feeder.history.binance_archive import ArchiveFile, verify_checksum
from feeder.history.binance_trades import RawChunkReader
from feeder.ingest.models import Kind, market_id
from feeder.ingest.normalise import MarketSpec
from feeder.ingest.pipeline import DayBarWriter, ImportReport
from feeder.settings import Settings
from feeder.stores import BarStore
from feeder.stores.provenance import archive_is_synthetic, check_import

log = logging.getLogger(__name__)

#: aggr-server exchange prefix per archive market type.
PREFIX = {"spot": "BINANCE", "um": "BINANCE_FUTURES", "cm": "BINANCE_FUTURES"}


def market_for(f: ArchiveFile) -> str:
    return market_id(PREFIX[f.market_type], f.symbol)


def spec_for(f: ArchiveFile, settings: Settings) -> MarketSpec:
    market = market_for(f)
    kind = Kind.SPOT if f.market_type == "spot" else Kind.PERP
    size = settings.market(market, kind).contract_size if f.market_type == "cm" else None
    if f.market_type == "cm" and size is None:
        raise ValueError(
            f"{market}: COIN-M market without a contract size (set squeezeflow.contract_sizes)"
        )
    return MarketSpec(market=market, kind=kind, exchange="binance", contract_size=size)


def ledger_key(f: ArchiveFile) -> str:
    """The import ledger's key of an archive file (one per market type, stream, symbol, date)."""
    return f"{f.market_type}/{f.data_type}/{f.symbol}/{f.date}"


#: What a damaged archive file raises while it is read: the file is reported and skipped.
BAD_FILE_ERRORS = (ArchiveError, zipfile.BadZipFile, zlib.error, EOFError, pa.ArrowInvalid)


def coin_m_contract_size(settings: Settings, market: str, kind: Kind) -> float:
    """The contract size (USD) of a COIN-M market, from ``squeezeflow.contract_sizes``."""
    size = settings.market(market, kind).contract_size
    if size is None:
        raise ArchiveError(f"{market}: COIN-M contract size unknown (contract_sizes)")
    return size


class LedgerFile(Protocol):
    """An archive file the import ledger knows by a key."""

    @property
    def path(self) -> Path: ...

    @property
    def ledger_key(self) -> str: ...


F = TypeVar("F", bound=LedgerFile)


def import_each(
    files: Iterable[F],
    store: BarStore,
    one: Callable[[F], tuple[str, dict[str, object], int]],
    *,
    force: bool = False,
    report: ImportReport | None = None,
) -> ImportReport:
    """Import each file the store's ledger does not hold yet (every file with ``force``):
    ``one(file)`` writes it and returns its market, what the ledger records of it and its count
    of malformed rows; the file is then marked imported (the ledger entry also names the
    market, the file and the malformed rows)."""
    report = report or ImportReport()
    t0 = time.perf_counter()
    done = store.imported()
    for f in files:
        if not force and f.ledger_key in done:
            report.files_skipped += 1
            continue
        market, info, bad = one(f)
        store.mark_imported(
            f.ledger_key, {"market": market, "file": f.path.name, **info, "malformed_rows": bad}
        )
        report.files_done += 1
        report.malformed_rows += bad
        report.markets.add(market)
    report.seconds += time.perf_counter() - t0
    return report


def progress_bar(enabled: bool) -> Progress:
    """The import's progress bar: files done of all, trades read, time spent and left."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[trades]:>14,} trades"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, disable=not enabled, transient=False)


def import_files(
    files: Iterable[ArchiveFile],
    store: BarStore,
    settings: Settings,
    *,
    force: bool = False,
    progress: bool = True,
    chunk_rows: int = 1_000_000,
) -> ImportReport:
    """Import archive files (already discovered or downloaded) into ``store``."""
    files = list(files)
    done = store.imported()
    report = ImportReport()
    todo = [f for f in files if force or ledger_key(f) not in done]
    synthetic = {ledger_key(f): archive_is_synthetic(f.path) for f in todo}
    n_syn = sum(synthetic.values())
    check_import(store, n_syn, len(todo) - n_syn)  # before anything is written
    report.synthetic = n_syn > 0
    t0 = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task("import", total=len(files), trades=0)
        for f in files:
            if not force and ledger_key(f) in done:
                report.files_skipped += 1
                bar.advance(task)
                continue
            bar.update(task, description=f"{f.symbol} {f.data_type} {f.date}")
            try:
                ok = verify_checksum(f.path)  # ArchiveError on mismatch
                spec = spec_for(f, settings)
                writer = DayBarWriter(store, spec, within=f.day_range)
                reader = RawChunkReader(f, chunk_rows)
                for raw in reader:
                    writer.add_raw(raw)
                    bar.update(task, trades=report.trades_in + writer.stats.trades_in)
                stats = writer.close()
            except BAD_FILE_ERRORS as e:
                # Days written before the damage stay, without coverage: flagged, never complete.
                why = str(e).replace(str(f.path), f.path.name) or type(e).__name__
                report.failed.append((str(f.path), f"{type(e).__name__}: {why}"))
                log.error("%s: not imported: %s", f.path, why)
                bar.advance(task)
                continue
            start, end = f.day_range
            store.add_coverage(spec.market, start, end)
            report.files_done += 1
            report.add_counts(stats, spec.market)
            report.malformed_rows += reader.invalid_rows
            store.mark_imported(
                ledger_key(f),
                {
                    "market": spec.market,
                    "file": f.path.name,
                    "checksum": "verified" if ok else "absent",
                    "trades": stats.trades_in,
                    "accepted": stats.trades_ok,
                    "refused": dict(stats.rejects.counts),
                    "malformed_rows": reader.invalid_rows,
                    **({"synthetic": True} if synthetic[ledger_key(f)] else {}),
                },
            )
            log.info(
                "%s -> %s: %s trades, %s bars",
                f.path.name,
                spec.market,
                f"{stats.trades_ok:,}",
                f"{stats.bars_1s:,}",
            )
            bar.advance(task)
    report.seconds = time.perf_counter() - t0
    return report
