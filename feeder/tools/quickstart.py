"""The README's first command: data into the embedded store, then a real FreqTrade backtest.

    bash scripts/quickstart [ARCHIVE_DIR]

Data, in this order: the Binance archive folder given; else the last 90 days of BTC spot, USD-M
and COIN-M 1-minute klines (taker volume: exact minute flow), open interest (metrics), funding and
mark candles from the public archive (when it answers); else (offline) the labelled SYNTHETIC
sample (``feeder.tools.synthetic``), and the output says so.
Then FreqTrade candles are exported from our own
bars and ``freqtrade backtesting`` runs SqueezeFlow on BTC/USDT:USDT. FreqTrade needs exchange
markets: online it loads them from Binance; offline the saved exchangeInfo in ../shared (when
present) or a built-in minimal one (``feeder.tools.offline``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console

from feeder.history.binance_archive import PUBLIC_ARCHIVE_URL
from feeder.settings import load_settings
from feeder.stores import MINUTE_SUFFIX

console = Console(stderr=True)
REPO = Path(__file__).resolve().parents[2]
SHARED_MARKETS = REPO.parent / "shared" / "data" / "market" / "cryptofeed"
WARMUP_DAYS = 3  # covers the strategy's startup candles at 5m (660 = 2.3 days)


def _run(*cmd: str, env: dict[str, str] | None = None) -> None:
    console.print(f"[dim]$ {' '.join(cmd)}[/]")
    r = subprocess.run(cmd, cwd=REPO, check=False, env={**os.environ, **(env or {})})
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
    ap = argparse.ArgumentParser(
        prog="scripts/quickstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("archive_dir", nargs="?", type=Path, help="Binance archive folder to import")
    ap.add_argument(
        "--days", type=int, default=90, help="days of 1m klines to download when online (90)"
    )
    ap.add_argument("--base-url", default=PUBLIC_ARCHIVE_URL, help="public archive base URL")
    ap.add_argument(
        "--datadir",
        type=Path,
        default=None,
        help="FreqTrade data folder for the exported candles (default user_data/data/binance; "
        "for the SYNTHETIC sample user_data/synthetic/data/binance)",
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "user_data",
        help="where downloaded archives (archive/), the SYNTHETIC sample (synthetic/) and the "
        "backtest results (backtest_results/) are kept (default user_data)",
    )
    args = ap.parse_args(argv)
    py = sys.executable
    feeder = [py, "-m", "feeder.tools.cli"]
    settings = load_settings(REPO / "config.json")
    store = Path(os.environ.get("SQUEEZEFLOW_PARQUET_DIR", str(settings.store.parquet_dir)))
    datadir = args.datadir or REPO / "user_data" / "data" / "binance"
    overlay: Path | None = None
    archive: Path

    if args.archive_dir:
        archive = args.archive_dir
        console.print(f"[bold]== importing the archive files under {archive}[/]")
        _run(*feeder, "--store-dir", str(store), "import", "--from", str(archive))
    elif online(args.base_url):
        end = datetime.now(UTC).date() - timedelta(days=2)  # the archive lags a day or so
        start = end - timedelta(days=args.days - 1)
        archive = args.workdir / "archive"
        download_recent(feeder, store, archive, args.base_url, start, end)
    else:
        from feeder.tools.synthetic import Scenario, generate

        # The SYNTHETIC sample lives apart from real data: its own archive, store and candles.
        root = args.workdir / "synthetic"
        archive, store = root / "archive", root / "store"
        datadir = args.datadir or root / "data" / "binance"
        console.print(
            "[bold yellow]== offline and no archive folder given: using the labelled SYNTHETIC "
            f"sample (planted squeezes, not market data) in {root}, a store of its own[/]"
        )
        if not (archive / "scenario.json").exists():
            generate(Scenario.planted(), archive)
        _run(*feeder, "--store-dir", str(store), "import", "--from", str(archive), "--no-progress")
        overlay = root / "config.json"
        overlay.write_text(json.dumps({"squeezeflow": synthetic_section(store)}, indent=1) + "\n")

    console.print("[bold]== the store now holds:[/]")
    _run(*feeder, "--store-dir", str(store), "status")
    from feeder.stores.parquet import ParquetStore
    from feeder.stores.provenance import provenance

    st = ParquetStore(store)
    synthetic = provenance(st).is_synthetic
    cov = st.coverage("BINANCE_FUTURES:btcusdt")
    if not len(cov):  # klines: minute coverage only
        cov = st.coverage("BINANCE_FUTURES:btcusdt" + MINUTE_SUFFIX)
    if not len(cov):
        raise SystemExit("no BINANCE_FUTURES:btcusdt data imported: nothing to backtest")
    first = datetime.fromtimestamp(int(cov[0, 0]), UTC).date()
    last = datetime.fromtimestamp(int(cov[-1, 1]), UTC).date()
    bt_start = first + timedelta(days=WARMUP_DAYS)
    if bt_start >= last:
        raise SystemExit(f"{first}..{last} is too short: {WARMUP_DAYS} days of warm-up are needed")
    _run(
        *feeder,
        "--store-dir",
        str(store),
        "export-candles",
        "--pairs",
        "BTC/USDT:USDT",
        "--timeframes",
        "5m",
        "1h",
        "--datadir",
        str(datadir),
        "--archive-dir",
        str(archive),
    )

    if synthetic or not online(args.base_url):
        wrapper = ["--markets", str(SHARED_MARKETS)] if SHARED_MARKETS.is_dir() else ["--offline"]
    else:
        wrapper = []
    timerange = f"{bt_start:%Y%m%d}-{last:%Y%m%d}"
    label = " on the SYNTHETIC sample" if synthetic else ""
    results = args.workdir / "backtest_results"
    results.mkdir(parents=True, exist_ok=True)  # else FreqTrade takes the path as a file prefix
    console.print(f"[bold]== FreqTrade backtest of SqueezeFlow {timerange}{label}[/]")
    notes = ["--notes", "SYNTHETIC data (planted squeezes, not market data)"] if synthetic else []
    env_store = {"SQUEEZEFLOW_PARQUET_DIR": str(store)}
    _run(
        py,
        "-m",
        "feeder.tools.offline",
        *wrapper,
        "backtesting",
        "--config",
        "config.json",
        "--strategy",
        "SqueezeFlow",
        "--datadir",
        str(datadir),
        "--timerange",
        timerange,
        "--pairs",
        "BTC/USDT:USDT",
        "--export",
        "trades",
        "--backtest-directory",
        str(results),
        "--cache",
        "none",
        *notes,
        env=env_store,
    )
    if synthetic:
        console.print("[bold yellow]Those results are on SYNTHETIC data with planted squeezes.[/]")
    _next_steps(store, datadir, results, overlay, wrapper, timerange, synthetic)
    return 0


#: What the quick start fetches when the archive answers: (data type, symbol, market types,
#: required). 1-minute klines with taker volume (exact 1m flow, a thousand times smaller than
#: the trades) of BTC spot, USD-M and COIN-M; open interest from metrics; funding; mark candles.
RECENT = (
    ("klines", "BTCUSDT", ("spot", "um"), True),
    ("klines", "BTCUSD_PERP", ("cm",), True),
    ("metrics", "BTCUSDT", ("um",), False),
    ("metrics", "BTCUSD_PERP", ("cm",), False),
    ("fundingRate", "BTCUSDT", ("um",), False),
    ("markPriceKlines", "BTCUSDT", ("um",), False),
)


def download_recent(
    feeder: list[str], store: Path, archive: Path, base_url: str, start: date, end: date
) -> None:
    """Fetch and import ``RECENT`` for ``start..end`` (checksums verified). Klines are needed;
    without OI, funding or mark files the backtest still runs, and the output says what is
    missing."""
    console.print(
        f"[bold]== downloading BTC spot, USD-M and COIN-M 1m klines, open interest (metrics), "
        f"funding and mark {start}..{end} from {base_url}[/]"
    )
    for data_type, symbol, market_types, required in RECENT:
        cmd = [
            *feeder,
            "--store-dir",
            str(store),
            "import",
            "--download",
            "--data-type",
            data_type,
            "--symbols",
            symbol,
            "--market-types",
            *market_types,
            "--start",
            str(start),
            "--end",
            str(end),
            "--archive-dir",
            str(archive),
            "--base-url",
            base_url,
            "--no-progress",
        ]
        if required:
            _run(*cmd)
            continue
        console.print(f"[dim]$ {' '.join(cmd)}[/]")
        r = subprocess.run(cmd, cwd=REPO, check=False)
        if r.returncode:
            console.print(
                f"[bold yellow]no {data_type} for {symbol} ({' '.join(market_types)}): the "
                "backtest runs without it (see the lines above)[/]"
            )


def synthetic_section(store: Path) -> dict[str, object]:
    """The SYNTHETIC sample's settings overlay: its store, and as BTC's markets the ones it holds
    (config.json lists every venue; the sample has Binance only, so no "no history" lines)."""
    from feeder.stores.parquet import ParquetStore

    held = ParquetStore(store).markets()
    coins = {k: sorted(m for m, kind in held.items() if kind == k) for k in ("spot", "perp")}
    return {"store": {"parquet_dir": str(store)}, "coins": {"BTC": coins}}


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def _next_steps(
    store: Path,
    datadir: Path,
    results: Path,
    overlay: Path | None,
    wrapper: list[str],
    timerange: str,
    synthetic: bool,
) -> None:
    w = " ".join(["squeezeflow-freqtrade", *wrapper])
    cfg = "--config config.json" + (f" --config {_rel(overlay)}" if overlay else "")
    data = f" --datadir {_rel(datadir)}"
    kind = "SYNTHETIC " if synthetic else ""
    lines = [
        "[bold]== where things are[/]",
        f"  {kind}store:      {_rel(store)}",
        f"  {kind}candles:    {_rel(datadir)}",
        f"  backtest:     {_rel(results)} (the newest .zip)",
    ]
    if overlay:
        lines.append(
            f"  settings:     {_rel(overlay)} (the SYNTHETIC sample's store, added to "
            "config.json with a second --config)"
        )
    lines += [
        "[bold]== what to do next[/] (from the repository root)",
        f"  .venv/bin/{w} backtesting-show {cfg} --backtest-directory {_rel(results)}",
        f"  .venv/bin/{w} backtesting {cfg}{data} --strategy SqueezeFlow "
        f"--timerange {timerange} --pairs BTC/USDT:USDT",
        f"  .venv/bin/{w} hyperopt {cfg}{data} --strategy SqueezeFlow --hyperopt-loss "
        f"SharpeHyperOptLoss --spaces buy sell --epochs 50 --timerange {timerange} "
        "--pairs BTC/USDT:USDT",
        f"  .venv/bin/squeezeflow-feeder --store-dir {_rel(store)} status",
        "  FreqUI (freqtrade webserver or trade) lists the backtest under Backtesting > "
        "Load results",
    ]
    if synthetic:
        lines.append(
            "  real data: bash scripts/quickstart /path/to/archive (a Binance archive "
            "folder) imports into the default store, never the SYNTHETIC one"
        )
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
