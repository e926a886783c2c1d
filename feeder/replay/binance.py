"""Replay recorded Binance websocket sessions on a loopback server that real ccxt pro talks to.

``ReplayServer`` serves one or more hftbacktest recordings (``<local receive ts> <combined-stream
JSON>`` lines, gzip) the way Binance would, so that unmodified ``ccxt.pro.binance``,
``binanceusdm`` and ``binancecoinm`` can be pointed at it through their URL configuration
(:func:`ccxt_overrides`) and collect trades exactly as from Binance:

* websocket market streams: ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` /
  ``SET_PROPERTY combined`` / ``GET_PROPERTY`` with Binance's replies (``{"result":null,"id":N}``);
  only the subscribed streams' frames are sent, in recorded order, with the recorded ``data`` JSON
  text byte for byte: bare on ``/ws`` (ccxt's choice), wrapped ``{"stream":..,"data":..}`` on
  ``/stream`` (the recorded line itself);
* REST: ``exchangeInfo`` (saved, byte-exact responses), ``ping``, ``time``, and the raw-trade
  endpoints ``trades`` and ``historicalTrades`` answered from the recording, limited to the trades
  the replay has reached so far (see :meth:`ReplayServer.released_trades`);
* timing: ``speed`` 1.0 replays at the recorded pace (receive timestamps), N is N times faster,
  0 or None as fast as the clients read (websocket back-pressure). Event times are never changed;
* fault injection: forced disconnects (:meth:`ReplayServer.disconnect_all`,
  :meth:`ReplayServer.disconnect_after`, ``Fault("disconnect", at)``) and malformed, truncated,
  field-less, duplicated and swapped trade frames (:class:`Fault`); failing REST answers
  (:class:`RestFault`: HTTP 5xx, Binance error JSON, an HTML gateway page).

Open interest and liquidations (futures). The recordings have neither (no open-interest history,
no ``forceOrder`` stream), so the replay serves only what the caller supplies, clearly not
recorded data, in Binance's formats:

* ``openInterest?symbol=`` (USD-M ``{"openInterest","symbol","time"}``, COIN-M
  ``{"symbol","pair","openInterest","contractType","time"}``) from :class:`OpenInterestPoint`
  series: the last point at or before the replay's exchange clock (:meth:`ReplayServer.
  server_time_ms`), never a later one; an error before the first point;
* ``premiumIndex[?symbol=]`` (the mark price ccxt's ``fetch_mark_price`` reads, which values USD-M
  open interest): the recording's ``@markPrice@1s`` frames where it has them (2023 USD-M), else
  stand-ins from the last recorded trade price (index and settle price the same, funding 0);
* websocket ``<symbol>@forceOrder`` and ``!forceOrder@arr``: :class:`Liquidation` events are
  injected into the timeline at their event time (moved onto the recordings' receive clock), in
  order among the recorded frames; Binance's event JSON, wrapped on ``/stream``.

URL layout. The server puts Binance's host name first in the path, so every ccxt base URL maps
one to one: ``wss://stream.binance.com:9443/ws`` becomes ``ws://127.0.0.1:PORT/stream.binance.com/ws``
and ``https://fapi.binance.com/fapi/v1`` becomes ``http://127.0.0.1:PORT/fapi.binance.com/fapi/v1``.
This matters: ccxt decides whether a bare trade frame is spot or contract from the websocket URL
(``is_spot_url``: the URL must contain ``/stream``), and ``/stream.binance.com/`` keeps that test
true for spot and false for the futures hosts (``fstream``, ``dstream``). Every ccxt URL is
rewritten, so a request for something the replay does not serve gets a 404 (Binance-style JSON
error, listed in :attr:`ReplayServer.unserved`) instead of going to the internet.

Markets served: spot (``stream.binance.com`` / ``api.binance.com/api/v3``), USD-M
(``fstream.binance.com`` / ``fapi.binance.com/fapi/v1``) and COIN-M (``dstream.binance.com`` /
``dapi.binance.com/dapi/v1``). ``exchangeInfo`` is served for all three (``ccxt.pro.binance``
loads all three) from ``BINANCE.exchangeInfo.json``, ``BINANCE_FUTURES.exchangeInfo.json`` and
``BINANCE_DELIVERY.exchangeInfo.json`` in ``markets_dir``.

CLI::

    squeezeflow-feeder replay --recording PATH[:spot|usdm|cm] ... [--port N] [--speed X] [--loop]
        [--open-interest FILE.csv ...] [--liquidations FILE.jsonl[:usdm|cm] ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import functools
import gzip
import json
import logging
import os
import signal
import socket
import sys
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Self, cast
from urllib.parse import urlsplit, urlunsplit

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

MarketType = Literal["spot", "usdm", "cm"]
MARKET_TYPES: tuple[MarketType, ...] = ("spot", "usdm", "cm")

FaultKind = Literal["garbage", "truncated", "missing_fields", "duplicate", "swap", "disconnect"]
FAULT_KINDS: tuple[str, ...] = (
    "garbage",
    "truncated",
    "missing_fields",
    "duplicate",
    "swap",
    "disconnect",
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MARKETS_DIR = REPO.parent / "shared" / "data" / "market" / "cryptofeed"


@dataclass(frozen=True)
class MarketSpec:
    """How one Binance market type is addressed (hosts, REST prefix, ccxt names)."""

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


SPECS: dict[MarketType, MarketSpec] = {
    "spot": MarketSpec(
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
    "usdm": MarketSpec(
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
    "cm": MarketSpec(
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
WS_HOSTS = {spec.ws_host: m for m, spec in SPECS.items()}
REST_HOSTS = {spec.rest_host: m for m, spec in SPECS.items()}
RECENT_DEFAULT_LIMIT = 500
RECENT_MAX_LIMIT = 1000
SLOW_CLIENT_BUFFER = 1 << 16  # bytes queued for a client before it counts as not reading


# --------------------------------------------------------------------------------------------
# recordings


def market_from_path(path: Path) -> MarketType | None:
    """``spot``/``usdm``/``cm`` from a hftbacktest path (``raw/usdm/x.gz``, ``usdm_x.gz``)."""
    for part in reversed(path.parts[:-1]):
        if part in MARKET_TYPES:
            return cast(MarketType, part)
    stem = path.name.split("_", 1)[0]
    return cast(MarketType, stem) if stem in MARKET_TYPES else None


def parse_recording_arg(value: str) -> tuple[Path, MarketType]:
    """``PATH[:spot|usdm|cm]`` (the market defaults to the path's ``spot``/``usdm``/``cm`` part)."""
    path_s, sep, suffix = value.rpartition(":")
    market: MarketType | None
    if sep and suffix in MARKET_TYPES:
        path, market = Path(path_s), cast(MarketType, suffix)
    else:
        path = Path(value)
        market = market_from_path(path)
    if market is None:
        raise ValueError(f"{value!r}: say which market it is, PATH:spot, PATH:usdm or PATH:cm")
    return path, market


def _ts_to_ns(ts: int) -> int:
    """Receive timestamps: ns (2024 files), us (2023 ``.dat.gz``) or ms."""
    if ts >= 10**17:
        return ts
    if ts >= 10**14:
        return ts * 1_000
    return ts * 1_000_000


@dataclass
class Recording:
    """The stream frames of one recording file, in file order."""

    path: Path
    market: MarketType
    ts_ns: list[int] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)  # lower-cased stream names
    lines: list[str] = field(default_factory=list)  # the recorded combined-stream JSON text
    data_offsets: list[int] = field(default_factory=list)  # where the ``data`` value starts
    skipped: int = 0  # lines that are not stream frames (the REST depth snapshot)

    @classmethod
    def load(cls, path: Path | str, market: MarketType | None = None) -> Recording:
        path = Path(path)
        market = market or market_from_path(path)
        if market is None:
            raise ValueError(f"{path}: cannot tell the market type, pass spot, usdm or cm")
        rec = cls(path, market)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for raw in fh:
                line = raw.rstrip("\r\n")
                if not line:
                    continue
                ts_s, _, body = line.partition(" ")
                # {"stream":"btcusdt@trade","data":{...}}: keep the text, find the data value
                if not body.startswith('{"stream":"') or not body.endswith("}"):
                    rec.skipped += 1
                    continue
                end = body.find('"', 11)
                if end < 0 or not body.startswith(',"data":', end + 1):
                    rec.skipped += 1
                    continue
                rec.ts_ns.append(_ts_to_ns(int(ts_s)))
                rec.streams.append(body[11:end].lower())
                rec.lines.append(body)
                rec.data_offsets.append(end + 9)
        return rec

    def __len__(self) -> int:
        return len(self.lines)


