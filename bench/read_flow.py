"""Read path: ``load_flow`` of 30 days of one coin at 5m from Parquet and from InfluxDB.

SYNTHETIC 1-second bars of 2 spot markets (``BINANCE:btcusdt``, ``BYBIT:btcusdt``) and 2 perp
markets (``BINANCE_FUTURES:btcusdt``, ``BYBIT_FUTURES:btcusdt``) are written, day by day, as 1s
bars plus exact 1m rollups (``feeder.ingest.aggregate.rollup``) plus coverage (``add_coverage``)
into a
``ParquetStore`` (temp dir) and a private InfluxDB (``scripts/servers.sh``, stopped at the end).
Then ``load_flow(store, settings, "BTC", start, end, "5m")`` (including building its DataFrame)
is timed on each backend: one warm-up, then best and median of 5 runs. Both results must agree.
A backend that misses its goal (or any with ``--profile``) is profiled with cProfile.

Goals: < 0.3 s Parquet, < 1.5 s InfluxDB.

    .venv/bin/python bench/read_flow.py [--days 30] [--runs 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import best_median, footer, header, private_influx, table  # noqa: E402
from synthetic import START_S, bar_frames  # noqa: E402

from feeder.ingest.aggregate import rollup  # noqa: E402
from feeder.read.flow import load_flow  # noqa: E402
from feeder.settings import settings_from_dict  # noqa: E402
from feeder.stores.influx import InfluxStore  # noqa: E402
from feeder.stores.parquet import ParquetStore  # noqa: E402

SPOT = ["BINANCE:btcusdt", "BYBIT:btcusdt"]
PERP = ["BINANCE_FUTURES:btcusdt", "BYBIT_FUTURES:btcusdt"]
GOALS = {"parquet": 0.3, "influx": 1.5}
TF = "5m"


class TimedInflux(InfluxStore):
    """InfluxStore that records each query's wall time and response size (profiling only)."""

    log: list[tuple[str, float, int]]

    def query(self, q: str, *, chunked: bool = True):  # type: ignore[override]
        t0 = time.perf_counter()
        df = super().query(q, chunked=chunked)
        self.log.append((q, time.perf_counter() - t0, len(df)))
        return df


def populate(parquet: ParquetStore, influx: InfluxStore, days: int) -> dict[str, float]:
    spent = {"generate": 0.0, "parquet": 0.0, "influx": 0.0}
    points = {"1s": 0, "1m": 0}
    t_start = time.perf_counter()
    t_gen = time.perf_counter()
    for i, (m, kind, day, bars) in enumerate(bar_frames(SPOT + PERP, days)):
        bars_1m = rollup(bars, 60)
        spent["generate"] += time.perf_counter() - t_gen
        points["1s"] += len(bars)
        points["1m"] += len(bars_1m)
        for name, store in (("parquet", parquet), ("influx", influx)):
            t0 = time.perf_counter()
            store.write_bars(m, kind, bars, "1s")
            store.write_bars(m, kind, bars_1m, "1m")
            store.add_coverage(m, day, day + 86_400)
            spent[name] += time.perf_counter() - t0
        if (i + 1) % 4 == 0:
            d = (i + 1) // 4
            print(
                f"  day {d}/{days} written: {points['1s']:,} 1s + {points['1m']:,} 1m points; "
                f"InfluxDB {spent['influx']:.0f} s, Parquet {spent['parquet']:.0f} s, "
                f"elapsed {time.perf_counter() - t_start:.0f} s",
                flush=True,
            )
        t_gen = time.perf_counter()
    total = points["1s"] + points["1m"]
    print(
        f"SYNTHETIC data written: {points['1s']:,} 1s bars + {points['1m']:,} 1m bars; "
        f"InfluxDB {spent['influx']:.1f} s ({total / spent['influx']:,.0f} points/s), "
        f"Parquet {spent['parquet']:.1f} s, generation {spent['generate']:.1f} s"
    )
    return spent


def time_runs(store, settings, start: int, end: int, runs: int) -> tuple[list[float], object]:
    df = load_flow(store, settings, "BTC", start, end, TF)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        df = load_flow(store, settings, "BTC", start, end, TF)
        times.append(time.perf_counter() - t0)
    return times, df


