"""Archive import throughput: SYNTHETIC Binance USD-M trades CSV -> bars in a ParquetStore.

Path measured (``feeder`` code, unchanged): ``iter_raw_chunks`` (pyarrow CSV reader) ->
``DayBarWriter`` (normalise, 1 s bars, day merge, 1 m rollup) -> ``ParquetStore.write_bars``.
Every measured import runs in a fresh subprocess, timed from opening the file to the last day
written, and reports wall time, CPU time and the subprocess's peak RSS (``ru_maxrss``):

* "1 core": ``pyarrow.set_cpu_count(1)``, ``set_io_thread_count(1)``, OMP/OPENBLAS/MKL threads 1,
  and the process pinned to one CPU (``sched_setaffinity``) so no second core can help;
* "default": library defaults on every CPU.

For comparison, FreqTrade's own orderflow converter
(``freqtrade.data.converter.orderflow.populate_dataframe_with_trades``) runs on the same 1 M
trades (as the trades DataFrame FreqTrade builds, 5 m candles, the documented orderflow
settings, no cache) in its own subprocess; only the call itself is timed.

Goals: >= 3,000,000 trades/s on one core; peak RSS < 500 MB and not growing with input size.

    .venv/bin/python bench/import_throughput.py                 # 10 M and 2 M, 3 runs each
    .venv/bin/python bench/import_throughput.py --sizes 2000000 --repeats 1 --skip-freqtrade
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRADES_PER_S = 39.0  # synthetic.TRADES_PER_S (not imported here: see main)
GOAL_TPS = 3_000_000
GOAL_RSS_MB = 500
MARKET = "BINANCE_FUTURES:btcusdt"
FT_CONFIG = {
    "timeframe": "5m",
    "orderflow": {
        "cache_size": 1000,
        "max_candles": 1500,
        "scale": 0.5,
        "stacked_imbalance_range": 3,
        "imbalance_volume": 1,
        "imbalance_ratio": 3,
    },
}
ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "ARROW_NUM_THREADS": "1",
}


# ----- worker side (runs in the measured subprocess) -------------------------------------------


def _rusage() -> tuple[float, float]:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024  # CPU s, peak RSS MiB (Linux: KiB)


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _vm_hwm_mb() -> float:
    """Peak RSS of this process image only (``VmHWM``; ``ru_maxrss`` also keeps the parent's
    RSS at fork, which is why the parent process stays small)."""
    return _status_mb("VmHWM")


def _vm_rss_mb() -> float:
    return _status_mb("VmRSS")


def _setup_worker(threads: str, pin_cpu: int | None) -> None:
    if pin_cpu is not None:
        os.sched_setaffinity(0, {pin_cpu})
    import pyarrow as pa

    if threads == "1":
        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)


def worker_import(path: str, chunk_rows: int) -> dict[str, object]:
    from feeder.history.binance_archive import parse_archive_name
    from feeder.history.binance_trades import iter_raw_chunks
    from feeder.ingest.models import Kind
    from feeder.ingest.normalise import MarketSpec
    from feeder.ingest.pipeline import DayBarWriter
    from feeder.stores.parquet import ParquetStore

    af = parse_archive_name(path, "um")
    assert af is not None, path
    store_dir = tempfile.mkdtemp(prefix="sfbench-store.", dir=Path(path).parent)
    try:
        store = ParquetStore(store_dir)
        spec = MarketSpec(MARKET, Kind.PERP)
        cpu0, rss0 = _rusage()
        t0 = time.perf_counter()
        # = feeder.ingest.pipeline.ingest,
        # plus the RSS after every chunk (one /proc read per chunk).
        writer = DayBarWriter(store, spec)
        chunk_rss = []
        for raw in iter_raw_chunks(af, chunk_rows):
            writer.add_raw(raw)
            chunk_rss.append(_vm_rss_mb())
        stats = writer.close()
        wall = time.perf_counter() - t0
        cpu1, rss1 = _rusage()
        size = sum(f.stat().st_size for f in Path(store_dir).rglob("*.parquet"))
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
    return {
        "trades": stats.trades_in,
        "trades_ok": stats.trades_ok,
        "rejects": stats.rejects.total(),
        "bars_1s": stats.bars_1s,
        "bars_1m": stats.bars_1m,
        "wall_s": wall,
        "cpu_s": cpu1 - cpu0,
        "rss_mb": rss1,
        "rss_before_mb": rss0,
        "vm_hwm_mb": _vm_hwm_mb(),
        "store_mb": size / 1e6,
        "chunk_rss_mb": chunk_rss,
    }


def worker_freqtrade(path: str) -> dict[str, object]:
    import logging

    import pandas as pd
    import pyarrow.csv as pa_csv
    from freqtrade.data.converter.orderflow import populate_dataframe_with_trades
    from freqtrade.data.converter.trade_converter import trades_convert_types, trades_to_ohlcv

    logging.disable(logging.WARNING)
    raw = pa_csv.read_csv(path).to_pandas()
    # The trades DataFrame as FreqTrade builds it (DEFAULT_TRADES_COLUMNS + date), not timed.
    trades = trades_convert_types(
        pd.DataFrame(
            {
                "timestamp": raw["time"].to_numpy(),
                "id": raw["id"].to_numpy(),
                "type": None,
                "side": raw["is_buyer_maker"].map({True: "sell", False: "buy"}).to_numpy(),
                "price": raw["price"].to_numpy(),
                "amount": raw["qty"].to_numpy(),
                "cost": raw["quote_qty"].to_numpy(),
            }
        )
    )
    del raw
    candles = trades_to_ohlcv(trades, FT_CONFIG["timeframe"]).reset_index(drop=True)
    n = len(trades)
    cpu0, rss0 = _rusage()
    t0 = time.perf_counter()
    out, _cache = populate_dataframe_with_trades(None, FT_CONFIG, candles, trades)
    wall = time.perf_counter() - t0
    cpu1, rss1 = _rusage()
    return {
        "trades": n,
        "candles": len(out),
        "filled_candles": int(out["total_trades"].notna().sum()),
        "wall_s": wall,
        "cpu_s": cpu1 - cpu0,
        "rss_mb": rss1,
        "rss_before_mb": rss0,
        "vm_hwm_mb": _vm_hwm_mb(),
    }


# ----- parent side -------------------------------------------------------------------------------


def make_file(root: Path, n: int, *, zipped: bool) -> Path:
    """Generate the synthetic file in a child process (keeps this process small)."""
    cmd = [sys.executable, str(HERE / "synthetic.py"), "archive", str(root), "--trades", str(n)]
    res = subprocess.run(
        cmd + (["--zip"] if zipped else []), capture_output=True, text=True, check=True
    )
    return Path(res.stdout.strip().splitlines()[-1])


def run_worker(kind: str, path: Path, threads: str, pin_cpu: int | None, chunk_rows: int) -> dict:
    env = dict(os.environ)
    if threads == "1":
        env.update(ONE_THREAD_ENV)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--file",
        str(path),
        "--threads",
        threads,
        "--chunk-rows",
        str(chunk_rows),
    ]
    if pin_cpu is not None:
        cmd += ["--pin-cpu", str(pin_cpu)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker failed ({' '.join(cmd)}):\n{res.stdout}\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000_000, 2_000_000],
        help="input sizes in trades (default: 10000000 2000000)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="fresh-process runs per figure")
    ap.add_argument(
        "--ft-trades",
        type=int,
        default=1_000_000,
        help="trades given to FreqTrade's converter (and to our import, for the ratio)",
    )
    ap.add_argument("--ft-repeats", type=int, default=3)
    ap.add_argument("--skip-freqtrade", action="store_true")
    ap.add_argument(
        "--zip",
        action="store_true",
        help="also import the smallest size from a .zip (streamed decompression)",
    )
    ap.add_argument("--chunk-rows", type=int, default=1_000_000)
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the synthetic files go (kept and reused); default: a temp dir",
    )
    ap.add_argument("--no-pin", action="store_true", help="do not pin '1 core' runs to one CPU")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile one 1-core import of the largest size (and the zip)",
    )
    ap.add_argument("--worker", choices=["import", "freqtrade", "profile"], help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--threads", default="default", help=argparse.SUPPRESS)
    ap.add_argument("--pin-cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        _setup_worker(args.threads, args.pin_cpu)
        if args.worker == "import":
            out = worker_import(args.file, args.chunk_rows)
        elif args.worker == "profile":
            import cProfile
            import pstats

            pr = cProfile.Profile()
            pr.runcall(worker_import, args.file, args.chunk_rows)
            st = pstats.Stats(pr, stream=sys.stderr).strip_dirs()
            st.sort_stats("tottime").print_stats(18)
            st.sort_stats("cumulative").print_stats(30)
            out = {}
        else:
            out = worker_freqtrade(args.file)
        print(json.dumps(out))
        return

    # This parent process never imports pandas/pyarrow nor holds the generated data: a child's
    # ru_maxrss starts at its parent's RSS at fork, and must reflect the child's own work.
    sys.path.insert(0, str(HERE))
    from _common import best_median, footer, header, table

    header("Archive import throughput (SYNTHETIC Binance USD-M trades CSV -> ParquetStore)")
    pin = None if args.no_pin else max(os.sched_getaffinity(0))
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="sfbench-import."))
    cleanup = args.data_dir is None
    try:
        extra = [] if args.skip_freqtrade else [args.ft_trades]
        sizes = list(dict.fromkeys([*args.sizes, *extra]))
        files: dict[tuple[int, bool], Path] = {}
        for n in sizes:
            t0 = time.perf_counter()
            files[(n, False)] = make_file(data_dir, n, zipped=False)
            mb = files[(n, False)].stat().st_size / 1e6
            print(
                f"SYNTHETIC input {n:,} trades ({n / TRADES_PER_S / 3600:.1f} h at "
                f"{TRADES_PER_S:.0f} trades/s): {mb:.0f} MB CSV, "
                f"ready in {time.perf_counter() - t0:.1f} s"
            )
        if args.zip:
            n = min(args.sizes)
            files[(n, True)] = make_file(data_dir, n, zipped=True)
            print(
                f"SYNTHETIC input {n:,} trades zipped: "
                f"{files[(n, True)].stat().st_size / 1e6:.0f} MB"
            )
        print()

        modes = [("1 core", "1", pin), ("default", "default", None)]
        rows = []
        results: dict[tuple[int, bool, str], dict] = {}
        for (n, zipped), path in files.items():
            for label, threads, cpu in modes:
                runs = [
                    run_worker("import", path, threads, cpu, args.chunk_rows)
                    for _ in range(args.repeats)
                ]
                for r in runs:
                    assert r["trades_ok"] == n, r
                    if abs(r["rss_mb"] - r["vm_hwm_mb"]) > 0.05 * r["vm_hwm_mb"]:
                        print(
                            f"  note: ru_maxrss {r['rss_mb']:.0f} MB vs VmHWM "
                            f"{r['vm_hwm_mb']:.0f} MB"
                        )
                tps = [n / r["wall_s"] for r in runs]
                best, med = best_median(tps, higher_is_better=True)
                cpu_tps = max(n / r["cpu_s"] for r in runs)
                rss = max(r["rss_mb"] for r in runs)
                results[(n, zipped, label)] = {
                    "best": best,
                    "median": med,
                    "rss": rss,
                    "trace": runs[0]["chunk_rss_mb"],
                }
                where = label + (
                    f" (CPU {cpu})" if cpu is not None else f" ({os.cpu_count()} CPUs)"
                )
                rows.append(
                    [
                        f"{n:,}",
                        "zip" if zipped else "csv",
                        where,
                        f"{best:,.0f}",
                        f"{med:,.0f}",
                        f"{cpu_tps:,.0f}",
                        f"{min(r['wall_s'] for r in runs):.2f}",
                        f"{rss:.0f}",
                        f"{runs[0]['rss_before_mb']:.0f}",
                        f"{runs[0]['bars_1s']:,}/{runs[0]['bars_1m']:,}",
                    ]
                )
                print(
                    f"  {n:,} {'zip' if zipped else 'csv'} {where}: best {best:,.0f} trades/s,"
                    f" median {med:,.0f}, peak RSS {rss:.0f} MB",
                    flush=True,
                )
        print()
        print(f"Our import, {args.repeats} fresh-process runs each (SYNTHETIC input):")
        print(
            table(
                [
                    "trades",
                    "input",
                    "threads",
                    "best trades/s",
                    "median trades/s",
                    "trades per CPU-s (best)",
                    "best wall s",
                    "peak RSS MB",
                    "RSS before import MB",
                    "bars 1s/1m written",
                ],
                rows,
            )
        )

        big = max(args.sizes)
        trace = results[(big, False, "1 core")]["trace"]
        print(
            f"RSS (MB) after each {args.chunk_rows:,}-row chunk, {big:,} trades, 1 core, run 1: "
            + " ".join(f"{v:.0f}" for v in trace)
        )
        if not args.skip_freqtrade:
            n = args.ft_trades
            runs = [
                run_worker("freqtrade", files[(n, False)], "1", pin, args.chunk_rows)
                for _ in range(args.ft_repeats)
            ]
            tps = [r["trades"] / r["wall_s"] for r in runs]
            best, med = best_median(tps, higher_is_better=True)
            rss = max(r["rss_mb"] for r in runs)
            ours = results[(n, False, "1 core")]
            print()
            print(
                f"FreqTrade populate_dataframe_with_trades on the same {n:,} SYNTHETIC trades "
                f"({runs[0]['filled_candles']} 5m candles), 1 core, {args.ft_repeats} runs:"
            )
            print(
                table(
                    [
                        "converter",
                        "best trades/s",
                        "median trades/s",
                        "best wall s",
                        "peak RSS MB",
                        "RSS before call MB",
                    ],
                    [
                        [
                            "FreqTrade populate_dataframe_with_trades",
                            f"{best:,.0f}",
                            f"{med:,.0f}",
                            f"{min(r['wall_s'] for r in runs):.2f}",
                            f"{rss:.0f}",
                            f"{runs[0]['rss_before_mb']:.0f}",
                        ],
                        [
                            f"ours (CSV parse + bars + Parquet write), {n:,} trades",
                            f"{ours['best']:,.0f}",
                            f"{ours['median']:,.0f}",
                            f"{n / ours['best']:.2f}",
                            f"{ours['rss']:.0f}",
                            "-",
                        ],
                    ],
                )
            )
            print(
                f"ratio ours / FreqTrade (best, 1 core): {ours['best'] / best:,.0f}x"
                f" (median: {ours['median'] / med:,.0f}x)"
            )

        print()
        goal_rows = []
        for n in args.sizes:
            r = results[(n, False, "1 core")]
            goal_rows.append(
                [
                    f"trades/s, 1 core, {n:,} trades (best)",
                    f">= {GOAL_TPS:,}",
                    f"{r['best']:,.0f}",
                    "PASS" if r["best"] >= GOAL_TPS else "FAIL",
                ]
            )
        for n in args.sizes:
            r = max(results[(n, False, m)]["rss"] for m in ("1 core", "default"))
            goal_rows.append(
                [
                    f"peak RSS, {n:,} trades",
                    f"< {GOAL_RSS_MB} MB",
                    f"{r:.0f} MB",
                    "PASS" if r < GOAL_RSS_MB else "FAIL",
                ]
            )
        big = max(args.sizes)
        trace = results[(big, False, "1 core")]["trace"]
        half = len(trace) // 2
        if half:
            first, second = max(trace[:half]), max(trace[half:])
            goal_rows.append(
                [
                    f"RSS after each 1M-row chunk, {big:,} trades: max of 2nd half vs 1st half",
                    "no growth (<= +10%)",
                    f"{first:.0f} -> {second:.0f} MB",
                    "PASS" if second <= 1.1 * first else "FAIL",
                ]
            )
        if len(args.sizes) > 1:
            rss = {
                n: max(results[(n, False, m)]["rss"] for m in ("1 core", "default"))
                for n in args.sizes
            }
            small = min(args.sizes)
            goal_rows.append(
                [
                    f"peak RSS {small:,} -> {big:,} trades ({big / small:.0f}x input)",
                    "(info: bounded, not proportional)",
                    f"{rss[small]:.0f} -> {rss[big]:.0f} MB ({rss[big] / rss[small] - 1:+.0%})",
                    "-",
                ]
            )
        print(table(["goal", "target", "measured", "result"], goal_rows))
        if args.profile:
            targets = [(max(args.sizes), False)] + ([(min(args.sizes), True)] if args.zip else [])
            for key in targets:
                env = dict(os.environ, **ONE_THREAD_ENV)
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--worker",
                    "profile",
                    "--file",
                    str(files[key]),
                    "--threads",
                    "1",
                    "--chunk-rows",
                    str(args.chunk_rows),
                ]
                if pin is not None:
                    cmd += ["--pin-cpu", str(pin)]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                print()
                print(f"cProfile of one 1-core import of {files[key].name}:")
                print(res.stderr)
        footer()
    finally:
        if cleanup:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
