"""The server core every loopback exchange shares, and the helpers their protocols share.

:class:`LoopbackServer` binds 127.0.0.1, runs one replay clock over a timeline of frames,
sends with back-pressure (a client that stops reading is cut off), forces disconnects and
stops; each venue module adds its protocol (:mod:`feeder.replay.binance`,
:mod:`feeder.replay.venues` with :mod:`~feeder.replay.bybit`, :mod:`~feeder.replay.okx` and
:mod:`~feeder.replay.coinbase`, :mod:`feeder.replay.paper`).

URL layout. The venue's host name goes first in the path, so every ccxt base URL maps one to
one: ``wss://stream.binance.com:9443/ws`` becomes ``ws://127.0.0.1:PORT/stream.binance.com/ws``
(:func:`rewrite_url`); :func:`rewrite_urls` rewrites every URL of a ccxt ``urls['api']``, so
nothing can reach the real venue.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
import socket
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any, Self, cast
from urllib.parse import urlsplit, urlunsplit

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

SLOW_CLIENT_BUFFER = 1 << 16  # bytes queued for a client before it counts as not reading


# --------------------------------------------------------------------------------------------
# text helpers


def dumps(obj: Any) -> str:
    """Compact JSON, as the exchanges send it."""
    return json.dumps(obj, separators=(",", ":"))


def json_text(text: str, status: int = 200) -> web.Response:
    """A JSON response from its text."""
    return web.Response(status=status, text=text, content_type="application/json")


def dec_text(d: Decimal, places: int | None = None) -> str:
    """Exact plain decimal text: to ``places`` decimals, else without trailing zeros
    (``Decimal('0.60')`` -> ``'0.6'``)."""
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places))
    s = format(d, "f")
    if places is None and "." in s:
        s = s.rstrip("0").rstrip(".") or "0"
    return s


class MissingParam(ValueError):
    """A required query parameter was not sent (or empty)."""


class InvalidParam(ValueError):
    """A query parameter is not an integer."""


def int_param(q: Any, name: str, default: int | None) -> int:
    """The integer query parameter ``name``; ``default`` when absent or empty (None: required).
    Raises :class:`MissingParam` or :class:`InvalidParam`; each venue words its own error."""
    value = q.get(name)
    if value is None or value == "":
        if default is None:
            raise MissingParam(name)
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidParam(name) from None


def reached_time_ms(series: list[tuple[list[int], list[int]]], cursor: int) -> int:
    """The replay's exchange clock: the trade time of the newest trade it has reached.
    ``series``: per market, each trade's timeline slot and trade time (ms), in slot order;
    ``cursor``: the slots dispatched. Before any trade, the first trade time - 1 ms."""
    best: int | None = None
    for slots, times in series:
        k = bisect_left(slots, cursor)
        if k:
            best = times[k - 1] if best is None else max(best, times[k - 1])
    if best is None:
        firsts = [times[0] for _, times in series if times]
        return min(firsts) - 1 if firsts else 0
    return best


# --------------------------------------------------------------------------------------------
# ccxt URLs


@functools.lru_cache(maxsize=16)
def ccxt_api_urls(exchange_id: str) -> tuple[dict[str, Any], str]:
    """ccxt's default ``urls['api']`` of ``ccxt.pro.<exchange_id>`` and its ``hostname``."""
    import ccxt.pro

    exchange = getattr(ccxt.pro, exchange_id)()
    urls = copy.deepcopy(exchange.urls["api"])
    return cast(dict[str, Any], urls), str(getattr(exchange, "hostname", "") or "")


def rewrite_url(url: str, base: str) -> str:
    """``wss://stream.binance.com:9443/ws`` -> ``ws://127.0.0.1:PORT/stream.binance.com/ws``
    (``base``: the server's ``http://127.0.0.1:PORT``)."""
    parts = urlsplit(url)
    target = urlsplit(base)
    scheme = "ws" if parts.scheme in ("ws", "wss") else "http"
    path = f"/{parts.hostname}{parts.path}"
    return urlunsplit((scheme, target.netloc, path, parts.query, parts.fragment))


