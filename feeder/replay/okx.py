"""OKX v5's public protocol over the recorded Binance trades (served by
:class:`feeder.replay.venues.VenueReplayServer`; checked against what ccxt 4.5 sends and parses).

Markets: ``BTC-USDT`` (``BTC/USDT``) and ``BTC-USDT-SWAP`` (``BTC/USDT:USDT``, sizes in
contracts: ``ctVal`` 0.01 BTC, so ``sz`` = qty / 0.01, exact decimals), from the spot and USD-M
recordings; trade ids are consecutive integers per instrument.

* websocket ``/ws/v5/public``: ``{"op":"subscribe","args":[{"channel":"trades","instId":..}]}``
  -> one ``{"event":"subscribe","arg":{..},"connId":..}`` per arg; text ``ping`` -> ``pong``;
  pushes ``{"arg":{"channel":"trades","instId":..},"data":[{"instId","tradeId","px","sz","side",
  "ts","count","source","seqId"}]}``. Like OKX, the ``trades`` channel is **aggregated**: one
  push per taker order and price (here: consecutive trades with the same time, side and price),
  ``tradeId`` is the *last* trade id of the aggregation and ``count`` how many it covers
  (ids ``tradeId - count + 1 .. tradeId``), ``sz`` their total.
* REST ``/api/v5/public/instruments`` (``instType`` SPOT/SWAP/FUTURES/OPTION),
  ``/api/v5/market/trades`` (single trades, newest first, ``limit`` <= 500, default 100),
  ``/api/v5/market/history-trades`` (single trades, newest first, ``limit`` <= 100; ``type`` 1:
  ``after``/``before`` are trade ids, 2: ``after`` is a time) and ``/api/v5/public/time``.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from feeder.replay.recording import MarketType
from feeder.replay.server import dec_text, dumps, json_text
from feeder.replay.venue_protocol import (
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

WS_HOST = "ws.okx.com"
REST_HOST = "www.okx.com"
TRADES_LIMITS = (100, 500)
HISTORY_LIMITS = (100, 100)
SWAP_CT_VAL = "0.01"
OKX_ID_BASE = {"spot": 500_000_000, "usdm": 1_300_000_000}


def instrument(m: VenueMarket) -> dict[str, Any]:
    """``/api/v5/public/instruments`` row (SPOT or SWAP)."""
    base = m.base
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


def _same_order(a: RawTrade, b: RawTrade) -> bool:
    """One taker order and price: the same time, side and price."""
    return b.ts_ms == a.ts_ms and b.sell == a.sell and b.price == a.price


def _ok(data_text: str) -> web.Response:
    return json_text(f'{{"code":"0","msg":"","data":{data_text}}}')


class OkxProtocol(VenueProtocol):
    venue = "okx"
    ws_host = WS_HOST
    rest_host = REST_HOST
    ws_paths = {"ws/v5/public": "public", "ws/v5/business": "business"}
    param_error = (200, "51000")
    not_found_code = "50000"

    def error_body(self, code: int | str, msg: str, now_ms: int) -> dict[str, Any]:
        return {"code": str(code), "msg": msg, "data": []}

    def markets(self, base: str, binance_symbol: str) -> dict[MarketType, VenueMarket]:
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
                SWAP_CT_VAL,
            ),
        }

    def book(self, m: VenueMarket, raws: list[RawTrade]) -> tuple[Book, list[Push]]:
        """Single trades for REST (consecutive ids); the ``trades`` channel aggregated."""
        book = Book(m)
        pushes: list[Push] = []
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
                "sz": dec_text(sz),
                "source": "0",
                "px": r.price,
                "tradeId": str(tid),
                "ts": str(r.ts_ms),
            }
            book.add(r, str(tid), row, id_int=tid)
        # the ``trades`` channel: one push per taker order and price (same time, side and price)
        seq = 0
        for run in runs(raws, _same_order):
            i, j = run.start, run.stop
            seq += 1
            total = sum(sizes[i:j], Decimal(0))
            rec = {
                "instId": m.symbol,
                "tradeId": book.ids[j - 1],
                "px": raws[i].price,
                "sz": dec_text(total),
                "side": "sell" if raws[i].sell else "buy",
                "ts": str(raws[i].ts_ms),
                "count": str(j - i),
                "source": "0",
                "seqId": 7_000_000_000 + seq,
            }
            msg = {"arg": {"channel": "trades", "instId": m.symbol}, "data": [rec]}
            pushes.append(Push(raws[i].recv_ns, m.key, dumps(msg), i, j - i))
        return book, pushes

    def rest(
        self, server: VenueReplayServer, request: web.Request, tail: str
    ) -> web.Response | None:
        q = request.query
        if tail == "api/v5/public/time":
            return _ok(dumps([{"ts": str(server.server_time_ms())}]))
        if tail == "api/v5/public/instruments":
            inst_type = q.get("instType", "")
            if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
                raise VenueError("okx", 400, "51000", "Parameter instType error")
            cat = "SPOT" if inst_type == "MARGIN" else inst_type
            rows = [
                instrument(m)
                for m in server.markets.values()
                if m.venue == "okx" and m.category == cat and q.get("instId", m.symbol) == m.symbol
            ]
            return _ok(dumps(rows))
        if tail in ("api/v5/market/trades", "api/v5/market/history-trades"):
            inst = q.get("instId", "")
            keys = [k for k in server.books if k[0] == "okx" and k[2] == inst]
            if not keys:
                raise VenueError("okx", 200, "51001", "Instrument ID does not exist")
            key = keys[0]
            book = server.books[key]
            hi = server.released(key)
            lo = 0
            if tail == "api/v5/market/trades":
                default, most = TRADES_LIMITS
            else:
                default, most = HISTORY_LIMITS
                by = q.get("type", "1")
                if by not in ("1", "2"):
                    raise VenueError("okx", 200, "51000", "Parameter type error")
                if "after" in q:
                    after = self.int_arg(q, "after", None)
                    values = book.id_ints if by == "1" else book.times
                    hi = min(hi, bisect_left(values, after))
                if "before" in q:
                    if by == "2":
                        raise VenueError("okx", 200, "51000", "Parameter before error")
                    lo = bisect_right(book.id_ints, self.int_arg(q, "before", None))
            limit = min(self.int_arg(q, "limit", default), most)
            return _ok("[" + book.newest(lo, hi, limit) + "]")  # newest first
        return None

    def on_text(self, server: VenueReplayServer, conn: VenueConn, text: str) -> list[str]:
        if text == "ping":
            return ["pong"]

        def error(code: str, msg: str, rid: Any = None) -> str:
            out: dict[str, Any] = {}
            if rid is not None:
                out["id"] = rid
            out.update({"event": "error", "code": code, "msg": msg, "connId": conn.conn_id})
            return dumps(out)

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
            keys = [k for k in server.books if k[0] == "okx" and k[2] == inst]
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
                server.subscribe(conn, keys[0])
            else:
                server.unsubscribe(conn, keys[0])
            reply: dict[str, Any] = {}
            if rid is not None:
                reply["id"] = rid
            reply.update(
                {"event": op, "arg": {"channel": channel, "instId": inst}, "connId": conn.conn_id}
            )
            out.append(dumps(reply))
        return out
