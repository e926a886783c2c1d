"""A paper Binance USD-M exchange on 127.0.0.1 that FreqTrade itself can trade against.

:class:`PaperExchange` is the replay server (:class:`feeder.replay.binance.ReplayServer`: websocket
trade streams, ``exchangeInfo``, ``trades``/``historicalTrades``, ``premiumIndex``, ``time``)
plus the REST endpoints ``freqtrade trade --dry-run`` calls on Binance futures:

* ``klines`` / ``markPriceKlines`` / ``indexPriceKlines`` built from the very trades the server
  streams (history: every trade before the live start; live: the trades already sent), with the
  current, still open kline last as Binance sends it; ``fundingRate`` (history) and
  ``premiumIndex`` (mark = last trade price, the scenario's funding rate);
* ``ticker/24hr``, ``ticker/price``, ``ticker/bookTicker`` and ``depth``: a book one tick either
  side of the last trade price (dry-run fills price from it);
* every other path answers a loud Binance-style 404 and is listed in ``unserved``.

Time. A :class:`~feeder.replay.tape.Tape` is one market's trades (a recording's or the
synthetic generator's); :func:`~feeder.replay.tape.shift` moves every tape by one offset so that
the live start falls on a coming candle boundary of the wall clock
(:func:`~feeder.replay.tape.next_start_ms`; the offset is a whole number of candles, so
candle boundaries stay where they were relative to the trades). The live trades are streamed
at the wall clock (``wall_clock``): a trade with exchange time T is sent at T. FreqTrade is
pointed here by :func:`freqtrade_exchange_config` (``exchange.ccxt_config`` /
``ccxt_async_config`` URL overrides only) and :func:`assert_loopback` refuses any URL that is
not 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import numpy as np
from aiohttp import web

from feeder.replay.binance import ReplayServer
from feeder.replay.binance_api import BinanceError, refuse_unread
from feeder.replay.recording import MarketType
from feeder.replay.server import ccxt_api_urls, dumps, iter_urls, json_text, rewrite_urls
from feeder.replay.tape import Tape, live_recordings, num_text

log = logging.getLogger(__name__)

INTERVALS = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
}
KLINE_ENDPOINTS = {"klines", "markPriceKlines", "indexPriceKlines"}
FUNDING_MS = 8 * 3600 * 1000
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class PaperExchange(ReplayServer):
    """The replay server plus what FreqTrade's dry-run needs (see the module docstring).

    ``tapes``: every trade of the scenario (already shifted); ``live_from_ms``: trades before it
    are history (served by REST at once), trades from it on are streamed at the wall clock and
    appear in REST answers once sent. ``funding_rate``: every 8 hours (UTC 00, 08, 16).
    """

    def __init__(
        self,
        tapes: list[Tape],
        live_from_ms: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        markets_dir: Path | str | None = None,
        funding_rate: str = "0.00010000",
    ) -> None:
        self.tapes = {(t.market, t.symbol): t for t in tapes}
        self.live_from_ms = live_from_ms
        self.funding_rate = funding_rate
        self._history = {k: t.split(live_from_ms) for k, t in self.tapes.items()}
        recs = live_recordings(tapes, live_from_ms)
        if not recs:
            raise ValueError("paper exchange: no trade at or after the live start")
        super().__init__(
            recs, host=host, port=port, speed=1.0, start_on_subscribe=0, markets_dir=markets_dir
        )
        self.wall_clock = True
        for market, symbol in self.tapes:
            if symbol not in self._symbols[market]:
                raise ValueError(
                    f"paper exchange: {symbol} is not in the {market} exchangeInfo "
                    f"of {self.markets_dir}"
                )

    # ------------------------------------------------------------------ what has been released

    def released(self, market: MarketType, symbol: str) -> int:
        """Trades of the tape REST may show now: the history and the live trades already sent."""
        key = (market, symbol)
        return self._history[key] + self.released_trades(market, symbol)

    def server_time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def last_price(self, market: MarketType, symbol: str) -> float:
        n = self.released(market, symbol)
        if n == 0:
            raise BinanceError(400, -1000, f"paper exchange: no trade of {symbol} yet")
        return float(self.tapes[(market, symbol)].price[n - 1])

    def _tick(self, market: MarketType, symbol: str) -> Decimal:
        for f in self._symbols[market][symbol].get("filters", []):
            if f.get("filterType") == "PRICE_FILTER":
                return Decimal(str(f["tickSize"])).normalize()
        return Decimal("0.01")

    # ------------------------------------------------------------------ REST

    def _rest(self, request: web.Request, market: MarketType, endpoint: str) -> web.Response:
        q = request.query
        if endpoint in KLINE_ENDPOINTS and market != "spot" or endpoint == "klines":
            return _json(self._klines(market, endpoint, q))
        if endpoint in ("ticker/24hr", "ticker/price", "ticker/bookTicker"):
            return _json(self._tickers(market, endpoint, q))
        if endpoint == "depth":
            return _json(self._depth(market, q))
        if endpoint == "fundingRate" and market != "spot":
            return _json(self._funding_history(market, q))
        if endpoint == "premiumIndex" and market != "spot":
            return _json(self._premium_index(market, q))
        return super()._rest(request, market, endpoint)

    def _symbol(self, market: MarketType, q: Any, allowed: set[str], *, required: bool) -> str:
        refuse_unread(q, allowed)
        key = "pair" if "pair" in q and "pair" in allowed else "symbol"
        symbol = q.get(key, "")
        if not symbol:
            if required:
                raise BinanceError(
                    400,
                    -1102,
                    f"Mandatory parameter '{key}' was not sent, was empty/null, or malformed.",
                )
            return ""
        if (market, symbol) not in self.tapes:
            if symbol in self._symbols[market]:
                raise BinanceError(
                    400, -1000, f"paper exchange: {symbol} has no trades in this scenario"
                )
            raise BinanceError(400, -1121, "Invalid symbol.")
        return cast(str, symbol)

    def _klines(self, market: MarketType, endpoint: str, q: Any) -> list[list[Any]]:
        allowed = {"symbol", "interval", "startTime", "endTime", "limit"}
        if endpoint != "klines":
            allowed |= {"pair"}
        symbol = self._symbol(market, q, allowed, required=True)
        interval = q.get("interval", "")
        if interval not in INTERVALS:
            raise BinanceError(400, -1120, "Invalid interval.")
        step = INTERVALS[interval] * 1000
        limit = min(int(q.get("limit") or 500), 1500)
        tape = self.tapes[(market, symbol)]
        size = float(self._symbols[market][symbol].get("contractSize") or 1)
        n = self.released(market, symbol)
        if n == 0:
            return []
        first = int(tape.ms[0]) // step * step
        now = max(self.server_time_ms(), int(tape.ms[n - 1]))
        last = now // step * step  # the open kline
        if "startTime" in q:
            lo = max(first, -(-int(q["startTime"]) // step) * step)
            hi = min(last, lo + (limit - 1) * step)
            if "endTime" in q:
                hi = min(hi, int(q["endTime"]) // step * step)
        else:
            hi = min(last, int(q["endTime"]) // step * step) if "endTime" in q else last
            lo = max(first, hi - (limit - 1) * step)
        if hi < lo:
            return []
        opens = np.arange(lo, hi + step, step, dtype=np.int64)
        ms, price, qty = tape.ms[:n], tape.price[:n], tape.qty[:n]
        bounds = np.searchsorted(ms, np.append(opens, opens[-1] + step))
        k0 = int(bounds[0])
        prev_close = float(price[k0 - 1]) if k0 > 0 else None
        rows = []
        for i, t in enumerate(opens.tolist()):
            a, b = int(bounds[i]), int(bounds[i + 1])
            if a == b:
                if prev_close is None:
                    continue
                o = h = lo_ = c = prev_close
                vol = quote = buy = buy_quote = 0.0
            else:
                p, v = price[a:b], qty[a:b]
                o, h, lo_, c = float(p[0]), float(p.max()), float(p.min()), float(p[-1])
                taker_buy = ~tape.buyer_maker[a:b]
                # COIN-M volume is in contracts; its quote column is base volume
                notional = v * size / p if market == "cm" else p * v
                vol, quote = float(v.sum()), float(notional.sum())
                buy, buy_quote = float(v[taker_buy].sum()), float(notional[taker_buy].sum())
                prev_close = c
            ohlc = [num_text(x) for x in (o, h, lo_, c)]
            if endpoint != "klines":  # mark/index price: trade prices stand in, no volume
                rows.append([t, *ohlc, "0", t + step - 1, "0", 0, "0", "0", "0"])
            else:
                volumes = [num_text(vol), t + step - 1, num_text(quote), b - a]
                rows.append([t, *ohlc, *volumes, num_text(buy), num_text(buy_quote), "0"])
        return rows

    def _book(self, market: MarketType, symbol: str) -> tuple[Decimal, Decimal]:
        tick = self._tick(market, symbol)
        last = Decimal(num_text(self.last_price(market, symbol))).quantize(tick)
        return last - tick, last + tick

    def _tickers(self, market: MarketType, endpoint: str, q: Any) -> Any:
        symbol = self._symbol(market, q, {"symbol"}, required=False)
        symbols = [symbol] if symbol else [s for m, s in self.tapes if m == market]
        now = self.server_time_ms()
        out = []
        for sym in symbols:
            if self.released(market, sym) == 0:
                continue
            bid, ask = self._book(market, sym)
            last = num_text(self.last_price(market, sym))
            if endpoint == "ticker/price":
                out.append({"symbol": sym, "price": last, "time": now})
            elif endpoint == "ticker/bookTicker":
                out.append(
                    {
                        "symbol": sym,
                        "bidPrice": str(bid),
                        "bidQty": "10",
                        "askPrice": str(ask),
                        "askQty": "10",
                        "time": now,
                    }
                )
            else:
                out.append(self._ticker_24h(market, sym, now) | {"lastPrice": last})
        return out[0] if symbol and out else out

    def _ticker_24h(self, market: MarketType, symbol: str, now: int) -> dict[str, Any]:
        tape = self.tapes[(market, symbol)]
        n = self.released(market, symbol)
        a = tape.split(now - 86_400_000)
        p, v = tape.price[a:n], tape.qty[a:n]
        if len(p) == 0:
            p, v = tape.price[n - 1 : n], tape.qty[n - 1 : n] * 0
        return {
            "symbol": symbol,
            "priceChange": num_text(p[-1] - p[0]),
            "priceChangePercent": num_text(round(float((p[-1] / p[0] - 1) * 100), 3)),
            "weightedAvgPrice": num_text(float((p * v).sum() / v.sum()) if v.sum() else p[-1]),
            "openPrice": num_text(p[0]),
            "highPrice": num_text(p.max()),
            "lowPrice": num_text(p.min()),
            "volume": num_text(v.sum()),
            "quoteVolume": num_text((p * v).sum()),
            "openTime": now - 86_400_000,
            "closeTime": now,
            "firstId": int(tape.ids[a]),
            "lastId": int(tape.ids[n - 1]),
            "count": int(n - a),
        }

    def _depth(self, market: MarketType, q: Any) -> dict[str, Any]:
        symbol = self._symbol(market, q, {"symbol", "limit"}, required=True)
        limit = int(q.get("limit") or 100)
        tick = self._tick(market, symbol)
        bid, ask = self._book(market, symbol)
        levels = min(limit, 20)
        now = self.server_time_ms()
        return {
            "lastUpdateId": now,
            "E": now,
            "T": now,
            "bids": [[str(bid - k * tick), "50"] for k in range(levels)],
            "asks": [[str(ask + k * tick), "50"] for k in range(levels)],
        }

    def _funding_history(self, market: MarketType, q: Any) -> list[dict[str, Any]]:
        symbol = self._symbol(market, q, {"symbol", "startTime", "endTime", "limit"}, required=True)
        now = self.server_time_ms()
        tape = self.tapes[(market, symbol)]
        end = min(int(q.get("endTime") or now), now)
        start = int(q.get("startTime") or end - 100 * FUNDING_MS)
        start = max(start, int(tape.ms[0]))
        limit = min(int(q.get("limit") or 100), 1000)
        t = -(-start // FUNDING_MS) * FUNDING_MS
        out: list[dict[str, Any]] = []
        while t <= end and len(out) < limit:
            k = max(tape.split(t + 1) - 1, 0)
            out.append(
                {
                    "symbol": symbol,
                    "fundingTime": t,
                    "fundingRate": self.funding_rate,
                    "markPrice": num_text(tape.price[k]),
                }
            )
            t += FUNDING_MS
        return out

    def _premium_index(self, market: MarketType, q: Any) -> Any:
        allowed = {"symbol"} if market == "usdm" else {"symbol", "pair"}
        symbol = self._symbol(market, q, allowed, required=False)
        symbols = [symbol] if symbol else [s for m, s in self.tapes if m == market]
        now = self.server_time_ms()
        rows = []
        for sym in symbols:
            if self.released(market, sym) == 0:
                continue
            price = num_text(self.last_price(market, sym))
            row: dict[str, Any] = {
                "symbol": sym,
                "markPrice": price,
                "indexPrice": price,
                "estimatedSettlePrice": price,
                "lastFundingRate": self.funding_rate,
                "interestRate": "0.00010000",
                "nextFundingTime": (now // FUNDING_MS + 1) * FUNDING_MS,
                "time": now,
            }
            if market == "cm":
                row["pair"] = self._symbols[market][sym].get("pair", sym.split("_", 1)[0])
            rows.append(row)
        return rows[0] if market == "usdm" and symbol else rows


def _json(body: Any) -> web.Response:
    return json_text(dumps(body))


# ---------------------------------------------------------------------------- FreqTrade


def assert_loopback(config: Any) -> int:
    """Raise ValueError naming the first URL in ``config`` whose host is not loopback; returns
    how many URLs were checked (at least one, or it raises)."""
    urls = list(iter_urls(config))
    for url in urls:
        host = urlsplit(url).hostname
        if host not in LOOPBACK:
            raise ValueError(f"not a loopback URL: {url}")
    if not urls:
        raise ValueError("no URL to check: the exchange would go to its real hosts")
    return len(urls)


def freqtrade_exchange_config(server: PaperExchange | str) -> dict[str, Any]:
    """``exchange.ccxt_config`` and ``ccxt_async_config`` that send every ccxt URL of
    ``binance`` (REST and websocket, every market type) to the paper exchange."""
    base = server.rest_url if isinstance(server, PaperExchange) else server
    api = rewrite_urls(ccxt_api_urls("binance")[0], base)
    cfg = {"urls": {"api": api}, "options": {"fetchCurrencies": False, "fetchMargins": False}}
    assert_loopback(cfg)
    return {"ccxt_config": cfg, "ccxt_async_config": json.loads(json.dumps(cfg))}
