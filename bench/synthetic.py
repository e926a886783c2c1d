"""Deterministic SYNTHETIC market data for the benchmarks (nothing here is real market data).

* ``trade_arrays`` / ``write_trades_csv``: Binance USD-M ``trades`` archive rows
  (``id,price,qty,quote_qty,time,is_buyer_maker`` with a header line, ms timestamps, consecutive
  ids, a random-walk price on a 0.1 tick, BTC-like sizes on a 0.001 step). Trades come in taker
  orders of several fills sharing one millisecond and side; the per-second rate follows slow and
  fast log-normal swings with bursts, and some seconds are quiet (no trade at all).
* ``bar_frame`` / ``bar_frames``: 1-second bar frames (``time`` int64 epoch seconds, float
  ``open high low close vbuy vsell cbuy csell lbuy lsell``) for M markets over D days, with quiet
  seconds omitted, as written by the feeder.

Everything is a pure function of its arguments and ``seed`` (numpy ``default_rng``).

    .venv/bin/python bench/synthetic.py trades OUT.csv --trades 1000000 --span-s 86400
    .venv/bin/python bench/synthetic.py bars --markets 4 --days 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

SEED = 20240301
#: 2024-03-01 00:00:00 UTC.
START_S = 1_709_251_200
TRADES_HEADER = b"id,price,qty,quote_qty,time,is_buyer_maker\n"
FIRST_ID = 4_600_000_000
TICK_PER_USD = 10  # price tick 0.1 USD
QTY_PER_BTC = 1000  # quantity step 0.001 BTC

#: Trades per second in a Binance USD-M BTCUSDT ``trades`` file on an ordinary busy day
#: (~3.4 M trades/day); the import benchmark keeps this density for every input size.
TRADES_PER_S = 39.0

BAR_MARKETS_4 = (
    "BINANCE:btcusdt",
    "BYBIT:btcusdt",
    "BINANCE_FUTURES:btcusdt",
    "BYBIT_FUTURES:btcusdt",
)


def _moving_avg(x: np.ndarray, w: int) -> np.ndarray:
    """Centred-ish moving average of width ``w`` through cumulative sums (O(n))."""
    c = np.concatenate(([0.0], np.cumsum(x)))
    n = x.shape[0]
    lo = np.clip(np.arange(n) - w // 2, 0, n)
    hi = np.clip(np.arange(n) + (w - w // 2), 0, n)
    return (c[hi] - c[lo]) / np.maximum(hi - lo, 1)


def _second_weights(rng: np.random.Generator, span_s: int) -> np.ndarray:
    """Relative trade intensity per second: slow/fast swings, bursts, quiet seconds."""
    slow = _moving_avg(rng.standard_normal(span_s), 3600) * np.sqrt(3600) * 0.5
    fast = _moving_avg(rng.standard_normal(span_s), 30) * np.sqrt(30) * 0.6
    w = np.exp(slow + fast)
    # Bursts: on average one every 10 minutes, 5..60 s long, 5..30x the rate.
    n_bursts = max(1, span_s // 600)
    b_start = rng.integers(0, span_s, n_bursts)
    b_len = rng.integers(5, 61, n_bursts)
    b_mult = rng.uniform(5.0, 30.0, n_bursts)
    boost = np.ones(span_s)
    for s, ln, m in zip(b_start, b_len, b_mult, strict=True):
        boost[s : s + ln] = np.maximum(boost[s : s + ln], m)
    w *= boost
    # Quiet seconds: ~4% at random, more where the rate is low.
    quiet = rng.random(span_s) < 0.04 / np.sqrt(w / np.median(w))
    w[quiet] = 0.0
    return w / w.sum()


def trade_arrays(
    n_trades: int, span_s: int | None = None, *, start_s: int = START_S, seed: int = SEED
) -> dict[str, np.ndarray]:
    """SYNTHETIC trades as numpy arrays, in file order (time, then id, increasing).

    Keys: ``id`` int64, ``price`` float64, ``qty`` float64, ``quote_qty`` float64, ``time``
    int64 (ms), ``is_buyer_maker`` bool. ``span_s`` defaults to the density ``TRADES_PER_S``.
    """
    if span_s is None:
        span_s = max(1, round(n_trades / TRADES_PER_S))
    rng = np.random.default_rng([seed, n_trades, span_s])

    # Taker orders: 1 + geometric fills each (mean ~2.5 fills).
    fills = rng.geometric(0.4, size=int(n_trades / 2.5 * 1.2) + 16)
    ends = np.cumsum(fills)
    n_orders = int(np.searchsorted(ends, n_trades)) + 1
    fills = fills[:n_orders].copy()
    fills[-1] -= int(ends[n_orders - 1]) - n_trades

    # Order times: orders per second ~ multinomial over the second weights, ms within the second.
    per_sec = rng.multinomial(n_orders, _second_weights(rng, span_s))
    sec = np.repeat(np.arange(span_s, dtype=np.int64), per_sec)
    ms_in_sec = rng.integers(0, 1000, n_orders)
    order_ms = start_s * 1000 + sec * 1000 + ms_in_sec
    order_ms.sort()

    # Taker side per order: a slowly varying buy probability (flow regimes).
    buy_p = 0.5 + 0.2 * np.tanh(_moving_avg(rng.standard_normal(span_s), 120) * np.sqrt(120))
    order_buy = rng.random(n_orders) < buy_p[(order_ms // 1000 - start_s).clip(0, span_s - 1)]
    sign = np.where(order_buy, 1, -1)

    # Mid price in ticks: a random walk per order (~3 % daily volatility) pushed by the taker.
    sigma = 0.03 / np.sqrt(max(n_orders * 86_400 / span_s, 1.0))
    steps = rng.standard_normal(n_orders) * sigma + 0.05 * sigma * sign
    mid_ticks = np.rint(62_000.0 * TICK_PER_USD * np.exp(np.cumsum(steps))).astype(np.int64)

    # Fills: same time and side as their order, walking the book one tick at a time.
    order_of = np.repeat(np.arange(n_orders), fills)
    first = np.concatenate(([0], np.cumsum(fills)[:-1]))
    step_up = rng.random(n_trades) < 0.3
    step_up[first] = False
    level = np.cumsum(step_up)
    level -= np.repeat(level[first], fills)
    price_ticks = mid_ticks[order_of] + sign[order_of] * (1 + level)

    # Sizes: log-normal, median ~0.004 BTC, heavy tail, on the 0.001 step, at most 60 BTC.
    qty_units = np.rint(np.exp(rng.normal(np.log(4.0), 1.6, n_trades))).astype(np.int64)
    qty_units = np.clip(qty_units, 1, 60 * QTY_PER_BTC)

    price = price_ticks / TICK_PER_USD
    qty = qty_units / QTY_PER_BTC
    return {
        "id": FIRST_ID + np.arange(n_trades, dtype=np.int64),
        "price": price,
        "qty": qty,
        "quote_qty": np.round(price * qty, 5),
        "time": order_ms[order_of],
        "is_buyer_maker": ~order_buy[order_of],
    }


def write_trades_csv(path: Path | str, arrays: dict[str, np.ndarray]) -> int:
    """Write ``trade_arrays`` output as a Binance USD-M trades CSV (with header). Returns bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = arrays["id"].shape[0]
    opts = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as fh:
        fh.write(TRADES_HEADER)
        step = 2_000_000
        for i in range(0, n, step):
            table = pa.table(
                {
                    k: arrays[k][i : i + step]
                    for k in ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker")
                }
            )
            pa_csv.write_csv(table, fh, opts)
    tmp.replace(path)
    return path.stat().st_size


