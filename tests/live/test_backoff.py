"""Retry loops never give up by accident: one capped backoff with full jitter for all of them
(collector reconnects, market loading, the liquidation watch, task restarts)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import ccxt.pro
import pytest

from feeder.ingest.models import Kind
from feeder.live.backoff import Backoff
from feeder.live.collector import Collector
from feeder.live.exchanges import STARTUP_ATTEMPTS, FeederStartError, load_markets
from feeder.live.markets import LiveMarket
from feeder.live.oi_liquidations import liquidation_loop
from feeder.live.runtime import MAX_RESTARTS, Feeder
from feeder.replay.binance import ReplayServer, ccxt_overrides
from feeder.settings import ExchangeSettings, settings_from_dict
from feeder.stores.parquet import ParquetStore
from tests.helpers import SPOT, USDM
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


class Draws:
    """Every delay ``Backoff.next`` draws (the real method runs): (ceiling, delay)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[float, float]] = []
        real = Backoff.next

        def next_delay(backoff: Backoff) -> float:
            ceiling = backoff.ceiling()
            delay = real(backoff)
            self.seen.append((ceiling, delay))
            return delay

        monkeypatch.setattr(Backoff, "next", next_delay)

    def assert_full_jitter_within(self, cap: float, n: int) -> None:
        assert len(self.seen) >= n, self.seen  # the loop retried, each time after a draw
        assert all(0.0 <= d <= c <= cap for c, d in self.seen), self.seen
        assert len({d for _, d in self.seen}) == len(self.seen)  # jittered, never a fixed step


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_loading_markets_retries_after_the_one_backoff(monkeypatch):
    """A REST endpoint nobody listens on: every attempt fails, each retry waits a drawn delay."""
    draws = Draws(monkeypatch)
    ex = ccxt.pro.binanceusdm({"options": {"fetchCurrencies": False}})
    ex.urls["api"] = dict.fromkeys(ex.urls["api"], _dead_url())
    entry = ExchangeSettings(id="binanceusdm", kind=Kind.PERP, symbols=["BTC/USDT:USDT"])

    async def go() -> None:
        try:
            await load_markets(ex, entry, backoff_max_s=0.02)
        finally:
            await ex.close()

    with pytest.raises(FeederStartError, match="cannot load its markets after 5 attempts"):
        asyncio.run(asyncio.wait_for(go(), 120))
    draws.assert_full_jitter_within(0.02, STARTUP_ATTEMPTS - 1)
    assert len(draws.seen) == STARTUP_ATTEMPTS - 1


@pytest.mark.shared
def test_a_failing_liquidation_watch_retries_after_the_one_backoff(market_data, monkeypatch):
    """A real ccxt pro USD-M exchange whose websocket port nobody listens on."""
    draws = Draws(monkeypatch)
    counters: Counter[str] = Counter()

    async def go() -> None:
        rec = market_data / RECORDINGS["BINANCE_FUTURES:btcusdt"][0]
        async with ReplayServer([(rec, "usdm")], speed=0) as server:  # markets from loopback
            ex = ccxt.pro.binanceusdm(ccxt_overrides(server, "binanceusdm"))
            await ex.load_markets()
        dead = f"ws://127.0.0.1:{free_port()}/ws"
        ex.urls["api"]["ws"] = dict.fromkeys(ex.urls["api"]["ws"], dead)
        entry = ExchangeSettings(
            id="binanceusdm", kind=Kind.PERP, symbols=["BTC/USDT:USDT"], liquidations=True
        )
        market = LiveMarket("binanceusdm", "BTC/USDT:USDT", "BTC", USDM)
        col = Collector(entry, ex, [market], lambda *a: 0, _nothing)
        task = asyncio.create_task(liquidation_loop(col, lambda *a: 0, counters, 0.02))
        try:
            while counters["liquidation_errors"] < 6:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ex.close()

    asyncio.run(asyncio.wait_for(go(), 120))
    draws.assert_full_jitter_within(0.02, 5)
    assert len(draws.seen) in (counters["liquidation_errors"], counters["liquidation_errors"] - 1)


def test_a_dying_task_is_restarted_after_the_one_backoff(tmp_path, monkeypatch):
    """The supervisor restarts a task that keeps dying after drawn delays, then gives up."""
    draws = Draws(monkeypatch)
    settings = settings_from_dict(
        {"store": {"parquet_dir": str(tmp_path / "store")}, "feeder": {"backoff_max_s": 0.02}},
        env=False,
    )
    feeder = Feeder(settings, store=ParquetStore(tmp_path / "store"), redis=False)
    runs = []

    async def dies() -> None:
        runs.append(1)
        raise OSError("broken")

    async def go() -> None:
        await feeder._spawn(dies, "dies")

    asyncio.run(asyncio.wait_for(go(), 120))
    assert len(runs) == MAX_RESTARTS + 1 and feeder.fatal and "dies" in feeder.fatal
    draws.assert_full_jitter_within(0.02, MAX_RESTARTS)
    assert len(draws.seen) == MAX_RESTARTS


async def _nothing(*_a: object) -> None:
    return None
