"""``squeezeflow-feeder``: one command with subcommands.

squeezeflow-feeder import --from DIR            import Binance archive files found under DIR
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
import pandas as pd
from rich.console import Console
from rich.table import Table

from feeder.settings import ConfigError, Settings, load_settings, settings_from_dict
from feeder.store import BarStore, open_store

log = logging.getLogger("feeder")
console = Console(stderr=True)


def _parse_day(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a date YYYY-MM-DD") from None


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
        help="import Binance public archive trade files (local or downloaded)",
        description="Import Binance public trade archives (data.binance.vision layout: spot, "
        "futures/um, futures/cm; trades or aggTrades; zip or csv; with or without header). "
        "Checksums are verified when a .CHECKSUM file is present. Files already imported are "
        "skipped unless --force.",
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
        choices=["trades", "aggTrades"],
        default="aggTrades",
        help="with --download (default aggTrades: smaller files, same taker flow)",
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
    imp.add_argument("--force", action="store_true", help="re-import files already imported")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")

    exp = sub.add_parser(
        "export-candles",
        help="write FreqTrade candle files (and mark/funding files) from our bars",
        description="Build FreqTrade feather candles for pairs from the stored 1-second bars, "
        "plus the 1h mark and funding-rate files a futures backtest needs.",
    )
    exp.add_argument("--pairs", nargs="+", required=True, help="e.g. BTC/USDT:USDT ETH/USDT:USDT")
    exp.add_argument("--timeframes", nargs="+", default=["5m", "1h", "4h"], help="default 5m 1h 4h")
    exp.add_argument("--start", type=_parse_day, help="first day (default: first stored)")
    exp.add_argument("--end", type=_parse_day, help="last day, inclusive (default: last stored)")
    exp.add_argument("--datadir", type=Path, default=Path("user_data/data/binance"))
    exp.add_argument(
        "--archive-dir",
        type=Path,
        default=None,
        help="archive root holding futures/um/monthly/fundingRate files",
    )

    st = sub.add_parser("status", help="markets, time ranges, coverage and gaps in the store")
    st.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("setup-influx", help="create the InfluxDB database and retention policies (1.x)")

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

    from feeder import replay

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
        "--recording", action="append", metavar="PATH[:spot|usdm|cm]",
        help="recorded Binance sessions instead (first half history, second half live); repeat",
    )  # fmt: skip
    rh.add_argument("--timeframe", default="1m", help="strategy timeframe (default 1m)")
    rh.add_argument(
        "--live-candles", type=int, default=6, help="live segment length in candles (synthetic)"
    )
    rh.add_argument(
        "--lead-s", type=float, default=90.0,
        help="seconds from start to the live segment (import, feeder and bot start; default 90)",
    )  # fmt: skip
    rh.add_argument(
        "--settle-s", type=float,
        help="seconds the bot runs after the live end (default: half a candle, at most 30)",
    )  # fmt: skip
    rh.add_argument("--report", type=Path, help="write the report as JSON")
    rh.add_argument("--workdir", type=Path, help="default user_data/rehearse/<run id>")
    rh.add_argument(
        "--markets", type=Path,
        help="saved exchangeInfo JSON files (default $SQUEEZEFLOW_OFFLINE_MARKETS or "
        "../shared/data/market/cryptofeed)",
    )  # fmt: skip
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
    from feeder.importer import import_files
    from feeder.sources import archive

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
        mt = args.market_types[0] if args.market_types else None
        files = archive.discover(args.source, args.symbols, mt)
        if not files:
            raise archive.ArchiveError(
                f"no Binance trade archive files under {args.source} (expected the "
                "data.binance.vision layout, e.g. futures/um/daily/aggTrades/BTCUSDT/*.zip, or "
                "--market-types for a flat folder)"
            )
    report = import_files(files, store, settings, force=args.force, progress=not args.no_progress)
    console.print(report.summary())
    _print_status(store, settings, only=report.markets or None)
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    from feeder.export import Pair, export_candles

    for pair in args.pairs:
        market = Pair.parse(pair).market
        if args.start and args.end:
            start = int(pd.Timestamp(args.start, tz="UTC").timestamp())
            end = int(pd.Timestamp(args.end, tz="UTC").timestamp()) + 86_400
        else:
            cov = store.coverage(market)
            if not len(cov):
                raise ValueError(f"{pair}: nothing stored for {market}; import data first")
            start, end = int(cov[0, 0]), int(cov[-1, 1])
        res = export_candles(
            store, pair, args.timeframes, args.datadir, start, end, archive_dir=args.archive_dir
        )
        for f in res.files:
            console.print(f"wrote {f}")
        for w in res.warnings:
            console.print(f"[bold yellow]WARNING[/] {w}")
    return 0


def _print_status(store: BarStore, settings: Settings, only: set[str] | None = None) -> None:
    from feeder.status import store_status

    rows = [r for r in store_status(store, settings) if only is None or r.market in only]
    t = Table(title=f"SqueezeFlow store ({store.name})")
    for col in ("market", "kind", "first bar (UTC)", "last bar (UTC)", "covered h"):
        t.add_column(col, no_wrap=True)
    t.add_column("gaps")
    for r in rows:
        t.add_row(
            r.market + ("" if r.configured else " (not configured)"),
            r.kind,
            r.first_bar or "-",
            r.last_bar or "-",
            f"{r.covered_hours:g}",
            "; ".join(f"{a}..{b} {why}" for a, b, why in r.gaps[:3])
            + (f" (+{len(r.gaps) - 3} more)" if len(r.gaps) > 3 else "")
            or "none",
        )
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)  # piped or captured: do not squeeze the table to 80 columns
    out.print(t)


def cmd_status(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    if args.json:
        from feeder.status import as_dicts, store_status

        print(json.dumps(as_dicts(store_status(store, settings)), indent=1))
    else:
        _print_status(store, settings)
    return 0


def cmd_setup_influx(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    from feeder.sinks.influx import InfluxStore

    s = InfluxStore(settings.store.influx)
    s.setup()
    console.print(
        f"database {settings.store.influx.database!r} with retention policies "
        f"{settings.store.influx.rp_1s!r}, {settings.store.influx.rp_1m!r} ready"
    )
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    import asyncio

    from feeder import replay

    return asyncio.run(replay.run(args))


def cmd_run(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    import asyncio

    from feeder.live import ccxt_slim

    # before ccxt is first imported: load only the configured exchanges' modules (-50 MB)
    ids = sorted({e.id for e in settings.feeder.exchanges})
    slim = ccxt_slim.install(ids)
    from feeder.live.runtime import EventClock, Feeder, FeederStartError

    if slim is not None:
        import ccxt.pro  # noqa: F401 - the three packages, so the count below is complete

        log.info("ccxt: loaded %s; %d other exchange modules left unimported",
                 ", ".join(ids), len(slim.skipped))  # fmt: skip

    http = {k: v for k, v in (("http_port", args.http_port), ("http_host", args.http_host))
            if v is not None}  # fmt: skip
    if http:
        settings = settings.model_copy(update={"feeder": settings.feeder.model_copy(update=http)})
    if settings.store.backend == "influx":
        from feeder.sinks.influx import InfluxStore

        InfluxStore(settings.store.influx).setup()
    clock = EventClock() if args.clock == "event" else time.time_ns
    feeder = Feeder(settings, store=store, redis=not args.no_redis, clock=clock)
    try:
        asyncio.run(feeder.run())
    except FeederStartError as e:
        console.print(f"[bold red]error:[/] {e}")
        return 2
    return 0


def cmd_rehearse(args: argparse.Namespace, settings: Settings, store: BarStore) -> int:
    from feeder import rehearse

    cfg = args.config or (Path("config.json") if Path("config.json").exists() else None)
    base = json.loads(cfg.read_text()) if cfg else {}
    opt = rehearse.Options(
        timeframe=args.timeframe, seed=args.seed, recordings=args.recording or [],
        live_candles=args.live_candles, lead_s=args.lead_s, settle_s=args.settle_s,
        workdir=args.workdir, markets_dir=args.markets, report=args.report,
    )  # fmt: skip
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from feeder.pipeline import OutOfOrderError
    from feeder.sinks.influx import InfluxError
    from feeder.sources.archive import ArchiveError

    try:
        settings = _settings(args)
        store = open_store(settings)
        return COMMANDS[args.command](args, settings, store)
    except (ConfigError, ArchiveError, InfluxError, OutOfOrderError, ValueError) as e:
        console.print(f"[bold red]error:[/] {e}")
        return 2
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt:
        console.print("interrupted: files finished so far are kept; run again to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
