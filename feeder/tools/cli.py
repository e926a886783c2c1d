"""``squeezeflow-feeder``: one command with subcommands.

squeezeflow-feeder import --from DIR            import archive files found under DIR
squeezeflow-feeder import --download ...        fetch them from the public archive first
squeezeflow-feeder export-candles --pairs ...   FreqTrade candle files from our bars
squeezeflow-feeder status                       what the store holds: markets, ranges, gaps
squeezeflow-feeder setup-influx                 create database and retention policies
squeezeflow-feeder rehearse                     live dry-run vs backtest on a paper exchange
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from feeder.settings import ConfigError, Settings, load_settings, settings_from_dict
from feeder.stores import BarStore, open_store

log = logging.getLogger("feeder")
console = Console(stderr=True)


def _parse_day(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a date YYYY-MM-DD") from None


def _timeframe(s: str) -> str:
    from feeder.history.export import check_timeframe

    try:
        return check_timeframe(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="squeezeflow-feeder",
        description="SqueezeFlow feeder: spot and perp trades -> 1-second bars -> Parquet / "
        "InfluxDB / Redis, for the SqueezeFlow FreqTrade strategy.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings come from the 'squeezeflow' section of the FreqTrade config "
        "(--config, default ./config.json when present); URLs and secrets can be overridden "
        "with SQUEEZEFLOW_* environment variables (see README).",
    )
    p.add_argument("-c", "--config", type=Path, help="FreqTrade config with a squeezeflow section")
    p.add_argument("--backend", choices=["parquet", "influx"], help="override store.backend")
    p.add_argument("--store-dir", type=Path, help="override store.parquet_dir (Parquet store)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    imp = sub.add_parser(
        "import",
        help="import trade archives (Binance, Bybit, OKX, Tardis), Binance klines and metrics",
        description="Import Binance public trade archives (data.binance.vision layout: spot, "
        "futures/um, futures/cm; trades or aggTrades; zip or csv; with or without header). "
        "Checksums are verified when a .CHECKSUM file is present. Files already imported are "
        "skipped unless --force. Also Bybit, OKX and Tardis trade files, Binance 1m klines "
        "(minute-resolution bars) and futures metrics (open interest), recognised by layout "
        "and file name (see --format).",
    )
    src = imp.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--from", dest="source", type=Path, help="local archive root or folder of files"
    )
    src.add_argument(
        "--download", action="store_true", help="download from the public archive first"
    )
    imp.add_argument("--symbols", nargs="+", help="archive symbols, e.g. BTCUSDT BTCUSD_PERP")
    imp.add_argument(
        "--market-types",
        nargs="+",
        choices=["spot", "um", "cm"],
        help="with --download: which markets (default spot um); with --from: the "
        "market type of a flat folder of files",
    )
    imp.add_argument(
        "--data-type",
        choices=["trades", "aggTrades", "klines", "metrics", "markPriceKlines", "fundingRate"],
        default="aggTrades",
        help="with --download (default aggTrades: smaller files, same taker flow); klines: 1m "
        "bars with taker volume; metrics: open interest; markPriceKlines, fundingRate: 1h mark and "
        "funding for export-candles",
    )
    imp.add_argument("--start", type=_parse_day, help="with --download: first day (UTC)")
    imp.add_argument("--end", type=_parse_day, help="with --download: last day (UTC), inclusive")
    imp.add_argument("--base-url", default=None, help="archive base URL (default: the public one)")
    imp.add_argument(
        "--archive-dir",
        type=Path,
        default=Path("user_data/archive"),
        help="where downloads are kept (default user_data/archive)",
    )
    imp.add_argument(
        "--format",
        choices=["binance", "bybit", "okx", "tardis"],
        help="force one archive format (default: recognised by layout and file names; with "
        "--download: binance). bybit: --market-types spot and/or um (derivatives); tardis: "
        "--symbols EXCHANGE:SYMBOL, API key from TARDIS_API_KEY",
    )
    imp.add_argument("--force", action="store_true", help="re-import files already imported")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")

    exp = sub.add_parser(
        "export-candles",
        help="write FreqTrade candle files (and mark/funding files) from our bars",
        description="Build FreqTrade feather candles for pairs from the stored 1-second bars, "
        "plus the 1h mark and funding-rate files a futures backtest needs.",
    )
    exp.add_argument("--pairs", nargs="+", required=True, help="e.g. BTC/USDT:USDT ETH/USDT:USDT")
    exp.add_argument(
        "--timeframes",
        nargs="+",
        default=["5m", "1h", "4h"],
        type=_timeframe,
        help="FreqTrade timeframes (1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w); "
        "default 5m 1h 4h",
    )
    exp.add_argument(
        "--start",
        type=_parse_day,
        help="first day (default: first stored); alone: from it to the last stored",
    )
    exp.add_argument(
        "--end",
        type=_parse_day,
        help="last day, inclusive (default: last stored); alone: from the first stored to it",
    )
    exp.add_argument("--datadir", type=Path, default=Path("user_data/data/binance"))
    exp.add_argument(
        "--archive-dir",
        type=Path,
        default=None,
        help="archive root holding futures/um/monthly/fundingRate files",
    )

    st = sub.add_parser("status", help="markets, time ranges, coverage and gaps in the store")
    st.add_argument("--json", action="store_true", help="machine-readable output")

    si = sub.add_parser(
        "setup-influx", help="create the InfluxDB database and retention policies (1.x)"
    )
    si.add_argument(
        "--alter-retention",
        action="store_true",
        help="also set existing retention policies to the configured durations "
        "(by default an existing policy is left as it is)",
    )

    run = sub.add_parser(
        "run",
        help="collect live trades from the configured exchanges into the stores and Redis",
        description="The live feeder: ccxt websockets for every exchange in squeezeflow.feeder."
        "exchanges, 1-second bars on a watermark, 1-minute rollups, the store (or its spool "
        "while the store is down), Redis streams; /health and /metrics on 127.0.0.1. SIGTERM "
        "flushes every sink before exit.",
    )
    run.add_argument(
        "--clock",
        choices=["wall", "event"],
        default="wall",
        help="event: time follows the newest exchange event (replay rehearsals)",
    )
    run.add_argument("--no-redis", action="store_true", help="do not publish live bars")
    run.add_argument("--http-port", type=int, help="override squeezeflow.feeder.http_port")
    run.add_argument(
        "--http-host",
        help="override squeezeflow.feeder.http_host (127.0.0.1); "
        "0.0.0.0 only inside a container whose port is published on loopback",
    )

    from feeder.replay import binance as replay

    rp = sub.add_parser(
        "replay",
        help="serve recorded Binance sessions on 127.0.0.1 (websocket + REST) for ccxt",
        description="A loopback exchange: recorded Binance websocket sessions (combined-stream "
        "frames) and the REST endpoints a backfill needs, at recorded speed, faster, or as fast "
        "as possible. Point ccxt at it with the URLs it prints (a rehearsal without an exchange).",
    )
    replay.add_arguments(rp)

    rh = sub.add_parser(
        "rehearse",
        help="check a setup before going live: dry-run and backtest the same window",
        description="Serve a scenario (the labelled SYNTHETIC planted-squeeze market, or "
        "recorded Binance sessions) on a paper exchange on 127.0.0.1, shifted to now; import its "
        "history into the store; run the feeder and `freqtrade trade --dry-run` over a live "
        "segment; backtest the same window from the store; compare the trades. Exit status 0 "
        "when live and backtest trades are identical, 1 when they differ, 2 on errors.",
    )
    src_rh = rh.add_mutually_exclusive_group()
    src_rh.add_argument("--seed", type=int, default=7, help="synthetic scenario seed (default 7)")
    src_rh.add_argument(
        "--recording",
        action="append",
        metavar="PATH[:spot|usdm|cm]",
        help="recorded Binance sessions instead (first half history, second half live); repeat",
    )
    rh.add_argument("--timeframe", default="1m", help="strategy timeframe (default 1m)")
    rh.add_argument(
        "--live-candles", type=int, default=6, help="live segment length in candles (synthetic)"
    )
    rh.add_argument(
        "--lead-s",
        type=float,
        default=90.0,
        help="seconds from start to the live segment (import, feeder and bot start; default 90)",
    )
    rh.add_argument(
        "--settle-s",
        type=float,
        help="seconds the bot runs after the live end (default: half a candle, at most 30)",
    )
    rh.add_argument("--report", type=Path, help="write the report as JSON")
    rh.add_argument("--workdir", type=Path, help="default user_data/rehearse/<run id>")
    rh.add_argument(
        "--markets",
        type=Path,
        help="saved exchangeInfo JSON files (default $SQUEEZEFLOW_OFFLINE_MARKETS or "
        "../shared/data/market/cryptofeed)",
    )
    return p


def _settings(args: argparse.Namespace) -> Settings:
    cfg = args.config
    if cfg is None and Path("config.json").exists():
        cfg = Path("config.json")
    s = load_settings(cfg) if cfg else settings_from_dict(None)
    over: dict[str, object] = {}
    if args.backend:
        over["backend"] = args.backend
    if args.store_dir:
        over["parquet_dir"] = args.store_dir
    if over:
        s = s.model_copy(update={"store": s.store.model_copy(update=over)})
    return s


def cmd_import(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    from feeder.history import binance as archive
    from feeder.history import binance_extras, venues
    from feeder.history.importer import import_files

    if args.format not in (None, "binance"):
        return venues.cmd_import(args, settings, store, console, _print_status)
    if args.download and args.data_type in binance_extras.EXTRA_TYPES:
        return binance_extras.download_and_import(args, settings, store, console, _print_status)
    if args.source:  # other venues' files, klines and metrics found beside Binance trades
        found = args.format is None and bool(venues.discover_venue_files(args.source))
        if found:
            venues.cmd_import(args, settings, store, console, _print_status)
        found |= binance_extras.import_found(args, settings, store, console, _print_status)
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
                                archive.download(
                                    base, mt, args.data_type, sym, day, args.archive_dir, client
                                )
                            )
                        except archive.ArchiveError as e:
                            console.print(f"[yellow]skipped:[/] {e}")
                        except httpx.TransportError as e:
                            raise archive.ArchiveError(f"cannot reach {base}: {e!r}") from e
        if not files:
            raise archive.ArchiveError("nothing was downloaded")
    else:
        if not args.source.exists():
            raise archive.ArchiveError(f"--from {args.source}: the folder does not exist")
        if not args.source.is_dir():
            raise archive.ArchiveError(f"--from {args.source}: not a folder")
        mt = args.market_types[0] if args.market_types else None
        files = archive.discover(args.source, args.symbols, mt)
        non_trade = archive.non_trade_archives(args.source)
        if not files:
            raise archive.ArchiveError(
                f"no Binance trade archive files under {args.source} (expected the "
                "data.binance.vision layout, e.g. futures/um/daily/aggTrades/BTCUSDT/*.zip, or "
                "--market-types for a flat folder)"
            )
    report = import_files(files, store, settings, force=args.force, progress=not args.no_progress)
    if not args.download:
        report.non_trade = non_trade
    console.print(report.summary())
    _print_status(store, settings, only=report.markets or None)
    if report.failed:
        console.print(
            f"[bold red]error:[/] {len(report.failed)} file(s) could not be imported "
            "(listed above); fix or remove them and run again"
        )
        return 2
    return 0


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
    return pd.Timestamp(t, unit="s", tz="UTC").strftime("%Y-%m-%d")


def _print_status(store: BarStore, settings: Settings, only: set[str] | None = None) -> None:
    from feeder.stores.provenance import LABEL, where
    from feeder.tools.status import store_status

    rows = [r for r in store_status(store, settings) if only is None or r.market in only]
    synthetic = any(r.synthetic for r in rows)
    t = Table(title=f"SqueezeFlow {where(store)}" + (f": {LABEL}" if synthetic else ""))
    for col in ("market", "kind", "first bar (UTC)", "last bar (UTC)", "covered h"):
        t.add_column(col, no_wrap=True)
    t.add_column("gaps")
    for r in rows:
        t.add_row(
            r.market
            + ("" if r.configured else " (not configured)")
            + (" SYNTHETIC" if r.synthetic else ""),
            r.kind,
            r.first_bar or "-",
            r.last_bar or "-",
            f"{r.covered_hours:g}" + (f" (+{r.minute_hours:g} 1m)" if r.minute_hours else ""),
            "; ".join(f"{a}..{b} {why}" for a, b, why in r.gaps[:3])
            + (f" (+{len(r.gaps) - 3} more)" if len(r.gaps) > 3 else "")
            or "none",
        )
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)  # piped or captured: do not squeeze the table to 80 columns
    out.print(t)
    if synthetic:
        console.print(
            f"[bold yellow]SYNTHETIC:[/] this store holds {LABEL}; real imports into it are refused"
        )


def cmd_status(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    if args.json:
        from feeder.tools.status import as_dicts, store_status

        print(json.dumps(as_dicts(store_status(store, settings)), indent=1))
    else:
        _print_status(store, settings)
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

    from feeder.replay import binance as replay

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
        console.print(f"[bold red]error:[/] {e}")
        return 2
    if feeder.fatal:
        console.print(f"[bold red]error:[/] the feeder stopped: {feeder.fatal}", soft_wrap=True)
        return 3
    return 0


def cmd_rehearse(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    from feeder.tools import rehearse

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
    except rehearse.RehearsalError as e:
        console.print(f"[bold red]rehearsal failed:[/] {e}")
        return 2
    rehearse.print_report(report)
    return 0 if report["matched"] else 1


COMMANDS = {
    "import": cmd_import,
    "export-candles": cmd_export,
    "status": cmd_status,
    "setup-influx": cmd_setup_influx,
    "run": cmd_run,
    "replay": cmd_replay,
    "rehearse": cmd_rehearse,
}


#: commands that write the store: they take its writer lock first
WRITERS = frozenset({"import", "run"})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from feeder.history.binance import ArchiveError
    from feeder.ingest.pipeline import OutOfOrderError
    from feeder.stores.influx import InfluxError
    from feeder.stores.parquet import StoreLockedError, StoreWriteError

    store: BarStore | None = None
    try:
        settings = _settings(args)
        store = open_store(settings)
        if args.command in WRITERS and hasattr(store, "lock_writer"):
            store.lock_writer(f"squeezeflow-feeder {args.command}")  # one writer per store
        return COMMANDS[args.command](args, settings, store)
    except (
        ConfigError,
        ArchiveError,
        InfluxError,
        OutOfOrderError,
        StoreLockedError,
        StoreWriteError,
        ValueError,
    ) as e:
        console.print(f"[bold red]error:[/] {e}", soft_wrap=True)  # one line, never wrapped
        return 2
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt:
        console.print("interrupted: files finished so far are kept; run again to resume")
        return 130
    finally:
        if store is not None and hasattr(store, "unlock_writer"):
            store.unlock_writer()


if __name__ == "__main__":
    sys.exit(main())
