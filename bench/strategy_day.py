"""Issue 3 benchmark: strategy time for one day of 1-second-derived flow for one coin.

Strategy time = load the flow from the Parquet store (``FlowSource.history``) + merge into the
candles + the whole method (``squeezeflow.compute``), for one day of candles (plus the warm-up
the strategy loads with it). Measured at 5m and in 1-second mode (a candle per second).
Goal: under 1 s per day. The first SqueezeFlow system took 2-3 s per day at 5m and ~25 s per
day in its 1-second mode.

Data: the labelled SYNTHETIC planted market (``feeder.tools.synthetic``), 4 days of trades on BTC
spot, USD-M and COIN-M, imported through the real pipeline. With ``--influx`` the same bars
(1 s, 1 m and coverage) are also written to a private InfluxDB (``scripts/servers.sh``, stopped at
the end) and every mode is timed on both backends in the same run; the frames must be identical.

    .venv/bin/python bench/strategy_day.py [--runs 5] [--influx]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "user_data/strategies")]

from _common import footer, header, private_influx  # noqa: E402
from squeezeflow import MethodParams, compute  # noqa: E402

from feeder.history.binance_archive import discover  # noqa: E402
from feeder.history.export import candles  # noqa: E402
from feeder.history.importer import import_files  # noqa: E402
from feeder.read.flow_source import FLOW_COLUMNS, FlowSource  # noqa: E402
from feeder.settings import settings_from_dict  # noqa: E402
from feeder.stores.influx import InfluxStore  # noqa: E402
from feeder.stores.parquet import ParquetStore  # noqa: E402
from feeder.tools.synthetic import Scenario, generate  # noqa: E402


def strategy_time(src: FlowSource, ohlcv: pd.DataFrame, timeframe_s: int, p: MethodParams) -> float:
    src._history.clear()  # a cold load every run
    t0 = time.perf_counter()
    flow = src.history("BTC", ohlcv["date"].iloc[0], ohlcv["date"].iloc[-1])
    df = ohlcv.merge(
        flow[[*FLOW_COLUMNS, "complete"]], left_on="date", right_index=True, how="left"
    )
    df["cvd_ok"] = df["complete"].astype("boolean").fillna(False).astype(bool)
    compute(df, p, timeframe_s)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--influx", action="store_true", help="also time InfluxDB, beside Parquet")
    args = ap.parse_args()
    header("SqueezeFlow strategy time for one day of 1-second-derived flow (issue 3)")
    root = Path(tempfile.mkdtemp(prefix="sf-day-bench-"))
    sc = Scenario(days=4, seed=3)
    generate(sc, root / "archive")
    coins = {
        "BTC": {
            "spot": ["BINANCE:btcusdt"],
            "perp": ["BINANCE_FUTURES:btcusdt", "BINANCE_FUTURES:btcusd_perp"],
        }
    }
    settings = settings_from_dict({"coins": coins}, env=False)
    store = ParquetStore(root / "store")
    rep = import_files(discover(root / "archive", None), store, settings, progress=False)
    print(f"SYNTHETIC: {rep.trades_ok:,} trades -> {rep.bars_1s:,} 1s bars (3 BTC markets)")
    try:
        if args.influx:
            with private_influx() as srv:
                isettings = settings_from_dict(
                    {"coins": coins, "store": {"backend": "influx", "influx": {"url": srv.url}}},
                    env=False,
                )
                influx = InfluxStore(isettings.store.influx)
                influx.setup()
                copy_store(store, influx, sc.t0, sc.t0 + 4 * 86_400)
                print(f"copied to InfluxDB; waited {srv.wait_idle():.0f} s for it to go idle")
                run_modes(args.runs, sc, store, {"parquet": store, "influx": influx}, settings)
                influx.close()
        else:
            run_modes(args.runs, sc, store, {"parquet": store}, settings)
    finally:
        footer()
        shutil.rmtree(root, ignore_errors=True)


def copy_store(src: ParquetStore, dst: InfluxStore, start: int, end: int) -> None:
    for m, kind in src.markets().items():
        for res in ("1s", "1m"):
            dst.write_bars(m, kind, src.read_bars(m, start, end, res), res)
        for s, e in src.coverage(m):
            dst.add_coverage(m, int(s), int(e))


def run_modes(runs: int, sc: Scenario, store: ParquetStore, stores: dict, settings) -> None:
    day_end = sc.t0 + 4 * 86_400
    frames: dict[tuple[str, str], pd.DataFrame] = {}
    for tf, timeframe_s, p in (("5m", 300, MethodParams()), ("1s", 1, MethodParams())):
        warm = (
            660 * timeframe_s if timeframe_s >= 60 else (MethodParams().warmup + 100) * timeframe_s
        )
        start = day_end - 86_400 - warm
        ohlcv = candles(store, "BINANCE_FUTURES:btcusdt", start, day_end, tf)
        if timeframe_s == 1:  # quiet seconds have no bar: FreqTrade would forward-fill them
            idx = pd.date_range(ohlcv["date"].iloc[0], ohlcv["date"].iloc[-1], freq="1s")
            ohlcv = ohlcv.set_index("date").reindex(idx).ffill().rename_axis("date").reset_index()
        for name, st in stores.items():
            src = FlowSource(settings, tf, store=st)
            times = [strategy_time(src, ohlcv, timeframe_s, p) for _ in range(runs + 1)][1:]
            reads = [read_time(src, ohlcv) for _ in range(runs)]
            frames[(tf, name)] = next(iter(src._history.values()))
            print(
                f"{tf:>3s} {name:>7s}: {len(ohlcv):>7,} candles (1 day + warm-up): "
                f"best {min(times):.3f}s, median {statistics.median(times):.3f}s "
                f"(read alone: best {min(reads):.3f}s, median {statistics.median(reads):.3f}s; "
                "goal < 1 s)",
                flush=True,
            )
        if len(stores) > 1:
            a, b = frames[(tf, "parquet")], frames[(tf, "influx")]
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
            print(f"{tf:>3s}: Parquet and InfluxDB flow frames identical ({len(a):,} candles)")


def read_time(src: FlowSource, ohlcv: pd.DataFrame) -> float:
    src._history.clear()
    t0 = time.perf_counter()
    src.history("BTC", ohlcv["date"].iloc[0], ohlcv["date"].iloc[-1])
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