def trades_archive_path(root: Path | str, n_trades: int, suffix: str = "csv") -> Path:
    """Where a synthetic file sits in the data.binance.vision layout (a monthly USD-M file)."""
    return (
        Path(root)
        / "futures/um/monthly/trades"
        / f"SYNTH{n_trades}"
        / f"SYNTH{n_trades}-trades-2024-03.{suffix}"
    )


def write_trades_file(root: Path | str, n_trades: int, *, zipped: bool = False) -> Path:
    """Generate (once; reused when present) the synthetic archive file of ``n_trades`` trades."""
    csv_path = trades_archive_path(root, n_trades, "csv")
    if not csv_path.exists():
        write_trades_csv(csv_path, trade_arrays(n_trades))
    if not zipped:
        return csv_path
    import zipfile

    zip_path = trades_archive_path(root, n_trades, "zip")
    if not zip_path.exists():
        tmp = zip_path.with_name(zip_path.name + ".part")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.write(csv_path, arcname=csv_path.name)
        tmp.replace(zip_path)
    return zip_path


# ----- 1-second bars ------------------------------------------------------------------------------


def _is_perp(market: str) -> bool:
    return "FUTURES" in market.split(":", 1)[0]


def bar_frame(
    market_index: int, market: str, day_index: int, *, start_s: int = START_S, seed: int = SEED
) -> pd.DataFrame:
    """SYNTHETIC 1-second bars of one market and UTC day (quiet seconds omitted)."""
    rng = np.random.default_rng([seed, market_index, day_index])
    day_rng = np.random.default_rng([seed, 99_991, day_index])  # shared by markets: one coin
    perp = _is_perp(market)
    n = 86_400
    t0 = start_s + day_index * 86_400
    level = 62_000.0 * np.exp(day_rng.normal(0.0, 0.03))
    basis = 1.0 + (0.0004 if perp else 0.0) + 0.0001 * market_index
    steps = rng.normal(0.0, 3.0, n)
    close_all = np.round(level * basis + np.cumsum(steps), 2)
    present = rng.random(n) >= (0.08 if perp else 0.3)
    idx = np.flatnonzero(present)
    close = close_all[idx]
    open_ = np.round(np.concatenate(([close[0] - steps[idx[0]]], close[:-1])), 2)
    high = np.round(np.maximum(open_, close) + np.abs(rng.normal(0.0, 1.0, idx.size)), 2)
    low = np.round(np.minimum(open_, close) - np.abs(rng.normal(0.0, 1.0, idx.size)), 2)
    rate = np.exp(rng.normal(np.log(12.0 if perp else 4.0), 0.8, idx.size))
    buy_share = 0.5 + 0.15 * np.tanh(rng.normal(0.0, 1.0, idx.size))
    cbuy = rng.poisson(rate * buy_share).astype(np.float64)
    csell = rng.poisson(rate * (1.0 - buy_share)).astype(np.float64)
    nothing = (cbuy + csell) == 0
    cbuy[nothing] = 1.0  # a bar exists because at least one trade happened
    size_usd = np.exp(rng.normal(np.log(450.0), 1.2, (2, idx.size)))
    vbuy = np.round(cbuy * size_usd[0], 2)
    vsell = np.round(csell * size_usd[1], 2)
    liq = rng.random((2, idx.size)) < 0.002
    liq_usd = np.round(np.exp(rng.normal(np.log(20_000.0), 1.0, (2, idx.size))), 2)
    lbuy = np.where(liq[0] & perp, liq_usd[0], 0.0)
    lsell = np.where(liq[1] & perp, liq_usd[1], 0.0)
    return pd.DataFrame(
        {
            "time": (t0 + idx).astype(np.int64),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "vbuy": vbuy,
            "vsell": vsell,
            "cbuy": cbuy,
            "csell": csell,
            "lbuy": lbuy,
            "lsell": lsell,
        }
    )


