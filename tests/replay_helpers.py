"""Helpers for the replay-server tests, and the ccxt-through-replay throughput benchmark.

    .venv/bin/python -m tests.replay_helpers [--separate-process] [--runs N]

measures how many trades/s real ``ccxt.pro.binanceusdm`` parses from the replay server (as fast
as possible, one ``watch_trades`` loop) on the USD-M 2024-08-08 recording (21,313 trades).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt.pro

from feeder.replay.binance import ReplayServer, ccxt_overrides

REPO = Path(__file__).resolve().parent.parent
MARKET_DATA = REPO.parent / "shared" / "data" / "market"

RAW_SPOT_2024 = "hftbacktest/raw/spot/btcusdt_20240808.gz"
RAW_USDM_2024 = "hftbacktest/raw/usdm/btcusdt_20240808.gz"
RAW_USDM_2023 = "hftbacktest/raw/usdm/btcusdt_20230405.dat.gz"
TRADES_SPOT_2024 = "hftbacktest/derived_trades/spot_btcusdt_20240808_trades.csv"
TRADES_USDM_2024 = "hftbacktest/derived_trades/usdm_btcusdt_20240808_trades.csv"
TRADES_USDM_2023 = "hftbacktest/derived_trades/usdm_btcusdt_20230405_trades.csv"


@dataclass(frozen=True)
class RecordedTrade:
    """One row of a derived_trades CSV, values kept as the recorded strings."""

    trade_id: int
    trade_time_ms: int
    price: str
    qty: str
    is_buyer_maker: bool
    x_type: str

    @property
    def side(self) -> str:
        return "sell" if self.is_buyer_maker else "buy"


def read_recorded_trades(path: Path) -> list[RecordedTrade]:
    with path.open(newline="") as fh:
        return [
            RecordedTrade(
                int(r["trade_id"]),
                int(r["trade_time_ms"]),
                r["price"],
                r["qty"],
                r["is_buyer_maker"].lower() == "true",
                r["x_type"],
            )
            for r in csv.DictReader(fh)
        ]


def trade_key(t: dict[str, Any]) -> tuple[int, int, str, str, str]:
    """A ccxt trade as (id, timestamp, recorded price, recorded qty, side)."""
    info = t["info"]
    price = info.get("p", info.get("price"))
    qty = info.get("q", info.get("qty"))
    return int(t["id"]), int(t["timestamp"]), str(price), str(qty), str(t["side"])


def recorded_key(r: RecordedTrade) -> tuple[int, int, str, str, str]:
    return r.trade_id, r.trade_time_ms, r.price, r.qty, r.side


def id_gaps(ids: list[int]) -> list[tuple[int, int]]:
    """(last id before, first id after) for every break in consecutive ids."""
    return [(a, b) for a, b in zip(ids, ids[1:], strict=False) if b != a + 1]


async def watch_until(
    exchange: Any, symbol: str, n: int, seconds: float, out: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """``watch_trades`` in a loop until ``n`` trades (TimeoutError after ``seconds``)."""
    got: list[dict[str, Any]] = [] if out is None else out
    async with asyncio.timeout(seconds):
        while len(got) < n:
            got.extend(await exchange.watch_trades(symbol))
    return got


async def backfill(
    exchange: Any, symbol: str, from_id: int, to_id: int, limit: int
) -> list[dict[str, Any]]:
    """Trades ``from_id`` .. ``to_id`` - 1 through ``fetch_trades`` (historicalTrades, fromId)."""
    out: list[dict[str, Any]] = []
    next_id = from_id
    while next_id < to_id:
        page = await exchange.fetch_trades(symbol, limit=limit, params={"fromId": next_id})
        if not page:
            break
        out.extend(t for t in page if int(t["id"]) < to_id)
        next_id = int(page[-1]["id"]) + 1
    return out


# ------------------------------------------------------------------------------------ benchmark


async def _parse_rate(url_or_server: Any, n: int) -> float:
    config = ccxt_overrides(url_or_server, "binanceusdm")
    config["options"]["tradesLimit"] = 100_000
    exchange = ccxt.pro.binanceusdm(config)
    try:
        await exchange.load_markets()
        count, t0 = 0, 0.0
        while count < n:
            trades = await exchange.watch_trades("BTC/USDT:USDT")
            if count == 0:
                t0 = time.perf_counter()
            count += len(trades)
        return count / (time.perf_counter() - t0)
    finally:
        await exchange.close()


async def benchmark_in_process(recording: Path) -> float:
    """Server and ccxt in one event loop (one process, one core)."""
    server = ReplayServer([(recording, "usdm")], speed=0)
    await server.start()
    try:
        return await _parse_rate(server, server.trade_frames)
    finally:
        await server.stop()


async def benchmark_separate_process(recording: Path) -> float:
    """The server as ``python -m feeder.replay`` in its own process, ccxt here."""
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "feeder.replay", "--recording", f"{recording}:usdm"],
        *["--speed", "0"],
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        match = re.search(r"on (http://\S+)", (await proc.stdout.readline()).decode())
        assert match, "the replay CLI did not print its URL"
        return await _parse_rate(match.group(1), 21_313)
    finally:
        proc.terminate()
        await proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--separate-process", action="store_true")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    recording = MARKET_DATA / RAW_USDM_2024
    bench = benchmark_separate_process if args.separate_process else benchmark_in_process
    rates = [asyncio.run(bench(recording)) for _ in range(args.runs)]
    where = "server in another process" if args.separate_process else "server in the same loop"
    print(
        f"ccxt.pro.binanceusdm watch_trades via replay ({where}): "
        + ", ".join(f"{r:,.0f}" for r in rates)
        + " trades/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
