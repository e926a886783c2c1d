"""Issue 3 benchmark: a FreqTrade backtest of SqueezeFlow over one year of 5m candles for two
pairs, flow from the Parquet store, against the same backtest of a plain TA-Lib strategy.

Goal: SqueezeFlow total time <= 1.5 x the TA-Lib strategy's, and under 60 s; report peak RSS.
Data is SYNTHETIC (deterministic): one year of 1-minute bars for BTC and ETH on three markets
each (spot, USD-M, COIN-M) written to a Parquet store with coverage, and 5m/1h candles exported
from the perp bars by the feeder's own export. Every backtest runs in a fresh process; wall time
and peak RSS (wait4) are measured around the whole `freqtrade backtesting` command.

    .venv/bin/python bench/strategy_backtest.py [--days 365] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from _common import footer, header  # noqa: E402

from feeder.history.export import export_candles  # noqa: E402
from feeder.stores.parquet import ParquetStore  # noqa: E402

T0 = 1_704_067_200  # 2024-01-01
COINS = {"BTC": 42_000.0, "ETH": 2_300.0}


def make_minutes(seed: int, days: int, price0: float) -> dict[str, pd.DataFrame]:
    """SYNTHETIC 1-minute bars for one coin's spot, USD-M and COIN-M markets."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    t = T0 + 60 * np.arange(n, dtype=np.int64)
    spot_p = np.full(n, 0.5)
    perp_p = np.full(n, 0.5)
    drift = np.zeros(n)
    for start in range(3 * 1440, n - 600, 2 * 1440 + 317):  # an episode every ~2.2 days
        s = 1 if (start // 1440) % 2 else -1
        spot_p[start : start + 60] += s * 0.35
        perp_p[start : start + 60] -= s * 0.35
        spot_p[start + 60 : start + 90] += s * 0.35
        perp_p[start + 60 : start + 90] += s * 0.35
        drift[start + 90 : start + 330] += s * 0.02 / 240
    logp = np.log(price0) + np.cumsum(drift + rng.normal(0, 0.0009, n))
    close = np.exp(logp)
    out = {}
    for name, prob, scale in (("spot", spot_p, 1.0), ("um", perp_p, 2.0), ("cm", perp_p, 0.7)):
        vol = rng.lognormal(np.log(2e5 * scale), 0.6, n)
        buy = np.clip(prob + rng.normal(0, 0.08, n), 0.01, 0.99)
        hi = close * (1 + np.abs(rng.normal(0, 0.0006, n)))
        lo = close * (1 - np.abs(rng.normal(0, 0.0006, n)))
        cnt = np.maximum(1, np.round(vol / 2000))
        out[name] = pd.DataFrame(
            {
                "time": t,
                "open": np.r_[close[0], close[:-1]],
                "high": np.maximum(hi, close),
                "low": np.minimum(lo, close),
                "close": close,
                "vbuy": vol * buy,
                "vsell": vol * (1 - buy),
                "cbuy": np.round(cnt * buy),
                "csell": np.round(cnt * (1 - buy)),
                "lbuy": 0.0,
                "lsell": 0.0,
            }
        )
    return out


def build(root: Path, days: int) -> tuple[Path, Path]:
    store = ParquetStore(root / "store")
    for i, (coin, p0) in enumerate(COINS.items()):
        c = coin.lower()
        ids = {
            "spot": f"BINANCE:{c}usdt",
            "um": f"BINANCE_FUTURES:{c}usdt",
            "cm": f"BINANCE_FUTURES:{c}usd_perp",
        }
        for name, bars in make_minutes(i + 1, days, p0).items():
            kind = "spot" if name == "spot" else "perp"
            store.write_bars(ids[name], kind, bars, "1m")
            store.add_coverage(ids[name], T0, T0 + days * 86_400)
        export_candles(
            store,
            f"{coin}/USDT:USDT",
            ["5m", "1h"],
            root / "data" / "binance",
            T0,
            T0 + days * 86_400,
        )
    return root / "store", root / "data" / "binance"


def run(strategy: str, path: Path, store: Path, datadir: Path, userdir: Path, days: int):
    end = pd.Timestamp(T0 + days * 86_400, unit="s")
    timerange = f"20240104-{end:%Y%m%d}"
    cmd = [
        sys.executable,
        "-m",
        "feeder.tools.offline",
        "--markets",
        str(REPO.parent / "shared/data/market/cryptofeed"),
        "backtesting",
        "--config",
        str(REPO / "config.json"),
        "--strategy",
        strategy,
        "--strategy-path",
        str(path),
        "--datadir",
        str(datadir),
        "--userdir",
        str(userdir),
        "--timerange",
        timerange,
        "--pairs",
        "BTC/USDT:USDT",
        "ETH/USDT:USDT",
        "--export",
        "none",
        "--cache",
        "none",
    ]
    env = {**os.environ, "SQUEEZEFLOW_PARQUET_DIR": str(store), "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    if status != 0 or "STRATEGY SUMMARY" not in text:
        raise SystemExit(f"{strategy} backtest failed:\n{text[-3000:]}")
    summary = text[text.index("STRATEGY SUMMARY") :]
    trades = int(summary.split(strategy)[1].split("│")[1])
    return wall, usage.ru_maxrss / 1024, trades


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build the data here and keep it")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="sf-bt-bench-"))
    header("SqueezeFlow year-long backtest vs a plain TA-Lib strategy (issue 3)")
    t = time.perf_counter()
    store, datadir = build(root, args.days)
    print(
        f"SYNTHETIC data: {args.days} days x 2 coins x 3 markets of 1m bars + candles, "
        f"built in {time.perf_counter() - t:.1f}s"
    )
    userdir = root / "user_data"
    for sub in ("strategies", "backtest_results", "logs"):
        (userdir / sub).mkdir(parents=True, exist_ok=True)
    results = {}
    for name, path in (
        ("SqueezeFlow", REPO / "user_data/strategies"),
        ("TALibBaseline", REPO / "bench/strategies"),
    ):
        runs = [run(name, path, store, datadir, userdir, args.days) for _ in range(args.runs)]
        walls = [r[0] for r in runs]
        results[name] = {
            "best_s": min(walls),
            "median_s": statistics.median(walls),
            "peak_rss_mb": max(r[1] for r in runs),
            "trades": runs[0][2],
        }
        print(
            f"{name:14s} best {min(walls):6.2f}s median {statistics.median(walls):6.2f}s "
            f"peak RSS {results[name]['peak_rss_mb']:6.0f} MB trades {runs[0][2]}"
        )
    ratio = results["SqueezeFlow"]["best_s"] / results["TALibBaseline"]["best_s"]
    print(
        f"ratio SqueezeFlow / TA-Lib (best): {ratio:.2f} (goal <= 1.5); "
        f"SqueezeFlow under 60 s: {results['SqueezeFlow']['best_s'] < 60}"
    )
    footer()
    print(json.dumps(results))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
