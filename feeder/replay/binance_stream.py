"""Binance's websocket market streams on the replay clock (the part of
:class:`~feeder.replay.binance.ReplayServer` that streams).

The timeline merges every recording's frames by receive time (one clock for all markets) with
the injected ``forceOrder`` frames (:class:`~feeder.replay.binance_inputs.Liquidation`, placed at
their event time moved onto the recordings' receive clock) and the stream faults
(:class:`~feeder.replay.binance_inputs.Fault`). Clients speak Binance's control protocol
(``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY combined`` /
``GET_PROPERTY``) and get only their streams' frames, the recorded ``data`` text byte for byte:
bare on ``/ws``, wrapped ``{"stream":..,"data":..}`` on ``/stream``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from feeder.replay.binance_api import ws_error, ws_result
from feeder.replay.binance_inputs import Fault, Liquidation
from feeder.replay.recording import MarketType, Recording
from feeder.replay.server import LoopbackServer, dumps

log = logging.getLogger("feeder.replay.binance")


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    market: MarketType
    combined: bool
    streams: dict[str, str] = field(default_factory=dict)  # key (lower case) -> name as sent


def clock_offsets(recordings: list[Recording]) -> dict[MarketType | None, int]:
    """Median (receive time - event time ``E``) of the recorded trade frames, per market
    (None: over all): where an exchange time falls on the recordings' receive clock."""
    per: dict[MarketType | None, list[int]] = {}
    for rec in recordings:
        for ts, data in rec.trade_frames():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                delta = ts - int(json.loads(data)["E"]) * 1_000_000
                per.setdefault(rec.market, []).append(delta)
                per.setdefault(None, []).append(delta)
    return {m: sorted(v)[len(v) // 2] for m, v in per.items()}


def liquidation_frames(
    recordings: list[Recording],
    liquidations: list[Liquidation],
    symbols: dict[MarketType, dict[str, dict[str, Any]]],
) -> list[tuple[int, MarketType, str, str, int]]:
    """(receive ts, market, stream key, combined-stream line, data offset) per liquidation.

    An event is placed at its event time ``E`` moved onto the recordings' receive clock (the
    recording machine's clock differs from Binance's by a constant-ish offset), so it is sent
    among the recorded frames of the same exchange time."""
    if not liquidations:
        return []
    offsets = clock_offsets(recordings)
    out = []
    for lq in liquidations:
        info = symbols[lq.market].get(lq.symbol, {})
        event = lq.event(pair=info.get("pair"))
        offset = offsets.get(lq.market, offsets.get(None, 0))
        head = dumps({"stream": lq.stream})[:-1] + ',"data":'
        line = head + dumps(event) + "}"
        out.append((event["E"] * 1_000_000 + offset, lq.market, lq.stream.lower(), line, len(head)))
    return out


class BinanceStreams(LoopbackServer):
    """The timeline, the replay loop and the websocket protocol of the Binance replay."""

    recordings: list[Recording]
    faults: tuple[Fault, ...]
    liquidations: list[Liquidation]
    loop: bool
    lap: int
    wall_clock: bool
    frames_sent: int
    liquidations_sent: int
    _symbols: dict[MarketType, dict[str, dict[str, Any]]]
    _running: asyncio.Event | None
    _disconnect_countdown: int | None

    # ---------------------------------------------------------------- timeline and faults

    def _build_timeline(self) -> None:
        entries: list[tuple[int, int, int]] = []  # (ts, recording, line)
        for ri, rec in enumerate(self.recordings):
            entries.extend((ts, ri, li) for li, ts in enumerate(rec.ts_ns))
        # injected forceOrder frames: a pseudo recording after the real ones (ties: after them)
        injected = liquidation_frames(self.recordings, self.liquidations, self._symbols)
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

    def subscriber_count(self, stream: str, market: MarketType | None = None) -> int:
        """Connections subscribed to ``stream`` (any market unless given)."""
        key = stream.lower()
        return sum(
            len(conns) for (m, k), conns in self._subs.items() if k == key and market in (None, m)
        )

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
                await self._pace(t0, ts0, self._ts[slot], slot, pace)
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
        if conn.combined:
            return dumps({"stream": self._stream[frame], "data": data})
        return dumps(data)

    # ---------------------------------------------------------------- websocket

    def _unserved(self, request: web.Request) -> web.Response:
        raise NotImplementedError  # ReplayServer._unserved

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
            return ws_error(3, "Invalid JSON: expected value at line 1 column 1", None)
        if not isinstance(req, dict):
            return ws_error(2, "Invalid request: expected an object", None)
        rid = req.get("id")
        valid_int = isinstance(rid, int) and not isinstance(rid, bool) and rid >= 0
        if not (valid_int or rid is None or isinstance(rid, str)):
            return ws_error(2, "Invalid request: request ID must be an unsigned integer", None)
        method, params = req.get("method"), req.get("params", [])
        if not isinstance(params, list):
            return ws_error(2, "Invalid request: params must be an array", rid)
        if method == "SUBSCRIBE":
            if not all(isinstance(p, str) for p in params):
                return ws_error(2, "Invalid request: invalid stream", rid)
            self._subscribe(conn, params)
            return ws_result(None, rid)
        if method == "UNSUBSCRIBE":
            for p in params:
                if isinstance(p, str):
                    self._unsubscribe(conn, p.lower())
            return ws_result(None, rid)
        if method == "LIST_SUBSCRIPTIONS":
            return ws_result(list(conn.streams.values()), rid)
        if method == "SET_PROPERTY":
            if len(params) == 2 and params[0] == "combined" and isinstance(params[1], bool):
                conn.combined = params[1]
                return ws_result(None, rid)
            return ws_error(0, "Unknown property", rid)
        if method == "GET_PROPERTY":
            if params == ["combined"]:
                return ws_result(conn.combined, rid)
            return ws_error(0, "Unknown property", rid)
        return ws_error(
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
        self._check_start()

    def _starts_clock(self, key: Any) -> bool:
        """The replay starts on subscriptions to recorded streams (not to injected ones)."""
        return key in self._recorded_keys

    def _unsubscribe(self, conn: _Conn, key: str) -> None:
        conn.streams.pop(key, None)
        subs = self._subs.get((conn.market, key))
        if subs is not None:
            subs.discard(conn)

    def _drop(self, conn: _Conn) -> None:
        for key in list(conn.streams):
            self._unsubscribe(conn, key)
        self._conns.discard(conn)
