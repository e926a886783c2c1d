"""``import``: every archive format into the store (Binance trades, klines and metrics; Bybit,
OKX and Tardis trade files), from a folder or downloaded first."""

from __future__ import annotations

import argparse

import httpx
from rich.console import Console

from feeder.history.archive import ArchiveError
from feeder.ingest.pipeline import ImportReport
from feeder.settings import Settings
from feeder.stores import BarStore
from feeder.tools.status import print_status

console = Console(stderr=True)


def cmd_import(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    """``import``: Binance trade archives, and whatever else the folder holds (other venues,
    klines, metrics), or a download first; another ``--format``: ``cmd_import_venues``."""
    from feeder.history import binance_archive as archive
    from feeder.history import binance_extras
    from feeder.history.binance_download import download
    from feeder.history.importer import import_files
    from feeder.history.venue_files import discover_venue_files

    if args.format not in (None, "binance"):
        return cmd_import_venues(args, settings, store)
    if args.download and args.data_type in binance_extras.EXTRA_TYPES:
        return binance_extras.download_and_import(args, settings, store, console, print_status)
    if args.source:  # other venues' files, klines and metrics found beside Binance trades
        found = args.format is None and bool(discover_venue_files(args.source))
        if found:
            cmd_import_venues(args, settings, store)
        found |= binance_extras.import_found(args, settings, store, console, print_status)
        mt = args.market_types[0] if args.market_types else None
        if found and not archive.discover(args.source, args.symbols, mt):
            return 0
    if args.download:
        if not (args.symbols and args.start and args.end):
            raise ValueError("--download needs --symbols, --start and --end")
        base = args.base_url or archive.PUBLIC_ARCHIVE_URL
        files = []
        with httpx.Client(timeout=60, follow_redirects=True) as client:
            for mt in args.market_types or ["spot", "um"]:
                for sym in args.symbols:
                    for day in archive.date_range(args.start, args.end):
                        try:
                            files.append(
                                download(
                                    base, mt, args.data_type, sym, day, args.archive_dir, client
                                )
                            )
                        except ArchiveError as e:
                            console.print(f"[yellow]skipped:[/] {e}")
                        except httpx.TransportError as e:
                            raise ArchiveError(f"cannot reach {base}: {e!r}") from e
        if not files:
            raise ArchiveError("nothing was downloaded")
    else:
        if not args.source.exists():
            raise ArchiveError(f"--from {args.source}: the folder does not exist")
        if not args.source.is_dir():
            raise ArchiveError(f"--from {args.source}: not a folder")
        mt = args.market_types[0] if args.market_types else None
        files = archive.discover(args.source, args.symbols, mt)
        non_trade = archive.non_trade_archives(args.source)
        if not files:
            raise ArchiveError(
                f"no Binance trade archive files under {args.source} (expected the "
                "data.binance.vision layout, e.g. futures/um/daily/aggTrades/BTCUSDT/*.zip, or "
                "--market-types for a flat folder)"
            )
    report = import_files(files, store, settings, force=args.force, progress=not args.no_progress)
    if not args.download:
        report.non_trade = non_trade
    _show(report, store, settings)
    if report.failed:
        console.print(
            f"[bold red]error:[/] {len(report.failed)} file(s) could not be imported "
            "(listed above); fix or remove them and run again"
        )
        return 2
    return 0


def cmd_import_venues(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    """``import`` for the Bybit, OKX and Tardis formats."""
    import os

    from feeder.history.venue_files import VenueFile, discover_venue_files, download_files
    from feeder.history.venue_import import import_venue_files

    a = args
    fmt = getattr(a, "format", None)
    if a.download:
        from feeder.history.binance_archive import date_range

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
                    console.print(f"[yellow]missing upstream, skipped:[/] {m}")
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
    _show(report, store, settings)
    return 0


def _show(report: ImportReport, store: BarStore, settings: Settings) -> None:
    """The import's summary, then the status of the markets it wrote."""
    console.print(report.summary())
    print_status(store, settings, only=report.markets or None)
