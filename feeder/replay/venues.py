"""Bybit v5, OKX v5 and Coinbase Advanced Trade public APIs on a loopback server, fed with
recorded *Binance* trades.

There are no Bybit, OKX or Coinbase recordings. This server speaks those venues' real public
protocols (websocket subscribe/ping/push frames and the REST endpoints ccxt calls) so that
unmodified ``ccxt.pro.bybit``, ``ccxt.pro.okx`` and ``ccxt.pro.coinbase`` can be pointed at it
(:func:`venue_ccxt_overrides`), but the trades it serves are the recorded Binance trades of
``feeder.replay.recording.Recording`` files, re-expressed in each venue's format: **the protocol is
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

Each venue's protocol is its own module (:mod:`~feeder.replay.bybit`, :mod:`~feeder.replay.okx`,
:mod:`~feeder.replay.coinbase`, each a :class:`~feeder.replay.venue_protocol.VenueProtocol`);
this server runs them on one clock and routes to them by host:

* REST answers only hold trades the replay has reached (as in :mod:`feeder.replay.binance`); limits
  out of range are clamped (what the real venues do with them is not documented).
* Any other path gets a 404 in the venue's error format naming the path, and is listed in
  :attr:`VenueReplayServer.unserved`; every ccxt URL is rewritten (host name first in the path,
  :func:`feeder.replay.server.rewrite_url`), so nothing can reach the real venues.

Instrument metadata is realistic (the venues' real field sets), with tick and lot sizes that fit
the recorded Binance prices and quantities (OKX spot ``tickSz`` is 0.01 here, for example).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from feeder.replay.bybit import BybitProtocol
from feeder.replay.coinbase import CoinbaseProtocol
from feeder.replay.okx import OkxProtocol
from feeder.replay.recording import MarketType, Recording, load_recordings
from feeder.replay.server import (
    LoopbackServer,
    ccxt_api_urls,
    dumps,
    iter_urls,
    json_text,
    reached_time_ms,
    rewrite_urls,
)
from feeder.replay.venue_protocol import (
    VENUES,
    Book,
    MarketKey,
    Push,
    Venue,
    VenueConn,
    VenueError,
    VenueMarket,
    VenueProtocol,
    read_trades,
)

log = logging.getLogger(__name__)

PROTOCOLS: dict[Venue, VenueProtocol] = {
    "bybit": BybitProtocol(),
    "okx": OkxProtocol(),
    "coinbase": CoinbaseProtocol(),
}
VENUE_OF_HOST: dict[str, Venue] = {
    host: venue for venue, p in PROTOCOLS.items() for host in (p.ws_host, p.rest_host)
}


def venue_markets(venue: Venue, binance_symbol: str) -> dict[MarketType, VenueMarket]:
    """The venue markets a Binance ``<BASE>USDT`` spot / USD-M recording is served as (Coinbase:
    spot only, quoted in USD: ``BTC-USD``)."""
    if not binance_symbol.endswith("USDT"):
        raise ValueError(f"{binance_symbol}: only <BASE>USDT recordings can be re-expressed")
    if venue not in PROTOCOLS:
        raise ValueError(f"unknown venue {venue!r}, expected one of {VENUES}")
    return PROTOCOLS[venue].markets(binance_symbol[:-4], binance_symbol)


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
    :class:`~feeder.replay.recording.Recording`); COIN-M is not served. ``venues``: which venues to
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
        super().__init__(
            host=host,
            port=port,
            speed=speed,
            start_on_subscribe=start_on_subscribe,
            slow_client_timeout=slow_client_timeout,
        )
        self.recordings = load_recordings(recordings, "VenueReplayServer")
        self.venues: tuple[Venue, ...] = tuple(venues)
        for v in self.venues:
            if v not in VENUES:
                raise ValueError(f"unknown venue {v!r}, expected one of {VENUES}")
        # what happened, for tests (more in LoopbackServer)
        self.pushes_sent = 0
        self.snapshots_sent = 0  # Coinbase: snapshots of the most recent trades on subscribe
        self.markets: dict[MarketKey, VenueMarket] = {}
        self.books: dict[MarketKey, Book] = {}
        self._build(set(disconnect_at))
        self._conn_seq = 0

    # ---------------------------------------------------------------- build

    def _build(self, disconnect_at: set[int]) -> None:
        pushes: list[Push] = []
        for rec in self.recordings:
            if rec.market not in ("spot", "usdm"):
                raise ValueError(f"{rec.path}: only spot and usdm recordings can be served")
            symbols = sorted({s.split("@")[0].upper() for s in rec.streams if s.endswith("@trade")})
            for sym in symbols:
                raws = read_trades(rec, sym)
                for venue in self.venues:
                    m = venue_markets(venue, sym).get(rec.market)
                    if m is None:
                        continue  # Coinbase: spot only
                    if m.key in self.books:
                        raise ValueError(f"{m.key} is fed by two recordings")
                    book, ps = PROTOCOLS[venue].book(m, raws)
                    self.markets[m.key] = m
                    self.books[m.key] = book
                    pushes.extend(ps)
        # one clock for all markets; each market's pushes keep their order (receive times are
        # made non-decreasing per market first, so the stable sort cannot reorder them)
        last: dict[MarketKey, int] = {}
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
        await self._start(app, "venue-replay")

    def __len__(self) -> int:
        return len(self._pushes)

    @property
    def disconnect_slots(self) -> list[int]:
        """The pushes (timeline slots) before which every client is disconnected."""
        return sorted(self._disconnect_slots)

    def book(self, venue: Venue, source: MarketType, binance_symbol: str = "BTCUSDT") -> Book:
        return self.books[venue_markets(venue, binance_symbol)[source].key]

    def released(self, key: MarketKey) -> int:
        return self.books[key].released(self._cursor)

    def server_time_ms(self) -> int:
        """The trade time of the newest trade the replay has reached (recorded clock)."""
        series = [(book.push_slot, book.times) for book in self.books.values()]
        return reached_time_ms(series, self._cursor)

    # ---------------------------------------------------------------- the replay loop

    async def _replay(self) -> None:
        assert self._started is not None and self._done is not None
        await self._started.wait()
        loop = asyncio.get_running_loop()
        pushes = self._pushes
        if pushes:
            t0, ts0 = loop.time(), pushes[0].recv_ns
            for slot, p in enumerate(pushes):
                await self._pace(t0, ts0, p.recv_ns, slot, self.speed)
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

    def _outgoing(self, conn: VenueConn, text: str) -> str:
        return PROTOCOLS[conn.venue].outgoing(conn, text)

    # ---------------------------------------------------------------- HTTP routing

    async def _handle_unknown(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        return self._unserved(request, "bybit")

    def _error(self, exc: VenueError) -> web.Response:
        """The venue's error reply."""
        body = PROTOCOLS[exc.venue].error_body(exc.code, exc.msg, self.server_time_ms())
        return json_text(dumps(body), exc.status)

    def _unserved(self, request: web.Request, venue: Venue) -> web.Response:
        self.unserved.append(f"{request.method} {request.path_qs}")
        log.warning("venue replay: not served: %s %s", request.method, request.path_qs)
        msg = f"replay server: {request.path} is not served"
        return self._error(VenueError(venue, 404, PROTOCOLS[venue].not_found_code, msg))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = request.match_info["host"].split(":", 1)[0]
        tail = request.match_info.get("tail", "").strip("/")
        self.requests.append(f"{request.method} {request.path_qs}")
        venue: Venue = VENUE_OF_HOST.get(host, "bybit")
        if venue not in self.venues:
            return self._unserved(request, venue)
        proto = PROTOCOLS[venue]
        is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
        if is_ws and host == proto.ws_host and tail in proto.ws_paths:
            return await self._websocket(request, venue, proto.ws_paths[tail])
        if request.method == "GET" and host == proto.rest_host:
            try:
                answer = proto.rest(self, request, tail)
            except VenueError as exc:
                return self._error(exc)
            if answer is not None:
                return answer
        return self._unserved(request, venue)

    # ---------------------------------------------------------------- websockets

    async def _websocket(self, request: web.Request, venue: Venue, path: str) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        self._conn_seq += 1
        proto = PROTOCOLS[venue]
        conn = VenueConn(ws, request, venue, path, proto.conn_id(self._conn_seq))
        self._conns.add(conn)
        self.connections_total += 1

        def answer(text: str) -> list[str]:
            self.client_messages.append(text)
            return proto.on_text(self, conn, text)

        await self._talk(conn, answer)
        return ws

    def subscribe(self, conn: VenueConn, key: MarketKey) -> None:
        conn.keys.add(key)
        self._subs.setdefault(key, set()).add(conn)
        self._check_start()

    def unsubscribe(self, conn: VenueConn, key: MarketKey) -> None:
        conn.keys.discard(key)
        subs = self._subs.get(key)
        if subs is not None:
            subs.discard(conn)

    def _drop(self, conn: VenueConn) -> None:
        for key in list(conn.keys):
            self.unsubscribe(conn, key)
        self._conns.discard(conn)

    def subscriber_count(self, key: MarketKey) -> int:
        return len(self._subs.get(key, ()))


# --------------------------------------------------------------------------------------------
# ccxt configuration


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
    urls, hostname = ccxt_api_urls(exchange_id)
    api = rewrite_urls(urls, base, hostname)
    return {"urls": {"api": api}, "options": {"fetchCurrencies": False}}


def non_loopback_urls(exchange: Any, server: VenueReplayServer | str) -> list[str]:
    """URLs in a ccxt exchange's ``urls['api']`` that do not lead to the server (should be [])."""
    base = server.url if isinstance(server, VenueReplayServer) else server
    ws_base = "ws" + base[4:] if base.startswith("http") else base
    ours = (base + "/", ws_base + "/")
    return [u for u in iter_urls(exchange.urls.get("api")) if not u.startswith(ours)]


__all__ = [
    "VENUES",
    "Venue",
    "VenueMarket",
    "VenueReplayServer",
    "non_loopback_urls",
    "venue_ccxt_overrides",
    "venue_markets",
]
