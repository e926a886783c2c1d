"""A year of 1-minute klines for BTC spot, USD-M and COIN-M: import, export, 5m backtest.

SYNTHETIC klines (the minute model of ``bench/strategy_backtest.py``, written as Binance
monthly ``klines/<SYM>/1m/<SYM>-1m-<YYYY-MM>.zip`` files, 36 files, 1.58 M minutes) are
imported with ``squeezeflow-feeder import --from`` (minute-resolution bars), 5m/1h candles are
exported, and FreqTrade backtests SqueezeFlow over the year on BTC/USDT:USDT through the
offline wrapper. Each step is a fresh process timed around the whole command.

Goal: import + backtest under 60 s together on this machine, files local.

    .venv/bin/python bench/klines_year.py [--days 365] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from _common import footer, header  # noqa: E402
from strategy_backtest import T0, make_minutes  # noqa: E402

MARKETS = {
    "spot": ("spot", "BTCUSDT"),
    "um": ("futures/um", "BTCUSDT"),
    "cm": ("futures/cm", "BTCUSD_PERP"),
}


def write_klines(root: Path, days: int) -> int:
    files = 0
    for name, bars in make_minutes(1, days, 42_000.0).items():
        prefix, sym = MARKETS[name]
        c = bars["close"].to_numpy()
        vol, vbuy = (bars["vbuy"] + bars["vsell"]).to_numpy(), bars["vbuy"].to_numpy()
        if name == "cm":  # contracts of 100 USD; quote column in base coin
            volume, quote, tb, tbq = vol / 100, vol / c, vbuy / 100, vbuy / c
        else:
            volume, quote, tb, tbq = vol / c, vol, vbuy / c, vbuy
        ms = bars["time"].to_numpy(np.int64) * 1000
        k = pd.DataFrame(
            {
                "t": ms,
                "o": bars["open"],
                "h": bars["high"],
                "l": bars["low"],
                "c": c,
                "v": volume,
                "ct": ms + 59_999,
                "q": quote,
                "n": (bars["cbuy"] + bars["csell"]).astype(np.int64),
                "tb": tb,
                "tbq": tbq,
                "i": 0,
            }
        )
        month = pd.to_datetime(bars["time"], unit="s").dt.strftime("%Y-%m")
        for m, part in k.groupby(month.to_numpy()):
            p = root / f"{prefix}/monthly/klines/{sym}/1m/{sym}-1m-{m}.zip"
            p.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(p.with_suffix(".csv").name, part.to_csv(index=False, header=False))
            files += 1
    return files


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    if status != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 1024, text


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    header("A year of 1m klines: import + year-long 5m backtest (issue 9)")
    results = []
    for _ in range(args.runs):
        root = Path(tempfile.mkdtemp(prefix="sf-klines-bench-"))
        try:
            t = time.perf_counter()
            n = write_klines(root / "arch", args.days)
            print(
                f"SYNTHETIC klines: {n} monthly files, {args.days} days x 3 markets, written "
                f"in {time.perf_counter() - t:.0f}s (not timed)"
            )
            env = {
                **os.environ,
                "PYTHONPATH": str(REPO),
                "SQUEEZEFLOW_PARQUET_DIR": str(root / "store"),
            }
            cli = [sys.executable, "-m", "feeder.tools.cli", "--store-dir", str(root / "store")]
            imp, imp_rss, text = timed(
                [*cli, "import", "--from", str(root / "arch"), "--no-progress"], env
            )
            assert f"imported {n} file(s)" in text, text[-2000:]
            exp, _, _ = timed(
                [
                    *cli,
                    "export-candles",
                    "--pairs",
                    "BTC/USDT:USDT",
                    "--timeframes",
                    "5m",
                    "1h",
                    "--datadir",
                    str(root / "data/binance"),
                ],
                env,
            )
            userdir = root / "user_data"
            for sub in ("strategies", "backtest_results", "logs"):
                (userdir / sub).mkdir(parents=True, exist_ok=True)
            end = pd.Timestamp(T0 + args.days * 86_400, unit="s")
            bt, bt_rss, text = timed(
                [
                    sys.executable,
                    "-m",
                    "feeder.tools.offline",
                    "--markets",
                    str(REPO.parent / "shared/data/market/cryptofeed"),
                    "backtesting",
                    "--config",
                    str(REPO / "config.json"),
                    "--strategy",
                    "SqueezeFlow",
                    "--strategy-path",
                    str(REPO / "user_data/strategies"),
                    "--datadir",
                    str(root / "data/binance"),
                    "--userdir",
                    str(userdir),
                    "--timerange",
                    f"20240104-{end:%Y%m%d}",
                    "--pairs",
                    "BTC/USDT:USDT",
                    "--export",
                    "none",
                    "--cache",
                    "none",
                ],
                env,
            )
            if "STRATEGY SUMMARY" not in text:
                raise SystemExit(text[-3000:])
            summary = text[text.index("STRATEGY SUMMARY") :]
            trades = int(summary.split("SqueezeFlow")[1].split("│")[1])
            r = {
                "import_s": imp,
                "import_rss_mb": imp_rss,
                "export_s": exp,
                "backtest_s": bt,
                "backtest_rss_mb": bt_rss,
                "trades": trades,
                "total_s": imp + exp + bt,
            }
            results.append(r)
            verdict = "PASS" if r["total_s"] < 60 else "FAIL"
            print(
                f"import {imp:.1f}s (peak RSS {imp_rss:.0f} MB), export {exp:.1f}s, "
                f"backtest {bt:.1f}s (peak RSS {bt_rss:.0f} MB, {trades} trades): total "
                f"{r['total_s']:.1f}s, goal < 60 s: {verdict}"
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)
    footer()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