# --------------------------------------------------------------------------------------------
# faults


@dataclass(frozen=True)
class Fault:
    """A fault injected into the live stream (REST answers are never affected).

    ``at`` counts recorded ``@trade`` frames from 0, over all markets in replay order, or only
    those of ``stream`` (e.g. ``"btcusdt@trade"``) when given. The fault happens at that frame:

    * ``garbage``: a non-JSON text frame (``garbage_text``) is sent before it;
    * ``truncated``: the first half of the frame's text (invalid JSON) is sent before it;
    * ``missing_fields``: a copy without ``fields`` (default price, quantity, trade id) first;
    * ``duplicate``: the frame is sent twice;
    * ``swap``: the frame and the next trade frame of the same stream change places;
    * ``disconnect``: every client connection is closed just before the frame is sent (it is
      then sent only to clients that have already reconnected and resubscribed).

    The recorded frame itself is always delivered too (except to clients cut off by a disconnect).
    """

    kind: FaultKind
    at: int
    stream: str | None = None
    fields: tuple[str, ...] = ("t", "p", "q")
    garbage_text: str = "this is not JSON"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}, expected one of {FAULT_KINDS}")
        if self.at < 0:
            raise ValueError("Fault.at must be >= 0")


# --------------------------------------------------------------------------------------------
# caller-supplied open interest and liquidations (nothing of either is recorded)


@dataclass(frozen=True)
class OpenInterestPoint:
    """One open-interest value to serve on ``openInterest`` (USD-M ``/fapi/v1``, COIN-M
    ``/dapi/v1``). Supplied by the caller: the recordings carry no open interest.

    ``time_ms`` is the exchange time of the value (Binance's ``time``); the point is served from
    the moment the replay's exchange clock (:meth:`ReplayServer.server_time_ms`) reaches it until
    the next point of the symbol. ``open_interest`` is the decimal text Binance would send: base
    units for USD-M (``"10659.509"`` BTC), contracts for COIN-M (``"1342"`` x 100 USD).
    """

    market: MarketType
    symbol: str  # exchange id: BTCUSDT, BTCUSD_PERP
    time_ms: int
    open_interest: str

    def __post_init__(self) -> None:
        if self.market not in ("usdm", "cm"):
            raise ValueError(f"{self}: open interest exists for usdm and cm markets only")
        object.__setattr__(self, "open_interest", _decimal_text(self.open_interest))


@dataclass(frozen=True)
class Liquidation:
    """One ``forceOrder`` event to inject into the websocket timeline, sent on
    ``<symbol>@forceOrder`` and ``!forceOrder@arr`` of its market. Supplied by the caller: the
    recordings carry no liquidation stream.

    Binance's fields: ``side`` ``S`` (``SELL``: a long position was liquidated, a forced sell;
    ``BUY``: a short), ``qty`` ``q`` (base units for USD-M, contracts for COIN-M), ``price``
    ``p``, ``avg_price`` ``ap`` (default ``price``), ``time_ms`` ``T`` (trade time),
    ``event_ms`` ``E`` (default ``time_ms``), ``status`` ``X``, ``last_qty`` ``l`` and
    ``filled_qty`` ``z`` (default ``qty``). COIN-M events also carry the pair ``ps`` (from
    exchangeInfo unless given).
    """

    market: MarketType
    symbol: str
    side: Literal["BUY", "SELL"]
    qty: str
    price: str
    time_ms: int
    avg_price: str | None = None
    event_ms: int | None = None
    status: str = "FILLED"
    last_qty: str | None = None
    filled_qty: str | None = None
    order_type: str = "LIMIT"
    time_in_force: str = "IOC"
    pair: str | None = None

    def __post_init__(self) -> None:
        if self.market not in ("usdm", "cm"):
            raise ValueError(f"{self}: liquidation streams exist for usdm and cm markets only")
        if self.side not in ("BUY", "SELL"):
            raise ValueError(f"{self}: side must be BUY or SELL")
        for name in ("qty", "price", "avg_price", "last_qty", "filled_qty"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _decimal_text(value))

    @property
    def stream(self) -> str:
        """The stream name as Binance sends it, e.g. ``btcusdt@forceOrder``."""
        return f"{self.symbol.lower()}@forceOrder"

    def event(self, pair: str | None = None) -> dict[str, Any]:
        """The event in Binance's format and key order."""
        o: dict[str, Any] = {"s": self.symbol}
        if self.market == "cm":
            o["ps"] = self.pair or pair or self.symbol.split("_", 1)[0]
        o |= {
            "S": self.side,
            "o": self.order_type,
            "f": self.time_in_force,
            "q": self.qty,
            "p": self.price,
            "ap": self.avg_price if self.avg_price is not None else self.price,
            "X": self.status,
            "l": self.last_qty if self.last_qty is not None else self.qty,
            "z": self.filled_qty if self.filled_qty is not None else self.qty,
            "T": self.time_ms,
        }
        event_ms = self.event_ms if self.event_ms is not None else self.time_ms
        return {"e": "forceOrder", "E": event_ms, "o": o}

    @classmethod
    def from_event(cls, event: dict[str, Any], market: MarketType | None = None) -> Liquidation:
        """A Binance ``forceOrder`` event (or its combined ``{"stream":..,"data":..}`` form).
        The market defaults to ``cm`` when the order has a pair (``ps``), else ``usdm``."""
        data = event.get("data", event) if "stream" in event else event
        if data.get("e") != "forceOrder" or not isinstance(data.get("o"), dict):
            raise ValueError(f"not a Binance forceOrder event: {event!r}")
        o = data["o"]
        return cls(
            market=market or ("cm" if "ps" in o else "usdm"),
            symbol=str(o["s"]),
            side=o["S"],
            qty=str(o["q"]),
            price=str(o["p"]),
            time_ms=int(o["T"]),
            avg_price=str(o["ap"]) if "ap" in o else None,
            event_ms=int(data["E"]) if "E" in data else None,
            status=str(o.get("X", "FILLED")),
            last_qty=str(o["l"]) if "l" in o else None,
            filled_qty=str(o["z"]) if "z" in o else None,
            order_type=str(o.get("o", "LIMIT")),
            time_in_force=str(o.get("f", "IOC")),
            pair=str(o["ps"]) if "ps" in o else None,
        )


@dataclass(frozen=True)
class RestFault:
    """A REST failure: the next ``times`` requests for ``endpoint`` (e.g. ``"openInterest"``,
    ``"premiumIndex"``) of ``market`` (any when None) get ``status`` and Binance's error JSON
    ``{"code":code,"msg":msg}``, or ``body`` verbatim (as ``text/html``) when given."""

    endpoint: str
    status: int = 500
    code: int = -1001
    msg: str = "Internal error; unable to process your request. Please try again."
    times: int = 1
    market: MarketType | None = None
    body: str | None = None

    def response(self) -> web.Response:
        if self.body is not None:
            return web.Response(status=self.status, text=self.body, content_type="text/html")
        return _BinanceError(self.status, self.code, self.msg).response()


def _decimal_text(value: str | float | int | Decimal) -> str:
    """Binance's decimal text for a number (``"10659.509"``); text is kept as given."""
    if isinstance(value, str):
        Decimal(value)  # refuse what is not a number
        return value
    return _dec_str(Decimal(str(value)))


def load_open_interest_csv(path: Path | str) -> list[OpenInterestPoint]:
    """Open-interest points from a CSV with the header ``market,symbol,time,openInterest``
    (``market`` usdm or cm, ``time`` in ms, ``openInterest`` as Binance sends it)."""
    import csv

    out = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"market", "symbol", "time", "openInterest"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for row in reader:
            market = row["market"].strip()
            if market not in ("usdm", "cm"):
                raise ValueError(f"{path}: market {market!r}: expected usdm or cm")
            point = OpenInterestPoint(
                cast(MarketType, market),
                row["symbol"].strip(),
                int(row["time"]),
                row["openInterest"].strip(),
            )
            out.append(point)
    return out


def load_liquidations_jsonl(value: Path | str) -> list[Liquidation]:
    """``PATH[:usdm|cm]``: Binance ``forceOrder`` events, one JSON object per line (the event or
    its combined-stream form); without the suffix the market is told by each event's ``ps``."""
    path_s, sep, suffix = str(value).rpartition(":")
    market: MarketType | None = None
    if sep and suffix in ("usdm", "cm"):
        path, market = Path(path_s), cast(MarketType, suffix)
    else:
        path = Path(value)
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(Liquidation.from_event(json.loads(line), market))
    return out


