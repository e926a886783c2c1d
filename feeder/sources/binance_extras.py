"""``import --from``: the Binance archive files beside the trades (1m klines, ``metrics``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.console import Console

from feeder.importer import ImportReport
from feeder.settings import Settings
from feeder.store import BarStore


def import_found(
    args: argparse.Namespace,
    settings: Settings,
    store: BarStore,
    console: Console,
    print_status: Callable[..., None],
) -> bool:
    """Import the 1m kline and metrics files under ``args.source``; False when there are none."""
    from feeder.sources import binance_klines, binance_metrics

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
