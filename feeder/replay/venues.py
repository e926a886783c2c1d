"""Bybit v5, OKX v5 and Coinbase Advanced Trade public APIs on a loopback server, fed with
recorded *Binance* trades.

There are no Bybit, OKX or Coinbase recordings. This server speaks those venues' real public
protocols (websocket subscribe/ping/push frames and the REST endpoints ccxt calls) so that
unmodified ``ccxt.pro.bybit``, ``ccxt.pro.okx`` and ``ccxt.pro.coinbase`` can be pointed at it
(:func:`venue_ccxt_overrides`), but the trades it serves are the recorded Binance trades of
``feeder.replay.binance.Recording`` files, re-expressed in each venue's format: **the protocol is
the venue's, the trades are Binance's recordings.** Every Binance ``@trade`` event (futures: ``X`` =
``MARKET`` only) becomes one venue trade with the same trade time, price and taker side (``m`` true
= buyer was maker = taker SELL); the quantity is the same in base currency, or in contracts where
the venue counts contracts (OKX ``BTC-USDT-SWAP``: ``ctVal`` 0.01 BTC, so ``sz`` = qty / 0.01, exact
decimals).

Markets (``source`` = which Binance recording feeds it)::

    venue  kind  source  venue id          ccxt symbol    trade ids
    bybit  spot  spot    BTCUSDT (spot)    BTC/USDT       numeric: 229e16 + Binance id
    bybit  perp  usdm    BTCUSDT (linear)  BTC/USDT:USDT  uuid5 of the Binance id
    okx    spot  spot    BTC-USDT          BTC/USDT       consecutive integers per instrument
    okx    perp  usdm    BTC-USDT-SWAP     BTC/USDT:USDT  consecutive integers per instrument
    coinbase spot spot   BTC-USD           BTC/USD        consecutive integers per product

(Coinbase: the USDT prices are served as USD prices; Coinbase's perpetuals are not served.)

Protocol details (each checked against what ccxt 4.5 sends and parses):

* Bybit websocket ``/v5/public/spot`` and ``/v5/public/linear`` (``inverse``/``option`` accept
  connections, nothing is recorded there): ``{"op":"subscribe","req_id":..,"args":
  ["publicTrade.BTCUSDT"]}`` -> ``{"success":true,"ret_msg":"subscribe"`` (spot; ``""`` linear)
  ``,"conn_id":..,"req_id":..,"op":"subscribe"}``; ``{"op":"ping"}`` -> ``{"success":true,
  "ret_msg":"pong",..,"op":"ping"}``; pushes ``{"topic":"publicTrade.BTCUSDT","type":"snapshot",
  "ts":..,"data":[{"T","s","S","v","p","L"(linear only),"i","BT","seq"(linear only)}]}``, one
  push per matching event (consecutive trades with the same trade time). ccxt tells spot from
  linear by ``'spot' in url``, which the URL layout keeps.
* Bybit REST ``/v5/market/instruments-info`` (``category`` spot/linear/inverse/option; linear
  ``status=PreLaunch`` is empty), ``/v5/market/recent-trade`` (newest first; ``limit`` spot
  1..60 default 60, others 1..1000 default 500; no time or id paging: Bybit's public REST only
  has the most recent trades) and ``/v5/market/time``.
* OKX websocket ``/ws/v5/public``: ``{"op":"subscribe","args":[{"channel":"trades","instId":..}]}``
  -> one ``{"event":"subscribe","arg":{..},"connId":..}`` per arg; text ``ping`` -> ``pong``;
  pushes ``{"arg":{"channel":"trades","instId":..},"data":[{"instId","tradeId","px","sz","side",
  "ts","count","source","seqId"}]}``. Like OKX, the ``trades`` channel is **aggregated**: one
  push per taker order and price (here: consecutive trades with the same time, side and price),
  ``tradeId`` is the *last* trade id of the aggregation and ``count`` how many it covers
  (ids ``tradeId - count + 1 .. tradeId``), ``sz`` their total.
* OKX REST ``/api/v5/public/instruments`` (``instType`` SPOT/SWAP/FUTURES/OPTION),
  ``/api/v5/market/trades`` (single trades, newest first, ``limit`` <= 500, default 100),
  ``/api/v5/market/history-trades`` (single trades, newest first, ``limit`` <= 100; ``type`` 1:
  ``after``/``before`` are trade ids, 2: ``after`` is a time) and ``/api/v5/public/time``.
* Coinbase websocket ``advanced-trade-ws.coinbase.com`` (path ``/``): ``{"type":"subscribe",
  "product_ids":["BTC-USD"],"channel":"market_trades"}`` (ccxt adds a ``jwt`` for private
  channels only; none is needed or checked here) -> a ``snapshot`` event with the 50 most recent
  trades (none before the replay has released any: ccxt cannot parse an empty one) and
  ``{"channel":"subscriptions",..,"events":[{"subscriptions":{"market_trades":[..]}}]}``;
  ``unsubscribe`` -> the remaining subscriptions (``{}``: ccxt's unsubscribe acknowledgement).
  Pushes ``{"channel":"market_trades","client_id":"","timestamp":..,"sequence_num":..,
  "events":[{"type":"update","trades":[{"trade_id","product_id","price","size","side","time"}]}]}``
  collect 250 ms of trades (recorded receive time), **newest first** (ccxt reverses them);
  ``sequence_num`` counts the messages of each connection. ``side`` is ``BUY``/``SELL`` = the
  taker's side: ccxt (``parse_trade``: ``side`` lower-cased, no inversion) and other clients
  read it so; unlike the legacy Coinbase Exchange feed, whose ``side`` is the maker's. Other
  channels (``heartbeats``, ``level2``, ..) get ``{"type":"error","message":..}``.
* Coinbase REST ``api.coinbase.com``: what ``load_markets`` calls without keys:
  ``/v2/currencies``, ``/v2/currencies/crypto``, ``/v2/exchange-rates`` (``fetch_currencies``;
  ccxt calls it whatever ``options.fetchCurrencies`` says), ``/api/v3/brokerage/market/products``
  (and ``?product_type=FUTURE``: empty); ``/api/v3/brokerage/market/products/{id}/ticker``
  (``limit`` required, <= 1000; ``start``/``end`` UNIX seconds, both inclusive: the newest
  ``limit`` trades in [start, end], newest first, ``best_bid``/``best_ask`` empty: no book is
  recorded); ``/v2/time`` and ``/api/v3/brokerage/time``. Errors: ``{"error":"NOT_FOUND"|
  "INVALID_ARGUMENT",..}``.
* REST answers only hold trades the replay has reached (as in :mod:`feeder.replay.binance`); limits
  out of range are clamped (what the real venues do with them is not documented).
* Any other path gets a 404 in the venue's error format naming the path, and is listed in
  :attr:`VenueReplayServer.unserved`; every ccxt URL is rewritten (host name first in the path,
  like :func:`feeder.replay.binance.rewrite_url`), so nothing can reach the real venues.

Instrument metadata is realistic (the venues' real field sets), with tick and lot sizes that fit
the recorded Binance prices and quantities (OKX spot ``tickSz`` is 0.01 here, for example).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from feeder.replay.recording import MarketType, Recording, load_recordings
from feeder.replay.server import LoopbackServer, rewrite_url

log = logging.getLogger(__name__)

Venue = Literal["bybit", "okx", "coinbase"]
VENUES: tuple[Venue, ...] = ("bybit", "okx", "coinbase")

BYBIT_WS_HOST = "stream.bybit.com"
BYBIT_REST_HOST = "api.bybit.com"
OKX_WS_HOST = "ws.okx.com"
OKX_REST_HOST = "www.okx.com"
COINBASE_WS_HOST = "advanced-trade-ws.coinbase.com"
COINBASE_REST_HOST = "api.coinbase.com"
VENUE_OF_HOST: dict[str, Venue] = {
    BYBIT_WS_HOST: "bybit",
    BYBIT_REST_HOST: "bybit",
    OKX_WS_HOST: "okx",
    OKX_REST_HOST: "okx",
    COINBASE_WS_HOST: "coinbase",
    COINBASE_REST_HOST: "coinbase",
}

#: Bybit recent-trade limits: (default, max) per category.
BYBIT_RECENT_LIMITS = {"spot": (60, 60), "linear": (500, 1000), "inverse": (500, 1000)}
OKX_TRADES_LIMITS = (100, 500)
OKX_HISTORY_LIMITS = (100, 100)
OKX_SWAP_CT_VAL = "0.01"
BYBIT_SPOT_ID_BASE = 2_290_000_000_000_000_000
OKX_ID_BASE = {"spot": 500_000_000, "usdm": 1_300_000_000}
#: Coinbase Advanced Trade: ``market_trades`` pushes collect the trades of 250 ms; the public
#: ticker endpoint serves at most 1000 trades; a (re)subscription first gets a snapshot of the
#: most recent trades (its size is not documented; 50 here).
COINBASE_BATCH_NS = 250_000_000
COINBASE_TRADES_MAX = 1000
COINBASE_SNAPSHOT = 50
COINBASE_ID_BASE = 690_000_000
_UUID_NS = uuid.UUID("6f1d2c8e-93c1-4b43-9d62-0c7a2f5d8e11")


def _dec_str(d: Decimal) -> str:
    """Exact plain decimal text without trailing zeros (``Decimal('0.60')`` -> ``'0.6'``)."""
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".") or "0"
    return s


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _iso_ms(ms: int) -> str:
    """Coinbase's RFC 3339 trade time (microseconds): ``2024-08-08T23:54:16.322000Z``."""
    sec, frac = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:03d}000Z"


