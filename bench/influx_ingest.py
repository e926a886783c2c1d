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

from feeder.models import BAR_FIELDS  # noqa: E402
from feeder.settings import InfluxSettings  # noqa: E402
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
    tags = f"kind={escape_tag(kind)},market={escape_tag(market)}"
    prefix = f"{escape_measurement(measurement)},{tags} "
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
    ap.add_argument("--prototype", action="store_true",
                    help="also run a vectorised (pyarrow) line-protocol builder, bench-only")
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
    builders = {
        "feeder bar_lines": lambda m, k, c: "\n".join(bar_lines("trades_1s", m, k, c)).encode(),
        "prototype arrow_body": lambda m, k, c: arrow_body("trades_1s", m, k, c),
    }
    if not args.prototype:
        del builders["prototype arrow_body"]
    for label, build in builders.items():
        t0 = time.perf_counter()
        n_lines = 0
        for m, kind, _day, df in frames:
            for chunk in _chunks(df, batch):
                n_lines += build(m, kind, chunk).rstrip(b"\n").count(b"\n") + 1
        build_s = time.perf_counter() - t0
        assert n_lines == points
        print(f"line protocol only ({label}, no HTTP): {points / build_s:,.0f} points/s "
              f"({build_s:.2f} s, {build_s / points * 1e6:.1f} us/point)")
    if args.prototype:
        m, kind, _day, df = frames[0]
        a = builders["feeder bar_lines"](m, kind, df).decode().split("\n")
        b = builders["prototype arrow_body"](m, kind, df).decode().rstrip("\n").split("\n")
        assert len(a) == len(b)
        for la, lb in zip(a, b, strict=True):
            ka, fa, ta = la.split(" ")
            kb, fb, tb = lb.split(" ")
            assert ka == kb and ta == tb
            va = [float(x.split("=")[1]) for x in fa.split(",")]
            vb = [float(x.split("=")[1]) for x in fb.split(",")]
            assert va == vb, (la, lb)
        print("prototype lines carry exactly the same values as bar_lines (checked one frame)")

    variants = ["feeder"] + (["prototype"] if args.prototype else [])
    rates: dict[str, list[float]] = {v: [] for v in variants}
    rows = []
    with private_influx() as srv:
        for variant in variants:
            for rep in range(args.repeats):
                s = InfluxSettings(url=srv.url, database=f"bench_{variant}_{rep}", **extra)
                with InfluxStore(s) as store, ThreadPoolExecutor(2) as pool:
                    store.setup()
                    srv.wait_idle(quiet_s=2.0)  # previous run's WAL flush/compaction finished
                    c_cpu0, s_cpu0 = _cpu_s(), srv.influx_cpu_s()
                    t0 = time.perf_counter()
                    written = 0
                    for m, kind, _day, df in frames:
                        if variant == "feeder":
                            written += store.write_bars(m, kind, df, "1s")
                        else:
                            written += write_bars_arrow(store, pool, m, kind, df)
                    wall = time.perf_counter() - t0
                    c_cpu, s_cpu = _cpu_s() - c_cpu0, srv.influx_cpu_s() - s_cpu0
                    got = store.query(
                        f'SELECT count(close) FROM "{s.database}"."{s.rp_1s}"."{s.measurement_1s}"',
                        chunked=False,
                    )
                    stored = int(got["count"].iloc[0])
                assert written == points and stored == points, (written, stored, points)
                rates[variant].append(points / wall)
                label = ("InfluxStore.write_bars" if variant == "feeder"
                         else "PROTOTYPE arrow line builder (not feeder code)")
                rows.append([label, str(rep + 1), f"{points:,}", f"{wall:.2f}",
                             f"{points / wall:,.0f}", f"{c_cpu:.2f}", f"{s_cpu:.2f}",
                             f"{stored:,}"])  # fmt: skip
                print(f"  {variant} run {rep + 1}: {points / wall:,.0f} points/s ({wall:.2f} s)",
                      flush=True)
    print()
    print(f"batch_size {batch:,} points per request, 2 requests in flight, "
          f"{args.repeats} runs per variant (fresh database each):")
    print(table(["writer", "run", "points", "wall s", "points/s", "client CPU s",
                 "influxd CPU s", "points stored"], rows))
    best, med = best_median(rates["feeder"], higher_is_better=True)
    goal_rows = [["points/s, InfluxStore.write_bars", f">= {GOAL:,}", f"{best:,.0f}",
                  f"{med:,.0f}", "PASS" if best >= GOAL else "FAIL"]]
    if args.prototype:
        pb, pm = best_median(rates["prototype"], higher_is_better=True)
        goal_rows.append(["points/s, prototype arrow line builder (info)", f">= {GOAL:,}",
                          f"{pb:,.0f}", f"{pm:,.0f}", "(would pass)" if pb >= GOAL else "-"])
    print()
    print(table(["goal", "target", "best", "median", "result"], goal_rows))
    footer()


if __name__ == "__main__":
    main()
