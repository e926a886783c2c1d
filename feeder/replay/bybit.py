"""Bybit v5's public protocol over the recorded Binance trades (served by
:class:`feeder.replay.venues.VenueReplayServer`; checked against what ccxt 4.5 sends and parses).

Markets: spot ``BTCUSDT`` (``BTC/USDT``, trade ids 229e16 + the Binance id) and linear
``BTCUSDT`` (``BTC/USDT:USDT``, trade ids uuid5 of the Binance id), from the spot and USD-M
recordings.

* websocket ``/v5/public/spot`` and ``/v5/public/linear`` (``inverse``/``option`` accept
  connections, nothing is recorded there): ``{"op":"subscribe","req_id":..,"args":
  ["publicTrade.BTCUSDT"]}`` -> ``{"success":true,"ret_msg":"subscribe"`` (spot; ``""`` linear)
  ``,"conn_id":..,"req_id":..,"op":"subscribe"}``; ``{"op":"ping"}`` -> ``{"success":true,
  "ret_msg":"pong",..,"op":"ping"}``; pushes ``{"topic":"publicTrade.BTCUSDT","type":"snapshot",
  "ts":..,"data":[{"T","s","S","v","p","L"(linear only),"i","BT","seq"(linear only)}]}``, one
  push per matching event (consecutive trades with the same trade time). ccxt tells spot from
  linear by ``'spot' in url``, which the URL layout keeps.
* REST ``/v5/market/instruments-info`` (``category`` spot/linear/inverse/option; linear
  ``status=PreLaunch`` is empty), ``/v5/market/recent-trade`` (newest first; ``limit`` spot
  1..60 default 60, others 1..1000 default 500; no time or id paging: Bybit's public REST only
  has the most recent trades) and ``/v5/market/time``.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from feeder.replay.recording import MarketType
from feeder.replay.server import dumps, json_text
from feeder.replay.venue_protocol import (
    UUID_NS,
    Book,
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

WS_HOST = "stream.bybit.com"
REST_HOST = "api.bybit.com"
#: recent-trade limits: (default, max) per category.
RECENT_LIMITS = {"spot": (60, 60), "linear": (500, 1000), "inverse": (500, 1000)}
BYBIT_SPOT_ID_BASE = 2_290_000_000_000_000_000


def instrument(m: VenueMarket) -> dict[str, Any]:
    """``/v5/market/instruments-info`` row (spot or linear)."""
    base = m.base
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


def _ok(server: VenueReplayServer, result: Any) -> web.Response:
    body = {
        "retCode": 0,
        "retMsg": "OK",
        "result": result,
        "retExtInfo": {},
        "time": server.server_time_ms(),
    }
    return json_text(dumps(body))


class BybitProtocol(VenueProtocol):
    venue = "bybit"
    ws_host = WS_HOST
    rest_host = REST_HOST
    ws_paths = {f"v5/public/{c}": c for c in ("spot", "linear", "inverse", "option")}
    param_error = (200, 10001)
    not_found_code = 10404

    def conn_id(self, seq: int) -> str:
        return str(uuid.uuid5(UUID_NS, f"conn:{seq}"))

    def error_body(self, code: int | str, msg: str, now_ms: int) -> dict[str, Any]:
        return {"retCode": int(code), "retMsg": msg, "result": {}, "retExtInfo": {}, "time": now_ms}

    def markets(self, base: str, binance_symbol: str) -> dict[MarketType, VenueMarket]:
        return {
            "spot": VenueMarket(
                "bybit", "spot", binance_symbol, binance_symbol, "spot", f"{base}/USDT", None
            ),
            "usdm": VenueMarket(
                "bybit", "usdm", binance_symbol, binance_symbol, "linear", f"{base}/USDT:USDT", None
            ),
        }

    def book(self, m: VenueMarket, raws: list[RawTrade]) -> tuple[Book, list[Push]]:
        """One push per trade time; linear adds the tick direction ``L`` and a ``seq``."""
        book = Book(m)
        pushes: list[Push] = []
        linear = m.category == "linear"
        prev_price: Decimal | None = None
        tick = "ZeroPlusTick"
        seq = 0
        for run in runs(raws, lambda a, b: b.ts_ms == a.ts_ms):
            data = []
            for r in raws[run.start : run.stop]:
                if linear:
                    tid = str(uuid.uuid5(UUID_NS, f"bybit:linear:{m.symbol}:{r.binance_id}"))
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
                book.add(r, tid, row)
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
                            else "ZeroMinusTick"
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
                "ts": max(r.event_ms for r in raws[run.start : run.stop]),
                "data": data,
            }
            pushes.append(Push(raws[run.start].recv_ns, m.key, dumps(msg), run.start, len(run)))
        return book, pushes

    def rest(
        self, server: VenueReplayServer, request: web.Request, tail: str
    ) -> web.Response | None:
        q = request.query
        if tail == "v5/market/time":
            ms = server.server_time_ms()
            return _ok(server, {"timeSecond": str(ms // 1000), "timeNano": str(ms * 10**6)})
        if tail == "v5/market/instruments-info":
            category = q.get("category", "")
            if category not in ("spot", "linear", "inverse", "option"):
                raise VenueError("bybit", 200, 10001, "params error: category is invalid")
            rows = []
            if q.get("status", "Trading") == "Trading":
                rows = [
                    instrument(m)
                    for m in server.markets.values()
                    if m.venue == "bybit"
                    and m.category == category
                    and q.get("symbol", m.symbol) == m.symbol
                    and q.get("baseCoin", m.base) == m.base
                ]
            result: dict[str, Any] = {"category": category, "list": rows}
            if category != "spot":
                result["nextPageCursor"] = ""
            return _ok(server, result)
        if tail == "v5/market/recent-trade":
            category = q.get("category", "")
            if category not in RECENT_LIMITS:
                raise VenueError("bybit", 200, 10001, "params error: category is invalid")
            key = ("bybit", category, q.get("symbol", ""))
            if key not in server.books:
                raise VenueError("bybit", 200, 10001, "Not supported symbols")
            default, most = RECENT_LIMITS[category]
            limit = min(self.int_arg(q, "limit", default), most)
            book = server.books[key]
            hi = server.released(key)
            text = "[" + book.newest(0, hi, limit) + "]"
            now = server.server_time_ms()
            body = (
                f'{{"retCode":0,"retMsg":"OK","result":{{"category":"{category}",'
                f'"list":{text}}},"retExtInfo":{{}},"time":{now}}}'
            )
            return json_text(body)
        return None

    def on_text(self, server: VenueReplayServer, conn: VenueConn, text: str) -> list[str]:
        def reply(success: bool, ret_msg: str, op: str, req_id: Any) -> str:
            out: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": conn.conn_id}
            if req_id is not None:
                out["req_id"] = req_id
            out["op"] = op
            return dumps(out)

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
                if name != "publicTrade" or key not in server.books:
                    bad.append(topic)
                keys.append(key)
            if bad and op == "subscribe":
                what = f"/v5/public/{conn.path}: {','.join(bad)}"
                msg = f"error:replay serves recorded publicTrade topics only; not on {what}"
                return [reply(False, msg, op, req_id)]
            for key in keys:
                if op == "subscribe":
                    server.subscribe(conn, key)
                else:
                    server.unsubscribe(conn, key)
            ok_msg = "subscribe" if (op == "subscribe" and conn.path == "spot") else ""
            return [reply(True, ok_msg, op, req_id)]
        return [reply(False, f"error:handler not found,op:{op}", str(op), req_id)]
