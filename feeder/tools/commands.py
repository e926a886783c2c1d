"""The ``squeezeflow-feeder`` commands other than ``import``: ``export-candles``, ``status``,
``setup-influx``, ``run``, ``replay`` and ``rehearse``."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from feeder.redact import redact
from feeder.settings import Settings
from feeder.stores import BarStore
from feeder.tools.status import print_status

log = logging.getLogger("feeder")
console = Console(stderr=True)


def cmd_export(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    from feeder.history.export import Pair, check_timeframe, export_candles
    from feeder.stores import MINUTE_SUFFIX
    from feeder.stores.coverage import merge_intervals
    from feeder.stores.provenance import LABEL, provenance

    for tf in args.timeframes:
        check_timeframe(tf)
    if args.start and args.end and args.end < args.start:
        raise ValueError(f"--end {args.end} is before --start {args.start}")
    synthetic = provenance(store).synthetic
    for pair in args.pairs:
        market = Pair.parse(pair).market
        # trade-built and kline (minute-resolution) coverage alike
        cov = merge_intervals(
            np.concatenate([store.coverage(market), store.coverage(market + MINUTE_SUFFIX)])
        )
        if not len(cov):
            raise ValueError(f"{pair}: nothing stored for {market}; import data first")
        first, last = int(cov[0, 0]), int(cov[-1, 1])
        start = int(pd.Timestamp(args.start, tz="UTC").timestamp()) if args.start else first
        end = int(pd.Timestamp(args.end, tz="UTC").timestamp()) + 86_400 if args.end else last
        if start >= last or end <= first or start >= end:
            stored = f"{_day(first)}..{_day(last - 1)}"
            raise ValueError(
                f"{pair}: the range {_day(start)}..{_day(end - 1)} holds no data of {market} "
                f"(stored: {stored}); choose --start/--end inside it or import that range first"
            )
        if start < first or end > last:
            console.print(
                f"[bold yellow]WARNING[/] {pair}: {market} is stored for {_day(first)}.."
                f"{_day(last - 1)} only; candles outside it are not written"
            )
        res = export_candles(
            store, pair, args.timeframes, args.datadir, start, end, archive_dir=args.archive_dir
        )
        for f in res.files:
            console.print(f"wrote {f}")
        for w in res.warnings:
            console.print(f"[bold yellow]WARNING[/] {w}")
        if market in synthetic:
            console.print(f"[bold yellow]SYNTHETIC:[/] {pair} candles are from {LABEL}")
    return 0


def _day(t: int) -> str:
    return str(pd.Timestamp(t, unit="s", tz="UTC").strftime("%Y-%m-%d"))


def cmd_status(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    if args.json:
        from feeder.tools.status import as_dicts, store_status

        print(json.dumps(as_dicts(store_status(store, settings)), indent=1))
    else:
        print_status(store, settings)
    return 0


def cmd_setup_influx(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    from feeder.stores.influx import InfluxStore

    s = InfluxStore(settings.store.influx)
    for line in s.setup(alter=args.alter_retention):
        console.print(line, soft_wrap=True)
    console.print(
        f"database {settings.store.influx.database!r} with retention policies "
        f"{settings.store.influx.rp_1s!r}, {settings.store.influx.rp_1m!r} ready"
    )
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    import asyncio

    from feeder.replay import cli as replay

    return asyncio.run(replay.run(args))


def cmd_run(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    import asyncio

    from feeder.live import ccxt_slim
    from feeder.stores.provenance import LABEL, MixedProvenanceError, provenance, where

    if provenance(store).is_synthetic:
        raise MixedProvenanceError(
            f"the {where(store)} holds {LABEL}: live market data never goes into it; run the "
            "feeder on another store (--store-dir DIR or store.parquet_dir in the config)"
        )

    # before ccxt is first imported: load only the configured exchanges' modules (-50 MB)
    ids = sorted({e.id for e in settings.feeder.exchanges})
    slim = ccxt_slim.install(ids)
    from feeder.live.bars import EventClock
    from feeder.live.exchanges import FeederStartError
    from feeder.live.runtime import Feeder

    if slim is not None:
        import ccxt.pro  # noqa: F401 - the three packages, so the count below is complete

        log.info(
            "ccxt: loaded %s; %d other exchange modules left unimported",
            ", ".join(ids),
            len(slim.skipped),
        )

    http = {
        k: v
        for k, v in (("http_port", args.http_port), ("http_host", args.http_host))
        if v is not None
    }
    if http:
        settings = settings.model_copy(update={"feeder": settings.feeder.model_copy(update=http)})
    if settings.store.backend == "influx":
        from feeder.stores.influx import InfluxStore

        InfluxStore(settings.store.influx).setup()
    clock = EventClock() if args.clock == "event" else time.time_ns
    feeder = Feeder(settings, store=store, redis=not args.no_redis, clock=clock)
    try:
        asyncio.run(feeder.run())
    except FeederStartError as e:
        console.print(f"[bold red]error:[/] {redact(str(e))}")
        return 2
    if feeder.fatal:
        why = redact(feeder.fatal)
        console.print(f"[bold red]error:[/] the feeder stopped: {why}", soft_wrap=True)
        return 3
    return 0


def cmd_rehearse(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    from feeder.tools import rehearse
    from feeder.tools.rehearse_plan import RehearsalError
    from feeder.tools.rehearse_report import print_report

    cfg = args.config or (Path("config.json") if Path("config.json").exists() else None)
    base = json.loads(cfg.read_text()) if cfg else {}
    opt = rehearse.Options(
        timeframe=args.timeframe,
        seed=args.seed,
        recordings=args.recording or [],
        live_candles=args.live_candles,
        lead_s=args.lead_s,
        settle_s=args.settle_s,
        workdir=args.workdir,
        markets_dir=args.markets,
        report=args.report,
    )
    import signal

    def terminate(signum: int, frame: object) -> None:  # the child processes are ended on exit
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        report = rehearse.rehearse(settings, base, opt)
    except RehearsalError as e:
        console.print(f"[bold red]rehearsal failed:[/] {e}")
        return 2
    print_report(report)
    return 0 if report["matched"] else 1
