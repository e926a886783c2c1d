"""Import of other venues' trade archives (Bybit, OKX, Tardis.dev CSV) into the store.

Each venue module (``bybit``, ``okx``, ``tardis``) describes its files as ``VenueFile``
(``feeder.history.venue_files``) and reads, with ``feeder.history.venue_csv``,
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

import logging
import time
from collections.abc import Iterable
from typing import Final

from feeder.history.importer import progress_bar
from feeder.history.venue_files import DAY, VenueFile, adapters
from feeder.ingest.normalise import IdDeduplicator, timestamps_to_ns
from feeder.ingest.pipeline import DayBarWriter, ImportReport
from feeder.settings import Settings
from feeder.stores import BarStore

log = logging.getLogger(__name__)


#: Seconds before midnight up to which the last day of a Tardis stream counts as covered.
TARDIS_TAIL_S: Final = 10
CHUNK_ROWS: Final = 1_000_000


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
