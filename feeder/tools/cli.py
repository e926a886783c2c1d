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
import logging
import sys
from datetime import date
from pathlib import Path

from rich.console import Console

from feeder.redact import install_log_redaction, redact
from feeder.settings import ConfigError, Settings, load_settings, settings_from_dict
from feeder.stores import BarStore, open_store
from feeder.tools.commands import (
    cmd_export,
    cmd_rehearse,
    cmd_replay,
    cmd_run,
    cmd_setup_influx,
    cmd_status,
)
from feeder.tools.import_command import cmd_import

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

    from feeder.replay import cli as replay

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
    install_log_redaction()  # no credential of a URL in any log line (httpx logs its requests)
    from feeder.history.archive import ArchiveError
    from feeder.ingest.pipeline import OutOfOrderError
    from feeder.stores.influx_client import InfluxError
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
        console.print(f"[bold red]error:[/] {redact(str(e))}", soft_wrap=True)  # one line
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
