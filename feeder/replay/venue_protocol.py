"""What the Bybit, OKX and Coinbase protocols of :mod:`feeder.replay.venues` share: the venue
market a Binance recording is served as, its trades as the venue's rows and pushes (:class:`Book`,
:class:`Push`), the venue's error (:class:`VenueError`) and :class:`VenueProtocol`, the seam each
venue module (:mod:`~feeder.replay.bybit`, :mod:`~feeder.replay.okx`,
:mod:`~feeder.replay.coinbase`) implements.
"""

from __future__ import annotations

import json
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from feeder.replay.recording import MarketType, Recording
from feeder.replay.server import dec_text, dumps, int_param

if TYPE_CHECKING:
    from feeder.replay.venues import VenueReplayServer

Venue = Literal["bybit", "okx", "coinbase"]
VENUES: tuple[Venue, ...] = ("bybit", "okx", "coinbase")
UUID_NS = uuid.UUID("6f1d2c8e-93c1-4b43-9d62-0c7a2f5d8e11")
MarketKey = tuple[str, str, str]  # (venue, category, venue symbol)


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
    def key(self) -> MarketKey:
        return (self.venue, self.category, self.symbol)

    @property
    def kind(self) -> str:
        return "spot" if self.source == "spot" else "perp"

    @property
    def base(self) -> str:
        return self.ccxt_symbol.split("/")[0]


@dataclass
class Book:
    """One venue market's trades (in recorded order) and their REST rows."""

    market: VenueMarket
    binance_ids: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # the venue's trade ids
    id_ints: list[int] = field(default_factory=list)  # OKX, Coinbase: numeric ids (sorted)
    times: list[int] = field(default_factory=list)  # trade time, ms
    push_slot: list[int] = field(default_factory=list)  # timeline slot of the push carrying it
    rows: list[str] = field(default_factory=list)  # REST JSON object text
    ws_rows: list[str] = field(default_factory=list)  # Coinbase: websocket trade objects

    def add(
        self,
        raw: RawTrade,
        tid: str,
        row: dict[str, Any],
        *,
        id_int: int | None = None,
        ws_row: dict[str, Any] | None = None,
    ) -> None:
        """One trade: its venue id, REST row (and numeric id, websocket row)."""
        self.binance_ids.append(raw.binance_id)
        self.ids.append(tid)
        if id_int is not None:
            self.id_ints.append(id_int)
        self.times.append(raw.ts_ms)
        self.rows.append(dumps(row))
        if ws_row is not None:
            self.ws_rows.append(dumps(ws_row))

    def released(self, cursor: int) -> int:
        return bisect_left(self.push_slot, cursor)

    def newest(self, lo: int, hi: int, limit: int, *, ws: bool = False) -> str:
        """The rows of trades ``lo..hi-1``, at most ``limit``, newest first, comma-joined (the
        websocket rows with ``ws``)."""
        rows = self.ws_rows if ws else self.rows
        return ",".join(rows[i] for i in range(hi - 1, max(lo, hi - limit) - 1, -1))


@dataclass
class RawTrade:
    """A recorded Binance trade, as every venue re-expresses it."""

    recv_ns: int
    event_ms: int
    ts_ms: int
    binance_id: int
    price: str
    qty: str
    sell: bool  # taker sold (Binance m: buyer was maker)


@dataclass
class Push:
    """One websocket push of the timeline: its text and the book trades it carries."""

    recv_ns: int
    key: MarketKey
    text: str
    first_trade: int  # index in the book of its first trade
    n_trades: int


def read_trades(rec: Recording, symbol: str) -> list[RawTrade]:
    """The recording's public trades of ``symbol`` (futures: ``X`` = ``MARKET`` only)."""
    out: list[RawTrade] = []
    for ts, text in rec.trade_frames():
        d = json.loads(text)
        if str(d.get("s")) != symbol or d.get("X", "MARKET") != "MARKET":
            continue  # futures insurance-fund / ADL rows are not public trades elsewhere
        out.append(
            RawTrade(
                ts,
                int(d["E"]),
                int(d["T"]),
                int(d["t"]),
                dec_text(Decimal(d["p"])),
                dec_text(Decimal(d["q"])),
                bool(d["m"]),
            )
        )
    return out


def runs(raws: list[RawTrade], same: Callable[[RawTrade, RawTrade], bool]) -> Iterator[range]:
    """Consecutive trades that go in one push: each run starts at a trade and takes the next
    ones while ``same(first, next)``."""
    i = 0
    while i < len(raws):
        j = i + 1
        while j < len(raws) and same(raws[i], raws[j]):
            j += 1
        yield range(i, j)
        i = j


@dataclass(eq=False)
class VenueConn:
    ws: web.WebSocketResponse
    request: web.Request
    venue: Venue
    path: str  # bybit: spot/linear/inverse/option; okx: public/business/private; coinbase: ""
    conn_id: str
    keys: set[MarketKey] = field(default_factory=set)
    seq: int = 0  # Coinbase: the connection's next ``sequence_num``


class VenueError(Exception):
    """A refused request, answered in the venue's format (:meth:`VenueProtocol.error_body`)."""

    def __init__(self, venue: Venue, status: int, code: int | str, msg: str) -> None:
        super().__init__(msg)
        self.venue, self.status, self.code, self.msg = venue, status, code, msg


class VenueProtocol:
    """One venue's public protocol over the Binance trades: its markets, their rows and pushes,
    REST endpoints, websocket requests and error format. Stateless: the server is passed in."""

    venue: Venue
    ws_host: str
    rest_host: str
    ws_paths: dict[str, str]  # websocket URL path (after the host) -> the connection's ``path``
    param_error: tuple[int, int | str]  # HTTP status and code of a bad parameter
    not_found_code: int | str

    def markets(self, base: str, binance_symbol: str) -> dict[MarketType, VenueMarket]:
        raise NotImplementedError

    def book(self, m: VenueMarket, raws: list[RawTrade]) -> tuple[Book, list[Push]]:
        raise NotImplementedError

    def rest(
        self, server: VenueReplayServer, request: web.Request, tail: str
    ) -> web.Response | None:
        """The answer to ``GET {rest host}/{tail}``; None: not served."""
        raise NotImplementedError

    def on_text(self, server: VenueReplayServer, conn: VenueConn, text: str) -> list[str]:
        """The replies to one websocket text frame."""
        raise NotImplementedError

    def error_body(self, code: int | str, msg: str, now_ms: int) -> dict[str, Any]:
        raise NotImplementedError

    def conn_id(self, seq: int) -> str:
        return f"{seq:08x}"

    def outgoing(self, conn: VenueConn, text: str) -> str:
        """A push as this connection receives it."""
        return text

    def int_arg(self, q: Any, name: str, default: int | None) -> int:
        """An integer query parameter (None: required; ``limit`` at least 1)."""
        status, code = self.param_error
        bad = VenueError(self.venue, status, code, f"Parameter {name} error")
        try:
            n = int_param(q, name, default)
        except ValueError:
            raise bad from None
        if n < 1 and name == "limit":
            raise bad
        return n
