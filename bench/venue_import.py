"""Import throughput of every trade archive format, Binance beside the new ones, in one run.

The same SYNTHETIC day of trades (``--trades``, default 2 M) is written in each venue's layout
and native compression: Binance USD-M aggTrades (zip), Bybit derivatives (csv.gz, UUID trade
ids, float-second times), Bybit spot (csv.gz), OKX swap (zip, contracts), Tardis
binance-futures (csv.gz). Each import runs the production path
(``feeder.history.importer.import_files``
or ``feeder.history.venue_import.import_venue_files``: read, normalise, 1s bars, 1m rollups, Parquet
writes, ledger, coverage) in a fresh subprocess pinned to ONE CPU with Arrow/BLAS threads 1,
timed from the call to its return; peak RSS is the subprocess's VmHWM.

Goal: >= 3,000,000 trades/s per core for every trade format.

    .venv/bin/python bench/venue_import.py [--trades 2000000] [--repeats 3]
        [--files DIR]  # build the files once into DIR (files.json), reuse them afterwards
        [--before CODE_DIR]  # also run each import with the feeder package of CODE_DIR
                             # (e.g. `git archive <commit> feeder | tar -x -C CODE_DIR`),
                             # interleaved with this tree's, as rows "<format> (before)"
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [os.environ.get("SF_BENCH_CODE", str(REPO)), str(REPO / "bench")]

from _common import footer, header, table  # noqa: E402

DAY = 1_735_689_600  # 2025-01-01
ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ARROW_NUM_THREADS": "1",
}
FORMATS = ("binance", "bybit", "bybit-spot", "okx", "tardis")


def _trades(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    ms = np.sort(rng.integers(DAY * 1000, (DAY + 86_400) * 1000, n))
    price = np.round(94_000 + np.cumsum(rng.normal(0, 2, n)), 1)
    return pd.DataFrame(
        {
            "id": np.arange(1_000_000, 1_000_000 + n),
            "ms": ms,
            "price": price,
            "qty": np.round(rng.lognormal(-4, 1.2, n), 3) + 0.001,
            "sell": rng.random(n) < 0.48,
        }
    )


def _gz(path: Path, text: bytes) -> None:
    with gzip.open(path, "wb", compresslevel=6) as fh:
        fh.write(text)


def _zip(path: Path, text: bytes) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(path.with_suffix(".csv").name, text)


def build(root: Path, n: int) -> dict[str, Path]:
    tr = _trades(n)
    side = np.where(tr.sell, "sell", "buy")
    out: dict[str, Path] = {}
    p = root / "binance/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-01-01.zip"
    p.parent.mkdir(parents=True)
    df = pd.DataFrame(
        {
            "a": tr.id,
            "p": tr.price,
            "q": tr.qty,
            "f": tr.id,
            "l": tr.id,
            "T": tr.ms,
            "m": np.where(tr.sell, "true", "false"),
        }
    )
    _zip(p, df.to_csv(index=False, header=False).encode())
    out["binance"] = p

    p = root / "bybit/trading/BTCUSDT/BTCUSDT2025-01-01.csv.gz"
    p.parent.mkdir(parents=True)
    u = np.random.default_rng(1).integers(0, 2**63, (n, 2), dtype=np.int64)
    hexes = [f"{a:016x}{b:016x}" for a, b in u.tolist()]
    ids = [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexes]
    df = pd.DataFrame(
        {
            "timestamp": (tr.ms / 1000).map("{:.4f}".format),
            "symbol": "BTCUSDT",
            "side": np.where(tr.sell, "Sell", "Buy"),
            "size": tr.qty,
            "price": tr.price,
            "tickDirection": "ZeroPlusTick",
            "trdMatchID": ids,
            "grossValue": 0,
            "homeNotional": tr.qty,
            "foreignNotional": tr.qty * tr.price,
        }
    )
    _gz(p, df.to_csv(index=False).encode())
    out["bybit"] = p

    p = root / "bybit/spot/BTCUSDT/BTCUSDT_2025-01-01.csv.gz"
    p.parent.mkdir(parents=True)
    df = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "timestamp": tr.ms,
            "price": tr.price,
            "volume": tr.qty,
            "side": side,
            "rpi": 0,
        }
    )
    _gz(p, df.to_csv(index=False).encode())
    out["bybit-spot"] = p

    p = root / "okx/trades/daily/20250101/BTC-USDT-SWAP-trades-2025-01-01.zip"
    p.parent.mkdir(parents=True)
    contracts = np.maximum(1.0, np.round(tr.qty * 100))
    df = pd.DataFrame(
        {
            "instrument_name": "BTC-USDT-SWAP",
            "trade_id": tr.id,
            "side": side,
            "price": tr.price,
            "size": contracts,
            "created_time": tr.ms,
        }
    )
    _zip(p, df.to_csv(index=False).encode())
    out["okx"] = p

    p = root / "tardis/binance-futures_trades_2025-01-01_BTCUSDT.csv.gz"
    p.parent.mkdir(parents=True)
    df = pd.DataFrame(
        {
            "exchange": "binance-futures",
            "symbol": "BTCUSDT",
            "timestamp": tr.ms * 1000,
            "local_timestamp": tr.ms * 1000 + 80_000,
            "id": tr.id,
            "side": side,
            "price": tr.price,
            "amount": tr.qty,
        }
    )
    # local_timestamp past midnight would belong to the next file: keep the last 80 ms out
    df = df[df.local_timestamp < (DAY + 86_400) * 1_000_000]
    _gz(p, df.to_csv(index=False).encode())
    out["tardis"] = p
    return out


def worker(fmt: str, path: str) -> dict[str, object]:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    from feeder.settings import settings_from_dict
    from feeder.stores.parquet import ParquetStore

    settings = settings_from_dict(None, env=False)
    store_dir = tempfile.mkdtemp(prefix="sfbench-venue.")
    try:
        store = ParquetStore(store_dir)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if fmt == "binance":
            from feeder.history.binance_archive import parse_archive_name
            from feeder.history.importer import import_files

            af = parse_archive_name(path)
            assert af is not None
            rep = import_files([af], store, settings, progress=False)
        else:
            from feeder.history.venue_files import discover_venue_files
            from feeder.history.venue_import import import_venue_files

            rep = import_venue_files(
                discover_venue_files(Path(path)), store, settings, progress=False
            )
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
    hwm = next(
        int(x.split()[1]) / 1024
        for x in Path("/proc/self/status").read_text().splitlines()
        if x.startswith("VmHWM:")
    )
    return {
        "trades": rep.trades_in,
        "accepted": rep.trades_ok,
        "wall_s": wall,
        "cpu_s": cpu,
        "hwm_mb": hwm,
        "code": str(Path(sys.modules["feeder"].__file__ or "").parent.parent),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trades", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", choices=FORMATS)
    ap.add_argument("--file")
    ap.add_argument("--files", type=Path)
    ap.add_argument("--before", type=Path)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.file)))
        return
    header("Trade archive import throughput per format, one core (issue 9)")
    root = args.files or Path(tempfile.mkdtemp(prefix="sf-venue-bench-"))
    listing = root / "files.json"
    try:
        if args.files and listing.exists():
            files = {k: Path(v) for k, v in json.loads(listing.read_text()).items()}
            print(f"SYNTHETIC files reused from {root}")
        else:
            t = time.perf_counter()
            files = build(root, args.trades)
            listing.write_text(json.dumps({k: str(v) for k, v in files.items()}))
            print(
                f"SYNTHETIC day of {args.trades:,} trades written in 5 layouts in "
                f"{time.perf_counter() - t:.0f}s"
            )
        codes = {"": REPO} | ({" (before)": args.before} if args.before else {})
        res: dict[str, list[dict]] = {f + c: [] for f in FORMATS for c in codes}
        for _ in range(args.repeats):  # interleaved: load changes hit every format alike
            for fmt in FORMATS:
                for label, code in codes.items():
                    env = {**os.environ, **ONE_THREAD_ENV, "PYTHONPATH": str(code)}
                    env["SF_BENCH_CODE"] = str(code)
                    cmd = [sys.executable, __file__, "--worker", fmt, "--file", str(files[fmt])]
                    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                    res[fmt + label].append(json.loads(r.stdout.strip().splitlines()[-1]))
        rows = []
        bin_cps = max(r["trades"] / r["cpu_s"] for r in res["binance"])
        for fmt, runs in res.items():
            tps = [r["trades"] / r["wall_s"] for r in runs]
            cps = [r["trades"] / r["cpu_s"] for r in runs]
            rows.append(
                [
                    fmt,
                    f"{runs[0]['trades']:,}",
                    f"{runs[0]['accepted']:,}",
                    f"{max(tps) / 1e6:.2f} M",
                    f"{statistics.median(tps) / 1e6:.2f} M",
                    f"{max(cps) / 1e6:.2f} M",
                    f"{statistics.median(cps) / 1e6:.2f} M",
                    f"{max(cps) / bin_cps:.2f}",
                    f"{max(r['hwm_mb'] for r in runs):.0f}",
                    f"{files[fmt.split(' ')[0]].stat().st_size / 1e6:.1f}",
                    "PASS" if max(cps) >= 3e6 else "FAIL",
                ]
            )
        print(
            table(
                [
                    "format",
                    "trades",
                    "accepted",
                    "best trades/s (wall)",
                    "median (wall)",
                    "best trades per CPU-s",
                    "median per CPU-s",
                    "per CPU-s vs Binance",
                    "peak RSS MB",
                    "file MB",
                    ">= 3 M/s",
                ],
                rows,
            )
        )
        footer()
        print(json.dumps(res))
    finally:
        if not args.files:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
