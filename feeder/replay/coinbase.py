"""Coinbase Advanced Trade's public protocol over the recorded Binance trades (served by
:class:`feeder.replay.venues.VenueReplayServer`; checked against what ccxt 4.5 sends and parses).

Markets: spot ``BTC-USD`` (``BTC/USD``) from the spot recording, its USDT prices served as USD
prices, trade ids consecutive integers; Coinbase's perpetuals are not served.

* websocket ``advanced-trade-ws.coinbase.com`` (path ``/``): ``{"type":"subscribe",
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
* REST ``api.coinbase.com``: what ``load_markets`` calls without keys:
  ``/v2/currencies``, ``/v2/currencies/crypto``, ``/v2/exchange-rates`` (``fetch_currencies``;
  ccxt calls it whatever ``options.fetchCurrencies`` says), ``/api/v3/brokerage/market/products``
  (and ``?product_type=FUTURE``: empty); ``/api/v3/brokerage/market/products/{id}/ticker``
  (``limit`` required, <= 1000; ``start``/``end`` UNIX seconds, both inclusive: the newest
  ``limit`` trades in [start, end], newest first, ``best_bid``/``best_ask`` empty: no book is
  recorded); ``/v2/time`` and ``/api/v3/brokerage/time``. Errors: ``{"error":"NOT_FOUND"|
  "INVALID_ARGUMENT",..}``.
"""

from __future__ import annotations

import json
import time
import uuid
from bisect import bisect_left, bisect_right
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from feeder.replay.recording import MarketType
from feeder.replay.server import dec_text, dumps, json_text
from feeder.replay.venue_protocol import (
    UUID_NS,
    Book,
    MarketKey,
    Push,
    RawTrade,
    VenueConn,
    VenueError,
    VenueMarket,
    VenueProtocol,
    runs,
)

if TYPE_CHECKING:
    from feeder.replay.venues import VenueReplayServer

WS_HOST = "advanced-trade-ws.coinbase.com"
REST_HOST = "api.coinbase.com"
#: ``market_trades`` pushes collect the trades of 250 ms; the public ticker endpoint serves at
#: most 1000 trades; a (re)subscription first gets a snapshot of the most recent trades (its
#: size is not documented; 50 here).
BATCH_NS = 250_000_000
TRADES_MAX = 1000
SNAPSHOT = 50
ID_BASE = 690_000_000


def iso_ms(ms: int) -> str:
    """Coinbase's RFC 3339 trade time (microseconds): ``2024-08-08T23:54:16.322000Z``."""
    sec, frac = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:03d}000Z"


