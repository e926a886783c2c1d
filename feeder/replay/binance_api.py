"""Binance's API as the replay serves it: where each market type lives (hosts, REST prefix,
saved exchangeInfo, ccxt names, trade limits), the REST trade row, and Binance's error replies
(REST ``{"code","msg"}``, websocket ``{"error":..,"id":..}``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from feeder.replay.recording import MarketType
from feeder.replay.server import InvalidParam, MissingParam, dec_text, dumps, int_param, json_text

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MARKETS_DIR = REPO.parent / "shared" / "data" / "market" / "cryptofeed"


@dataclass(frozen=True)
class BinanceEndpoints:
    """Where one Binance market type is served: websocket and REST hosts, REST prefix, saved
    exchangeInfo file, ccxt names and the trade endpoints' limits."""

    market: MarketType
    ws_host: str
    rest_host: str
    rest_prefix: str
    exchange_info_file: str
    ccxt_exchange: str
    ccxt_ws_key: str
    ccxt_rest_key: str
    fetch_trades_method: str
    historical_default_limit: int
    historical_max_limit: int


ENDPOINTS: dict[MarketType, BinanceEndpoints] = {
    "spot": BinanceEndpoints(
        "spot",
        "stream.binance.com",
        "api.binance.com",
        "api/v3",
        "BINANCE.exchangeInfo.json",
        "binance",
        "spot",
        "public",
        "publicGetHistoricalTrades",
        500,
        1000,
    ),
    "usdm": BinanceEndpoints(
        "usdm",
        "fstream.binance.com",
        "fapi.binance.com",
        "fapi/v1",
        "BINANCE_FUTURES.exchangeInfo.json",
        "binanceusdm",
        "linear",
        "fapiPublic",
        "fapiPublicGetHistoricalTrades",
        100,
        500,
    ),
    "cm": BinanceEndpoints(
        "cm",
        "dstream.binance.com",
        "dapi.binance.com",
        "dapi/v1",
        "BINANCE_DELIVERY.exchangeInfo.json",
        "binancecoinm",
        "inverse",
        "dapiPublic",
        "dapiPublicGetHistoricalTrades",
        100,
        500,
    ),
}
WS_HOSTS = {spec.ws_host: m for m, spec in ENDPOINTS.items()}
REST_HOSTS = {spec.rest_host: m for m, spec in ENDPOINTS.items()}
RECENT_DEFAULT_LIMIT = 500
RECENT_MAX_LIMIT = 1000


def rest_row(market: MarketType, d: dict[str, Any], contract_size: str | None) -> str:
    """Binance's REST trade object for a recorded ``@trade`` event.

    Spot ``{"id","price","qty","quoteQty","time","isBuyerMaker","isBestMatch"}``, USD-M
    ``{"id","price","qty","quoteQty","time","isBuyerMaker"}``, COIN-M with ``baseQty``
    instead of ``quoteQty``. ``quoteQty``/``baseQty`` are not in the stream: they are computed
    (spot: price x qty to 8 decimals; USD-M: exact price x qty; COIN-M: qty x contract size /
    price to 8 decimals).
    """
    price, qty = str(d["p"]), str(d["q"])
    row: dict[str, Any] = {"id": d["t"], "price": price, "qty": qty}
    if market == "spot":
        row["quoteQty"] = dec_text(Decimal(price) * Decimal(qty), 8)
    elif market == "usdm":
        row["quoteQty"] = dec_text(Decimal(price) * Decimal(qty))
    else:
        p = Decimal(price)
        base = Decimal(qty) * Decimal(contract_size or "1") / p if p else Decimal(0)
        row["baseQty"] = dec_text(base, 8)
    row["time"] = d["T"]
    row["isBuyerMaker"] = d["m"]
    if market == "spot":
        row["isBestMatch"] = d.get("M", True)
    return dumps(row)


class BinanceError(Exception):
    """A Binance error reply: HTTP ``status`` and ``{"code":code,"msg":msg}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg

    def response(self) -> web.Response:
        return json_text(dumps({"code": self.code, "msg": self.msg}), self.status)


def refuse_unread(q: Any, allowed: set[str]) -> None:
    """Binance reads only its documented parameters and refuses a request with others."""
    extra = set(q.keys()) - allowed
    if extra:
        raise BinanceError(
            400,
            -1104,
            f"Not all sent parameters were read; read '{len(q) - len(extra)}' parameter(s) "
            f"but was sent '{len(q)}'.",
        )


def int_query(q: Any, name: str, default: int | None) -> int:
    """An integer parameter (None: required), refused in Binance's words."""
    try:
        return int_param(q, name, default)
    except MissingParam:
        raise BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent.") from None
    except InvalidParam:
        msg = f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        raise BinanceError(400, -1100, msg) from None


def ws_result(result: Any, rid: Any) -> str:
    return dumps({"result": result, "id": rid})


def ws_error(code: int, msg: str, rid: Any) -> str:
    return dumps({"error": {"code": code, "msg": msg}, "id": rid})