# --------------------------------------------------------------------------------------------
# REST trades


@dataclass
class _SymbolTrades:
    """One symbol's recorded trades as Binance's REST ``trades``/``historicalTrades`` rows."""

    frame_index: list[int] = field(default_factory=list)  # timeline index of each trade frame
    ids: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)  # JSON object text, Binance REST format
    prices: list[str] = field(default_factory=list)  # the trade price text (mark stand-in)
    market_only: list[bool] = field(default_factory=list)  # X absent or MARKET
    ids_sorted: bool = True


def _mul(a: str, b: str) -> str:
    return _dec_str(Decimal(a) * Decimal(b))


def _dec_str(d: Decimal, places: int | None = None) -> str:
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places))
    s = format(d, "f")
    if places is None and "." in s:
        s = s.rstrip("0").rstrip(".") or "0"
    return s


def _rest_row(market: MarketType, d: dict[str, Any], contract_size: str | None) -> str:
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
        row["quoteQty"] = _dec_str(Decimal(price) * Decimal(qty), 8)
    elif market == "usdm":
        row["quoteQty"] = _mul(price, qty)
    else:
        p = Decimal(price)
        base = Decimal(qty) * Decimal(contract_size or "1") / p if p else Decimal(0)
        row["baseQty"] = _dec_str(base, 8)
    row["time"] = d["T"]
    row["isBuyerMaker"] = d["m"]
    if market == "spot":
        row["isBestMatch"] = d.get("M", True)
    return json.dumps(row, separators=(",", ":"))


class _BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg

    def response(self) -> web.Response:
        body = json.dumps({"code": self.code, "msg": self.msg}, separators=(",", ":"))
        return web.Response(status=self.status, text=body, content_type="application/json")


# --------------------------------------------------------------------------------------------
# the server


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    market: MarketType
    combined: bool
    streams: dict[str, str] = field(default_factory=dict)  # key (lower case) -> name as sent


def load_recordings(
    recordings: Iterable[Recording | Path | str | tuple[Path | str, MarketType | None]], who: str
) -> list[Recording]:
    """Recordings given as loaded ones, paths, or (path, market) pairs; at least one."""
    recs = [
        r
        if isinstance(r, Recording)
        else Recording.load(r[0], r[1])
        if isinstance(r, tuple)
        else Recording.load(r)
        for r in recordings
    ]
    if not recs:
        raise ValueError(f"{who} needs at least one recording")
    return recs


class LoopbackServer:
    """Start, stop and forced disconnects shared by the loopback exchange servers
    (:class:`ReplayServer`, ``feeder.replay.venues.VenueReplayServer``).

    A subclass sets ``_task``, ``_runner``, ``_started``, ``_done``, ``_cursor``, ``_conns`` and
    ``disconnects`` and implements ``_drop(conn)``; a connection has ``ws`` and ``request``.
    """

    _task: asyncio.Task[None] | None
    _runner: web.AppRunner | None
    _started: asyncio.Event | None
    _done: asyncio.Event | None
    _cursor: int
    _conns: set[Any]
    disconnects: int
    slow_client_timeout: float
    slow_clients_dropped: int

    host: str
    port: int

    def _drop(self, conn: Any) -> None:
        raise NotImplementedError

    async def _serve(self, app: web.Application) -> None:
        """Bind ``host``:``port`` (0: a free port, then stored in ``port``) and serve ``app``."""
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    def start_replay(self) -> None:
        """Start the replay clock now (when ``start_on_subscribe`` is None or not reached)."""
        if self._started is None:
            raise RuntimeError("call await start() first")
        self._started.set()

    async def wait_done(self) -> None:
        """Wait until the last frame has been dispatched (never returns with ``loop``)."""
        if self._done is None:
            raise RuntimeError("call await start() first")
        await self._done.wait()

    @property
    def done(self) -> bool:
        return self._done is not None and self._done.is_set()

    @property
    def position(self) -> int:
        """Timeline slots dispatched so far (in this lap)."""
        return self._cursor

    async def stop(self) -> None:
        """Close every client connection, stop the replay and the HTTP server."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.disconnect_all(code=1001, message="replay server stopping", count=False)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def disconnect_all(
        self,
        *,
        code: int = 1001,
        message: str = "replay: forced disconnect",
        abrupt: bool = False,
        count: bool = True,
    ) -> int:
        """Close every client connection now: a websocket close frame (``code``), or with
        ``abrupt`` a TCP abort without one. Returns how many connections were closed."""
        conns = list(self._conns)
        for conn in conns:
            self._drop(conn)
        if count and conns:
            self.disconnects += 1
        if abrupt:
            for conn in conns:
                if conn.request.transport is not None:
                    conn.request.transport.abort()
        elif conns:
            closes = [self._close(conn, code, message) for conn in conns]
            await asyncio.gather(*closes, return_exceptions=True)
        return len(conns)

    def _outgoing(self, conn: Any, text: str) -> str:
        """The frame as this connection receives it (a venue may number frames per client)."""
        return text

    async def _send(self, conn: Any, text: str) -> bool:
        """Send one frame; a client that stopped reading is dropped after
        ``slow_client_timeout`` (counted), a closed one at once. Returns whether it was sent."""
        if conn.ws.closed:
            self._drop(conn)
            return False
        transport = conn.request.transport
        if transport is not None and transport.get_write_buffer_size() > SLOW_CLIENT_BUFFER:
            # the client is not reading: wait (back-pressure), then cut it off like Binance
            # does, so one stuck client cannot stall the replay for everyone else forever
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.slow_client_timeout
            while transport.get_write_buffer_size() > SLOW_CLIENT_BUFFER // 4:
                if loop.time() > deadline or transport.is_closing():
                    log.warning("replay: dropping a client that stopped reading")
                    self.slow_clients_dropped += 1
                    self._drop(conn)
                    transport.abort()
                    return False
                await asyncio.sleep(0.002)
        try:
            await conn.ws.send_str(self._outgoing(conn, text))
        except (ConnectionError, RuntimeError) as exc:
            log.debug("replay: dropping a client: %s", exc)
            self._drop(conn)
            return False
        return True

    async def _talk(self, conn: Any, answer: Callable[[str], Iterable[str]]) -> None:
        """Answer the client's text frames (request -> replies) until it goes, then drop it."""
        ws = conn.ws
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    for reply in answer(msg.data):
                        if ws.closed:
                            break
                        with contextlib.suppress(ConnectionError, RuntimeError):
                            await ws.send_str(reply)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._drop(conn)

    @staticmethod
    async def _close(conn: Any, code: int, message: str) -> None:
        try:
            await asyncio.wait_for(conn.ws.close(code=code, message=message.encode()), 2.0)
        except (TimeoutError, ConnectionError, RuntimeError):
            if conn.request.transport is not None:
                conn.request.transport.abort()