def rewrite_urls(value: Any, base: str, hostname: str = "") -> Any:
    """Every URL in ``value`` (nested dicts, ccxt's ``urls['api']``) rewritten to ``base``,
    ccxt's ``{hostname}`` placeholder filled in first."""
    if isinstance(value, dict):
        return {k: rewrite_urls(v, base, hostname) for k, v in value.items()}
    if isinstance(value, str) and "://" in value:
        return rewrite_url(value.replace("{hostname}", hostname), base)
    return value


def iter_urls(value: Any) -> Iterator[str]:
    """Every URL (text with ``://``) in nested dicts, lists and tuples."""
    if isinstance(value, dict):
        for v in value.values():
            yield from iter_urls(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from iter_urls(v)
    elif isinstance(value, str) and "://" in value:
        yield value


# --------------------------------------------------------------------------------------------
# the server core


class LoopbackServer:
    """What every loopback exchange server shares: the bookkeeping the tests read, binding,
    the replay clock (start on subscribers, pace, done), sending with back-pressure, forced
    disconnects and stop (:class:`~feeder.replay.binance.ReplayServer`,
    :class:`~feeder.replay.venues.VenueReplayServer`).

    A subclass implements ``_replay()`` (the loop started by :meth:`_start`) and ``_drop(conn)``;
    a connection has ``ws`` and ``request``. ``_subs`` maps a subscription key to its
    connections; :meth:`_starts_clock` says which keys count for ``start_on_subscribe``.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        speed: float | None,
        start_on_subscribe: int | None,
        slow_client_timeout: float,
    ) -> None:
        self.host, self.port = host, port
        self.speed = float(speed) if speed else 0.0
        self.start_on_subscribe = start_on_subscribe
        self.slow_client_timeout = slow_client_timeout
        # what happened, for tests and the CLI
        self.requests: list[str] = []  # every HTTP request: "GET /fapi.binance.com/fapi/v1/..."
        self.unserved: list[str] = []  # requests answered 404 (nothing goes elsewhere)
        self.client_messages: list[str] = []  # every text frame received from clients
        self.connections_total = 0
        self.disconnects = 0
        self.slow_clients_dropped = 0
        self.trades_sent = 0
        self._conns: set[Any] = set()
        self._subs: dict[Any, set[Any]] = {}
        self._cursor = 0  # timeline slots dispatched (in the current lap)
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Event | None = None
        self._done: asyncio.Event | None = None

    async def _replay(self) -> None:
        raise NotImplementedError

    def _drop(self, conn: Any) -> None:
        raise NotImplementedError

    async def _start(self, app: web.Application, name: str) -> None:
        """Serve ``app`` and start the replay loop, which waits for its start condition."""
        await self._serve(app)
        self._started = asyncio.Event()
        self._done = asyncio.Event()
        self._task = asyncio.create_task(self._replay(), name=name)
        if self.start_on_subscribe == 0:
            self._started.set()

    def _starts_clock(self, key: Any) -> bool:
        """Whether subscribers of ``key`` count for ``start_on_subscribe`` (default: all)."""
        return True

    def _check_start(self) -> None:
        """Start the clock once ``start_on_subscribe`` counted keys have subscribers."""
        threshold = self.start_on_subscribe
        if threshold and self._started is not None and not self._started.is_set():
            live = sum(1 for k, v in self._subs.items() if v and self._starts_clock(k))
            if live >= threshold:
                self._started.set()

    @staticmethod
    async def _pace(t0: float, ts0: int, ts: int, slot: int, speed: float) -> None:
        """Wait until a slot received at ``ts`` (ns) is due: ``t0`` (loop time) is when the slot
        received at ``ts0`` was, ``speed`` N times the recorded pace; at 0 only yield now and
        then (the clients' reading sets the pace)."""
        if speed > 0:
            wait = t0 + (ts - ts0) / 1e9 / speed - asyncio.get_running_loop().time()
            if wait > 0.0005:
                await asyncio.sleep(wait)
        elif slot & 255 == 0:
            await asyncio.sleep(0)

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

    async def start(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
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
