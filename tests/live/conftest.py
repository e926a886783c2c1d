"""The live feeder against the replay server: real ccxt pro, real frames from ../shared."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt.pro
import pandas as pd
import pytest

from feeder.ingest.pipeline import DayBarWriter
from feeder.live.bars import EventClock
from feeder.live.runtime import Feeder
from feeder.read.flow import inferred_coverage
from feeder.replay.binance import ReplayServer, ccxt_overrides
from feeder.settings import Settings, settings_from_dict
from feeder.stores import BarStore
from feeder.stores.parquet import ParquetStore
from tests.helpers import SPOT, USDM, raw_columns, read_derived_trades

RAW = "hftbacktest/raw"
DERIVED = "hftbacktest/derived_trades"
RECORDINGS = {
    "BINANCE:btcusdt": (
        f"{RAW}/spot/btcusdt_20240808.gz",
        "spot",
        "spot_btcusdt_20240808_trades.csv",
        SPOT,
    ),
    "BINANCE_FUTURES:btcusdt": (
        f"{RAW}/usdm/btcusdt_20240808.gz",
        "usdm",
        "usdm_btcusdt_20240808_trades.csv",
        USDM,
    ),
}


def feeder_settings(
    tmp: Path, redis_url: str | None, quiet_s: float = 20.0, **extra: Any
) -> Settings:
    common = {"open_interest": False, "liquidations": False, "quiet_s": quiet_s}
    doc: dict[str, Any] = {
        "coins": {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": ["BINANCE_FUTURES:btcusdt"]}},
        "store": {"parquet_dir": str(tmp / "store")},
        "redis": {
            "enabled": redis_url is not None,
            "url": redis_url or "redis://127.0.0.1:9/0",
            "prefix": f"sflive{uuid.uuid4().hex[:8]}",
        },
        "feeder": {
            "exchanges": [
                {"id": "binance", "kind": "spot", "symbols": ["BTC/USDT"], **common},
                {"id": "binanceusdm", "kind": "perp", "symbols": ["BTC/USDT:USDT"], **common},
            ],
            "spool_dir": str(tmp / "spool"),
            "http_port": 0,
            **extra,
        },
    }
    return settings_from_dict(doc, env=False)


def replay_factory(server: ReplayServer) -> Any:
    """ccxt pro exchanges pointed at the replay server, unthrottled, with a large trade cache."""

    def factory(entry: Any) -> Any:
        cfg = ccxt_overrides(server, entry.id)
        cfg["enableRateLimit"] = False  # the loopback server needs no throttling
        cfg.setdefault("options", {})["tradesLimit"] = 50_000
        return getattr(ccxt.pro, entry.id)(cfg)

    return factory


@dataclass
class Run:
    feeder: Feeder
    server: ReplayServer
    store: BarStore
    seconds: float


async def run_feeder(
    server: ReplayServer,
    settings: Settings,
    store: BarStore,
    expected_trades: int,
    during: Any = None,
    timeout: float = 120.0,  # noqa: ASYNC109 - a test deadline
) -> Run:
    """Run the real feeder until every expected trade has arrived (or ``timeout``), then stop."""
    feeder = Feeder(
        settings,
        store=store,
        exchange_factory=replay_factory(server),
        clock=EventClock(),
        tick_s=0.05,
    )
    stop = asyncio.Event()
    t0 = time.perf_counter()
    task = asyncio.create_task(feeder.run(until=stop, install_signals=False))
    side = asyncio.create_task(during(feeder)) if during else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        got = feeder.counters["trades_live"] + feeder.counters["trades_backfilled"]
        held = any(
            c.state(m).hold_ms is not None for c in feeder.collectors for m in c.markets.values()
        )
        if server.done and got >= expected_trades and not held:
            break
    seconds = time.perf_counter() - t0
    if side is not None:
        side.cancel()
    stop.set()
    await asyncio.wait_for(task, 60)
    return Run(feeder, server, store, seconds)


@pytest.fixture(scope="session")
def imported(market_data, tmp_path_factory) -> ParquetStore:
    """The same recordings' trades through the archive import path."""
    store = ParquetStore(tmp_path_factory.mktemp("imported"))
    for _market, (_raw, _mt, csv, spec) in RECORDINGS.items():
        w = DayBarWriter(store, spec)
        w.add_raw(raw_columns(read_derived_trades(market_data / DERIVED / csv)))
        w.close()
        # the reference is whole: it covers its recording's span (the minutes it has bars in)
        for start, end in inferred_coverage(store.read_bars(_market, 0, 2**31, "1m")):
            store.add_coverage(_market, int(start), int(end))
    return store


def expected_trades(market_data: Path) -> int:
    n = 0
    for _raw, _mt, csv, _spec in RECORDINGS.values():
        df = read_derived_trades(market_data / DERIVED / csv)
        n += int(((df["x_type"].fillna("") == "") | (df["x_type"] == "MARKET")).sum())
    return n


def bars_of(store: BarStore, market: str) -> pd.DataFrame:
    return store.read_bars(market, 1_723_000_000, 1_724_000_000, "1s")