def _iso_ns(ns: int) -> str:
    """Coinbase's message timestamp (nanoseconds): ``2024-08-08T23:54:16.322123456Z``."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


# --------------------------------------------------------------------------------------------
# markets


@dataclass(frozen=True)
class VenueMarket:
    """One venue market served from one Binance recording market type."""

    venue: Venue
    source: MarketType  # the Binance recording that feeds it: spot or usdm
    binance_symbol: str  # BTCUSDT
    symbol: str  # the venue's id: BTCUSDT, BTC-USDT, BTC-USDT-SWAP
    category: str  # Bybit: spot/linear; OKX: SPOT/SWAP; Coinbase: SPOT
    ccxt_symbol: str
    contract_value: str | None  # base per contract where sizes are contracts (OKX swap), else None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.venue, self.category, self.symbol)

    @property
    def kind(self) -> str:
        return "spot" if self.source == "spot" else "perp"


def venue_markets(venue: Venue, binance_symbol: str) -> dict[MarketType, VenueMarket]:
    """The venue markets a Binance ``<BASE>USDT`` spot / USD-M recording is served as (Coinbase:
    spot only, quoted in USD: ``BTC-USD``)."""
    if not binance_symbol.endswith("USDT"):
        raise ValueError(f"{binance_symbol}: only <BASE>USDT recordings can be re-expressed")
    base = binance_symbol[:-4]
    if venue == "bybit":
        return {
            "spot": VenueMarket(
                "bybit", "spot", binance_symbol, binance_symbol, "spot", f"{base}/USDT", None
            ),
            "usdm": VenueMarket(
                "bybit", "usdm", binance_symbol, binance_symbol, "linear", f"{base}/USDT:USDT", None
            ),
        }
    if venue == "okx":
        return {
            "spot": VenueMarket(
                "okx", "spot", binance_symbol, f"{base}-USDT", "SPOT", f"{base}/USDT", None
            ),
            "usdm": VenueMarket(
                "okx",
                "usdm",
                binance_symbol,
                f"{base}-USDT-SWAP",
                "SWAP",
                f"{base}/USDT:USDT",
                OKX_SWAP_CT_VAL,
            ),
        }
    if venue == "coinbase":
        return {
            "spot": VenueMarket(
                "coinbase", "spot", binance_symbol, f"{base}-USD", "SPOT", f"{base}/USD", None
            )
        }
    raise ValueError(f"unknown venue {venue!r}, expected one of {VENUES}")


def _bybit_instrument(m: VenueMarket) -> dict[str, Any]:
    base = m.ccxt_symbol.split("/")[0]
    if m.category == "spot":
        return {
            "symbol": m.symbol,
            "baseCoin": base,
            "quoteCoin": "USDT",
            "innovation": "0",
            "status": "Trading",
            "marginTrading": "utaOnly",
            "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": "0.000001",
                "quotePrecision": "0.00000001",
                "minOrderQty": "0.000048",
                "maxOrderQty": "71.73956243",
                "minOrderAmt": "1",
                "maxOrderAmt": "2000000",
            },
            "priceFilter": {"tickSize": "0.01"},
            "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        }
    return {
        "symbol": m.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": base,
        "quoteCoin": "USDT",
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": "2",
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
        "lotSizeFilter": {
            "maxOrderQty": "1190.000",
            "minOrderQty": "0.001",
            "qtyStep": "0.001",
            "postOnlyMaxOrderQty": "1190.000",
            "maxMktOrderQty": "500.000",
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": "USDT",
        "copyTrading": "both",
        "upperFundingRate": "0.00375",
        "lowerFundingRate": "-0.00375",
        "isPreListing": False,
        "preListingInfo": None,
    }


def _okx_instrument(m: VenueMarket) -> dict[str, Any]:
    base = m.ccxt_symbol.split("/")[0]
    if m.category == "SPOT":
        return {
            "alias": "",
            "auctionEndTime": "",
            "baseCcy": base,
            "category": "1",
            "ctMult": "",
            "ctType": "",
            "ctVal": "",
            "ctValCcy": "",
            "expTime": "",
            "instFamily": "",
            "instId": m.symbol,
            "instType": "SPOT",
            "lever": "10",
            "listTime": "1606468572000",
            "lotSz": "0.00000001",
            "maxIcebergSz": "9999999999.0000000000000000",
            "maxLmtAmt": "20000000",
            "maxLmtSz": "9999999999",
            "maxMktAmt": "1000000",
            "maxMktSz": "",
            "maxStopSz": "",
            "maxTriggerSz": "9999999999.0000000000000000",
            "maxTwapSz": "9999999999.0000000000000000",
            "minSz": "0.00001",
            "optType": "",
            "quoteCcy": "USDT",
            "ruleType": "normal",
            "settleCcy": "",
            "state": "live",
            "stk": "",
            "tickSz": "0.01",
            "uly": "",
        }
    return {
        "alias": "",
        "auctionEndTime": "",
        "baseCcy": "",
        "category": "1",
        "ctMult": "1",
        "ctType": "linear",
        "ctVal": m.contract_value,
        "ctValCcy": base,
        "expTime": "",
        "instFamily": f"{base}-USDT",
        "instId": m.symbol,
        "instType": "SWAP",
        "lever": "100",
        "listTime": "1573557408000",
        "lotSz": "0.01",
        "maxIcebergSz": "100000000.0000000000000000",
        "maxLmtAmt": "20000000",
        "maxLmtSz": "100000000",
        "maxMktAmt": "",
        "maxMktSz": "12000",
        "maxStopSz": "12000",
        "maxTriggerSz": "100000000.0000000000000000",
        "maxTwapSz": "100000000.0000000000000000",
        "minSz": "0.01",
        "optType": "",
        "quoteCcy": "",
        "ruleType": "normal",
        "settleCcy": "USDT",
        "state": "live",
        "stk": "",
        "tickSz": "0.1",
        "uly": f"{base}-USDT",
    }


def _coinbase_product(m: VenueMarket, price: str) -> dict[str, Any]:
    """``/api/v3/brokerage/market/products`` row (the real field set; 24 h statistics are not
    recorded and left empty)."""
    base = m.ccxt_symbol.split("/")[0]
    return {
        "product_id": m.symbol,
        "price": price,
        "price_percentage_change_24h": "",
        "volume_24h": "",
        "volume_percentage_change_24h": "",
        "base_increment": "0.00000001",
        "quote_increment": "0.01",
        "quote_min_size": "1",
        "quote_max_size": "150000000",
        "base_min_size": "0.00000001",
        "base_max_size": "3400",
        "base_name": "Bitcoin",
        "quote_name": "US Dollar",
        "watched": False,
        "is_disabled": False,
        "new": False,
        "status": "online",
        "cancel_only": False,
        "limit_only": False,
        "post_only": False,
        "trading_disabled": False,
        "auction_mode": False,
        "product_type": "SPOT",
        "quote_currency_id": "USD",
        "base_currency_id": base,
        "fcm_trading_session_details": None,
        "mid_market_price": "",
        "alias": "",
        "alias_to": [],
        "base_display_symbol": base,
        "quote_display_symbol": "USD",
        "view_only": False,
        "price_increment": "0.01",
        "display_name": m.symbol,
        "product_venue": "CBE",
    }


# --------------------------------------------------------------------------------------------
# trades


@dataclass
class _Book:
    """One venue market's trades (in recorded order) and their REST rows."""

    market: VenueMarket
    binance_ids: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # the venue's trade ids
    id_ints: list[int] = field(default_factory=list)  # OKX: numeric ids (sorted)
    times: list[int] = field(default_factory=list)  # trade time, ms
    push_slot: list[int] = field(default_factory=list)  # timeline slot of the push carrying it
    rows: list[str] = field(default_factory=list)  # REST JSON object text
    ws_rows: list[str] = field(default_factory=list)  # Coinbase: websocket trade objects

    def released(self, cursor: int) -> int:
        return bisect_left(self.push_slot, cursor)