def profile(store, settings, start: int, end: int) -> str:
    pr = cProfile.Profile()
    pr.enable()
    load_flow(store, settings, "BTC", start, end, TF)
    pr.disable()
    out = io.StringIO()
    st = pstats.Stats(pr, stream=out).strip_dirs()
    st.sort_stats("cumulative").print_stats(25)
    st.sort_stats("tottime").print_stats(12)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="profile both backends, goal or not")
    args = ap.parse_args(argv)

    header(f"load_flow read path (SYNTHETIC, 1 coin, 4 markets, {args.days} days, {TF})")
    tmp = Path(tempfile.mkdtemp(prefix="sfbench-read."))
    start, end = START_S, START_S + args.days * 86_400
    results: dict[str, tuple[float, float, list[float]]] = {}
    frames = {}
    profiles: dict[str, str] = {}
    breakdown: list[tuple[str, float, int]] = []
    tf_rows: list[list[str]] = []
    try:
        with private_influx() as srv:
            settings = settings_from_dict(
                {
                    "coins": {"BTC": {"spot": SPOT, "perp": PERP}},
                    "store": {
                        "backend": "influx",
                        "parquet_dir": str(tmp / "parquet"),
                        "influx": {"url": srv.url},
                    },
                },
                env=False,
            )
            parquet = ParquetStore(settings.store.parquet_dir)
            influx = TimedInflux(settings.store.influx)
            influx.log = []
            influx.setup()
            populate(parquet, influx, args.days)
            waited = srv.wait_idle()
            print(f"waited {waited:.0f} s for influxd to go idle (WAL flush / compactions)")
            print()
            for name, store in (("parquet", parquet), ("influx", influx)):
                times, df = time_runs(store, settings, start, end, args.runs)
                best, med = best_median(times, higher_is_better=False)
                results[name] = (best, med, times)
                frames[name] = df
                print(
                    f"  {name}: best {best:.3f} s, median {med:.3f} s "
                    f"(runs: {' '.join(f'{t:.3f}' for t in times)})",
                    flush=True,
                )
                if args.profile or best >= GOALS[name]:
                    profiles[name] = profile(store, settings, start, end)
            influx.log = []
            load_flow(influx, settings, "BTC", start, end, TF)
            breakdown = list(influx.log)
            tf_rows = []
            for tf in ("1h", "5m", "1m"):
                t0 = time.perf_counter()
                load_flow(influx, settings, "BTC", start, end, tf)
                t_influx = time.perf_counter() - t0
                t0 = time.perf_counter()
                load_flow(parquet, settings, "BTC", start, end, tf)
                tf_rows.append([tf, f"{t_influx:.3f}", f"{time.perf_counter() - t0:.3f}"])
            influx.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    import numpy as np

    a, b = frames["parquet"], frames["influx"]
    same = a.shape == b.shape and all(
        np.allclose(a[c].to_numpy(float), b[c].to_numpy(float), equal_nan=True, rtol=1e-9)
        for c in a.columns
    )
    n_complete = int(a["complete"].sum())
    print()
    print(
        f"result: {len(a):,} candles x {a.shape[1]} columns, {n_complete:,} complete; "
        f"Parquet and InfluxDB frames {'identical' if same else 'DIFFER'}"
    )
    print()
    print(
        f"load_flow(store, settings, 'BTC', {args.days} days, '{TF}'), "
        f"1 warm-up + {args.runs} runs:"
    )
    rows = []
    for name, (best, med, _times) in results.items():
        rows.append(
            [
                name,
                f"{best:.3f}",
                f"{med:.3f}",
                f"< {GOALS[name]}",
                "PASS" if best < GOALS[name] else "FAIL",
            ]
        )
    print(table(["backend", "best s", "median s", "goal s", "result"], rows))
    print()
    print("InfluxDB queries issued by one load_flow call:")
    print(
        table(
            ["query", "wall s", "rows"],
            [
                [q[:90].replace("|", "\\|") + ("..." if len(q) > 90 else ""), f"{t:.3f}", f"{n:,}"]
                for q, t, n in breakdown
            ],
        )
    )
    print()
    print("load_flow at other timeframes, one run each (info, no goal):")
    print(table(["timeframe", "influx s", "parquet s"], tf_rows))
    for name, text in profiles.items():
        print()
        print(f"cProfile of one load_flow call on {name}:")
        print(text)
    footer()
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
