"""``import --from``: the Binance archive files beside the trades (1m klines, ``metrics``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.console import Console

from feeder.ingest.pipeline import ImportReport
from feeder.settings import Settings
from feeder.stores import BarStore


def import_found(
    args: argparse.Namespace,
    settings: Settings,
    store: BarStore,
    console: Console,
    print_status: Callable[..., None],
) -> bool:
    """Import the 1m kline and metrics files under ``args.source``; False when there are none."""
    from feeder.history import binance_klines, binance_metrics

    mt = args.market_types[0] if args.market_types else None
    klines = binance_klines.discover(args.source, mt)
    metrics = binance_metrics.discover(args.source, mt)
    if args.symbols:
        wanted = {s.upper() for s in args.symbols}
        klines = [k for k in klines if k.symbol.upper() in wanted]
        metrics = [m for m in metrics if m.symbol.upper() in wanted]
    if klines:
        report = ImportReport()
        binance_klines.import_klines(klines, store, settings, force=args.force, report=report)
        console.print("1-minute klines (minute resolution, no 1-second bars):")
        console.print(report.summary())
        print_status(store, settings, only=report.markets or None)
    if metrics:
        report = ImportReport()
        binance_metrics.import_metrics(metrics, store, settings, force=args.force, report=report)
        console.print(
            f"open interest (USD) from {report.files_done} metrics file(s), "
            f"skipped {report.files_skipped} already imported, markets: "
            f"{', '.join(sorted(report.markets)) or '-'}"
            + (
                f"; malformed rows skipped: {report.malformed_rows}"
                if report.malformed_rows
                else ""
            )
        )
    return bool(klines or metrics)


#: ``--data-type`` values fetched by ``download_and_import`` (path below ``{market}/daily/``).
EXTRA_TYPES = ("klines", "metrics", "markPriceKlines", "fundingRate")


def extra_relpath(data_type: str, market_type: str, symbol: str, day: str) -> str:
    """``spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-<day>.zip`` and the like."""
    from feeder.history.binance_archive import MARKET_PREFIX

    sym = symbol.upper()
    if data_type == "fundingRate":  # monthly files only; ``day`` is YYYY-MM
        return f"{MARKET_PREFIX[market_type]}/monthly/fundingRate/{sym}/{sym}-fundingRate-{day}.zip"
    base = f"{MARKET_PREFIX[market_type]}/daily/{data_type}/{sym}"
    if data_type == "klines":
        return f"{base}/1m/{sym}-1m-{day}.zip"
    if data_type == "markPriceKlines":
        return f"{base}/1h/{sym}-1h-{day}.zip"
    return f"{base}/{sym}-metrics-{day}.zip"


def download_and_import(
    args: argparse.Namespace,
    settings: Settings,
    store: BarStore,
    console: Console,
    print_status: Callable[..., None],
) -> int:
    """``import --download --data-type klines|metrics|markPriceKlines|fundingRate``: fetch each
    day's (fundingRate: month's) zip and its ``.CHECKSUM`` (verified) into ``--archive-dir``,
    report those missing upstream, then import klines and metrics (markPriceKlines and
    fundingRate are read by ``export-candles --archive-dir``)."""
    import httpx

    from feeder.history.archive import ArchiveError, fetch
    from feeder.history.binance_archive import (
        PUBLIC_ARCHIVE_URL,
        date_range,
        month_range,
        verify_checksum,
    )

    if not (args.symbols and args.start and args.end):
        raise ValueError("--download needs --symbols, --start and --end")
    base = (args.base_url or PUBLIC_ARCHIVE_URL).rstrip("/")
    types = args.market_types or (["spot", "um"] if args.data_type == "klines" else ["um"])
    if args.data_type != "klines" and "spot" in types:
        raise ValueError(f"{args.data_type} exist for futures only (--market-types um cm)")
    got = 0
    with httpx.Client(timeout=60, follow_redirects=True) as client:
        for mt in types:
            for sym in args.symbols:
                spans = (
                    month_range(args.start, args.end)
                    if args.data_type == "fundingRate"
                    else date_range(args.start, args.end)
                )
                for day in spans:
                    rel = extra_relpath(args.data_type, mt, sym, day)
                    dest = args.archive_dir / rel
                    cs = dest.with_name(dest.name + ".CHECKSUM")
                    try:
                        fetch(client, f"{base}/data/{rel}.CHECKSUM", cs)
                        fetch(client, f"{base}/data/{rel}", dest)
                        verify_checksum(dest)
                    except ArchiveError as e:
                        if dest.exists() and cs.exists():  # a bad download: not kept
                            dest.unlink()
                        console.print(f"[yellow]skipped:[/] {e}")
                        continue
                    except httpx.TransportError as e:
                        raise ArchiveError(f"cannot reach {base}: {e!r}") from e
                    got += 1
    if not got:
        raise ArchiveError("nothing was downloaded")
    console.print(f"downloaded {got} {args.data_type} file(s) into {args.archive_dir}")
    if args.data_type in ("markPriceKlines", "fundingRate"):
        console.print(f"export-candles --archive-dir {args.archive_dir} uses them")
        return 0
    ns = argparse.Namespace(**{**vars(args), "source": args.archive_dir, "market_types": None})
    import_found(ns, settings, store, console, print_status)
    return 0
