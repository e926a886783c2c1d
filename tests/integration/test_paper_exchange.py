"""The paper exchange (feeder.replay.paper) with REAL ccxt, configured the way FreqTrade gets it
(``freqtrade_exchange_config``: URL overrides only): klines built from the very trades it
streams, live trades at the wall clock, tickers, depth, funding, loud errors for the rest."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import ccxt.async_support as accxt
import ccxt.pro
import numpy as np
import pytest

from feeder.replay.binance import ccxt_overrides
from feeder.replay.paper import PaperExchange, assert_loopback, freqtrade_exchange_config
from feeder.replay.tape import Tape, next_start_ms, shift, tapes_from_scenario
from feeder.tools.synthetic import Scenario

pytestmark = pytest.mark.shared


def _minute_bars(tape: Tape, opens: list[int]) -> list[tuple[float, float, float, float, float]]:
    out = []
    for t in opens:
        a, b = np.searchsorted(tape.ms, [t, t + 60_000])
        p = tape.price[a:b]
        out.append((p[0], p.max(), p.min(), p[-1], tape.qty[a:b].sum()))
    return out


@pytest.fixture(scope="module")
def tapes() -> tuple[list[Tape], int]:
    sc = Scenario(start_day="2024-01-01", days=1, seed=3)
    nominal_live = sc.t0 + 20 * 3600
    live = next_start_ms(3, 60)  # the live part starts at the next minute, 3 s ahead at least
    return shift(tapes_from_scenario(sc), nominal_live * 1000, live), live


@pytest.mark.slow  # its live trades start at the next minute boundary: up to a minute of wall clock
def test_klines_tickers_and_live_trades_through_ccxt(market_data, tapes):
    tapes_, live_ms = tapes
    usdm = next(t for t in tapes_ if t.market == "usdm")

    async def scenario() -> None:
        server = PaperExchange(tapes_, live_ms, markets_dir=market_data / "cryptofeed")
        await server.start()
        cfg = freqtrade_exchange_config(server)["ccxt_async_config"]
        ex = accxt.binance({**cfg, "options": {**cfg["options"], "defaultType": "swap"}})
        ws = ccxt.pro.binanceusdm(ccxt_overrides(server, "binanceusdm"))
        try:
            await ex.load_markets()
            # history: 1m klines equal the bars of the same trades; the last is the open one
            start = live_ms - 30 * 60_000
            k = await ex.fetch_ohlcv("BTC/USDT:USDT", "1m", since=start, limit=30)
            assert [r[0] for r in k] == list(range(start, live_ms, 60_000))
            want = _minute_bars(usdm, [r[0] for r in k])
            np.testing.assert_allclose([r[1:] for r in k], want, rtol=1e-12)
            latest = await ex.fetch_ohlcv("BTC/USDT:USDT", "1m", limit=5)
            assert latest[-1][0] == time.time_ns() // 60_000_000_000 * 60_000  # open kline
            # live: trades arrive at the wall clock, with their (shifted) exchange times
            await ws.load_markets()
            trades = []
            deadline = time.monotonic() + 90
            while len(trades) < 5 and time.monotonic() < deadline:
                trades += await ws.watch_trades("BTC/USDT:USDT")
            assert len(trades) >= 5
            for tr in trades:
                assert tr["timestamp"] >= live_ms
                assert abs(tr["timestamp"] - time.time() * 1000) < 15_000
            # a kline now holds the streamed trades: its close is the last streamed price
            last = await ex.fetch_ohlcv("BTC/USDT:USDT", "1m", limit=1)
            sent = server.released("usdm", "BTCUSDT")
            assert sent > np.searchsorted(usdm.ms, live_ms)
            assert last[-1][4] == pytest.approx(usdm.price[sent - 1])
            book = await ex.fetch_order_book("BTC/USDT:USDT")
            assert book["bids"][0][0] < usdm.price[sent - 1] < book["asks"][0][0]
            ticker = await ex.fetch_ticker("BTC/USDT:USDT")
            assert ticker["last"] > 0
            funding = await ex.fetch_funding_rate_history("BTC/USDT:USDT", since=start - 86_400_000)
            assert funding and all(f["fundingRate"] == pytest.approx(0.0001) for f in funding)
            mark = await ex.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=3, params={"price": "mark"})
            assert len(mark) == 3
            assert abs(await ex.fetch_time() - time.time() * 1000) < 5_000
            # anything else: a loud error, never a silent answer
            async with aiohttp.ClientSession() as http:
                r = await http.get(f"{server.rest_url}/fapi.binance.com/fapi/v1/allForceOrders")
                assert r.status == 404 and "not served" in (await r.json())["msg"]
            assert server.unserved == ["GET /fapi.binance.com/fapi/v1/allForceOrders"]
        finally:
            await ex.close()
            await ws.close()
            await server.stop()

    asyncio.run(scenario())


def test_every_url_must_be_loopback():
    cfg = freqtrade_exchange_config("http://127.0.0.1:9")
    assert assert_loopback(cfg) > 20
    cfg["ccxt_config"]["urls"]["api"]["fapiPublic"] = "https://fapi.binance.com/fapi/v1"
    with pytest.raises(ValueError, match="not a loopback URL: https://fapi.binance.com"):
        assert_loopback(cfg)
    with pytest.raises(ValueError, match="no URL"):
        assert_loopback({"ccxt_config": {}})


def test_recordings_shift_to_the_next_candle_with_history_before_the_live_half(market_data):
    from feeder.tools.rehearse_plan import RehearsalError, recording_plan

    raw = market_data / "hftbacktest" / "raw"
    paths = [f"{raw}/spot/btcusdt_20240808.gz", f"{raw}/usdm/btcusdt_20240808.gz"]
    # minutes of recording: too short for the strategy's warm-up, said before anything runs
    with pytest.raises(RehearsalError, match=r"needs 1920 1m candles \(32.0 h\) of warm-up"):
        recording_plan(paths, "1m", lead_s=30)
    before = time.time()
    plan = recording_plan(paths, "1m", lead_s=30, warmup_candles=0)
    assert plan.coins == {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": ["BINANCE_FUTURES:btcusdt"]}}
    assert plan.pairs == ["BTC/USDT:USDT"]
    assert plan.live_from_ms % 60_000 == 0 and plan.live_from_ms >= (before + 30) * 1000
    assert plan.live_end_ms - plan.live_from_ms >= 60_000
    assert plan.stream_from_ms == plan.live_from_ms - 60_000
    for t in plan.tapes:  # every trade kept, about half of them history
        assert 0.3 < t.split(plan.live_from_ms) / len(t) < 0.7
        assert np.all(np.diff(t.ms) >= 0)
