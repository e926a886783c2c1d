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
import re
import shutil
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


#: FreqTrade wakes this long after a candle closes; the feeder's bar clock ticks every TICK_S.
WAKE_S, TICK_S = 1.0, 0.1


def _trade_delays() -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """Per recorded session: receive times, trade times (s) and the median receive-minus-trade
    offset (the recorder's clock against Binance's)."""
    out = []
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
        out.append((f"{rec.market} {path.name}", r, t, float(np.median(r - t))))
    return out


def late_shares() -> str:
    """Two measures per grace: trades received after their *second* closed (the bar is corrected
    and re-published), and trades received after their *candle* was read for the live decision
    (close + max(FreqTrade's wake, grace + a bar-clock tick)): only those can make the live
    decision differ from the backtest's, which sees the corrected bar."""
    sessions = _trade_delays()
    rows = []
    for name, r, t, offset in sessions:
        delay = r - t
        after_close = r - (np.floor(t) + 1.0)  # receive time past the end of the trade's second
        raw = [float((after_close > g).mean() * 100) for g in GRACES]
        corrected = [float((after_close - offset > g).mean() * 100) for g in GRACES]
        rows.append(
            [
                name,
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
    out = [table(head, rows), ""]
    for tf in (60, 300):
        rows = []
        for name, r, t, offset in sessions:
            candle_end = (np.floor(t / tf) + 1) * tf
            cells = []
            for g in GRACES:
                read_at = candle_end + max(WAKE_S, g + TICK_S)
                late = (r - offset) > read_at
                candles = np.unique(candle_end)
                touched = np.unique(candle_end[late])
                cells.append(f"{late.mean() * 100:.3f} % / {len(touched)} of {len(candles)}")
            rows.append([name, len(r), *cells])
        head = [
            f"recording ({tf // 60}m candles)",
            "trades",
            *[f"after the read at grace {g:g} s: trades / candles" for g in GRACES],
        ]
        out += [table(head, rows), ""]
    return "\n".join(out)


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


_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - [\w.]+ - \w+ - (.*)$")
_CLOSING = re.compile(
    r"candle closing (\S+ \S+): wake \+([\d.]+)s, flow final \+([\d.]+)s, read \+([\d.]+)s"
)


def breakdown(bot_log: Path) -> str:
    """Where each live decision's time went, from the dry-run bot's log (seconds after the close):
    FreqTrade's wake, the candle's flow final, the bars read, each pair analysed (end), and any
    entry signal FreqTrade acted on (log time of "signal found")."""
    import pandas as pd

    if not bot_log.exists():
        return f"(no bot log at {bot_log})"
    rows: list[list[object]] = []
    cur: list[object] | None = None
    close = None
    for raw in bot_log.read_text(errors="replace").splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        t = pd.Timestamp(m.group(1).replace(",", "."), tz="UTC")
        msg = m.group(2)
        c = _CLOSING.search(msg)
        if c:
            close = pd.Timestamp(c.group(1))
            cur = [close.strftime("%H:%M:%S"), c.group(2), c.group(3), c.group(4), "", ""]
            rows.append(cur)
        elif cur is not None and close is not None:
            after = f"{(t - close).total_seconds():.3f}"
            if "analysed in" in msg:
                cur[4] = f"{cur[4]} {after}".strip()
            elif "signal found" in msg:
                cur[5] = f"{cur[5]} {after}".strip()
    head = ["close", "wake", "flow final", "read", "pairs analysed", "entry signal"]
    # Every decision, entries or not: when the last pair was analysed (FreqTrade enters after
    # that). Start-up candles are left out: the bot not yet running at the close (a late wake),
    # or the paper exchange not yet streaming (the wait ran to its bound, decide_wait_s = 5 s).
    ready = [
        float(str(r[4]).split()[-1])
        for r in rows
        if r[4] and float(str(r[1])) < WAKE_S + 4 and float(str(r[2])) - float(str(r[1])) < 4.9
    ]
    if not ready:
        return table(head, rows)
    a = np.array(ready)
    summary = (
        f"last pair analysed, {len(a)} decisions: p50 {np.percentile(a, 50):.2f} s, "
        f"p90 {np.percentile(a, 90):.2f} s, max {a.max():.2f} s after the close"
    )
    return table(head, rows) + "\n" + summary


def rehearse(timeframes: list[str], runs: int, keep: Path | None = None) -> str:
    rows = []
    every: dict[str, list[float]] = {}
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    for tf in timeframes:
        for i in range(runs):
            with tempfile.TemporaryDirectory(prefix="sf-latency-", dir=keep) as tmp:
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
                print(breakdown(Path(tmp) / "work" / "freqtrade-trade.log"), flush=True)
                if keep is not None:
                    shutil.copytree(Path(tmp) / "work", keep / f"{tf}-run{i}-{os.getpid()}")
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
    p.add_argument("--keep", type=Path, help="keep each rehearsal's workdir (logs) under this")
    p.add_argument("--breakdown", type=Path, help="print the breakdown of a kept bot log")
    args = p.parse_args()
    if args.breakdown:
        print(breakdown(args.breakdown))
    if args.late:
        print(late_shares())
    if args.analysis:
        print(analysis_time())
    if args.rehearse:
        print(rehearse(args.timeframes, args.runs, args.keep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
