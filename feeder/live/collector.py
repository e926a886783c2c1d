"""One exchange entry's websocket collection: stream, watchdog, reconnect, backfill.

Per stream (one ccxt pro exchange and its symbols):
- ``watch_trades_for_symbols`` where the exchange has it, one task per symbol otherwise;
- a watchdog: no message for ``quiet_s`` -> the connection is closed and reopened;
- reconnect with capped exponential backoff and full jitter, reset after data flows again;
- after a reconnect, the gap is backfilled over REST from the last trade id (Binance:
  historical trades ``fromId``) or the last trade time (others; OKX: history pages backwards by
  trade id; Coinbase: pages backwards by time), paginated until it meets the live stream,
  deduplicated by trade id downstream. A gap that cannot be filled is recorded, as is the part
  of it a REST answer does not reach back to (Bybit's public REST has only its most recent
  trades).
While a market is disconnected or has missing trades being fetched, the runtime holds its
watermark at the last trade before the gap: those seconds stay open, so backfilled trades land
in them instead of arriving late.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ccxt
import numpy as np

from feeder.live.markets import LiveMarket, raw_from_ccxt, trade_id_int
from feeder.settings import ExchangeSettings

log = logging.getLogger(__name__)

#: REST method for raw trades by id, where the exchange's websocket ids are raw trade ids.
FROM_ID_METHOD = {
    "binance": "publicGetHistoricalTrades",
    "binanceusdm": "fapiPublicGetHistoricalTrades",
    "binancecoinm": "dapiPublicGetHistoricalTrades",
}
#: Largest page each endpoint serves (Binance futures historical trades: 500).
PAGE = {"binance": 1000, "binanceusdm": 500, "binancecoinm": 500}
#: Exchanges whose public REST reaches back only by paging backwards from the newest trade by
#: trade id (ccxt does not send ``since`` to them): (fixed params, cursor param, page size).
#: OKX: ``/api/v5/market/history-trades``, newest first, ``after`` = older than this trade id.
BACKWARD_PAGING: dict[str, tuple[dict[str, Any], str, int]] = {
    "okx": ({"method": "publicGetMarketHistoryTrades", "type": "1"}, "after", 100),
}

#: Exchanges whose ccxt ``fetch_trades`` needs ``params.until`` whenever ``since`` is given.
#: Coinbase's public ticker endpoint answers the *newest* ``limit`` (<= 1000) trades in
#: [``start``, ``end``] (whole UNIX seconds, ccxt truncates): pages go backwards by ``until``.
UNTIL_REQUIRED = frozenset({"coinbase", "coinbaseadvanced"})
UNTIL_PAGE = 1000

#: The runtime's intake: (market, raw columns, receive ns, backfill?) -> trades accepted.
OnTrades = Callable[[LiveMarket, dict[str, Any], int, bool], int]


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter (a delay anywhere in ``[0, ceiling]``, the
    ceiling doubling from ``base`` up to ``cap``); ``reset`` after a success. Every retry loop
    of the feeder uses this one."""

    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0

    def ceiling(self) -> float:
        """The largest delay of the next attempt (the exponent stops growing at the cap)."""
        return min(self.cap, self.base * 2.0 ** min(self.attempt, 64))

    def next(self) -> float:
        ceiling = self.ceiling()
        if ceiling < self.cap:  # no counting past the cap: no overflow after any failures
            self.attempt += 1
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class MarketState:
    last_id: int | None = None  # the largest trade id seen
    last_ts_ms: int | None = None  # the latest trade time seen
    last_recv: float = 0.0
    connected: bool = False
    reconnect_hold_ms: int | None = None  # set at a disconnect until the gap is handled
    edge_ids: set[int] = field(default_factory=set)  # ids of the trades at ``last_ts_ms``
    anchor_ids: frozenset[int] = frozenset()  # ``edge_ids`` when the stream was lost
    holes: dict[tuple[int, int], int] = field(default_factory=dict)  # id range -> hold (ms)

    @property
    def hold_ms(self) -> int | None:
        """The time this market is complete up to while trades are missing, else None."""
        holds = list(self.holes.values())
        if self.reconnect_hold_ms is not None:
            holds.append(self.reconnect_hold_ms)
        return min(holds) if holds else None