def iso_ns(ns: int) -> str:
    """Coinbase's message timestamp (nanoseconds): ``2024-08-08T23:54:16.322123456Z``."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def product_row(m: VenueMarket, price: str) -> dict[str, Any]:
    """``/api/v3/brokerage/market/products`` row (the real field set; 24 h statistics are not
    recorded and left empty)."""
    base = m.base
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


def _ok(body: Any) -> web.Response:
    return json_text(body if isinstance(body, str) else dumps(body))


class CoinbaseProtocol(VenueProtocol):
    venue = "coinbase"
    ws_host = WS_HOST
    rest_host = REST_HOST
    ws_paths = {"": ""}  # the websocket is at "/"
    param_error = (400, "INVALID_ARGUMENT")
    not_found_code = "NOT_FOUND"

    def error_body(self, code: int | str, msg: str, now_ms: int) -> dict[str, Any]:
        return {"error": str(code), "error_details": msg, "message": msg}

    def outgoing(self, conn: VenueConn, text: str) -> str:
        """Pushes are numbered per connection."""
        text = text.replace('"sequence_num":0', f'"sequence_num":{conn.seq}', 1)
        conn.seq += 1
        return text

    def markets(self, base: str, binance_symbol: str) -> dict[MarketType, VenueMarket]:
        return {
            "spot": VenueMarket(
                "coinbase", "spot", binance_symbol, f"{base}-USD", "SPOT", f"{base}/USD", None
            )
        }

    def book(self, m: VenueMarket, raws: list[RawTrade]) -> tuple[Book, list[Push]]:
        """Trades with consecutive ids; ``market_trades`` pushes of 250 ms, newest first."""
        book = Book(m)
        pushes: list[Push] = []
        for k, r in enumerate(raws):
            tid = str(ID_BASE + k)
            side = "SELL" if r.sell else "BUY"  # the taker's side, as ccxt reads it (no inversion)
            t = iso_ms(r.ts_ms)
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
            book.add(r, tid, row, id_int=ID_BASE + k, ws_row=ws_row)
        # ``market_trades``: the trades of 250 ms (recorded receive time) in one push, newest
        # first; ``sequence_num`` is per connection (numbered when sent, :meth:`outgoing`)
        for run in runs(raws, lambda a, b: b.recv_ns < a.recv_ns + BATCH_NS):
            i, j = run.start, run.stop
            trades = book.newest(i, j, j - i, ws=True)
            text = (
                f'{{"channel":"market_trades","client_id":"","timestamp":'
                f'"{iso_ns(raws[j - 1].recv_ns)}","sequence_num":0,"events":[{{"type":"update",'
                f'"trades":[{trades}]}}]}}'
            )
            pushes.append(Push(raws[j - 1].recv_ns, m.key, text, i, j - i))
        return book, pushes

    @staticmethod
    def _last_price(server: VenueReplayServer, key: MarketKey) -> str:
        book = server.books[key]
        k = server.released(key)
        return str(json.loads(book.rows[max(k, 1) - 1])["price"]) if book.rows else ""

    def rest(
        self, server: VenueReplayServer, request: web.Request, tail: str
    ) -> web.Response | None:
        q = request.query
        ours = [k for k in server.books if k[0] == "coinbase"]
        if tail == "v2/time":
            ms = server.server_time_ms()
            return _ok({"data": {"iso": iso_ms(ms)[:19] + "Z", "epoch": ms // 1000}})
        if tail == "api/v3/brokerage/time":
            ms = server.server_time_ms()
            return _ok(
                {
                    "iso": iso_ms(ms)[:19] + "Z",
                    "epochSeconds": str(ms // 1000),
                    "epochMillis": str(ms),
                }
            )
        # ccxt's load_markets calls fetch_currencies (``has['fetchCurrencies']``; its
        # ``fetchCurrencies`` option does not stop it): three public v2 endpoints
        if tail == "v2/currencies":
            return _ok({"data": [{"id": "USD", "name": "US Dollar", "min_size": "0.01"}]})
        if tail == "v2/currencies/crypto":
            bases = sorted({server.markets[k].base for k in ours})
            data = [
                {
                    "asset_id": str(uuid.uuid5(UUID_NS, f"asset:{b}")),
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
            return _ok({"data": data})
        if tail == "v2/exchange-rates":
            cur = q.get("currency", "USD").upper()
            usd_per = {
                server.markets[k].base: Decimal(self._last_price(server, k))
                for k in ours
                if server.books[k].rows
            }
            usd_per["USD"] = Decimal(1)
            if cur not in usd_per:
                raise VenueError("coinbase", 400, "invalid_request", f"Invalid currency {cur}")
            rates = {c: dec_text(usd_per[cur] / v) for c, v in sorted(usd_per.items())}
            return _ok({"data": {"currency": cur, "rates": rates}})
        if tail == "api/v3/brokerage/market/products":
            wanted = q.getall("product_ids", [])
            rows = []
            if q.get("product_type", "SPOT") == "SPOT":  # no futures are recorded
                rows = [
                    product_row(server.markets[k], self._last_price(server, k))
                    for k in ours
                    if not wanted or k[2] in wanted
                ]
            return _ok({"products": rows, "num_products": len(rows), "pagination": None})
        prefix, _, rest = tail.partition("api/v3/brokerage/market/products/")
        product, _, what = rest.partition("/")
        if prefix == "" and what == "ticker":
            keys = [k for k in ours if k[2] == product]
            if not keys:
                raise VenueError("coinbase", 404, "NOT_FOUND", "ProductID is invalid")
            key = keys[0]
            book = server.books[key]
            hi = server.released(key)
            lo = 0
            # ``start``/``end``: UNIX seconds, both inclusive (``end`` as the instant end.000)
            if q.get("start"):
                lo = bisect_left(book.times, self.int_arg(q, "start", None) * 1000, 0, hi)
            if q.get("end"):
                end_ms = self.int_arg(q, "end", None) * 1000
                hi = min(hi, bisect_right(book.times, end_ms, 0, hi))
            limit = min(self.int_arg(q, "limit", None), TRADES_MAX)
            text = book.newest(lo, hi, limit)  # newest first
            return _ok(f'{{"trades":[{text}],"best_bid":"","best_ask":""}}')
        return None

    def on_text(self, server: VenueReplayServer, conn: VenueConn, text: str) -> list[str]:
        """``{"type":"subscribe"|"unsubscribe","product_ids":[..],"channel":"market_trades"}``
        (a ``jwt`` is optional for public channels): a snapshot of the most recent trades per
        newly subscribed product (none before the replay has released any), then the
        ``subscriptions`` message listing what the connection is subscribed to."""

        def frame(channel: str, events: str) -> str:
            conn.seq += 1
            return (
                f'{{"channel":"{channel}","client_id":"","timestamp":'
                f'"{iso_ns(server.server_time_ms() * 1_000_000)}","sequence_num":{conn.seq - 1},'
                f'"events":{events}}}'
            )

        def error(msg: str) -> list[str]:
            return [dumps({"type": "error", "message": msg})]

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
        bad = [p for p, k in zip(products, keys, strict=True) if k not in server.books]
        if op == "subscribe" and (channel != "market_trades" or bad or not products):
            return error(
                f"Failure to subscribe: replay serves the recorded market_trades "
                f"channel only; not channel {channel!r} products {bad or products}"
            )
        out: list[str] = []
        for key in keys:
            if op == "unsubscribe":
                server.unsubscribe(conn, key)
                continue
            fresh = key not in conn.keys
            server.subscribe(conn, key)
            k = server.released(key)
            if fresh and k:  # newest first
                trades = server.books[key].newest(0, k, SNAPSHOT, ws=True)
                out.append(frame("market_trades", f'[{{"type":"snapshot","trades":[{trades}]}}]'))
                server.snapshots_sent += 1
        subs = sorted(k[2] for k in conn.keys)
        out.append(
            frame(
                "subscriptions",
                dumps([{"subscriptions": ({"market_trades": subs} if subs else {})}]),
            )
        )
        return out
