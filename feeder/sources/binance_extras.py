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
    from feeder.sources import binance_klines

    mt = args.market_types[0] if args.market_types else None
    klines = binance_klines.discover(args.source, mt)
    if args.symbols:
        wanted = {s.upper() for s in args.symbols}
        klines = [k for k in klines if k.symbol.upper() in wanted]
    if not klines:
        return False
    report = ImportReport()
    binance_klines.import_klines(klines, store, settings, force=args.force, report=report)
    console.print("1-minute klines (minute resolution, no 1-second bars):")
    console.print(report.summary())
    print_status(store, settings, only=report.markets or None)
    return True
