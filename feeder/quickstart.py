"""The README's first command: data into the embedded store, then a real FreqTrade backtest.

    bash scripts/quickstart [ARCHIVE_DIR]

Data, in this order: the Binance archive folder given; else the last days of BTC spot, USD-M and
COIN-M aggTrades from the public archive (when it answers); else the labelled SYNTHETIC sample
(``feeder.synthetic``), and the output says so. Then FreqTrade candles are exported from our own
bars and ``freqtrade backtesting`` runs SqueezeFlow on BTC/USDT:USDT. FreqTrade needs exchange
markets: online it loads them from Binance; offline the saved exchangeInfo in ../shared (when
present) or a built-in minimal one (``feeder.offline``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console

from feeder.settings import load_settings
from feeder.sources.archive import PUBLIC_ARCHIVE_URL

console = Console(stderr=True)
REPO = Path(__file__).resolve().parent.parent
SHARED_MARKETS = REPO.parent / "shared" / "data" / "market" / "cryptofeed"
WARMUP_DAYS = 3  # covers the strategy's startup candles at 5m (660 = 2.3 days)


def _run(*cmd: str) -> None:
    console.print(f"[dim]$ {' '.join(cmd)}[/]")
    r = subprocess.run(cmd, cwd=REPO, check=False)
    if r.returncode:
        raise SystemExit(f"step failed with exit code {r.returncode}: {' '.join(cmd)}")


def online(base_url: str) -> bool:
    if os.environ.get("SQUEEZEFLOW_OFFLINE"):
        return False
    try:
        httpx.head(base_url, timeout=5, follow_redirects=True)
    except httpx.HTTPError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/quickstart", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("archive_dir", nargs="?", type=Path, help="Binance archive folder to import")
    ap.add_argument("--days", type=int, default=5, help="days to download when online (default 5)")
    ap.add_argument("--base-url", default=PUBLIC_ARCHIVE_URL, help="public archive base URL")
    ap.add_argument(
        "--datadir",
        type=Path,
        default=REPO / "user_data" / "data" / "binance",
        help="FreqTrade data folder for the exported candles",
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "user_data",
        help="where downloaded or generated archives are kept (default user_data)",
    )
    args = ap.parse_args(argv)
    py = sys.executable
    feeder = [py, "-m", "feeder.cli"]
    settings = load_settings(REPO / "config.json")
    store = os.environ.get("SQUEEZEFLOW_PARQUET_DIR", str(settings.store.parquet_dir))
    datadir = args.datadir
    archive: Path
    synthetic = False

    if args.archive_dir:
        archive = args.archive_dir
        console.print(f"[bold]== importing the archive files under {archive}[/]")
        _run(*feeder, "import", "--from", str(archive))
    elif online(args.base_url):
        end = datetime.now(UTC).date() - timedelta(days=2)  # the archive lags a day or so
        start = end - timedelta(days=args.days - 1)
        archive = args.workdir / "archive"
        console.print(f"[bold]== downloading BTC archives {start}..{end} from {args.base_url}[/]")
        common = ["--data-type", "aggTrades", "--start", str(start), "--end", str(end),
                  "--archive-dir", str(archive), "--base-url", args.base_url]  # fmt: skip
        _run(*feeder, "import", "--download", "--symbols", "BTCUSDT", "--market-types", "spot",
             "um", *common)  # fmt: skip
        _run(*feeder, "import", "--download", "--symbols", "BTCUSD_PERP", "--market-types", "cm",
             *common)  # fmt: skip
    else:
        from feeder.synthetic import Scenario, generate

        synthetic = True
        archive = args.workdir / "archive-synthetic"
        console.print(
            "[bold yellow]== offline and no archive folder given: using the labelled SYNTHETIC "
            f"sample (planted squeezes, not market data) in {archive}[/]"
        )
        generate(Scenario.planted(), archive)
        _run(*feeder, "import", "--from", str(archive), "--no-progress")

    console.print("[bold]== the store now holds:[/]")
    _run(*feeder, "status")
    from feeder.store import open_store

    st = open_store(settings.model_copy(update={"store": settings.store.model_copy(
        update={"parquet_dir": Path(store)})}))  # fmt: skip
    cov = st.coverage("BINANCE_FUTURES:btcusdt")
    if not len(cov):
        raise SystemExit("no BINANCE_FUTURES:btcusdt data imported: nothing to backtest")
    first = datetime.fromtimestamp(int(cov[0, 0]), UTC).date()
    last = datetime.fromtimestamp(int(cov[-1, 1]), UTC).date()
    bt_start = first + timedelta(days=WARMUP_DAYS)
    if bt_start >= last:
        raise SystemExit(f"{first}..{last} is too short: {WARMUP_DAYS} days of warm-up are needed")
    _run(*feeder, "export-candles", "--pairs", "BTC/USDT:USDT", "--timeframes", "5m", "1h",
         "--datadir", str(datadir), "--archive-dir", str(archive))  # fmt: skip

    ft = [py, "-m", "feeder.offline"]
    if synthetic or not online(args.base_url):
        ft += ["--markets", str(SHARED_MARKETS)] if SHARED_MARKETS.is_dir() else ["--offline"]
    timerange = f"{bt_start:%Y%m%d}-{last:%Y%m%d}"
    label = " on the SYNTHETIC sample" if synthetic else ""
    console.print(f"[bold]== FreqTrade backtest of SqueezeFlow {timerange}{label}[/]")
    _run(*ft, "backtesting", "--config", "config.json", "--strategy", "SqueezeFlow",
         "--datadir", str(datadir), "--timerange", timerange, "--pairs", "BTC/USDT:USDT",
         "--export", "none", "--cache", "none")  # fmt: skip
    if synthetic:
        console.print("[bold yellow]Those results are on SYNTHETIC data with planted squeezes.[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