def bar_frames(
    markets: Sequence[str], days: int, *, start_s: int = START_S, seed: int = SEED
) -> Iterator[tuple[str, str, int, pd.DataFrame]]:
    """``(market, kind, day_start, bars)`` for every market and day, day-major order."""
    for d in range(days):
        for i, m in enumerate(markets):
            kind = "perp" if _is_perp(m) else "spot"
            yield m, kind, start_s + d * 86_400, bar_frame(i, m, d, start_s=start_s, seed=seed)


# ----- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("trades", help="write a synthetic trades CSV and print its summary")
    t.add_argument("out", type=Path)
    t.add_argument("--trades", type=int, default=1_000_000)
    t.add_argument("--span-s", type=int, default=None, help=f"default: trades / {TRADES_PER_S}")
    a = sub.add_parser("archive", help="write (or reuse) the import benchmark's file below ROOT")
    a.add_argument("root", type=Path)
    a.add_argument("--trades", type=int, default=1_000_000)
    a.add_argument("--zip", action="store_true")
    b = sub.add_parser("bars", help="generate synthetic 1s bars and print a summary")
    b.add_argument("--markets", type=int, default=4, choices=range(1, 5))
    b.add_argument("--days", type=int, default=1)
    args = ap.parse_args(argv)
    if args.what == "archive":
        print(write_trades_file(args.root, args.trades, zipped=args.zip))
    elif args.what == "trades":
        t0 = time.perf_counter()
        arr = trade_arrays(args.trades, args.span_s)
        size = write_trades_csv(args.out, arr)
        dt = time.perf_counter() - t0
        secs = arr["time"] // 1000
        active = np.unique(secs).size
        span = int(secs[-1] - secs[0] + 1)
        print(
            f"SYNTHETIC trades: {args.trades:,} rows, {size / 1e6:.1f} MB -> {args.out}"
            f" ({dt:.1f} s)"
        )
        print(
            f"  span {span:,} s, active seconds {active:,} ({active / span:.1%}),"
            f" max/s {np.bincount(secs - secs[0]).max():,},"
            f" price {arr['price'].min():.1f}..{arr['price'].max():.1f},"
            f" median qty {np.median(arr['qty']):.3f} BTC,"
            f" taker buys {(~arr['is_buyer_maker']).mean():.1%}"
        )
    else:
        rows = 0
        for m, kind, day, df in bar_frames(BAR_MARKETS_4[: args.markets], args.days):
            rows += len(df)
            print(f"SYNTHETIC bars {m} ({kind}) day {day}: {len(df):,} rows")
        print(f"total {rows:,} rows")


if __name__ == "__main__":
    main()
