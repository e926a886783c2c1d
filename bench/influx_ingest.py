"""InfluxDB ingest: SYNTHETIC 1-second bars, 4 markets x 3 days, via ``InfluxStore.write_bars``.

Starts its own InfluxDB 1.x on a free loopback port (``scripts/servers.sh``), writes every
(market, day) frame with ``InfluxStore.write_bars(market, kind, bars, "1s")`` (line protocol,
``batch_size`` points per request, two requests in flight), each repeat into a fresh database,
and reports points/s (one point = one bar = 10 fields). It also times building the line protocol
alone (no HTTP) to separate client from server cost, reports the CPU seconds used by this
process and by influxd, checks the point count, and stops the server.

Goal: >= 100,000 points/s.

    .venv/bin/python bench/influx_ingest.py [--markets 4] [--days 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import best_median, footer, header, private_influx, table  # noqa: E402
from synthetic import BAR_MARKETS_4, bar_frames  # noqa: E402

from feeder.settings import InfluxSettings  # noqa: E402
from feeder.models import BAR_FIELDS  # noqa: E402
from feeder.sinks.influx import (  # noqa: E402
    InfluxStore,
    _chunks,
    bar_lines,
    escape_measurement,
    escape_tag,
)

GOAL = 100_000


def arrow_body(measurement: str, market: str, kind: str, bars: pd.DataFrame) -> bytes:
    """PROTOTYPE (bench only, not feeder code): the same line protocol as ``bar_lines``, built
    with vectorised pyarrow string kernels instead of a Python loop. Floats are printed by
    Arrow's shortest round-trip formatting ("3" instead of "3.0": still a float field in line
    protocol, since integers need an ``i`` suffix)."""
    prefix = f"{escape_measurement(measurement)},kind={escape_tag(kind)},market={escape_tag(market)} "
    parts = []
    for i, f in enumerate(BAR_FIELDS):
        col = pc.cast(pa.array(bars[f].to_numpy(np.float64)), pa.string())
        parts.append(pc.binary_join_element_wise(("," if i else prefix) + f + "=", col, ""))
    t = pc.cast(pa.array(bars["time"].to_numpy(np.int64)), pa.string())
    parts.append(pc.binary_join_element_wise(" ", t, "\n", ""))
    arr = pc.binary_join_element_wise(*parts, "")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)
    lo, hi = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
    return arr.buffers()[2].to_pybytes()[lo:hi]


def write_bars_arrow(store: InfluxStore, pool: ThreadPoolExecutor, market: str, kind: str,
                     bars: pd.DataFrame) -> int:
    """``InfluxStore.write_bars`` with ``arrow_body`` (same batching, two requests in flight)."""
    rp, meas = store.s.rp_1s, store.s.measurement_1s
    params = {"db": store.s.database, "precision": "s", "rp": rp}
    pending: list[Future[object]] = []
    for chunk in _chunks(bars, store.s.batch_size):
        body = arrow_body(meas, market, kind, chunk)
        pending.append(pool.submit(store._request, "POST", "/write", params=params, content=body))
        if len(pending) >= 2:
            pending.pop(0).result()
    for f in pending:
        f.result()
    return len(bars)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--markets", type=int, default=4, choices=range(1, 5))
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="each into a fresh database")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="points per /write request (default: the InfluxSettings default)")
    args = ap.parse_args(argv)

    header("InfluxDB ingest (SYNTHETIC 1s bars -> InfluxStore.write_bars)")
    frames = list(bar_frames(BAR_MARKETS_4[: args.markets], args.days))
    points = sum(len(df) for *_, df in frames)
    print(f"SYNTHETIC input: {args.markets} markets x {args.days} days of 1s bars = "
          f"{points:,} points ({points / (args.markets * args.days * 86_400):.0%} of seconds; "
          "quiet ones omitted)")

    extra = {} if args.batch_size is None else {"batch_size": args.batch_size}
    batch = InfluxSettings(**extra).batch_size

    # Client-side cost alone: the line protocol write_bars builds, without sending it.
    t0 = time.perf_counter()
    n_lines = 0
    for m, kind, _day, df in frames:
        for chunk in _chunks(df, batch):
            body = "\n".join(bar_lines("trades_1s", m, kind, chunk)).encode()
            n_lines += body.count(b"\n") + 1
    build_s = time.perf_counter() - t0
    assert n_lines == points
    print(f"line protocol only (bar_lines + join + encode, no HTTP): "
          f"{points / build_s:,.0f} points/s ({build_s:.2f} s)")

    rows = []
    rates = []
    with private_influx() as srv:
        for rep in range(args.repeats):
            s = InfluxSettings(url=srv.url, database=f"bench_ingest_{rep}", **extra)
            with InfluxStore(s) as store:
                store.setup()
                c_cpu0, s_cpu0 = _cpu_s(), srv.influx_cpu_s()
                t0 = time.perf_counter()
                written = 0
                for m, kind, _day, df in frames:
                    written += store.write_bars(m, kind, df, "1s")
                wall = time.perf_counter() - t0
                c_cpu, s_cpu = _cpu_s() - c_cpu0, srv.influx_cpu_s() - s_cpu0
                got = store.query(
                    f'SELECT count(close) FROM "{s.database}"."{s.rp_1s}"."{s.measurement_1s}"',
                    chunked=False,
                )
                stored = int(got["count"].iloc[0])
            assert written == points and stored == points, (written, stored, points)
            rates.append(points / wall)
            rows.append([str(rep + 1), f"{points:,}", f"{wall:.2f}", f"{points / wall:,.0f}",
                         f"{c_cpu:.2f}", f"{s_cpu:.2f}", f"{stored:,}"])
            print(f"  run {rep + 1}: {points / wall:,.0f} points/s ({wall:.2f} s)", flush=True)
    print()
    print(f"InfluxStore.write_bars, batch_size {batch:,}, 2 requests in flight, "
          f"{args.repeats} runs (fresh database each):")
    print(table(["run", "points", "wall s", "points/s", "client CPU s", "influxd CPU s",
                 "points stored"], rows))
    best, med = best_median(rates, higher_is_better=True)
    print()
    print(table(["goal", "target", "best", "median", "result"],
                [["points/s", f">= {GOAL:,}", f"{best:,.0f}", f"{med:,.0f}",
                  "PASS" if best >= GOAL else "FAIL"]]))
    footer()


if __name__ == "__main__":
    main()
