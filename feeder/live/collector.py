"""One exchange entry's websocket collection: stream, watchdog, reconnect, backfill.

Per stream (one ccxt pro exchange and its symbols):
- ``watch_trades_for_symbols`` where the exchange has it, one task per symbol otherwise;
- a watchdog: no message for ``quiet_s`` -> the connection is closed and reopened;
- reconnect with capped exponential backoff and full jitter, reset after data flows again;
- after a reconnect, the gap is backfilled over REST from the last trade id (Binance:
  historical trades ``fromId``) or the last trade time (others), paginated until it meets the
  live stream, deduplicated by trade id downstream. A gap that cannot be filled is recorded.
While a market is disconnected or backfilling, the runtime holds its watermark at its last
trade: its seconds stay open, so backfilled trades land in them instead of arriving late.
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

from feeder.live.markets import LiveMarket, raw_from_ccxt
from feeder.settings import ExchangeSettings

log = logging.getLogger(__name__)

#: REST method for raw trades by id, where the exchange's websocket ids are raw trade ids.
FROM_ID_METHOD = {
    "binance": "publicGetHistoricalTrades",
    "binanceusdm": "fapiPublicGetHistoricalTrades",
    "binancecoinm": "dapiPublicGetHistoricalTrades",
}

OnTrades = Callable[[LiveMarket, dict[str, Any], int, bool], None]


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter; ``reset`` after a success."""

    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class MarketState:
    last_id: int | None = None
    last_ts_ms: int | None = None
    last_recv: float = 0.0
    connected: bool = False
    backfilling: bool = False  # set at the disconnect, cleared when the gap is filled
    gap_from_id: int | None = None  # the last trade before the disconnect
    gap_from_ms: int | None = None

    @property
    def hold_ms(self) -> int | None:
        """While disconnected or backfilling: the time the market is complete up to."""
        if self.connected and not self.backfilling:
            return None
        return self.gap_from_ms if self.backfilling else self.last_ts_ms


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
        self, entry: ExchangeSettings, exchange: Any, markets: list[LiveMarket],
        on_trades: OnTrades, on_gap: Callable[[LiveMarket, int, int, str], Awaitable[None]],
        backoff_max_s: float = 30.0,
    ) -> None:  # fmt: skip
        self.entry = entry
        self.ex = exchange
        self.markets = {m.symbol: m for m in markets}
        self.on_trades = on_trades
        self.on_gap = on_gap
        self.backoff = Backoff(cap=backoff_max_s)
        self.stats = StreamStats(markets={m.market: MarketState() for m in markets})
        self.name = f"{entry.id}:{entry.kind.value}"
        self._need_backfill = False

    def state(self, m: LiveMarket) -> MarketState:
        return self.stats.markets[m.market]

    # ----- trades in ------------------------------------------------------------------------
    def _deliver(self, trades: list[Mapping[str, Any]], backfill: bool = False) -> int:
        by_symbol: dict[str, list[Mapping[str, Any]]] = {}
        for t in trades:
            by_symbol.setdefault(str(t.get("symbol")), []).append(t)
        recv = time.time_ns()
        n = 0
        for sym, group in by_symbol.items():
            m = self.markets.get(sym)
            if m is None:
                continue
            raw = raw_from_ccxt(group)
            self.on_trades(m, raw, recv, backfill)
            st = self.state(m)
            ids, ts = raw["trade_id"], raw["ts"]
            if len(ids):
                top = int(ids.max())
                st.last_id = top if st.last_id is None else max(st.last_id, top)
                finite = ts[ts == ts]
                if len(finite):
                    t_max = int(finite.max())
                    st.last_ts_ms = t_max if st.last_ts_ms is None else max(st.last_ts_ms, t_max)
            st.last_recv = time.time()
            n += len(group)
        return n

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
                trades = await asyncio.wait_for(self._watch(symbols), timeout=self.entry.quiet_s)
            except TimeoutError:
                self.stats.watchdog_reconnects += 1
                raise ccxt.NetworkError(
                    f"{self.name}: silent for {self.entry.quiet_s:.0f}s"
                ) from None
            self._deliver(trades)
            if first:
                first = False
                self.backoff.reset()
                for s in symbols:
                    self.state(self.markets[s]).connected = True
                if self._need_backfill:
                    self._need_backfill = False
                    asyncio.get_running_loop().create_task(self._backfill_all())

    async def _stream(self) -> None:
        symbols = list(self.markets)
        groups = [[s] for s in symbols] if self.entry.per_symbol or not self.ex.has.get(
            "watchTradesForSymbols") else [symbols]  # fmt: skip
        self.stats.connected_since = time.time()
        await asyncio.gather(*(self._stream_group(g) for g in groups))

    async def run(self) -> None:
        """Collect until cancelled; every error leads to a reconnect after a backoff."""
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
                    if self.entry.backfill and st.last_ts_ms is not None and not st.backfilling:
                        st.backfilling = True
                        st.gap_from_id, st.gap_from_ms = st.last_id, st.last_ts_ms
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
    async def _backfill_all(self) -> None:
        await asyncio.gather(*(self.backfill(m) for m in self.markets.values()))

    async def backfill(self, m: LiveMarket, page: int = 1000, max_pages: int = 200) -> None:
        """Fetch the trades missed since the market's last trade, until the stream's first."""
        st = self.state(m)
        if st.gap_from_id is None or st.gap_from_ms is None:
            st.backfilling = False
            return
        start_id, start_ms = st.gap_from_id, st.gap_from_ms
        got = 0
        try:
            method = FROM_ID_METHOD.get(self.entry.id)
            cursor_id, cursor_ms = start_id + 1, start_ms
            for _ in range(max_pages):
                if method:
                    params = {"fetchTradesMethod": method, "fromId": cursor_id}
                    trades = await self.ex.fetch_trades(m.symbol, limit=page, params=params)
                else:
                    trades = await self.ex.fetch_trades(m.symbol, since=cursor_ms, limit=page)
                if not trades:
                    break
                got += self._deliver(trades, backfill=True)
                ids = [int(t["id"]) for t in trades if str(t.get("id", "")).isdigit()]
                new_cursor_ms = max(int(t["timestamp"]) for t in trades)
                if len(trades) < page or (method and not ids) or (
                    not method and new_cursor_ms <= cursor_ms):  # fmt: skip
                    break
                cursor_id = max(ids) + 1 if ids else cursor_id
                cursor_ms = new_cursor_ms
            self.stats.backfilled_trades += got
            log.info("%s %s: backfilled %d trades after the reconnect", self.name, m.symbol, got)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - an unfillable gap is recorded, not fatal
            self.stats.unfilled_gaps += 1
            end_ms = (
                st.last_ts_ms
                if st.last_ts_ms and st.last_ts_ms > start_ms
                else int(time.time() * 1000)
            )
            log.error("%s %s: backfill failed (%s): gap %d..%d recorded", self.name, m.symbol, e,
                      start_ms, end_ms)  # fmt: skip
            await self.on_gap(
                m, start_ms // 1000 + 1, end_ms // 1000, f"backfill failed: {e}"[:200]
            )
        finally:
            st.backfilling = False
            st.gap_from_id = st.gap_from_ms = None
