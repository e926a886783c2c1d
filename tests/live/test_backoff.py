"""Retry loops never give up by accident: one capped backoff with full jitter for all of them."""

from __future__ import annotations

import asyncio
import random

import ccxt.pro
import pytest

from feeder.ingest.models import Kind
from feeder.live.collector import Backoff, Collector
from feeder.live.markets import LiveMarket
from feeder.replay.binance import ReplayServer, ccxt_overrides
from feeder.settings import ExchangeSettings
from tests.helpers import SPOT
from tests.live.conftest import RECORDINGS
from tests.live.servers import free_port


def test_backoff_stays_capped_with_full_jitter_after_any_number_of_failures():
    random.seed(7)
    b = Backoff(base=0.5, cap=30.0)
    delays = [b.next() for _ in range(5_000)]  # far past 2**1024 without the cap
    assert all(0.0 <= d <= 30.0 for d in delays)
    late = delays[100:]
    assert min(late) < 3.0 and max(late) > 27.0  # full jitter: anywhere in [0, cap]
    b.reset()
    assert b.next() <= 0.5


@pytest.mark.shared
def test_a_collector_keeps_reconnecting_after_a_thousand_failures(market_data):
    """A real ccxt pro exchange whose websocket port nobody listens on: every connect fails.
    With more than 1,024 failures behind it (``2 ** attempt`` overflowed a float there) the
    collector goes on retrying."""

    async def nothing(*_a):
        return None

    async def go():
        rec = market_data / RECORDINGS["BINANCE:btcusdt"][0]
        async with ReplayServer([(rec, "spot")], speed=0) as server:  # markets from loopback
            ex = ccxt.pro.binance(ccxt_overrides(server, "binance"))
            await ex.load_markets()
        dead = f"ws://127.0.0.1:{free_port()}/ws"
        ex.urls["api"]["ws"] = dict.fromkeys(ex.urls["api"]["ws"], dead)
        entry = ExchangeSettings(id="binance", kind=Kind.SPOT, symbols=["BTC/USDT"], quiet_s=5)
        market = LiveMarket("binance", "BTC/USDT", "BTC", SPOT)
        col = Collector(entry, ex, [market], lambda *a: 0, nothing, backoff_max_s=0.01)
        col.backoff.attempt = 1_100  # the failures so far
        task = asyncio.create_task(col.run())
        try:
            while col.stats.reconnects < 5:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ex.close()
        return col, dead

    col, dead = asyncio.run(asyncio.wait_for(go(), 120))
    assert col.stats.reconnects >= 5
    assert dead.split("/")[2] in col.stats.last_error, col.stats.last_error
