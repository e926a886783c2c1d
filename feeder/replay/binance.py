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
  field-less, duplicated and swapped trade frames (:class:`~feeder.replay.binance_inputs.Fault`);
  failing REST answers (:class:`~feeder.replay.binance_inputs.RestFault`: HTTP 5xx, Binance
  error JSON, an HTML gateway page).

Open interest and liquidations (futures). The recordings have neither (no open-interest history,
no ``forceOrder`` stream), so the replay serves only what the caller supplies, clearly not
recorded data, in Binance's formats:

* ``openInterest?symbol=`` (USD-M ``{"openInterest","symbol","time"}``, COIN-M
  ``{"symbol","pair","openInterest","contractType","time"}``) from
  :class:`~feeder.replay.binance_inputs.OpenInterestPoint` series: the last point at or before
  the replay's exchange clock (:meth:`ReplayServer.server_time_ms`), never a later one; an error
  before the first point;
* ``premiumIndex[?symbol=]`` (the mark price ccxt's ``fetch_mark_price`` reads, which values USD-M
  open interest): the recording's ``@markPrice@1s`` frames where it has them (2023 USD-M), else
  stand-ins from the last recorded trade price (index and settle price the same, funding 0);
* websocket ``<symbol>@forceOrder`` and ``!forceOrder@arr``:
  :class:`~feeder.replay.binance_inputs.Liquidation` events are injected into the timeline at
  their event time (moved onto the recordings' receive clock), in order among the recorded
  frames; Binance's event JSON, wrapped on ``/stream``.

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

The server is split by concern: the timeline and websocket streams in
:mod:`feeder.replay.binance_stream`, the REST endpoints in :mod:`feeder.replay.binance_rest`,
hosts, limits and error replies in :mod:`feeder.replay.binance_api`, what a caller injects in
:mod:`feeder.replay.binance_inputs`, the CLI (``python -m feeder.replay``, ``squeezeflow-feeder
replay``) in :mod:`feeder.replay.cli`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from feeder.replay.binance_api import (
    DEFAULT_MARKETS_DIR,
    ENDPOINTS,
    REST_HOSTS,
    WS_HOSTS,
    BinanceError,
)
from feeder.replay.binance_inputs import Fault, Liquidation, OpenInterestPoint, RestFault
from feeder.replay.binance_rest import BinanceRest
from feeder.replay.binance_stream import BinanceStreams
from feeder.replay.recording import MarketType, Recording, load_recordings
from feeder.replay.server import ccxt_api_urls, rewrite_urls

log = logging.getLogger(__name__)


class ReplayServer(BinanceRest, BinanceStreams):
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
        super().__init__(
            host=host,
            port=port,
            speed=speed,
            start_on_subscribe=start_on_subscribe,
            slow_client_timeout=slow_client_timeout,
        )
        self.recordings = load_recordings(recordings, "ReplayServer")
        any_address = host in ("0.0.0.0", "", "::")  # noqa: S104 (only naming the URLs)
        self.public_host = public_host or ("127.0.0.1" if any_address else host)
        self.loop = loop
        self.faults = tuple(faults)
        self.markets_dir = Path(
            markets_dir or os.environ.get("SQUEEZEFLOW_OFFLINE_MARKETS") or DEFAULT_MARKETS_DIR
        )
        # what happened, for tests and the CLI (more in LoopbackServer)
        self.frames_sent = 0  # timeline frames delivered to at least one client
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
        self._running: asyncio.Event | None = None
        self._disconnect_countdown: int | None = None

    # ---------------------------------------------------------------- markets and supplied data

    def _load_exchange_info(self) -> None:
        self._exchange_info: dict[MarketType, bytes] = {}
        self._symbols: dict[MarketType, dict[str, dict[str, Any]]] = {}
        for market, spec in ENDPOINTS.items():
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
                    f"{ENDPOINTS[rec.market].exchange_info_file} not found in {self.markets_dir}: "
                    f"ccxt cannot load the {rec.market} markets of {rec.path}"
                )

    def _check_supplied(self) -> None:
        """Supplied open interest and liquidations must name symbols of their market."""
        items: list[OpenInterestPoint | Liquidation] = [*self.open_interest, *self.liquidations]
        for item in items:
            symbols = self._symbols[item.market]
            if symbols and item.symbol not in symbols:
                raise ValueError(
                    f"{item}: {item.symbol} is not a {item.market} symbol in "
                    f"{ENDPOINTS[item.market].exchange_info_file}"
                )

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
        return f"{self.ws_url}/{ENDPOINTS[market].ws_host}/ws"

    def rest_base(self, market: MarketType) -> str:
        """The REST base URL of a market, e.g. ``http://…/fapi.binance.com/fapi/v1``."""
        spec = ENDPOINTS[market]
        return f"{self.rest_url}/{spec.rest_host}/{spec.rest_prefix}"

    async def start(self) -> None:
        """Bind (``port`` 0: a free port) and start serving; the replay waits for subscribers."""
        app = web.Application()
        app.router.add_route("*", "/{host}/{tail:.*}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        self._running = asyncio.Event()
        self._running.set()
        await self._start(app, "replay")

    # ---------------------------------------------------------------- replay position

    def __len__(self) -> int:
        return len(self._ts)

    @property
    def now_ns(self) -> int:
        """The replay position as a recorded receive time (ns)."""
        if self._cursor == 0:
            return self._ts[0]
        return self._ts[min(self._cursor, len(self._ts)) - 1]

    # ---------------------------------------------------------------- HTTP routing

    async def _handle_unknown(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        return self._unserved(request)

    def _unserved(self, request: web.Request) -> web.Response:
        self.unserved.append(f"{request.method} {request.path_qs}")
        log.warning("replay: not served: %s %s", request.method, request.path_qs)
        return BinanceError(404, -1000, f"replay server: {request.path} is not served").response()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = request.match_info["host"].split(":", 1)[0]
        tail = request.match_info["tail"]
        self.requests.append(f"{request.method} {request.path_qs}")
        if host in WS_HOSTS and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, WS_HOSTS[host], tail)
        if host in REST_HOSTS and request.method == "GET":
            market = REST_HOSTS[host]
            prefix = ENDPOINTS[market].rest_prefix + "/"
            if tail.startswith(prefix):
                try:
                    return self._rest(request, market, tail[len(prefix) :])
                except BinanceError as exc:
                    if exc.status == 404:  # an endpoint not served: listed and logged too
                        self.unserved.append(f"{request.method} {request.path_qs}")
                        log.warning("replay: not served: %s %s", request.method, request.path_qs)
                    return exc.response()
        return self._unserved(request)


# --------------------------------------------------------------------------------------------
# ccxt configuration


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
    base = server.rest_url if isinstance(server, ReplayServer) else server
    api = rewrite_urls(ccxt_api_urls(exchange_id)[0], base)
    config: dict[str, Any] = {
        "urls": {"api": api},
        "options": {
            "fetchTradesMethod": ENDPOINTS[cast(MarketType, market)].fetch_trades_method,
            "fetchCurrencies": False,
            "fetchMargins": False,
        },
    }
    if api_key:
        config["apiKey"] = api_key
    return config


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