@dataclass
class _Raw:
    recv_ns: int
    event_ms: int
    ts_ms: int
    binance_id: int
    price: str
    qty: str
    sell: bool  # taker sold (Binance m: buyer was maker)


@dataclass
class _Push:
    recv_ns: int
    key: tuple[str, str, str]
    text: str
    first_trade: int  # index in the book of its first trade
    n_trades: int


def _read_trades(rec: Recording, symbol: str) -> list[_Raw]:
    out: list[_Raw] = []
    for ts, stream, line, off in zip(
        rec.ts_ns, rec.streams, rec.lines, rec.data_offsets, strict=True
    ):
        if not stream.endswith("@trade"):
            continue
        d = json.loads(line[off:-1])
        if str(d.get("s")) != symbol or d.get("X", "MARKET") != "MARKET":
            continue  # futures insurance-fund / ADL rows are not public trades elsewhere
        out.append(
            _Raw(
                ts,
                int(d["E"]),
                int(d["T"]),
                int(d["t"]),
                _dec_str(Decimal(d["p"])),
                _dec_str(Decimal(d["q"])),
                bool(d["m"]),
            )
        )
    return out


def _bybit_book(m: VenueMarket, raws: list[_Raw]) -> tuple[_Book, list[_Push]]:
    book = _Book(m)
    pushes: list[_Push] = []
    linear = m.category == "linear"
    prev_price: Decimal | None = None
    tick = "ZeroPlusTick"
    i = 0
    seq = 0
    while i < len(raws):
        j = i + 1
        while j < len(raws) and raws[j].ts_ms == raws[i].ts_ms:
            j += 1
        data = []
        for r in raws[i:j]:
            if linear:
                tid = str(uuid.uuid5(_UUID_NS, f"bybit:linear:{m.symbol}:{r.binance_id}"))
            else:
                tid = str(BYBIT_SPOT_ID_BASE + r.binance_id)
            side = "Sell" if r.sell else "Buy"
            row: dict[str, Any] = {
                "execId": tid,
                "symbol": m.symbol,
                "price": r.price,
                "size": r.qty,
                "side": side,
                "time": str(r.ts_ms),
                "isBlockTrade": False,
            }
            book.binance_ids.append(r.binance_id)
            book.ids.append(tid)
            book.times.append(r.ts_ms)
            book.rows.append(_dumps(row))
            frame: dict[str, Any] = {
                "T": r.ts_ms,
                "s": m.symbol,
                "S": side,
                "v": r.qty,
                "p": r.price,
            }
            if linear:
                p = Decimal(r.price)
                if prev_price is not None and p != prev_price:
                    tick = "PlusTick" if p > prev_price else "MinusTick"
                elif prev_price is not None:
                    tick = (
                        "ZeroPlusTick"
                        if tick in ("PlusTick", "ZeroPlusTick")
                        else ("ZeroMinusTick")
                    )
                prev_price = p
                frame["L"] = tick
            frame["i"] = tid
            frame["BT"] = False
            if linear:
                seq += 1
                frame["seq"] = 40_000_000_000 + seq
            data.append(frame)
        msg = {
            "topic": f"publicTrade.{m.symbol}",
            "type": "snapshot",
            "ts": max(r.event_ms for r in raws[i:j]),
            "data": data,
        }
        pushes.append(_Push(raws[i].recv_ns, m.key, _dumps(msg), i, j - i))
        i = j
    return book, pushes


