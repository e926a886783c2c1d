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
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from feeder.history.binance import ArchiveError, ArchiveFile, RawChunkReader, verify_checksum
from feeder.ingest.models import Kind, market_id
from feeder.ingest.normalise import MarketSpec, Rejects
from feeder.ingest.pipeline import DayBarWriter
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


@dataclass
class ImportReport:
    files_done: int = 0
    files_skipped: int = 0
    trades_in: int = 0
    trades_ok: int = 0
    bars_1s: int = 0
    malformed_rows: int = 0
    rejects: Rejects = field(default_factory=Rejects)
    markets: set[str] = field(default_factory=set)
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    non_trade: dict[str, int] = field(default_factory=dict)  # archives found, not trades: skipped
    synthetic: bool = False

    def summary(self) -> str:
        rate = self.trades_in / self.seconds if self.seconds else 0.0
        lines = [
            f"imported {self.files_done} file(s), skipped {self.files_skipped} already imported",
            f"trades read {self.trades_in:,}, accepted {self.trades_ok:,}, "
            f"1s bars written {self.bars_1s:,} in {self.seconds:.1f}s ({rate:,.0f} trades/s)",
        ]
        if self.malformed_rows:
            lines.append(f"malformed rows skipped: {self.malformed_rows:,}")
        if self.rejects.total():
            reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(self.rejects.counts.items()))
            lines.append(f"refused trades: {reasons}")
        if self.non_trade:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.non_trade.items()))
            lines.append(
                f"skipped {sum(self.non_trade.values())} archive file(s) that are not "
                f"trades or aggTrades ({kinds})"
            )
        if self.synthetic:
            lines.append(
                "these files are SYNTHETIC (planted squeezes, not market data): "
                "the store is marked so"
            )
        if self.failed:
            lines.append(f"FAILED {len(self.failed)} file(s), not imported (the others are):")
            lines += [f"  {name}: {why}" for name, why in self.failed]
        return "\n".join(lines)


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
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[trades]:>14,} trades"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, disable=not progress, transient=False) as bar:
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
            report.trades_in += stats.trades_in
            report.trades_ok += stats.trades_ok
            report.bars_1s += stats.bars_1s
            report.malformed_rows += reader.invalid_rows
            report.rejects.merge(stats.rejects)
            report.markets.add(spec.market)
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