class ReplayServer(LoopbackServer):
    """A loopback Binance (websocket streams + the REST endpoints a trade backfill needs).

    ::

        server = ReplayServer([("…/raw/usdm/btcusdt_20240808.gz", "usdm")], speed=0)
        await server.start()
        ex = ccxt.pro.binanceusdm(ccxt_overrides(server, "binanceusdm"))
        trades = await ex.watch_trades("BTC/USDT:USDT")
        ...
        await ex.close()
        await server.stop()

    ``recordings``: paths (market taken from the path), ``(path, market)`` pairs or loaded
    :class:`Recording` objects. All recordings share one clock: frames are merged by receive
    time, so a spot and a perp recording of the same period replay aligned.

    ``speed``: 1.0 recorded pace, N times faster, 0/None as fast as possible. ``loop``: start
    again at the end (trade ids then repeat). ``start_on_subscribe``: the replay clock starts
    when this many distinct recorded streams have a subscriber (default 1, the first
    subscription); None waits for :meth:`start_replay`; 0 starts with :meth:`start`.

    ``slow_client_timeout``: a client that stops reading (its socket buffers full) holds the
    replay back (back-pressure) for at most this many seconds, then it is disconnected.
    """

    def __init__(
        self,
        recordings: Iterable[Recording | Path | str | tuple[Path | str, MarketType]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float | None = 0.0,
        loop: bool = False,
        faults: Iterable[Fault] = (),
        start_on_subscribe: int | None = 1,
        markets_dir: Path | str | None = None,
        public_host: str | None = None,
        slow_client_timeout: float = 5.0,
        open_interest: Iterable[OpenInterestPoint] = (),
        liquidations: Iterable[Liquidation] = (),
        rest_faults: Iterable[RestFault] = (),
    ) -> None:
        self.recordings = load_recordings(recordings, "ReplayServer")
        self.host, self.port = host, port
        any_address = host in ("0.0.0.0", "", "::")  # noqa: S104 (only naming the URLs)
        self.public_host = public_host or ("127.0.0.1" if any_address else host)
        self.speed = float(speed) if speed else 0.0
        self.loop = loop
        self.faults = tuple(faults)
        self.start_on_subscribe = start_on_subscribe
        self.slow_client_timeout = slow_client_timeout
        self.markets_dir = Path(
            markets_dir or os.environ.get("SQUEEZEFLOW_OFFLINE_MARKETS") or DEFAULT_MARKETS_DIR
        )
        # what happened, for tests and the CLI
        self.requests: list[str] = []  # every HTTP request: "GET /fapi.binance.com/fapi/v1/..."
        self.unserved: list[str] = []  # requests answered 404 (nothing goes elsewhere)
        self.client_messages: list[str] = []  # every text frame received from clients
        self.connections_total = 0
        self.disconnects = 0
        self.slow_clients_dropped = 0
        self.frames_sent = 0  # timeline frames delivered to at least one client
        self.trades_sent = 0
        self.liquidations_sent = 0  # injected forceOrder frames delivered to a client
        self.lap = 0
        #: pace frames to the wall clock: a frame with receive time ts is sent at ts (epoch ns)
        #: instead of relative to the replay's start (the paper exchange's shifted recordings)
        self.wall_clock = False
        # caller-supplied data (not recorded) and what was served from it
        self.open_interest = sorted(open_interest, key=lambda p: (p.market, p.symbol, p.time_ms))
        self.liquidations = sorted(
            liquidations, key=lambda lq: lq.time_ms if lq.event_ms is None else lq.event_ms
        )
        self.open_interest_served: list[tuple[MarketType, dict[str, Any]]] = []
        self.mark_prices_served: list[tuple[MarketType, dict[str, Any]]] = []
        self._rest_faults: list[list[Any]] = [[f, f.times] for f in rest_faults]
        self.rest_faults_served: list[str] = []  # requests answered with a RestFault
        self._load_exchange_info()
        self._check_supplied()
        self._build_timeline()
        self._build_rest_trades()
        self._build_open_interest()
        self._conns: set[_Conn] = set()
        self._subs: dict[tuple[MarketType, str], set[_Conn]] = {}
        self._cursor = 0  # timeline slots dispatched in the current lap
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Event | None = None
        self._running: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self._disconnect_countdown: int | None = None

    # ---------------------------------------------------------------- timeline and faults

    def _build_timeline(self) -> None:
        entries: list[tuple[int, int, int]] = []  # (ts, recording, line)
        for ri, rec in enumerate(self.recordings):
            entries.extend((ts, ri, li) for li, ts in enumerate(rec.ts_ns))
        # injected forceOrder frames: a pseudo recording after the real ones (ties: after them)
        injected = self._liquidation_frames()
        nrec = len(self.recordings)
        entries.extend((f[0], nrec, k) for k, f in enumerate(injected))
        entries.sort()  # stable merge by receive time; file order breaks ties
        self._ts = [e[0] for e in entries]
        self._market: list[MarketType] = []
        self._stream: list[str] = []
        self._line: list[str] = []
        self._data_off: list[int] = []
        self._alt_key: dict[int, tuple[MarketType, str]] = {}  # frame -> !forceOrder@arr key
        for i, (_ts, ri, li) in enumerate(entries):
            if ri < nrec:
                rec = self.recordings[ri]
                market, stream = rec.market, rec.streams[li]
                line, off = rec.lines[li], rec.data_offsets[li]
            else:
                _, market, stream, line, off = injected[li]
                self._alt_key[i] = (market, "!forceorder@arr")
            self._market.append(market)
            self._stream.append(stream)
            self._line.append(line)
            self._data_off.append(off)
        self._key = list(zip(self._market, self._stream, strict=True))
        # the replay starts on subscriptions to recorded streams (not to injected ones)
        self._recorded_keys = {k for i, k in enumerate(self._key) if entries[i][1] < nrec}
        self._is_trade = [s.endswith("@trade") for s in self._stream]
        self.trade_frames = sum(self._is_trade)
        self._order = list(range(len(entries)))  # slot -> frame; swaps permute it
        self._faults_at: dict[int, list[Fault]] = {}
        trade_frames = [i for i, t in enumerate(self._is_trade) if t]
        by_stream: dict[str, list[int]] = {}
        for i in trade_frames:
            by_stream.setdefault(self._stream[i], []).append(i)
        for fault in self.faults:
            scope = by_stream.get(fault.stream.lower(), []) if fault.stream else trade_frames
            if fault.at >= len(scope):
                raise ValueError(f"{fault}: only {len(scope)} trade frames in scope")
            frame = scope[fault.at]
            if fault.kind == "swap":
                same = by_stream[self._stream[frame]]
                k = bisect_left(same, frame)
                if k + 1 >= len(same):
                    raise ValueError(f"{fault}: no later trade frame to swap with")
                other = same[k + 1]
                sa, sb = self._order.index(frame), self._order.index(other)
                self._order[sa], self._order[sb] = self._order[sb], self._order[sa]
            else:
                self._faults_at.setdefault(frame, []).append(fault)

    def _check_supplied(self) -> None:
        """Supplied open interest and liquidations must name symbols of their market."""
        items: list[OpenInterestPoint | Liquidation] = [*self.open_interest, *self.liquidations]
        for item in items:
            symbols = self._symbols[item.market]
            if symbols and item.symbol not in symbols:
                raise ValueError(
                    f"{item}: {item.symbol} is not a {item.market} symbol in "
                    f"{SPECS[item.market].exchange_info_file}"
                )

    def _clock_offsets(self) -> dict[MarketType | None, int]:
        """Median (receive time - event time ``E``) of the recorded trade frames, per market
        (None: over all): where an exchange time falls on the recordings' receive clock."""
        per: dict[MarketType | None, list[int]] = {}
        for rec in self.recordings:
            for ts, stream, line, off in zip(
                rec.ts_ns, rec.streams, rec.lines, rec.data_offsets, strict=True
            ):
                if stream.endswith("@trade"):
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        delta = ts - int(json.loads(line[off:-1])["E"]) * 1_000_000
                        per.setdefault(rec.market, []).append(delta)
                        per.setdefault(None, []).append(delta)
        return {m: sorted(v)[len(v) // 2] for m, v in per.items()}

    def _liquidation_frames(self) -> list[tuple[int, MarketType, str, str, int]]:
        """(receive ts, market, stream key, combined-stream line, data offset) per liquidation.

        An event is placed at its event time ``E`` moved onto the recordings' receive clock (the
        recording machine's clock differs from Binance's by a constant-ish offset), so it is sent
        among the recorded frames of the same exchange time."""
        if not self.liquidations:
            return []
        offsets = self._clock_offsets()
        out = []
        for lq in self.liquidations:
            info = self._symbols[lq.market].get(lq.symbol, {})
            event = lq.event(pair=info.get("pair"))
            offset = offsets.get(lq.market, offsets.get(None, 0))
            head = json.dumps({"stream": lq.stream}, separators=(",", ":"))[:-1] + ',"data":'
            line = head + json.dumps(event, separators=(",", ":")) + "}"
            out.append(
                (event["E"] * 1_000_000 + offset, lq.market, lq.stream.lower(), line, len(head))
            )
        return out

    def _build_open_interest(self) -> None:
        self._oi: dict[tuple[MarketType, str], tuple[list[int], list[str]]] = {}
        for point in self.open_interest:  # sorted by (market, symbol, time)
            times, values = self._oi.setdefault((point.market, point.symbol), ([], []))
            if times and times[-1] == point.time_ms:
                values[-1] = point.open_interest  # the later one of equal times wins
            else:
                times.append(point.time_ms)
                values.append(point.open_interest)
        # recorded mark prices (``@markPrice@1s``, 2023 USD-M recordings), else trade prices
        self._marks: dict[tuple[MarketType, str], tuple[list[int], list[dict[str, Any]]]] = {}
        for i, stream in enumerate(self._stream):
            if "@markprice" in stream and i not in self._alt_key:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    d = json.loads(self._line[i][self._data_off[i] : -1])
                    frames, data = self._marks.setdefault((self._market[i], str(d["s"])), ([], []))
                    frames.append(i)
                    data.append(d)

    def _load_exchange_info(self) -> None:
        self._exchange_info: dict[MarketType, bytes] = {}
        self._symbols: dict[MarketType, dict[str, dict[str, Any]]] = {}
        for market, spec in SPECS.items():
            path = self.markets_dir / spec.exchange_info_file
            if path.is_file():
                body = path.read_bytes()
                info = json.loads(body)
            else:
                log.warning("replay: %s not found: %s exchangeInfo has no symbols", path, market)
                info = {
                    "timezone": "UTC",
                    "serverTime": 0,
                    "rateLimits": [],
                    "exchangeFilters": [],
                    "symbols": [],
                }
                body = json.dumps(info).encode()
            self._exchange_info[market] = body
            self._symbols[market] = {s["symbol"]: s for s in info.get("symbols", [])}
        for rec in self.recordings:
            if not self._symbols[rec.market]:
                raise FileNotFoundError(
                    f"{SPECS[rec.market].exchange_info_file} not found in {self.markets_dir}: "
                    f"ccxt cannot load the {rec.market} markets of {rec.path}"
                )

    def _build_rest_trades(self) -> None:
        self._trades: dict[tuple[MarketType, str], _SymbolTrades] = {}
        for i, is_trade in enumerate(self._is_trade):
            if not is_trade:
                continue
            market, line = self._market[i], self._line[i]
            d = json.loads(line[self._data_off[i] : -1])
            symbol = str(d["s"])
            info = self._symbols[market].get(symbol, {})
            contract_size = str(info["contractSize"]) if "contractSize" in info else None
            st = self._trades.setdefault((market, symbol), _SymbolTrades())
            tid = int(d["t"])
            if st.ids and tid < st.ids[-1]:
                st.ids_sorted = False
            st.frame_index.append(i)
            st.ids.append(tid)
            st.times.append(int(d["T"]))
            st.rows.append(_rest_row(market, d, contract_size))
            st.prices.append(str(d["p"]))
            st.market_only.append(d.get("X", "MARKET") == "MARKET")

    # ---------------------------------------------------------------- lifecycle

    @property
    def ws_url(self) -> str:
        """``ws://host:port``: prefix of every websocket URL (``{ws_url}/{binance host}/ws``)."""
        return f"ws://{self.public_host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """``http://host:port``: prefix of every REST URL (``{rest_url}/{binance host}/...``)."""
        return f"http://{self.public_host}:{self.port}"

    def ws_base(self, market: MarketType) -> str:
        """The URL to give ccxt for a market's streams, e.g. ``ws://…/fstream.binance.com/ws``."""
        return f"{self.ws_url}/{SPECS[market].ws_host}/ws"

    def rest_base(self, market: MarketType) -> str:
        """The REST base URL of a market, e.g. ``http://…/fapi.binance.com/fapi/v1``."""
        spec = SPECS[market]
        return f"{self.rest_url}/{spec.rest_host}/{spec.rest_prefix}"

    async def start(self) -> None:
        """Bind (``port`` 0: a free port) and start serving; the replay waits for subscribers."""
        app = web.Application()
        app.router.add_route("*", "/{host}/{tail:.*}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        await self._serve(app)
        self._started = asyncio.Event()
        self._done = asyncio.Event()
        self._running = asyncio.Event()
        self._running.set()
        self._task = asyncio.create_task(self._replay(), name="replay")
        if self.start_on_subscribe == 0:
            self._started.set()

    def pause(self) -> None:
        """Stop sending (an exchange stall): connections stay open, the clock stops."""
        if self._running is None:
            raise RuntimeError("call await start() first")
        self._running.clear()

    def resume(self) -> None:
        """Continue after :meth:`pause` from where it stopped (the pause is not replayed)."""
        if self._running is None:
            raise RuntimeError("call await start() first")
        self._running.set()

    @property
    def paused(self) -> bool:
        return self._running is not None and not self._running.is_set()

    # ---------------------------------------------------------------- replay position

    def __len__(self) -> int:
        return len(self._ts)

    @property
    def now_ns(self) -> int:
        """The replay position as a recorded receive time (ns)."""
        if self._cursor == 0:
            return self._ts[0]
        return self._ts[min(self._cursor, len(self._ts)) - 1]

    def released_trades(self, market: MarketType, symbol: str) -> int:
        """How many of the symbol's recorded trades REST may return now: those whose frames the
        replay has reached (sent, or dispatched while a client was away)."""
        st = self._trades.get((market, symbol))
        if st is None:
            return 0
        return bisect_left(st.frame_index, self._cursor)

    def subscriber_count(self, stream: str, market: MarketType | None = None) -> int:
        """Connections subscribed to ``stream`` (any market unless given)."""
        key = stream.lower()
        return sum(
            len(conns) for (m, k), conns in self._subs.items() if k == key and market in (None, m)
        )

    def recorded_trade_ids(self, market: MarketType, symbol: str) -> list[int]:
        st = self._trades.get((market, symbol))
        return list(st.ids) if st else []

    # ---------------------------------------------------------------- faults on demand

    def disconnect_after(self, n_frames: int) -> None:
        """Close every client connection after ``n_frames`` (>= 1) more frames have been
        delivered (frames sent to at least one client; with trades-only subscribers: trades).
        For "now" use :meth:`disconnect_all`."""
        if n_frames < 1:
            raise ValueError("n_frames must be >= 1")
        self._disconnect_countdown = n_frames

    # ---------------------------------------------------------------- the replay loop

    async def _replay(self) -> None:
        assert self._started is not None and self._done is not None
        assert self._running is not None
        await self._started.wait()
        loop = asyncio.get_running_loop()
        n = len(self._ts)
        while True:
            t0, ts0 = loop.time(), self._ts[0]
            pace = self.speed
            if self.wall_clock:
                t0 += (ts0 - time.time_ns()) / 1e9 / (pace or 1.0)
            order, keys, subs, faults = self._order, self._key, self._subs, self._faults_at
            alt = self._alt_key
            running = self._running
            for slot in range(n):
                if not running.is_set():
                    paused_at = loop.time()
                    await running.wait()
                    t0 += loop.time() - paused_at
                if pace > 0:
                    wait = t0 + (self._ts[slot] - ts0) / 1e9 / pace - loop.time()
                    if wait > 0.0005:
                        await asyncio.sleep(wait)
                elif slot & 255 == 0:
                    await asyncio.sleep(0)
                frame = order[slot]
                if (
                    subs.get(keys[frame])
                    or frame in faults
                    or (frame in alt and subs.get(alt[frame]))
                ):
                    await self._dispatch(frame)
                self._cursor = slot + 1
            if not self.loop:
                break
            self.lap += 1
            self._cursor = 0
        self._done.set()
        log.info("replay: finished (%d frames, %d trades sent)", self.frames_sent, self.trades_sent)

    async def _dispatch(self, frame: int) -> None:
        faults = self._faults_at.get(frame)
        if faults and any(f.kind == "disconnect" for f in faults):
            await self.disconnect_all()
        subs = self._subs.get(self._key[frame])
        alt_key = self._alt_key.get(frame)
        alt_subs = self._subs.get(alt_key) if alt_key is not None else None
        if not subs and not alt_subs:
            return
        subs = subs or set()
        line = self._line[frame]
        raw = line[self._data_off[frame] : -1]
        repeat = 1
        if faults:
            for f in faults:
                if f.kind == "duplicate":
                    repeat += 1
                elif f.kind in ("garbage", "truncated", "missing_fields"):
                    for conn in list(subs):
                        await self._send(conn, self._bad_frame(f, conn, frame, line, raw))
        delivered = False
        for conn in list(subs):
            text = line if conn.combined else raw
            for _ in range(repeat):
                delivered = await self._send(conn, text) or delivered
        if alt_subs:  # the all-market stream: the same event under its own stream name
            wrapped = '{"stream":"!forceOrder@arr","data":' + raw + "}"
            for conn in list(alt_subs):
                delivered = await self._send(conn, wrapped if conn.combined else raw) or delivered
        if delivered:
            self.frames_sent += 1
            if self._is_trade[frame]:
                self.trades_sent += 1
            elif alt_key is not None:
                self.liquidations_sent += 1
            if self._disconnect_countdown is not None:
                self._disconnect_countdown -= 1
                if self._disconnect_countdown <= 0:
                    self._disconnect_countdown = None
                    await self.disconnect_all()

    def _bad_frame(self, fault: Fault, conn: _Conn, frame: int, line: str, raw: str) -> str:
        if fault.kind == "garbage":
            return fault.garbage_text
        text = line if conn.combined else raw
        if fault.kind == "truncated":
            return text[: max(1, len(text) // 2)]
        data = json.loads(raw)
        for name in fault.fields:
            data.pop(name, None)
        body = json.dumps(data, separators=(",", ":"))
        if conn.combined:
            return json.dumps({"stream": self._stream[frame], "data": data}, separators=(",", ":"))
        return body

    # ---------------------------------------------------------------- HTTP routing

    async def _handle_unknown(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        return self._unserved(request)

    def _unserved(self, request: web.Request) -> web.Response:
        self.unserved.append(f"{request.method} {request.path_qs}")
        log.warning("replay: not served: %s %s", request.method, request.path_qs)
        return _BinanceError(404, -1000, f"replay server: {request.path} is not served").response()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = request.match_info["host"].split(":", 1)[0]
        tail = request.match_info["tail"]
        self.requests.append(f"{request.method} {request.path_qs}")
        if host in WS_HOSTS and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, WS_HOSTS[host], tail)
        if host in REST_HOSTS and request.method == "GET":
            market = REST_HOSTS[host]
            prefix = SPECS[market].rest_prefix + "/"
            if tail.startswith(prefix):
                try:
                    return self._rest(request, market, tail[len(prefix) :])
                except _BinanceError as exc:
                    if exc.status == 404:  # an endpoint not served: listed and logged too
                        self.unserved.append(f"{request.method} {request.path_qs}")
                        log.warning("replay: not served: %s %s", request.method, request.path_qs)
                    return exc.response()
        return self._unserved(request)

    def add_rest_fault(self, fault: RestFault) -> None:
        """Fail the next ``fault.times`` matching REST requests (see :class:`RestFault`)."""
        self._rest_faults.append([fault, fault.times])

    def _rest_fault(
        self, request: web.Request, market: MarketType, endpoint: str
    ) -> RestFault | None:
        for entry in self._rest_faults:
            fault, left = entry
            if left > 0 and fault.endpoint == endpoint and fault.market in (None, market):
                entry[1] = left - 1
                self.rest_faults_served.append(f"{request.method} {request.path_qs}")
                return cast(RestFault, fault)
        return None

    def _rest(self, request: web.Request, market: MarketType, endpoint: str) -> web.Response:
        q = request.query
        fault = self._rest_fault(request, market, endpoint)
        if fault is not None:
            return fault.response()
        if endpoint == "ping":
            return web.json_response({})
        if endpoint == "time":
            return web.json_response({"serverTime": self.server_time_ms()})
        if endpoint == "exchangeInfo":
            return web.Response(body=self._exchange_info[market], content_type="application/json")
        if endpoint in ("trades", "historicalTrades"):
            allowed = {"symbol", "limit"}
            if endpoint == "historicalTrades":
                allowed.add("fromId")
            return self._rest_trades(market, endpoint, q, allowed)
        if endpoint == "openInterest" and market != "spot":
            return self._rest_open_interest(market, q)
        if endpoint == "premiumIndex" and market != "spot":
            return self._rest_premium_index(market, q)
        if endpoint == "aggTrades":
            raise _BinanceError(
                400,
                -1000,
                "replay server: aggTrades are not recorded (raw @trade only); use "
                f"fetchTradesMethod={SPECS[market].fetch_trades_method}",
            )
        raise _BinanceError(404, -1000, f"replay server: {request.path} is not served")

    def _rest_trades(
        self, market: MarketType, endpoint: str, q: Any, allowed: set[str]
    ) -> web.Response:
        _refuse_unread(q, allowed)
        symbol = q.get("symbol", "")
        if not symbol:
            raise _BinanceError(
                400,
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        if symbol not in self._symbols[market]:
            raise _BinanceError(400, -1121, "Invalid symbol.")
        spec = SPECS[market]
        if endpoint == "historicalTrades":
            default, most = spec.historical_default_limit, spec.historical_max_limit
        else:
            default, most = RECENT_DEFAULT_LIMIT, RECENT_MAX_LIMIT
        limit = _int_param(q, "limit", default)
        if limit < 1:
            raise _BinanceError(400, -1100, "Illegal characters found in parameter 'limit'.")
        limit = min(limit, most)
        st = self._trades.get((market, symbol))
        if st is None:
            return web.Response(text="[]", content_type="application/json")
        released = self.released_trades(market, symbol)
        futures = market != "spot"  # futures REST omits insurance-fund/ADL trades
        from_id = _int_param(q, "fromId", None) if "fromId" in q else None
        if from_id is not None:
            if st.ids_sorted:
                start = bisect_left(st.ids, from_id, 0, released)
                idx = range(start, released)
            else:
                idx = range(0, released)
            picked: list[int] = []
            for i in idx:
                if st.ids[i] >= from_id and (not futures or st.market_only[i]):
                    picked.append(i)
                    if len(picked) >= limit:
                        break
        else:
            picked = []
            for i in range(released - 1, -1, -1):
                if not futures or st.market_only[i]:
                    picked.append(i)
                    if len(picked) >= limit:
                        break
            picked.reverse()
        body = "[" + ",".join(st.rows[i] for i in picked) + "]"
        return web.Response(text=body, content_type="application/json")

    def _symbol_param(self, market: MarketType, q: Any, allowed: set[str]) -> str | None:
        _refuse_unread(q, allowed)
        symbol = q.get("symbol") or None
        if symbol is not None and symbol not in self._symbols[market]:
            raise _BinanceError(400, -1121, "Invalid symbol.")
        return cast(str | None, symbol)

    def open_interest_at(self, market: MarketType, symbol: str) -> tuple[int, str] | None:
        """The supplied point ``openInterest`` serves now: the last one at or before the
        replay's exchange clock (:meth:`server_time_ms`); None before the first one."""
        series = self._oi.get((market, symbol))
        if series is None:
            return None
        times, values = series
        k = bisect_right(times, self.server_time_ms())
        return (times[k - 1], values[k - 1]) if k else None

    def _rest_open_interest(self, market: MarketType, q: Any) -> web.Response:
        """``GET openInterest?symbol=``: USD-M ``{"openInterest","symbol","time"}``, COIN-M
        ``{"symbol","pair","openInterest","contractType","time"}``, from the supplied series."""
        symbol = self._symbol_param(market, q, {"symbol"})
        if symbol is None:
            raise _BinanceError(
                400,
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        point = self.open_interest_at(market, symbol)
        if point is None:
            # Binance always has a value; the replay only has what the caller supplied
            what = (
                "no open interest was supplied"
                if (market, symbol) not in self._oi
                else (f"the first supplied open interest is later than {self.server_time_ms()}")
            )
            raise _BinanceError(400, -1000, f"replay server: {what} for {symbol}")
        t, value = point
        body: dict[str, Any]
        if market == "usdm":
            body = {"openInterest": value, "symbol": symbol, "time": t}
        else:
            info = self._symbols[market].get(symbol, {})
            body = {
                "symbol": symbol,
                "pair": info.get("pair", symbol.split("_", 1)[0]),
                "openInterest": value,
                "contractType": info.get("contractType", ""),
                "time": t,
            }
        self.open_interest_served.append((market, body))
        return web.Response(
            text=json.dumps(body, separators=(",", ":")), content_type="application/json"
        )

    def mark_price_at(self, market: MarketType, symbol: str) -> dict[str, str | int] | None:
        """``premiumIndex`` values now: the last recorded ``@markPrice`` frame the replay reached,
        else stand-ins from the last recorded trade price (the first one before any is reached).
        None for a symbol with neither."""
        cursor = self._cursor
        marks = self._marks.get((market, symbol))
        if marks is not None:
            k = bisect_left(marks[0], cursor)
            d = marks[1][k - 1 if k else 0]
            return {
                "markPrice": str(d["p"]),
                "indexPrice": str(d.get("i", d["p"])),
                "estimatedSettlePrice": str(d.get("P", d["p"])),
                "lastFundingRate": str(d.get("r", "0.00000000")),
                "nextFundingTime": int(d.get("T", 0)),
            }
        st = self._trades.get((market, symbol))
        if st is None or not st.prices:
            return None
        k = bisect_left(st.frame_index, cursor)
        price = _dec_str(Decimal(st.prices[k - 1 if k else 0]), 8)
        eight_hours = 8 * 3600 * 1000
        next_funding = (self.server_time_ms() // eight_hours + 1) * eight_hours
        # not recorded: index and settle price are the mark stand-in, the funding rate zero
        return {
            "markPrice": price,
            "indexPrice": price,
            "estimatedSettlePrice": price,
            "lastFundingRate": "0.00000000",
            "nextFundingTime": next_funding,
        }

    def _rest_premium_index(self, market: MarketType, q: Any) -> web.Response:
        """``GET premiumIndex[?symbol=]`` (mark price and funding): USD-M an object for a
        symbol, else a list; COIN-M always a list (``symbol`` or ``pair`` filter)."""
        allowed = {"symbol"} if market == "usdm" else {"symbol", "pair"}
        symbol = self._symbol_param(market, q, allowed)
        pair = q.get("pair") or None
        known = sorted({s for m, s in (*self._trades, *self._marks) if m == market})
        wanted = [symbol] if symbol is not None else known
        now = self.server_time_ms()
        rows = []
        for sym in wanted:
            info = self._symbols[market].get(sym, {})
            if pair is not None and info.get("pair") != pair:
                continue
            mark = self.mark_price_at(market, sym)
            if mark is None:
                if symbol is not None:
                    raise _BinanceError(400, -1000, f"replay server: no price recorded for {sym}")
                continue
            row: dict[str, Any] = {"symbol": sym}
            if market == "cm":
                row["pair"] = info.get("pair", sym.split("_", 1)[0])
            row |= {
                k: mark[k]
                for k in ("markPrice", "indexPrice", "estimatedSettlePrice", "lastFundingRate")
            }
            row |= {
                "interestRate": "0.00010000",
                "nextFundingTime": mark["nextFundingTime"],
                "time": now,
            }
            rows.append(row)
            self.mark_prices_served.append((market, row))
        body: Any = rows[0] if market == "usdm" and symbol is not None else rows
        return web.Response(
            text=json.dumps(body, separators=(",", ":")), content_type="application/json"
        )

    def server_time_ms(self) -> int:
        """``/time``: the trade time of the last trade the replay reached (recorded clock)."""
        best: int | None = None
        for st in self._trades.values():
            k = bisect_left(st.frame_index, self._cursor)
            if k:
                t = st.times[k - 1]
                best = t if best is None else max(best, t)
        if best is None:
            firsts = [st.times[0] for st in self._trades.values() if st.times]
            best = min(firsts) - 1 if firsts else 0
        return best

    # ---------------------------------------------------------------- websocket

    async def _websocket(
        self, request: web.Request, market: MarketType, tail: str
    ) -> web.StreamResponse:
        parts = [p for p in tail.split("/") if p]
        kind = next((p for p in parts if p in ("ws", "stream")), None)
        if kind is None:
            return self._unserved(request)
        ws = web.WebSocketResponse(compress=False, autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Conn(ws, request, market, combined=(kind == "stream"))
        self._conns.add(conn)
        self.connections_total += 1
        initial: list[str] = []
        if kind == "ws":  # /ws/<stream>/<stream>: raw streams in the URL; ccxt uses /ws/0
            initial = [p for p in parts[parts.index("ws") + 1 :] if "@" in p]
        elif "streams" in request.query:
            initial = [s for s in request.query["streams"].split("/") if s]
        if initial:
            self._subscribe(conn, initial)
        await self._talk(conn, lambda text: [self._on_client_text(conn, text)])
        return ws

    def _on_client_text(self, conn: _Conn, text: str) -> str:
        self.client_messages.append(text)
        try:
            req = json.loads(text)
        except ValueError:
            return _ws_error(3, "Invalid JSON: expected value at line 1 column 1", None)
        if not isinstance(req, dict):
            return _ws_error(2, "Invalid request: expected an object", None)
        rid = req.get("id")
        valid_int = isinstance(rid, int) and not isinstance(rid, bool) and rid >= 0
        if not (valid_int or rid is None or isinstance(rid, str)):
            return _ws_error(2, "Invalid request: request ID must be an unsigned integer", None)
        method, params = req.get("method"), req.get("params", [])
        if not isinstance(params, list):
            return _ws_error(2, "Invalid request: params must be an array", rid)
        if method == "SUBSCRIBE":
            if not all(isinstance(p, str) for p in params):
                return _ws_error(2, "Invalid request: invalid stream", rid)
            self._subscribe(conn, params)
            return _ws_result(None, rid)
        if method == "UNSUBSCRIBE":
            for p in params:
                if isinstance(p, str):
                    self._unsubscribe(conn, p.lower())
            return _ws_result(None, rid)
        if method == "LIST_SUBSCRIPTIONS":
            return _ws_result(list(conn.streams.values()), rid)
        if method == "SET_PROPERTY":
            if len(params) == 2 and params[0] == "combined" and isinstance(params[1], bool):
                conn.combined = params[1]
                return _ws_result(None, rid)
            return _ws_error(0, "Unknown property", rid)
        if method == "GET_PROPERTY":
            if params == ["combined"]:
                return _ws_result(conn.combined, rid)
            return _ws_error(0, "Unknown property", rid)
        return _ws_error(
            2,
            f"Invalid request: unknown variant {method!r}, expected one of SUBSCRIBE, "
            "UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY",
            rid,
        )

    def _subscribe(self, conn: _Conn, streams: Sequence[str]) -> None:
        for s in streams:
            key = s.lower()
            conn.streams.setdefault(key, s)
            self._subs.setdefault((conn.market, key), set()).add(conn)
        threshold = self.start_on_subscribe
        if threshold and self._started is not None and not self._started.is_set():
            live = sum(1 for k, v in self._subs.items() if v and k in self._recorded_keys)
            if live >= threshold:
                self._started.set()

    def _unsubscribe(self, conn: _Conn, key: str) -> None:
        conn.streams.pop(key, None)
        subs = self._subs.get((conn.market, key))
        if subs is not None:
            subs.discard(conn)

    def _drop(self, conn: _Conn) -> None:
        for key in list(conn.streams):
            self._unsubscribe(conn, key)
        self._conns.discard(conn)


def _refuse_unread(q: Any, allowed: set[str]) -> None:
    """Binance reads only its documented parameters and refuses a request with others."""
    extra = set(q.keys()) - allowed
    if extra:
        raise _BinanceError(
            400,
            -1104,
            f"Not all sent parameters were read; read '{len(q) - len(extra)}' parameter(s) "
            f"but was sent '{len(q)}'.",
        )


def _int_param(q: Any, name: str, default: int | None) -> int:
    value = q.get(name)
    if value is None or value == "":
        if default is None:
            raise _BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent.")
        return default
    try:
        return int(value)
    except ValueError:
        msg = f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        raise _BinanceError(400, -1100, msg) from None


def _ws_result(result: Any, rid: Any) -> str:
    return json.dumps({"result": result, "id": rid}, separators=(",", ":"))


def _ws_error(code: int, msg: str, rid: Any) -> str:
    return json.dumps({"error": {"code": code, "msg": msg}, "id": rid}, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# ccxt configuration


@functools.lru_cache(maxsize=8)
def _ccxt_default_api_urls(exchange_id: str) -> dict[str, Any]:
    import ccxt.pro

    cls = getattr(ccxt.pro, exchange_id)
    exchange = cls()
    urls = copy.deepcopy(exchange.urls["api"])
    return cast(dict[str, Any], urls)


def rewrite_url(url: str, server: ReplayServer | str) -> str:
    """``wss://stream.binance.com:9443/ws`` -> ``ws://127.0.0.1:PORT/stream.binance.com/ws``."""
    base = server.rest_url if isinstance(server, ReplayServer) else server
    parts = urlsplit(url)
    target = urlsplit(base)
    scheme = "ws" if parts.scheme in ("ws", "wss") else "http"
    path = f"/{parts.hostname}{parts.path}"
    return urlunsplit((scheme, target.netloc, path, parts.query, parts.fragment))


def _rewrite_all(value: Any, server: ReplayServer | str) -> Any:
    if isinstance(value, dict):
        return {k: _rewrite_all(v, server) for k, v in value.items()}
    if isinstance(value, str) and "://" in value:
        return rewrite_url(value, server)
    return value


def ccxt_overrides(
    server: ReplayServer | str,
    exchange_id: str = "binance",
    *,
    api_key: str | None = "replay-no-key",
) -> dict[str, Any]:
    """The ccxt constructor config that points ``ccxt.pro.<exchange_id>`` at the replay server.

    Every URL in ccxt's ``urls['api']`` (REST ``public``, ``fapiPublic``, ``dapiPublic``, ``sapi``,
    … and the websocket ``ws.spot``/``ws.linear``/``ws.inverse``/``ws.ws-api``/…) is rewritten
    to the server (host name moved into the path), so nothing can reach Binance. Options:

    * ``fetchTradesMethod``: the raw-trade endpoint ``fetch_trades`` uses (``/api/v3/
      historicalTrades``, ``/fapi/v1/historicalTrades``, ``/dapi/v1/historicalTrades``; ccxt's
      default is aggTrades, whose ids are not the ``@trade`` ids). Pass ``params={'fromId': N}``
      to page. For ``binance`` (spot + futures markets in one instance) this is the spot method:
      pass ``params={'fetchTradesMethod': 'fapiPublicGetHistoricalTrades'}`` for a perp;
    * ``fetchCurrencies``/``fetchMargins`` False: both call signed ``sapi`` endpoints;
    * ``apiKey``: ccxt refuses ``historicalTrades`` without one (it sends ``X-MBX-APIKEY``);
      any string works here. No secret is set, so nothing is ever signed.

    The trade cache limit (``options.tradesLimit``, 1000 by default) is not changed: a watch loop
    that falls more than that many trades behind loses trades silently; raise it when needed.
    """
    exchange_id = exchange_id.lower()
    market = {"binance": "spot", "binanceusdm": "usdm", "binancecoinm": "cm"}.get(exchange_id)
    if market is None:
        raise ValueError(f"{exchange_id!r}: expected binance, binanceusdm or binancecoinm")
    api = _rewrite_all(_ccxt_default_api_urls(exchange_id), server)
    config: dict[str, Any] = {
        "urls": {"api": api},
        "options": {
            "fetchTradesMethod": SPECS[cast(MarketType, market)].fetch_trades_method,
            "fetchCurrencies": False,
            "fetchMargins": False,
        },
    }
    if api_key:
        config["apiKey"] = api_key
    return config


# --------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recording",
        action="append",
        required=True,
        metavar="PATH[:spot|usdm|cm]",
        help="hftbacktest recording (gzip '<ts> <combined JSON>' lines); repeat for several "
        "(one clock for all); the market defaults to the spot/usdm/cm folder in PATH",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="1 = recorded pace (default), N = N times faster, 0 = as fast as clients read",
    )
    parser.add_argument("--loop", action="store_true", help="start again at the end")
    parser.add_argument(
        "--start-on-subscribe",
        type=int,
        default=1,
        metavar="N",
        help="start the clock once N recorded streams have subscribers (0: at once; default 1)",
    )
    parser.add_argument(
        "--markets",
        type=Path,
        default=None,
        help="directory with the saved exchangeInfo JSON files (default: "
        "$SQUEEZEFLOW_OFFLINE_MARKETS or ../shared/data/market/cryptofeed)",
    )
    parser.add_argument(
        "--exit-at-end", action="store_true", help="stop when the replay ends (no --loop)"
    )
    parser.add_argument(
        "--open-interest",
        action="append",
        default=[],
        metavar="FILE.csv",
        help="open interest to serve on /fapi/v1/openInterest and /dapi/v1/openInterest (NOT "
        "recorded data: the recordings have none). CSV with the header "
        "market,symbol,time,openInterest: market usdm or cm, symbol as Binance names it "
        "(BTCUSDT, BTCUSD_PERP), time in ms, openInterest as Binance sends it (base units for "
        "USD-M, contracts for COIN-M). Each value is served from its time on (replay clock) "
        "until the next one; repeatable",
    )
    parser.add_argument(
        "--liquidations",
        action="append",
        default=[],
        metavar="FILE.jsonl[:usdm|cm]",
        help="liquidations to send on <symbol>@forceOrder and !forceOrder@arr (NOT recorded "
        'data). One Binance forceOrder event per line: {"e":"forceOrder","E":ms,"o":{"s":..,'
        '"S":"SELL"|"BUY","o":"LIMIT","f":"IOC","q":..,"p":..,"ap":..,"X":"FILLED","l":..,'
        '"z":..,"T":ms}} (or its {"stream":..,"data":..} form); sent among the recorded frames '
        "at its event time E. The market defaults to cm for events with a pair (ps), else "
        "usdm; repeatable",
    )


def minimal_overrides(server: ReplayServer | str, exchange_id: str) -> dict[str, Any]:
    """The smallest config that keeps ``load_markets``, ``watch_trades`` and the
    ``fetch_trades`` backfill on the server; any other ccxt call would still go to Binance,
    so prefer :func:`ccxt_overrides`, which rewrites every URL."""
    full = ccxt_overrides(server, exchange_id)
    api = full["urls"]["api"]
    # ccxt.pro.binance loads spot, USD-M and COIN-M markets; the futures classes one each
    rest_keys, ws_keys = {
        "binance": (["public", "fapiPublic", "dapiPublic"], ["spot", "linear", "inverse"]),
        "binanceusdm": (["fapiPublic"], ["linear"]),
        "binancecoinm": (["dapiPublic"], ["inverse"]),
    }[exchange_id.lower()]
    urls = {k: api[k] for k in rest_keys} | {"ws": {k: api["ws"][k] for k in ws_keys}}
    return {**full, "urls": {"api": urls}}


def describe(server: ReplayServer) -> str:
    """The URLs and the ccxt config to use, as printed by the CLI."""
    markets = sorted({r.market for r in server.recordings}, key=MARKET_TYPES.index)
    lines = [
        f"replay server on {server.rest_url} ({len(server)} frames, speed "
        f"{server.speed or 'max'}{', loop' if server.loop else ''})"
    ]
    for r in server.recordings:
        lines.append(f"  {r.market:4s} {r.path} ({len(r)} frames)")
    for m in markets:
        lines.append(f"  {m:4s} websocket {server.ws_base(m)}   REST {server.rest_base(m)}")
    if server.open_interest:
        series = sorted({f"{p.market} {p.symbol}" for p in server.open_interest})
        lines.append(
            f"  open interest (supplied, not recorded): {len(server.open_interest)} "
            f"points: {', '.join(series)}"
        )
    if server.liquidations:
        lines.append(
            f"  liquidations (supplied, not recorded): {len(server.liquidations)} forceOrder events"
        )
    ids = ["binance"] + [SPECS[m].ccxt_exchange for m in markets if m != "spot"]
    feeder = []
    for exchange_id in ids:
        over = ccxt_overrides(server, exchange_id, api_key=None)
        feeder.append(
            {
                "id": exchange_id,
                "kind": "spot" if exchange_id == "binance" else "perp",
                "urls": over["urls"],
                "options": over["options"],
            }
        )
    keys = " ".join(f"SQUEEZEFLOW_API_KEY_{i.upper()}=replay-no-key" for i in ids)
    lines += [
        "paste into config.json at squeezeflow.feeder.exchanges (the feeder; every Binance URL "
        f"points here; its trade backfill wants any API key in the environment: {keys}):",
        json.dumps(feeder),
        "paste into config.json at exchange.ccxt_config and exchange.ccxt_async_config "
        "(FreqTrade on this server):",
        json.dumps(ccxt_overrides(server, "binance", api_key=None)),
        "in Python: ccxt.pro.<id>(feeder.replay.binance"
        f".ccxt_overrides('{server.rest_url}', '<id>'))",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    recordings = [parse_recording_arg(v) for v in args.recording]
    open_interest = [p for f in args.open_interest for p in load_open_interest_csv(f)]
    liquidations = [lq for f in args.liquidations for lq in load_liquidations_jsonl(f)]
    server = ReplayServer(
        recordings,
        host=args.host,
        port=args.port,
        speed=args.speed,
        loop=args.loop,
        start_on_subscribe=args.start_on_subscribe,
        markets_dir=args.markets,
        open_interest=open_interest,
        liquidations=liquidations,
    )
    await server.start()
    print(describe(server), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
        if args.exit_at_end:
            waiters.append(asyncio.create_task(server.wait_done()))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    finally:
        print(
            f"replay: {server.frames_sent} frames / {server.trades_sent} trades / "
            f"{server.liquidations_sent} liquidations sent, "
            f"{server.connections_total} connections, {len(server.unserved)} unserved requests",
            flush=True,
        )
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="squeezeflow-feeder replay",
        description="Replay recorded Binance websocket sessions on a loopback server for ccxt pro.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
