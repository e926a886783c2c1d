"""One exchange entry's websocket collection: stream, watchdog, reconnect.

Per stream (one ccxt pro exchange and its symbols):
- ``watch_trades_for_symbols`` where the exchange has it, one task per symbol otherwise;
- a watchdog: no message for ``quiet_s`` -> the connection is closed and reopened;
- reconnect after a ``Backoff`` (capped exponential, full jitter), reset after data flows again;
- after a reconnect, and for every hole in an id-sequential market's trade ids, the gap is
  fetched over REST by ``feeder.live.backfill`` (each venue's REST policy is its seam).
While a market is disconnected or has missing trades being fetched, the runtime holds its
watermark at the last trade before the gap: those seconds stay open, so backfilled trades land
in them instead of arriving late.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ccxt
import numpy as np

from feeder.live.backfill import Backfill, rest_policy
from feeder.live.backoff import Backoff
from feeder.live.markets import LiveMarket, raw_from_ccxt
from feeder.settings import ExchangeSettings

log = logging.getLogger(__name__)

#: The runtime's intake: (market, raw columns, receive ns, backfill?) -> trades accepted.
OnTrades = Callable[[LiveMarket, dict[str, Any], int, bool], int]


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
        self.backfill = Backfill(self, rest_policy(entry.id))
        #: Binance numbers each market's trades consecutively: a gap in ids is a missed trade.
        self.sequential = self.backfill.policy.paging == "ids"
        self._tasks: set[asyncio.Task[Any]] = set()

    def state(self, m: LiveMarket) -> MarketState:
        return self.stats.markets[m.market]

    # ----- trades in ------------------------------------------------------------------------
    def deliver(self, trades: list[Mapping[str, Any]], backfill: bool = False) -> int:
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
            self._spawn(self.backfill.fill_hole(m, lo, hi))

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
            trades: list[Any] = await self.ex.watch_trades_for_symbols(symbols)
            return trades
        trades = await self.ex.watch_trades(symbols[0])
        return trades

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
            self.deliver(trades)
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
                self._spawn(self.backfill.after_reconnect())
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
