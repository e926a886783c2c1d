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
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import best_median, footer, header, private_influx, table  # noqa: E402
from synthetic import BAR_MARKETS_4, bar_frames  # noqa: E402

from feeder.settings import InfluxSettings  # noqa: E402
from feeder.stores.influx import InfluxStore, _chunks, bar_body  # noqa: E402

GOAL = 100_000


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--markets", type=int, default=4, choices=range(1, 5))
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="each into a fresh database")
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="points per /write request (default: the InfluxSettings default)",
    )
    args = ap.parse_args(argv)

    header("InfluxDB ingest (SYNTHETIC 1s bars -> InfluxStore.write_bars)")
    frames = list(bar_frames(BAR_MARKETS_4[: args.markets], args.days))
    points = sum(len(df) for *_, df in frames)
    print(
        f"SYNTHETIC input: {args.markets} markets x {args.days} days of 1s bars = "
        f"{points:,} points ({points / (args.markets * args.days * 86_400):.0%} of seconds; "
        "quiet ones omitted)"
    )

    extra = {} if args.batch_size is None else {"batch_size": args.batch_size}
    batch = InfluxSettings(**extra).batch_size

    # Client-side cost alone: the line protocol write_bars builds, without sending it.
    t0 = time.perf_counter()
    n_lines = 0
    for m, kind, _day, df in frames:
        for chunk in _chunks(df, batch):
            n_lines += bar_body("trades_1s", m, kind, chunk).count(b"\n")
    build_s = time.perf_counter() - t0
    assert n_lines == points
    print(
        f"line protocol only (bar_body, no HTTP): {points / build_s:,.0f} points/s "
        f"({build_s:.2f} s, {build_s / points * 1e6:.1f} us/point)"
    )

    variants = ["feeder"]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    rows = []
    with private_influx() as srv:
        for variant in variants:
            for rep in range(args.repeats):
                s = InfluxSettings(url=srv.url, database=f"bench_{variant}_{rep}", **extra)
                with InfluxStore(s) as store:
                    store.setup()
                    srv.wait_idle(quiet_s=2.0)  # previous run's WAL flush/compaction finished
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
                rates[variant].append(points / wall)
                label = "InfluxStore.write_bars"
                rows.append(
                    [
                        label,
                        str(rep + 1),
                        f"{points:,}",
                        f"{wall:.2f}",
                        f"{points / wall:,.0f}",
                        f"{c_cpu:.2f}",
                        f"{s_cpu:.2f}",
                        f"{stored:,}",
                    ]
                )
                print(
                    f"  {variant} run {rep + 1}: {points / wall:,.0f} points/s ({wall:.2f} s)",
                    flush=True,
                )
    print()
    print(
        f"batch_size {batch:,} points per request, 2 requests in flight, "
        f"{args.repeats} runs per variant (fresh database each):"
    )
    print(
        table(
            [
                "writer",
                "run",
                "points",
                "wall s",
                "points/s",
                "client CPU s",
                "influxd CPU s",
                "points stored",
            ],
            rows,
        )
    )
    best, med = best_median(rates["feeder"], higher_is_better=True)
    goal_rows = [
        [
            "points/s, InfluxStore.write_bars",
            f">= {GOAL:,}",
            f"{best:,.0f}",
            f"{med:,.0f}",
            "PASS" if best >= GOAL else "FAIL",
        ]
    ]
    print()
    print(table(["goal", "target", "best", "median", "result"], goal_rows))
    footer()


if __name__ == "__main__":
    main()
