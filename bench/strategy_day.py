"""Issue 3 benchmark: strategy time for one day of 1-second-derived flow for one coin.

Strategy time = load the flow from the Parquet store (``FlowSource.history``) + merge into the
candles + the whole method (``squeezeflow.compute``), for one day of candles (plus the warm-up
the strategy loads with it). Measured at 5m and in 1-second mode (a candle per second).
Goal: under 1 s per day. The first SqueezeFlow system took 2-3 s per day at 5m and ~25 s per
day in its 1-second mode.

Data: the labelled SYNTHETIC planted market (``feeder.tools.synthetic``), 4 days of trades on BTC
spot, USD-M and COIN-M, imported through the real pipeline.

    .venv/bin/python bench/strategy_day.py [--runs 5]
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

from _common import footer, header  # noqa: E402
from squeezeflow import MethodParams, compute  # noqa: E402

from feeder.history.binance_archive import discover  # noqa: E402
from feeder.history.export import candles  # noqa: E402
from feeder.history.importer import import_files  # noqa: E402
from feeder.read.flow_source import FLOW_COLUMNS, FlowSource  # noqa: E402
from feeder.settings import settings_from_dict  # noqa: E402
from feeder.stores.parquet import ParquetStore  # noqa: E402
from feeder.tools.synthetic import Scenario, generate  # noqa: E402


def strategy_time(src: FlowSource, ohlcv: pd.DataFrame, tf_s: int, p: MethodParams) -> float:
    src._history.clear()  # a cold load every run
    t0 = time.perf_counter()
    flow = src.history("BTC", ohlcv["date"].iloc[0], ohlcv["date"].iloc[-1])
    df = ohlcv.merge(
        flow[[*FLOW_COLUMNS, "complete"]], left_on="date", right_index=True, how="left"
    )
    df["cvd_ok"] = df["complete"].astype("boolean").fillna(False).astype(bool)
    compute(df, p, tf_s)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    header("SqueezeFlow strategy time for one day of 1-second-derived flow (issue 3)")
    root = Path(tempfile.mkdtemp(prefix="sf-day-bench-"))
    sc = Scenario(days=4, seed=3)
    generate(sc, root / "archive")
    settings = settings_from_dict(None, env=False)
    store = ParquetStore(root / "store")
    rep = import_files(discover(root / "archive", None), store, settings, progress=False)
    print(f"SYNTHETIC: {rep.trades_ok:,} trades -> {rep.bars_1s:,} 1s bars (3 BTC markets)")
    day_end = sc.t0 + 4 * 86_400
    rows = []
    for tf, tf_s, p in (("5m", 300, MethodParams()), ("1s", 1, MethodParams())):
        warm = 660 * tf_s if tf_s >= 60 else (MethodParams().warmup + 100) * tf_s
        start = day_end - 86_400 - warm
        ohlcv = candles(store, "BINANCE_FUTURES:btcusdt", start, day_end, tf)
        if tf_s == 1:  # quiet seconds have no bar: FreqTrade would forward-fill them
            idx = pd.date_range(ohlcv["date"].iloc[0], ohlcv["date"].iloc[-1], freq="1s")
            ohlcv = ohlcv.set_index("date").reindex(idx).ffill().rename_axis("date").reset_index()
        src = FlowSource(settings, tf, store=store)
        times = [strategy_time(src, ohlcv, tf_s, p) for _ in range(args.runs + 1)][1:]
        rows.append((tf, len(ohlcv), min(times), statistics.median(times)))
        print(
            f"{tf:>3s}: {len(ohlcv):>7,} candles (1 day + warm-up): best {min(times):.3f}s, "
            f"median {statistics.median(times):.3f}s (goal < 1 s)"
        )
    footer()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