def _okx_book(m: VenueMarket, raws: list[_Raw]) -> tuple[_Book, list[_Push]]:
    book = _Book(m)
    pushes: list[_Push] = []
    ct = Decimal(m.contract_value) if m.contract_value else None
    base_id = OKX_ID_BASE[m.source]
    sizes: list[Decimal] = []
    for k, r in enumerate(raws):
        tid = base_id + k
        sz = Decimal(r.qty) / ct if ct is not None else Decimal(r.qty)
        sizes.append(sz)
        row = {
            "instId": m.symbol,
            "side": "sell" if r.sell else "buy",
            "sz": _dec_str(sz),
            "source": "0",
            "px": r.price,
            "tradeId": str(tid),
            "ts": str(r.ts_ms),
        }
        book.binance_ids.append(r.binance_id)
        book.ids.append(str(tid))
        book.id_ints.append(tid)
        book.times.append(r.ts_ms)
        book.rows.append(_dumps(row))
    # the ``trades`` channel: one push per taker order and price (same time, side and price)
    i = 0
    seq = 0
    while i < len(raws):
        j = i + 1
        while (
            j < len(raws)
            and raws[j].ts_ms == raws[i].ts_ms
            and raws[j].sell == raws[i].sell
            and raws[j].price == raws[i].price
        ):
            j += 1
        seq += 1
        total = sum(sizes[i:j], Decimal(0))
        rec = {
            "instId": m.symbol,
            "tradeId": book.ids[j - 1],
            "px": raws[i].price,
            "sz": _dec_str(total),
            "side": "sell" if raws[i].sell else "buy",
            "ts": str(raws[i].ts_ms),
            "count": str(j - i),
            "source": "0",
            "seqId": 7_000_000_000 + seq,
        }
        msg = {"arg": {"channel": "trades", "instId": m.symbol}, "data": [rec]}
        pushes.append(_Push(raws[i].recv_ns, m.key, _dumps(msg), i, j - i))
        i = j
    return book, pushes


def _coinbase_book(m: VenueMarket, raws: list[_Raw]) -> tuple[_Book, list[_Push]]:
    book = _Book(m)
    pushes: list[_Push] = []
    for k, r in enumerate(raws):
        tid = str(COINBASE_ID_BASE + k)
        side = "SELL" if r.sell else "BUY"  # the taker's side, as ccxt reads it (no inversion)
        t = _iso_ms(r.ts_ms)
        ws_row = {
            "trade_id": tid,
            "product_id": m.symbol,
            "price": r.price,
            "size": r.qty,
            "side": side,
            "time": t,
        }
        row = {
            "trade_id": tid,
            "product_id": m.symbol,
            "price": r.price,
            "size": r.qty,
            "time": t,
            "side": side,
            "bid": "",
            "ask": "",
            "exchange": "coinbase",
        }
        book.binance_ids.append(r.binance_id)
        book.ids.append(tid)
        book.id_ints.append(COINBASE_ID_BASE + k)
        book.times.append(r.ts_ms)
        book.rows.append(_dumps(row))
        book.ws_rows.append(_dumps(ws_row))
    # ``market_trades``: the trades of 250 ms (recorded receive time) in one push, newest first;
    # ``sequence_num`` is per connection (numbered when sent)
    i = 0
    while i < len(raws):
        j = i + 1
        while j < len(raws) and raws[j].recv_ns < raws[i].recv_ns + COINBASE_BATCH_NS:
            j += 1
        trades = ",".join(book.ws_rows[k] for k in range(j - 1, i - 1, -1))
        text = (
            f'{{"channel":"market_trades","client_id":"","timestamp":'
            f'"{_iso_ns(raws[j - 1].recv_ns)}","sequence_num":0,"events":[{{"type":"update",'
            f'"trades":[{trades}]}}]}}'
        )
        pushes.append(_Push(raws[j - 1].recv_ns, m.key, text, i, j - i))
        i = j
    return book, pushes


_BOOK_MAKERS = {"bybit": _bybit_book, "okx": _okx_book, "coinbase": _coinbase_book}


# --------------------------------------------------------------------------------------------
# the server


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    venue: Venue
    path: str  # bybit: spot/linear/inverse/option; okx: public/business/private; coinbase: ""
    conn_id: str
    keys: set[tuple[str, str, str]] = field(default_factory=set)
    seq: int = 0  # Coinbase: the connection's next ``sequence_num``


class _VenueError(Exception):
    def __init__(self, venue: Venue, status: int, code: int | str, msg: str) -> None:
        super().__init__(msg)
        self.venue, self.status, self.code, self.msg = venue, status, code, msg

    def response(self, now_ms: int) -> web.Response:
        if self.venue == "bybit":
            body: dict[str, Any] = {
                "retCode": int(self.code),
                "retMsg": self.msg,
                "result": {},
                "retExtInfo": {},
                "time": now_ms,
            }
        elif self.venue == "coinbase":
            body = {"error": str(self.code), "error_details": self.msg, "message": self.msg}
        else:
            body = {"code": str(self.code), "msg": self.msg, "data": []}
        return web.Response(status=self.status, text=_dumps(body), content_type="application/json")