@dataclass
class StreamStats:
    reconnects: int = 0
    errors: int = 0
    watchdog_reconnects: int = 0
    backfilled_trades: int = 0
    unfilled_gaps: int = 0
    last_error: str = ""
    connected_since: float | None = None
    markets: dict[str, MarketState] = field(default_factory=dict)


class Collector:
    def __init__(
        self,
        entry: ExchangeSettings,
        exchange: Any,
        markets: list[LiveMarket],
        on_trades: OnTrades,
        on_gap: Callable[[LiveMarket, int, int, str], Awaitable[None]],
        backoff_max_s: float = 30.0,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.entry = entry
        #: the feeder's clock (event time in a replay rehearsal): an open gap ends "now"
        self.now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.ex = exchange
        self.markets = {m.symbol: m for m in markets}
        self.on_trades = on_trades
        self.on_gap = on_gap
        self.backoff = Backoff(cap=backoff_max_s)
        self.stats = StreamStats(markets={m.market: MarketState() for m in markets})
        self.name = f"{entry.id}:{entry.kind.value}"
        self._need_backfill = False
        self.settle_s = 1.0
        #: Binance numbers each market's trades consecutively: a gap in ids is a missed trade.
        self.sequential = entry.id in FROM_ID_METHOD
        self._tasks: set[asyncio.Task[Any]] = set()

    def state(self, m: LiveMarket) -> MarketState:
        return self.stats.markets[m.market]

    # ----- trades in ------------------------------------------------------------------------
    def _deliver(self, trades: list[Mapping[str, Any]], backfill: bool = False) -> int:
        """Hand trades to the runtime; on id-sequential exchanges find holes in the ids.

        Returns how many trades were new (not duplicates).
        """
        by_symbol: dict[str, list[Mapping[str, Any]]] = {}
        for t in trades:
            by_symbol.setdefault(str(t.get("symbol")), []).append(t)
        recv = time.time_ns()
        fresh = 0
        for sym, group in by_symbol.items():
            m = self.markets.get(sym)
            if m is None:
                continue
            raw = raw_from_ccxt(group)
            st = self.state(m)
            if self.sequential and not backfill and len(group):
                self._find_holes(m, st, raw)
            fresh += self.on_trades(m, raw, recv, backfill)
            ids, ts = raw["trade_id"], raw["ts"]
            if len(ids):
                top = int(ids.max())
                st.last_id = top if st.last_id is None else max(st.last_id, top)
                finite = ts[ts == ts]
                if len(finite):
                    t_max = int(finite.max())
                    at_max = {int(i) for i in ids[ts == t_max]}
                    if st.last_ts_ms is None or t_max > st.last_ts_ms:
                        st.last_ts_ms, st.edge_ids = t_max, at_max
                    elif t_max == st.last_ts_ms:
                        st.edge_ids |= at_max
            if not backfill:
                st.last_recv = time.time()
                if st.reconnect_hold_ms is not None and self.sequential:
                    st.reconnect_hold_ms = None  # the stream is back; holes cover the gap
        return fresh

    def _find_holes(self, m: LiveMarket, st: MarketState, raw: dict[str, Any]) -> None:
        """Missing ids between the last id seen and this batch, or inside it: backfill them."""
        order = np.argsort(raw["trade_id"], kind="stable")
        ids = raw["trade_id"][order]
        ts = raw["ts"][order]
        prev_id = st.last_id
        prev_ts = st.last_ts_ms
        newer = ids > (prev_id if prev_id is not None else ids[0] - 1)
        ids, ts = ids[newer], ts[newer]
        if prev_id is None or not len(ids):
            return
        chain = np.concatenate(([prev_id], ids))
        chain_ts = np.concatenate(([prev_ts if prev_ts is not None else ts[0]], ts))
        for i in np.flatnonzero(np.diff(chain) > 1):
            lo, hi = int(chain[i]) + 1, int(chain[i + 1]) - 1
            hold = int(chain_ts[i]) if chain_ts[i] == chain_ts[i] else int(ts[0])
            st.holes[(lo, hi)] = hold
            self._spawn(self._fill_hole(m, lo, hi))

    def _spawn(self, coro: Any) -> None:
        """Run a backfill in the background; its reference is kept until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----- the stream -----------------------------------------------------------------------
    async def _watch(self, symbols: list[str]) -> list[Any]:
        if (
            len(symbols) > 1
            and not self.entry.per_symbol
            and self.ex.has.get("watchTradesForSymbols")
        ):
            return await self.ex.watch_trades_for_symbols(symbols)
        return await self.ex.watch_trades(symbols[0])

    async def _stream_group(self, symbols: list[str]) -> None:
        first = True
        while True:
            try:
                # ``asyncio.timeout``, not ``wait_for``: ``wait_for`` runs the watch in a new task
                # that starts one loop turn later, and a message ccxt handles in that turn finds
                # no waiter; ccxt keeps its trades but returns them only with the next message
                # of the symbol (a quiet market: much later; the last trades before a stop: never)
                async with asyncio.timeout(self.entry.quiet_s):
                    trades = await self._watch(symbols)
            except TimeoutError:
                self.stats.watchdog_reconnects += 1
                raise ccxt.NetworkError(
                    f"{self.name}: silent for {self.entry.quiet_s:.0f}s"
                ) from None
            self._deliver(trades)
            if first:
                first = False
                self.backoff.reset()

    async def _stream(self) -> None:
        symbols = list(self.markets)
        groups = (
            [[s] for s in symbols]
            if self.entry.per_symbol or not self.ex.has.get("watchTradesForSymbols")
            else [symbols]
        )
        streams = [asyncio.ensure_future(self._stream_group(g)) for g in groups]
        try:
            # The subscription is live once the exchange has had a moment to answer; from then
            # on the stream covers new trades and the REST backfill covers the gap before them
            # (overlaps are removed by trade id), whether or not the market trades meanwhile.
            done, _ = await asyncio.wait(streams, timeout=self.settle_s)
            for t in done:
                t.result()  # a failed (re)connect raises here
            self.stats.connected_since = time.time()
            for st in self.stats.markets.values():
                st.connected = True
            if self._need_backfill:
                self._need_backfill = False
                self._spawn(self._after_reconnect())
            await asyncio.gather(*streams)
        finally:
            for t in streams:
                t.cancel()

    async def run(self) -> None:
        """Collect until cancelled; every error leads to a reconnect after a backoff."""
        try:
            await self._run()
        finally:
            for t in list(self._tasks):
                t.cancel()

    async def _run(self) -> None:
        while True:
            try:
                await self._stream()
            except asyncio.CancelledError:
                raise
            except ccxt.ExchangeClosedByUser:
                return
            except Exception as e:  # noqa: BLE001 - every failure reconnects; it is logged
                self.stats.errors += 1
                self.stats.reconnects += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"[:300]
                self.stats.connected_since = None
                for st in self.stats.markets.values():
                    st.connected = False
                    if (
                        self.entry.backfill
                        and st.last_ts_ms is not None
                        and st.reconnect_hold_ms is None
                    ):
                        st.reconnect_hold_ms = st.last_ts_ms
                        st.anchor_ids = frozenset(st.edge_ids)
                self._need_backfill = self.entry.backfill
                delay = self.backoff.next()
                log.warning(
                    "%s: %s; reconnecting in %.1fs", self.name, self.stats.last_error, delay
                )
                try:
                    await self.ex.close()
                except Exception:  # noqa: BLE001,S110 - the connection is gone either way
                    pass
                await asyncio.sleep(delay)

    # ----- backfill -------------------------------------------------------------------------
    async def _after_reconnect(self) -> None:
        """The gap before the resumed stream: on id-sequential exchanges the first resumed batch
        reveals it as a hole (filled by ``_fill_hole``); a market that has not traded since is
        probed from its last id. Elsewhere the gap is fetched by time until nothing new comes."""
        await asyncio.gather(*(self._probe(m) for m in self.markets.values()))

    async def _probe(self, m: LiveMarket) -> None:
        st = self.state(m)
        if st.reconnect_hold_ms is None or st.last_ts_ms is None:
            return
        start_ms = st.reconnect_hold_ms
        try:
            if self.sequential:
                assert st.last_id is not None
                await self._fetch_ids(m, st.last_id + 1, None)
            elif self.entry.id in BACKWARD_PAGING:
                await self._fetch_back(m, start_ms, st.anchor_ids)
            elif self.entry.id in UNTIL_REQUIRED:
                await self._fetch_until_back(m, start_ms, st.anchor_ids)
            else:
                await self._fetch_since(m, start_ms, st.anchor_ids)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - an unfillable gap is recorded, not fatal
            await self._record_gap(m, start_ms, e)
        finally:
            st.reconnect_hold_ms = None

    async def _fill_hole(self, m: LiveMarket, lo: int, hi: int) -> None:
        st = self.state(m)
        hold = st.holes.get((lo, hi))
        try:
            got = await self._fetch_ids(m, lo, hi)
            self.stats.backfilled_trades += got
            log.info(
                "%s %s: trades %d..%d missing from the stream: %d backfilled",
                self.name,
                m.symbol,
                lo,
                hi,
                got,
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - an unfillable gap is recorded, not fatal
            await self._record_gap(m, hold if hold is not None else self.now_ms(), e)
        finally:
            st.holes.pop((lo, hi), None)

    async def _fetch_ids(self, m: LiveMarket, lo: int, hi: int | None) -> int:
        """Raw trades by id from ``lo`` (to ``hi``, or until no newer trades), page by page."""
        method = FROM_ID_METHOD[self.entry.id]
        page = PAGE.get(self.entry.id, 1000)
        cursor, got = lo, 0
        while hi is None or cursor <= hi:
            params = {"fetchTradesMethod": method, "fromId": cursor}
            trades = await self.ex.fetch_trades(m.symbol, limit=page, params=params)
            ids = [int(t["id"]) for t in trades if str(t.get("id", "")).isdigit()]
            if not ids or max(ids) < cursor:
                break
            got += self._deliver(trades, backfill=True)
            cursor = max(ids) + 1
        return got

    @staticmethod
    def _reaches(trades: list[Mapping[str, Any]], since_ms: int, anchors: frozenset[int]) -> bool:
        """Do these REST trades reach back to the stream before the outage: one of the last
        trades seen then (``anchors``), or a trade older than them?"""
        if any(trade_id_int(t.get("id")) in anchors for t in trades):
            return True
        times = [int(t["timestamp"]) for t in trades if t.get("timestamp") is not None]
        return bool(times) and min(times) < since_ms

    async def _fetch_since(
        self,
        m: LiveMarket,
        since_ms: int,
        anchors: frozenset[int] = frozenset(),
        max_pages: int = 500,
    ) -> int:
        """Trades by time from ``since_ms`` until a page brings nothing new.

        Many exchanges ignore ``since`` and answer with their most recent trades only (Bybit:
        the last 60 spot / 1000 linear; ccxt then drops those before ``since``). If the first
        page does not reach back to the last trades seen before the outage, the time between
        them and the page's oldest trade cannot be filled: it is recorded as a gap."""
        got = 0
        cursor = since_ms
        for page in range(max_pages):
            trades = await self.ex.fetch_trades(m.symbol, since=cursor, limit=1000)
            if page == 0 and not self._reaches(trades, since_ms, anchors):
                oldest = min((int(t["timestamp"]) for t in trades), default=None)
                await self._unreached(m, since_ms, oldest, "REST trades do not reach back")
            if not trades:
                break
            new = self._deliver(trades, backfill=True)
            got += new
            top = max(int(t["timestamp"]) for t in trades)
            if new == 0 or top <= cursor:
                break
            cursor = top
        self.stats.backfilled_trades += got
        return got

    async def _fetch_until_back(
        self, m: LiveMarket, since_ms: int, anchors: frozenset[int], max_pages: int = 2000
    ) -> int:
        """Page backwards by time (``UNTIL_REQUIRED``): each page is the newest ``UNTIL_PAGE``
        trades in [``since``, ``until``]; the next ``until`` is the end of the second of the
        page's oldest trade (the endpoint takes whole seconds), until a page reaches the last
        trades seen before the outage or is not full (it then holds everything back to
        ``since``). A page that does not move back (a second with more trades than a page)
        leaves the rest a recorded gap."""
        got, oldest_ms = 0, None
        until = (self.now_ms() // 1000 + 1) * 1000  # all of the current second
        reached = False
        try:
            for _ in range(max_pages):
                trades = await self.ex.fetch_trades(
                    m.symbol, since=since_ms, limit=UNTIL_PAGE, params={"until": until}
                )
                if not trades:  # not even the trades seen at ``since``: unproven
                    break
                got += self._deliver(trades, backfill=True)
                oldest_ms = min(int(t["timestamp"]) for t in trades)
                if len(trades) < UNTIL_PAGE or self._reaches(trades, since_ms, anchors):
                    reached = True
                    break
                nxt = (oldest_ms // 1000 + 1) * 1000
                if nxt >= until:
                    break
                until = nxt
        finally:
            self.stats.backfilled_trades += got
        if not reached:
            await self._unreached(m, since_ms, oldest_ms, "REST trades do not reach back")
        return got

    async def _fetch_back(
        self, m: LiveMarket, since_ms: int, anchors: frozenset[int], max_pages: int = 2000
    ) -> int:
        """Page backwards from the newest trade (``BACKWARD_PAGING``) until the pages reach the
        last trades seen before the outage; a history that ends first leaves a recorded gap."""
        fixed, cursor_param, page = BACKWARD_PAGING[self.entry.id]
        got, cursor, oldest_ms = 0, None, None
        reached = False
        try:
            for _ in range(max_pages):
                params = dict(fixed)
                if cursor is not None:
                    params[cursor_param] = cursor
                trades = await self.ex.fetch_trades(m.symbol, limit=page, params=params)
                if not trades:
                    break
                got += self._deliver(trades, backfill=True)
                oldest = min(trades, key=lambda t: trade_id_int(t.get("id")))
                oldest_ms = int(oldest["timestamp"])
                if self._reaches(trades, since_ms, anchors):
                    reached = True
                    break
                cursor = oldest["id"]
        finally:
            self.stats.backfilled_trades += got
        if not reached:
            await self._unreached(m, since_ms, oldest_ms, "REST trade history does not reach back")
        return got

    async def _unreached(
        self, m: LiveMarket, since_ms: int, oldest_ms: int | None, what: str
    ) -> None:
        """The REST pages stopped short of the outage: from the last trade before it to the
        oldest trade REST returned (or the last one seen) is a gap."""
        end_ms = oldest_ms if oldest_ms is not None else (self.state(m).last_ts_ms or since_ms)
        await self._gap(m, since_ms // 1000, end_ms // 1000 + 1, f"{what} to the outage")

    async def _gap(self, m: LiveMarket, start_s: int, end_s: int, reason: str) -> None:
        """Seconds ``[start_s, end_s)`` may miss trades that no REST call could return."""
        self.stats.unfilled_gaps += 1
        log.error("%s %s: %s: gap %d..%d recorded", self.name, m.symbol, reason, start_s, end_s)
        await self.on_gap(m, start_s, end_s, reason)

    async def _record_gap(self, m: LiveMarket, from_ms: int, err: BaseException) -> None:
        self.stats.unfilled_gaps += 1
        st = self.state(m)
        end_ms = st.last_ts_ms if st.last_ts_ms and st.last_ts_ms > from_ms else self.now_ms()
        log.error(
            "%s %s: backfill failed (%s): gap %d..%d recorded",
            self.name,
            m.symbol,
            err,
            from_ms,
            end_ms,
        )
        await self.on_gap(m, from_ms // 1000 + 1, end_ms // 1000, f"backfill failed: {err}"[:200])
