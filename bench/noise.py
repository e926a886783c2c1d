"""Machine noise: a fixed pure-numpy workload timed ``runs`` times.

The workload (sort, cumulative sum, elementwise arithmetic and a reduction over 2 M seeded
float64 values, no BLAS, one thread) does the same work every time, so the spread of its timings
is the noise of the machine at that moment (other processes, frequency changes, cache effects).
Every benchmark prints this figure beside its own so a number can be judged against it.

    .venv/bin/python bench/noise.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np

_N = 2_000_000


@dataclass(frozen=True)
class Noise:
    runs: int
    min_ms: float
    median_ms: float
    max_ms: float
    cv: float  # standard deviation / mean

    def line(self) -> str:
        return (
            f"machine noise: fixed numpy workload x{self.runs}: min {self.min_ms:.1f} ms, "
            f"median {self.median_ms:.1f} ms, max {self.max_ms:.1f} ms, CV {self.cv:.1%}"
        )


def _workload(x: np.ndarray) -> float:
    y = np.sort(x)
    c = np.cumsum(y)
    z = np.sqrt(np.abs(x * 1.5 - c[::-1] * 1e-6)) + np.sin(x)
    return float(z.sum() + y[_N // 2])


def measure(runs: int = 10) -> Noise:
    x = np.random.default_rng(12345).standard_normal(_N)
    _workload(x)  # warm-up (page faults, caches)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        _workload(x)
        times.append((time.perf_counter() - t0) * 1000)
    mean = statistics.fmean(times)
    sd = statistics.pstdev(times)
    return Noise(runs, min(times), statistics.median(times), max(times), sd / mean)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv)
    n = measure(args.runs)
    print("| runs | min ms | median ms | max ms | CV |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {n.runs} | {n.min_ms:.1f} | {n.median_ms:.1f} | {n.max_ms:.1f} | {n.cv:.1%} |")


if __name__ == "__main__":
    main()