class VenueReplayServer(LoopbackServer):
    """A loopback Bybit v5, OKX v5 and/or Coinbase Advanced Trade (public websocket + REST)
    replaying Binance trades.

    ::

        server = VenueReplayServer([("…/raw/spot/btcusdt_20240808.gz", "spot"),
                                    ("…/raw/usdm/btcusdt_20240808.gz", "usdm")], speed=20)
        await server.start()
        ex = ccxt.pro.okx(venue_ccxt_overrides(server, "okx"))
        trades = await ex.watch_trades("BTC/USDT:USDT")

    ``recordings``: Binance spot and/or USD-M recordings (paths, ``(path, market)`` pairs or
    :class:`~feeder.replay.binance.Recording`); COIN-M is not served. ``venues``: which venues to
    serve (both by default; each gets every recording). ``speed``: 1.0 recorded pace, N times
    faster, 0 as fast as the clients read. ``start_on_subscribe``: the clock starts once this
    many distinct venue markets have a subscriber (None: wait for :meth:`start_replay`).
    ``disconnect_at``: close every client connection just before the push that carries the
    n-th served trade (0-based, counted over all markets in replay order).
    """

    def __init__(
        self,
        recordings: Iterable[Recording | Path | str | tuple[Path | str, MarketType]],
        *,
        venues: Iterable[Venue] = VENUES,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float | None = 0.0,
        start_on_subscribe: int | None = 1,
        disconnect_at: Iterable[int] = (),
        slow_client_timeout: float = 5.0,
    ) -> None:
        self.recordings = load_recordings(recordings, "VenueReplayServer")
        self.venues: tuple[Venue, ...] = tuple(venues)
        for v in self.venues:
            if v not in VENUES:
                raise ValueError(f"unknown venue {v!r}, expected one of {VENUES}")
        self.host, self.port = host, port
        self.speed = float(speed) if speed else 0.0
        self.start_on_subscribe = start_on_subscribe
        self.slow_client_timeout = slow_client_timeout
        self.slow_clients_dropped = 0
        # what happened, for tests
        self.requests: list[str] = []
        self.unserved: list[str] = []
        self.client_messages: list[str] = []
        self.connections_total = 0
        self.disconnects = 0
        self.pushes_sent = 0
        self.trades_sent = 0
        self.snapshots_sent = 0  # Coinbase: snapshots of the most recent trades on subscribe
        self.markets: dict[tuple[str, str, str], VenueMarket] = {}
        self.books: dict[tuple[str, str, str], _Book] = {}
        self._build(set(disconnect_at))
        self._conns: set[_Conn] = set()
        self._subs: dict[tuple[str, str, str], set[_Conn]] = {}
        self._cursor = 0
        self._conn_seq = 0
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Event | None = None
        self._done: asyncio.Event | None = None

    # ---------------------------------------------------------------- build

    def _build(self, disconnect_at: set[int]) -> None:
        pushes: list[_Push] = []
        for rec in self.recordings:
            if rec.market not in ("spot", "usdm"):
                raise ValueError(f"{rec.path}: only spot and usdm recordings can be served")
            symbols = sorted({s.split("@")[0].upper() for s in rec.streams if s.endswith("@trade")})
            for sym in symbols:
                raws = _read_trades(rec, sym)
                for venue in self.venues:
                    m = venue_markets(venue, sym).get(rec.market)
                    if m is None:
                        continue  # Coinbase: spot only
                    if m.key in self.books:
                        raise ValueError(f"{m.key} is fed by two recordings")
                    book, ps = _BOOK_MAKERS[venue](m, raws)
                    self.markets[m.key] = m
                    self.books[m.key] = book
                    pushes.extend(ps)
        # one clock for all markets; each market's pushes keep their order (receive times are
        # made non-decreasing per market first, so the stable sort cannot reorder them)
        last: dict[tuple[str, str, str], int] = {}
        for p in pushes:
            p.recv_ns = max(p.recv_ns, last.get(p.key, p.recv_ns))
            last[p.key] = p.recv_ns
        order = sorted(range(len(pushes)), key=lambda k: pushes[k].recv_ns)
        self._pushes = [pushes[k] for k in order]
        self._disconnect_slots: set[int] = set()
        counted = 0
        for book in self.books.values():
            book.push_slot = [0] * len(book.ids)
        for slot, p in enumerate(self._pushes):
            book = self.books[p.key]
            for k in range(p.first_trade, p.first_trade + p.n_trades):
                book.push_slot[k] = slot
                if counted in disconnect_at:
                    self._disconnect_slots.add(slot)
                counted += 1
        self.total_trades = counted
        missing = [n for n in disconnect_at if n >= counted]
        if missing:
            raise ValueError(f"disconnect_at {missing}: only {counted} trades are served")

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: every venue URL is ``{url}/{venue host}/{path}``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{host}/{tail:.*}", self._handle)
        app.router.add_route("*", "/{host}", self._handle)  # Coinbase's websocket is at "/"
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        await self._serve(app)
        self._started = asyncio.Event()
        self._done = asyncio.Event()
        self._task = asyncio.create_task(self._replay(), name="venue-replay")
        if self.start_on_subscribe == 0:
            self._started.set()

    def __len__(self) -> int:
        return len(self._pushes)

    @property
    def disconnect_slots(self) -> list[int]:
        """The pushes (timeline slots) before which every client is disconnected."""
        return sorted(self._disconnect_slots)

    def book(self, venue: Venue, source: MarketType, binance_symbol: str = "BTCUSDT") -> _Book:
        return self.books[venue_markets(venue, binance_symbol)[source].key]

    def released(self, key: tuple[str, str, str]) -> int:
        return self.books[key].released(self._cursor)

    def server_time_ms(self) -> int:
        """The trade time of the newest trade the replay has reached (recorded clock)."""
        best = None
        for key, book in self.books.items():
            k = self.released(key)
            if k:
                best = book.times[k - 1] if best is None else max(best, book.times[k - 1])
        if best is None:
            firsts = [b.times[0] for b in self.books.values() if b.times]
            return min(firsts) - 1 if firsts else 0
        return best

    # ---------------------------------------------------------------- faults

    # ---------------------------------------------------------------- the replay loop

    async def _replay(self) -> None:
        assert self._started is not None and self._done is not None
        await self._started.wait()
        loop = asyncio.get_running_loop()
        pushes = self._pushes
        if pushes:
            t0, ts0 = loop.time(), pushes[0].recv_ns
            for slot, p in enumerate(pushes):
                if self.speed > 0:
                    wait = t0 + (p.recv_ns - ts0) / 1e9 / self.speed - loop.time()
                    if wait > 0.0005:
                        await asyncio.sleep(wait)
                elif slot & 255 == 0:
                    await asyncio.sleep(0)
                if slot in self._disconnect_slots:
                    await self.disconnect_all()
                subs = self._subs.get(p.key)
                if subs:
                    delivered = False
                    for conn in list(subs):
                        delivered = await self._send(conn, p.text) or delivered
                    if delivered:
                        self.pushes_sent += 1
                        self.trades_sent += p.n_trades
                self._cursor = slot + 1
        self._done.set()
        log.info(
            "venue replay: finished (%d pushes, %d trades sent)", self.pushes_sent, self.trades_sent
        )

    def _outgoing(self, conn: _Conn, text: str) -> str:
        if conn.venue == "coinbase":  # numbered per connection
            text = text.replace('"sequence_num":0', f'"sequence_num":{conn.seq}', 1)
            conn.seq += 1
        return text

    # ---------------------------------------------------------------- HTTP routing

    async def _handle_unknown(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        return self._unserved(request, "bybit")

    def _unserved(self, request: web.Request, venue: Venue) -> web.Response:
        self.unserved.append(f"{request.method} {request.path_qs}")
        log.warning("venue replay: not served: %s %s", request.method, request.path_qs)
        msg = f"replay server: {request.path} is not served"
        codes: dict[str, int | str] = {"bybit": 10404, "okx": "50000", "coinbase": "NOT_FOUND"}
        code = codes[venue]
        return _VenueError(venue, 404, code, msg).response(self.server_time_ms())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = request.match_info["host"].split(":", 1)[0]
        tail = request.match_info.get("tail", "").strip("/")
        self.requests.append(f"{request.method} {request.path_qs}")
        is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
        venue: Venue = VENUE_OF_HOST.get(host, "bybit")
        if venue not in self.venues:
            return self._unserved(request, venue)
        if is_ws and host == COINBASE_WS_HOST and tail == "":
            return await self._websocket(request, "coinbase", "")
        if request.method == "GET" and host == COINBASE_REST_HOST:
            try:
                return self._coinbase_rest(request, tail)
            except _VenueError as exc:
                return exc.response(self.server_time_ms())
        if (
            is_ws
            and host == BYBIT_WS_HOST
            and tail
            in ("v5/public/spot", "v5/public/linear", "v5/public/inverse", "v5/public/option")
        ):
            return await self._websocket(request, "bybit", tail.rsplit("/", 1)[1])
        if is_ws and host == OKX_WS_HOST and tail in ("ws/v5/public", "ws/v5/business"):
            return await self._websocket(request, "okx", tail.rsplit("/", 1)[1])
        if request.method == "GET" and host in (BYBIT_REST_HOST, OKX_REST_HOST):
            try:
                if host == BYBIT_REST_HOST:
                    return self._bybit_rest(request, tail)
                return self._okx_rest(request, tail)
            except _VenueError as exc:
                return exc.response(self.server_time_ms())
        return self._unserved(request, venue)

    # ---------------------------------------------------------------- Bybit REST

    def _bybit_ok(self, result: Any) -> web.Response:
        body = {
            "retCode": 0,
            "retMsg": "OK",
            "result": result,
            "retExtInfo": {},
            "time": self.server_time_ms(),
        }
        return web.Response(text=_dumps(body), content_type="application/json")

    def _bybit_rest(self, request: web.Request, tail: str) -> web.Response:
        q = request.query
        if tail == "v5/market/time":
            ms = self.server_time_ms()
            return self._bybit_ok({"timeSecond": str(ms // 1000), "timeNano": str(ms * 10**6)})
        if tail == "v5/market/instruments-info":
            category = q.get("category", "")
            if category not in ("spot", "linear", "inverse", "option"):
                raise _VenueError("bybit", 200, 10001, "params error: category is invalid")
            rows = []
            if q.get("status", "Trading") == "Trading":
                rows = [
                    _bybit_instrument(m)
                    for m in self.markets.values()
                    if m.venue == "bybit"
                    and m.category == category
                    and q.get("symbol", m.symbol) == m.symbol
                    and q.get("baseCoin", m.ccxt_symbol.split("/")[0])
                    == m.ccxt_symbol.split("/")[0]
                ]
            result: dict[str, Any] = {"category": category, "list": rows}
            if category != "spot":
                result["nextPageCursor"] = ""
            return self._bybit_ok(result)
        if tail == "v5/market/recent-trade":
            category = q.get("category", "")
            if category not in BYBIT_RECENT_LIMITS:
                raise _VenueError("bybit", 200, 10001, "params error: category is invalid")
            key = ("bybit", category, q.get("symbol", ""))
            if key not in self.books:
                raise _VenueError("bybit", 200, 10001, "Not supported symbols")
            default, most = BYBIT_RECENT_LIMITS[category]
            limit = min(_int_arg("bybit", q, "limit", default), most)
            book = self.books[key]
            hi = self.released(key)
            picked = range(hi - 1, max(0, hi - limit) - 1, -1)  # newest first
            text = "[" + ",".join(book.rows[i] for i in picked) + "]"
            now = self.server_time_ms()
            body = (
                f'{{"retCode":0,"retMsg":"OK","result":{{"category":"{category}",'
                f'"list":{text}}},"retExtInfo":{{}},"time":{now}}}'
            )
            return web.Response(text=body, content_type="application/json")
        return self._unserved(request, "bybit")

    # ---------------------------------------------------------------- OKX REST

    def _okx_ok(self, data_text: str) -> web.Response:
        return web.Response(
            text=f'{{"code":"0","msg":"","data":{data_text}}}', content_type="application/json"
        )

    def _okx_rest(self, request: web.Request, tail: str) -> web.Response:
        q = request.query
        if tail == "api/v5/public/time":
            return self._okx_ok(_dumps([{"ts": str(self.server_time_ms())}]))
        if tail == "api/v5/public/instruments":
            inst_type = q.get("instType", "")
            if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
                raise _VenueError("okx", 400, "51000", "Parameter instType error")
            cat = "SPOT" if inst_type == "MARGIN" else inst_type
            rows = [
                _okx_instrument(m)
                for m in self.markets.values()
                if m.venue == "okx" and m.category == cat and q.get("instId", m.symbol) == m.symbol
            ]
            return self._okx_ok(_dumps(rows))
        if tail in ("api/v5/market/trades", "api/v5/market/history-trades"):
            inst = q.get("instId", "")
            keys = [k for k in self.books if k[0] == "okx" and k[2] == inst]
            if not keys:
                raise _VenueError("okx", 200, "51001", "Instrument ID does not exist")
            key = keys[0]
            book = self.books[key]
            hi = self.released(key)
            lo = 0
            if tail == "api/v5/market/trades":
                default, most = OKX_TRADES_LIMITS
            else:
                default, most = OKX_HISTORY_LIMITS
                by = q.get("type", "1")
                if by not in ("1", "2"):
                    raise _VenueError("okx", 200, "51000", "Parameter type error")
                if "after" in q:
                    after = _int_arg("okx", q, "after", None)
                    values = book.id_ints if by == "1" else book.times
                    hi = min(hi, bisect_left(values, after))
                if "before" in q:
                    if by == "2":
                        raise _VenueError("okx", 200, "51000", "Parameter before error")
                    lo = bisect_right(book.id_ints, _int_arg("okx", q, "before", None))
            limit = min(_int_arg("okx", q, "limit", default), most)
            picked = range(hi - 1, max(lo, hi - limit) - 1, -1)  # newest first
            return self._okx_ok("[" + ",".join(book.rows[i] for i in picked) + "]")
        return self._unserved(request, "okx")

    # ---------------------------------------------------------------- Coinbase REST

    def _coinbase_ok(self, body: Any) -> web.Response:
        text = body if isinstance(body, str) else _dumps(body)
        return web.Response(text=text, content_type="application/json")

    def _last_price(self, key: tuple[str, str, str]) -> str:
        book = self.books[key]
        k = self.released(key)
        return str(json.loads(book.rows[max(k, 1) - 1])["price"]) if book.rows else ""

    def _coinbase_rest(self, request: web.Request, tail: str) -> web.Response:
        q = request.query
        ours = [k for k in self.books if k[0] == "coinbase"]
        if tail == "v2/time":
            ms = self.server_time_ms()
            return self._coinbase_ok({"data": {"iso": _iso_ms(ms)[:19] + "Z", "epoch": ms // 1000}})
        if tail == "api/v3/brokerage/time":
            ms = self.server_time_ms()
            return self._coinbase_ok(
                {
                    "iso": _iso_ms(ms)[:19] + "Z",
                    "epochSeconds": str(ms // 1000),
                    "epochMillis": str(ms),
                }
            )
        # ccxt's load_markets calls fetch_currencies (``has['fetchCurrencies']``; its
        # ``fetchCurrencies`` option does not stop it): three public v2 endpoints
        if tail == "v2/currencies":
            return self._coinbase_ok(
                {"data": [{"id": "USD", "name": "US Dollar", "min_size": "0.01"}]}
            )
        if tail == "v2/currencies/crypto":
            bases = sorted({self.markets[k].ccxt_symbol.split("/")[0] for k in ours})
            data = [
                {
                    "asset_id": str(uuid.uuid5(_UUID_NS, f"asset:{b}")),
                    "code": b,
                    "name": "Bitcoin" if b == "BTC" else b,
                    "color": "#F7931A",
                    "sort_index": "100",
                    "exponent": "8",
                    "type": "crypto",
                    "address_regex": "",
                }
                for b in bases
            ]
            return self._coinbase_ok({"data": data})
        if tail == "v2/exchange-rates":
            cur = q.get("currency", "USD").upper()
            usd_per = {
                self.markets[k].ccxt_symbol.split("/")[0]: Decimal(self._last_price(k))
                for k in ours
                if self.books[k].rows
            }
            usd_per["USD"] = Decimal(1)
            if cur not in usd_per:
                raise _VenueError("coinbase", 400, "invalid_request", f"Invalid currency {cur}")
            rates = {c: _dec_str(usd_per[cur] / v) for c, v in sorted(usd_per.items())}
            return self._coinbase_ok({"data": {"currency": cur, "rates": rates}})
        if tail == "api/v3/brokerage/market/products":
            wanted = q.getall("product_ids", [])
            rows = []
            if q.get("product_type", "SPOT") == "SPOT":  # no futures are recorded
                rows = [
                    _coinbase_product(self.markets[k], self._last_price(k))
                    for k in ours
                    if not wanted or k[2] in wanted
                ]
            return self._coinbase_ok(
                {"products": rows, "num_products": len(rows), "pagination": None}
            )
        prefix, _, rest = tail.partition("api/v3/brokerage/market/products/")
        product, _, what = rest.partition("/")
        if prefix == "" and what == "ticker":
            keys = [k for k in ours if k[2] == product]
            if not keys:
                raise _VenueError("coinbase", 404, "NOT_FOUND", "ProductID is invalid")
            key = keys[0]
            book = self.books[key]
            hi = self.released(key)
            lo = 0
            # ``start``/``end``: UNIX seconds, both inclusive (``end`` as the instant end.000)
            if q.get("start"):
                lo = bisect_left(book.times, _int_arg("coinbase", q, "start", None) * 1000, 0, hi)
            if q.get("end"):
                end_ms = _int_arg("coinbase", q, "end", None) * 1000
                hi = min(hi, bisect_right(book.times, end_ms, 0, hi))
            limit = min(_int_arg("coinbase", q, "limit", None), COINBASE_TRADES_MAX)
            picked = range(hi - 1, max(lo, hi - limit) - 1, -1)  # newest first
            text = ",".join(book.rows[i] for i in picked)
            return self._coinbase_ok(f'{{"trades":[{text}],"best_bid":"","best_ask":""}}')
        return self._unserved(request, "coinbase")

    # ---------------------------------------------------------------- websockets

    async def _websocket(self, request: web.Request, venue: Venue, path: str) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        self._conn_seq += 1
        conn_id = (
            str(uuid.uuid5(_UUID_NS, f"conn:{self._conn_seq}"))
            if venue == "bybit"
            else f"{self._conn_seq:08x}"
        )
        conn = _Conn(ws, request, venue, path, conn_id)
        self._conns.add(conn)
        self.connections_total += 1
        handler = {
            "bybit": self._bybit_text,
            "okx": self._okx_text,
            "coinbase": self._coinbase_text,
        }[venue]

        def answer(text: str) -> list[str]:
            self.client_messages.append(text)
            return handler(conn, text)

        await self._talk(conn, answer)
        return ws

    def _bybit_text(self, conn: _Conn, text: str) -> list[str]:
        def reply(success: bool, ret_msg: str, op: str, req_id: Any) -> str:
            out: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": conn.conn_id}
            if req_id is not None:
                out["req_id"] = req_id
            out["op"] = op
            return _dumps(out)

        try:
            req = json.loads(text)
        except ValueError:
            return [reply(False, "error:request not json", "", None)]
        if not isinstance(req, dict):
            return [reply(False, "error:request not json", "", None)]
        op, req_id, args = req.get("op"), req.get("req_id"), req.get("args") or []
        if op == "ping":
            return [reply(True, "pong", "ping", req_id)]
        if op in ("subscribe", "unsubscribe"):
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                return [reply(False, "error:args must be a list of topics", op, req_id)]
            keys, bad = [], []
            for topic in args:
                name, _, symbol = topic.partition(".")
                key = ("bybit", conn.path, symbol)
                if name != "publicTrade" or key not in self.books:
                    bad.append(topic)
                keys.append(key)
            if bad and op == "subscribe":
                what = f"/v5/public/{conn.path}: {','.join(bad)}"
                msg = f"error:replay serves recorded publicTrade topics only; not on {what}"
                return [reply(False, msg, op, req_id)]
            for key in keys:
                if op == "subscribe":
                    self._subscribe(conn, key)
                else:
                    self._unsubscribe(conn, key)
            ok_msg = "subscribe" if (op == "subscribe" and conn.path == "spot") else ""
            return [reply(True, ok_msg, op, req_id)]
        return [reply(False, f"error:handler not found,op:{op}", str(op), req_id)]

    def _okx_text(self, conn: _Conn, text: str) -> list[str]:
        if text == "ping":
            return ["pong"]

        def error(code: str, msg: str, rid: Any = None) -> str:
            out: dict[str, Any] = {}
            if rid is not None:
                out["id"] = rid
            out.update({"event": "error", "code": code, "msg": msg, "connId": conn.conn_id})
            return _dumps(out)

        try:
            req = json.loads(text)
        except ValueError:
            return [error("60012", f"Invalid request: {text}")]
        if not isinstance(req, dict):
            return [error("60012", f"Invalid request: {text}")]
        op, rid, args = req.get("op"), req.get("id"), req.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return [error("60012", f"Invalid request: {text}", rid)]
        out: list[str] = []
        for arg in args:
            if not isinstance(arg, dict):
                out.append(error("60012", f"Invalid request: {text}", rid))
                continue
            channel, inst = arg.get("channel"), arg.get("instId")
            keys = [k for k in self.books if k[0] == "okx" and k[2] == inst]
            if channel != "trades" or conn.path != "public" or not keys:
                out.append(
                    error(
                        "60018",
                        f"Wrong URL or channel:{channel},instId:{inst} doesn't "
                        "exist (replay serves the recorded trades channel on "
                        "/ws/v5/public only)",
                        rid,
                    )
                )
                continue
            if op == "subscribe":
                self._subscribe(conn, keys[0])
            else:
                self._unsubscribe(conn, keys[0])
            reply: dict[str, Any] = {}
            if rid is not None:
                reply["id"] = rid
            reply.update(
                {"event": op, "arg": {"channel": channel, "instId": inst}, "connId": conn.conn_id}
            )
            out.append(_dumps(reply))
        return out

    def _coinbase_text(self, conn: _Conn, text: str) -> list[str]:
        """``{"type":"subscribe"|"unsubscribe","product_ids":[..],"channel":"market_trades"}``
        (a ``jwt`` is optional for public channels): a snapshot of the most recent trades per
        newly subscribed product (none before the replay has released any), then the
        ``subscriptions`` message listing what the connection is subscribed to."""

        def frame(channel: str, events: str) -> str:
            conn.seq += 1
            return (
                f'{{"channel":"{channel}","client_id":"","timestamp":'
                f'"{_iso_ns(self.server_time_ms() * 1_000_000)}","sequence_num":{conn.seq - 1},'
                f'"events":{events}}}'
            )

        def error(msg: str) -> list[str]:
            return [_dumps({"type": "error", "message": msg})]

        try:
            req = json.loads(text)
        except ValueError:
            return error("failed to parse message")
        if not isinstance(req, dict) or req.get("type") not in ("subscribe", "unsubscribe"):
            return error(f"unknown message type: {text[:200]}")
        op, channel, products = req["type"], req.get("channel"), req.get("product_ids") or []
        if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
            return error("product_ids must be a list of product ids")
        keys = [("coinbase", "SPOT", p) for p in products]
        bad = [p for p, k in zip(products, keys, strict=True) if k not in self.books]
        if op == "subscribe" and (channel != "market_trades" or bad or not products):
            return error(
                f"Failure to subscribe: replay serves the recorded market_trades "
                f"channel only; not channel {channel!r} products {bad or products}"
            )
        out: list[str] = []
        for key in keys:
            if op == "unsubscribe":
                self._unsubscribe(conn, key)
                continue
            fresh = key not in conn.keys
            self._subscribe(conn, key)
            k = self.released(key)
            if fresh and k:  # newest first
                rows = self.books[key].ws_rows
                trades = ",".join(
                    rows[i] for i in range(k - 1, max(0, k - COINBASE_SNAPSHOT) - 1, -1)
                )
                out.append(frame("market_trades", f'[{{"type":"snapshot","trades":[{trades}]}}]'))
                self.snapshots_sent += 1
        subs = sorted(k[2] for k in conn.keys)
        out.append(
            frame(
                "subscriptions",
                _dumps([{"subscriptions": ({"market_trades": subs} if subs else {})}]),
            )
        )
        return out

    def _subscribe(self, conn: _Conn, key: tuple[str, str, str]) -> None:
        conn.keys.add(key)
        self._subs.setdefault(key, set()).add(conn)
        threshold = self.start_on_subscribe
        if threshold and self._started is not None and not self._started.is_set():
            if sum(1 for v in self._subs.values() if v) >= threshold:
                self._started.set()

    def _unsubscribe(self, conn: _Conn, key: tuple[str, str, str]) -> None:
        conn.keys.discard(key)
        subs = self._subs.get(key)
        if subs is not None:
            subs.discard(conn)

    def _drop(self, conn: _Conn) -> None:
        for key in list(conn.keys):
            self._unsubscribe(conn, key)
        self._conns.discard(conn)

    def subscriber_count(self, key: tuple[str, str, str]) -> int:
        return len(self._subs.get(key, ()))


def _int_arg(venue: Venue, q: Any, name: str, default: int | None) -> int:
    errors: dict[str, tuple[int, int | str]] = {
        "bybit": (200, 10001),
        "okx": (200, "51000"),
        "coinbase": (400, "INVALID_ARGUMENT"),
    }
    status, code = errors[venue]
    value = q.get(name)
    if value is None or value == "":
        if default is None:
            raise _VenueError(venue, status, code, f"Parameter {name} error")
        return default
    try:
        n = int(value)
    except ValueError:
        raise _VenueError(venue, status, code, f"Parameter {name} error") from None
    if n < 1 and name == "limit":
        raise _VenueError(venue, status, code, f"Parameter {name} error")
    return n


# --------------------------------------------------------------------------------------------
# ccxt configuration


@functools.lru_cache(maxsize=8)
def _ccxt_default_api_urls(exchange_id: str) -> tuple[dict[str, Any], str]:
    import ccxt.pro

    exchange = getattr(ccxt.pro, exchange_id)()
    return copy.deepcopy(exchange.urls["api"]), str(getattr(exchange, "hostname", "") or "")


def _rewrite_all(value: Any, base: str, hostname: str) -> Any:
    if isinstance(value, dict):
        return {k: _rewrite_all(v, base, hostname) for k, v in value.items()}
    if isinstance(value, str) and "://" in value:
        return rewrite_url(value.replace("{hostname}", hostname), base)
    return value


def venue_ccxt_overrides(server: VenueReplayServer | str, exchange_id: str) -> dict[str, Any]:
    """The ccxt constructor config pointing ``ccxt.pro.bybit`` / ``okx`` / ``coinbase`` at the
    server.

    Every URL in ccxt's ``urls['api']`` (REST and websocket, public and private; ``{hostname}``
    filled in first) is rewritten to ``{server}/{venue host}/{path}``, so nothing can reach the
    venue. No key is set: ``fetch_currencies`` of Bybit and OKX returns ``{}`` without one, and
    ``fetchCurrencies`` is off anyway; their ``load_markets`` calls only the instruments
    endpoints. Coinbase's ``load_markets`` calls its public currency endpoints regardless (they
    are served) and the public products endpoint.
    """
    exchange_id = exchange_id.lower()
    if exchange_id not in VENUES:
        raise ValueError(f"{exchange_id!r}: expected one of {VENUES}")
    base = server.url if isinstance(server, VenueReplayServer) else server
    urls, hostname = _ccxt_default_api_urls(exchange_id)
    api = _rewrite_all(urls, base, hostname)
    return {"urls": {"api": api}, "options": {"fetchCurrencies": False}}


def non_loopback_urls(exchange: Any, server: VenueReplayServer | str) -> list[str]:
    """URLs in a ccxt exchange's ``urls['api']`` that do not lead to the server (should be [])."""
    base = server.url if isinstance(server, VenueReplayServer) else server
    ws_base = "ws" + base[4:] if base.startswith("http") else base
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif (
            isinstance(v, str)
            and "://" in v
            and not (v.startswith(base + "/") or v.startswith(ws_base + "/"))
        ):
            out.append(v)

    walk(exchange.urls.get("api"))
    return out


__all__ = [
    "VENUES",
    "Venue",
    "VenueMarket",
    "VenueReplayServer",
    "non_loopback_urls",
    "venue_ccxt_overrides",
    "venue_markets",
]
