"""Signal latency: from a candle's close (exchange time) to the dry-run bot's entry order.

Two parts:

``--rehearse``: runs ``squeezeflow-feeder rehearse`` (the SYNTHETIC planted scenario on the
paper exchange, the real feeder, the real ``freqtrade trade --dry-run``) ``--runs`` times per
timeframe and reports p50/p99/max of ``signal_latency_s`` over every live entry, and where the
time goes: the strategy's wait for the candle to be final (``decide`` in the bot log: from
FreqTrade's wake to every watermark past the close) and the rest (analysis + order).
Needs Redis (``SQUEEZEFLOW_REDIS_URL``), like the rehearsal.

``--late``: what share of trades would arrive after their second is closed for a given grace,
measured on the recorded Binance sessions in ../shared (receive time minus the end of the
trade's second, raw and with the recorder's median clock offset removed).

    .venv/bin/python bench/signal_latency.py --late
    SQUEEZEFLOW_REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/signal_latency.py --rehearse --timeframes 1m 5m --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import table  # noqa: E402
from feeder.replay.recording import Recording  # noqa: E402

RECORDINGS = ROOT.parent / "shared" / "data" / "market" / "hftbacktest" / "raw"
GRACES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def late_shares() -> str:
    rows = []
    for path in sorted(RECORDINGS.glob("*/*.gz")):
        rec = Recording.load(path)
        recv, trade_ms = [], []
        for ts, stream, line, off in zip(
            rec.ts_ns, rec.streams, rec.lines, rec.data_offsets, strict=True
        ):
            if stream.endswith("@trade"):
                d = json.loads(line[off:-1])
                recv.append(ts)
                trade_ms.append(int(d["T"]))
        if not recv:
            continue
        r = np.array(recv, dtype=np.int64) / 1e9
        t = np.array(trade_ms, dtype=np.int64) / 1e3
        delay = r - t
        offset = float(np.median(delay))
        after_close = r - (np.floor(t) + 1.0)  # receive time past the end of the trade's second
        raw = [float((after_close > g).mean() * 100) for g in GRACES]
        corrected = [float((after_close - offset > g).mean() * 100) for g in GRACES]
        rows.append(
            [
                f"{rec.market} {path.name}",
                len(r),
                f"{offset * 1000:.0f}",
                f"{np.percentile(delay - offset, 99) * 1000:.0f}",
                *[f"{a:.3f} / {b:.3f}" for a, b in zip(raw, corrected, strict=True)],
            ]
        )
    head = [
        "recording",
        "trades",
        "median recv-T ms",
        "p99 recv-T - median ms",
        *[f"late % at {g:g} s (raw / offset removed)" for g in GRACES],
    ]
    return table(head, rows)


def analysis_time(candles: int = 1930, repeats: int = 20) -> str:
    """The method over one pair's live frame (what the bot runs per pair and new candle)."""
    import time

    import pandas as pd

    sys.path.insert(0, str(ROOT / "user_data" / "strategies"))
    from squeezeflow import MethodParams, compute

    rng = np.random.default_rng(1)
    close = 42_000 * np.exp(np.cumsum(rng.normal(0, 0.001, candles)))
    df = pd.DataFrame(
        {
            "date": pd.date_range("2026-01-01", periods=candles, freq="1min", tz="UTC"),
            "open": close,
            "high": close * 1.0005,
            "low": close * 0.9995,
            "close": close,
            **{
                f"{k}_{s}": rng.uniform(1e5, 2e5, candles)
                for k in ("spot", "perp")
                for s in ("vbuy", "vsell")
            },
            "cvd_ok": True,
        }
    )
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        compute(df, MethodParams(), 60)
        times.append(time.perf_counter() - t)
    a = np.array(times) * 1000
    return table(
        ["frame", "method p50 ms", "max ms"],
        [[f"{candles} x 1m candles", f"{np.percentile(a, 50):.0f}", f"{a.max():.0f}"]],
    )


def rehearse(timeframes: list[str], runs: int) -> str:
    rows = []
    every: dict[str, list[float]] = {}
    for tf in timeframes:
        for i in range(runs):
            with tempfile.TemporaryDirectory(prefix="sf-latency-") as tmp:
                report = Path(tmp) / "report.json"
                live = "6" if tf == "1m" else "4"
                cmd = [
                    sys.executable,
                    "-m",
                    "feeder.tools.cli",
                    "rehearse",
                    "--timeframe",
                    tf,
                    "--seed",
                    str(7 + i),
                    "--live-candles",
                    live,
                    "--workdir",
                    str(Path(tmp) / "work"),
                    "--report",
                    str(report),
                ]
                r = subprocess.run(
                    cmd,
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    env=os.environ.copy(),
                    check=False,
                )
                if not report.exists():
                    print(r.stdout[-2000:], r.stderr[-4000:], file=sys.stderr)
                    continue
                rep = json.loads(report.read_text())
                lat = rep["signal_latency_s"]
                every.setdefault(tf, []).extend(lat)
                print(f"{tf} run {i}: matched={rep['matched']} latency={lat}", flush=True)
    for tf, lat in every.items():
        a = np.array(lat) if lat else np.array([np.nan])
        rows.append(
            [
                tf,
                len(lat),
                f"{np.percentile(a, 50):.2f}",
                f"{np.percentile(a, 99):.2f}",
                f"{a.max():.2f}",
            ]
        )
    return table(["timeframe", "entries", "p50 s", "p99 s", "max s"], rows)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--late", action="store_true", help="late-trade shares on the recordings")
    p.add_argument("--rehearse", action="store_true", help="latency over rehearsal entries")
    p.add_argument("--analysis", action="store_true", help="time the method on a live frame")
    p.add_argument("--timeframes", nargs="+", default=["1m", "5m"])
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args()
    if args.late:
        print(late_shares())
    if args.analysis:
        print(analysis_time())
    if args.rehearse:
        print(rehearse(args.timeframes, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
