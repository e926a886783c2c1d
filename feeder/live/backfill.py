"""The REST backfill of a collector's gaps, and each venue's REST policy (its seam).

After a reconnect the gap is fetched over REST from the last trade id (Binance: historical
trades ``fromId``) or the last trade time (others; OKX: history pages backwards by trade id;
Coinbase: pages backwards by time), paginated until it meets the live stream, deduplicated by
trade id downstream. A gap that cannot be filled is recorded, as is the part of it a REST answer
does not reach back to (Bybit's public REST has only its most recent trades). A new venue is a
new ``REST_POLICY`` entry (or the default: by time from ``since``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from feeder.live.markets import LiveMarket, trade_id_int

if TYPE_CHECKING:
    from feeder.live.collector import Collector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestPolicy:
    """How one venue's public REST reaches back over an outage.

    ``ids``: raw trades by id (``method`` with ``fromId``): the websocket ids are raw trade ids,
    numbered consecutively per market, so a gap in ids is a missed trade (a hole).
    ``back_by_id``: only by paging backwards from the newest trade by trade id (ccxt does not
    send ``since``): ``params`` fixed, ``cursor`` = older than this trade id.
    ``back_by_time``: ccxt's ``fetch_trades`` needs ``params.until`` whenever ``since`` is
    given and the endpoint answers the *newest* ``page`` trades in [``since``, ``until``]
    (whole seconds): pages go backwards by ``until``.
    ``since``: by time forwards from ``since`` until a page brings nothing new.
    """

    paging: Literal["ids", "back_by_id", "back_by_time", "since"] = "since"
    page: int = 1000  # the largest page the endpoint serves
    method: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    cursor: str | None = None


REST_POLICY: dict[str, RestPolicy] = {
    # Binance futures historical trades serve at most 500 per page.
    "binance": RestPolicy("ids", 1000, method="publicGetHistoricalTrades"),
    "binanceusdm": RestPolicy("ids", 500, method="fapiPublicGetHistoricalTrades"),
    "binancecoinm": RestPolicy("ids", 500, method="dapiPublicGetHistoricalTrades"),
    # OKX: ``/api/v5/market/history-trades``, newest first, ``after`` = older than this id.
    "okx": RestPolicy(
        "back_by_id",
        100,
        params={"method": "publicGetMarketHistoryTrades", "type": "1"},
        cursor="after",
    ),
    # Coinbase's public ticker endpoint: the newest <= 1000 trades in [start, end] (seconds).
    "coinbase": RestPolicy("back_by_time", 1000),
    "coinbaseadvanced": RestPolicy("back_by_time", 1000),
}


def rest_policy(exchange_id: str) -> RestPolicy:
    """The venue's REST policy; by time from ``since`` where none is listed."""
    return REST_POLICY.get(exchange_id, RestPolicy())


def reaches_back(trades: list[Mapping[str, Any]], since_ms: int, anchors: frozenset[int]) -> bool:
    """Do these REST trades reach back to the stream before the outage: one of the last trades
    seen then (``anchors``), or a trade older than them?"""
    if any(trade_id_int(t.get("id")) in anchors for t in trades):
        return True
    times = [int(t["timestamp"]) for t in trades if t.get("timestamp") is not None]
    return bool(times) and min(times) < since_ms


class Backfill:
    """Fetches one collector's missing trades over REST and records what it cannot fetch."""

    def __init__(self, collector: Collector, policy: RestPolicy) -> None:
        self.col = collector
        self.policy = policy

    async def after_reconnect(self) -> None:
        """The gap before the resumed stream: on id-sequential exchanges the first resumed batch
        reveals it as a hole (filled by ``fill_hole``); a market that has not traded since is
        probed from its last id. Elsewhere the gap is fetched by time until nothing new comes."""
        await asyncio.gather(*(self._probe(m) for m in self.col.markets.values()))

    async def _probe(self, m: LiveMarket) -> None:
        st = self.col.state(m)
        if st.reconnect_hold_ms is None or st.last_ts_ms is None:
            return
        start_ms = st.reconnect_hold_ms
        paging = self.policy.paging
        try:
            if paging == "ids":
                assert st.last_id is not None
                await self._fetch_ids(m, st.last_id + 1, None)
            elif paging == "back_by_id":
                await self._fetch_back(m, start_ms, st.anchor_ids)
            elif paging == "back_by_time":
                await self._fetch_until_back(m, start_ms, st.anchor_ids)
            else:
                await self._fetch_since(m, start_ms, st.anchor_ids)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - an unfillable gap is recorded, not fatal
            await self._record_gap(m, start_ms, e)
        finally:
            st.reconnect_hold_ms = None

    async def fill_hole(self, m: LiveMarket, lo: int, hi: int) -> None:
        """Trade ids ``lo..hi`` missing from the stream (``ids`` venues)."""
        st = self.col.state(m)
        hold = st.holes.get((lo, hi))
        try:
            got = await self._fetch_ids(m, lo, hi)
            self.col.stats.backfilled_trades += got
            log.info(
                "%s %s: trades %d..%d missing from the stream: %d backfilled",
                self.col.name,
                m.symbol,
                lo,
                hi,
                got,
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - an unfillable gap is recorded, not fatal
            await self._record_gap(m, hold if hold is not None else self.col.now_ms(), e)
        finally:
            st.holes.pop((lo, hi), None)

    async def _fetch_ids(self, m: LiveMarket, lo: int, hi: int | None) -> int:
        """Raw trades by id from ``lo`` (to ``hi``, or until no newer trades), page by page."""
        cursor, got = lo, 0
        while hi is None or cursor <= hi:
            params = {"fetchTradesMethod": self.policy.method, "fromId": cursor}
            trades = await self.col.ex.fetch_trades(m.symbol, limit=self.policy.page, params=params)
            ids = [int(t["id"]) for t in trades if str(t.get("id", "")).isdigit()]
            if not ids or max(ids) < cursor:
                break
            got += self.col.deliver(trades, backfill=True)
            cursor = max(ids) + 1
        return got

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
            trades = await self.col.ex.fetch_trades(m.symbol, since=cursor, limit=self.policy.page)
            if page == 0 and not reaches_back(trades, since_ms, anchors):
                oldest = min((int(t["timestamp"]) for t in trades), default=None)
                await self._unreached(m, since_ms, oldest, "REST trades do not reach back")
            if not trades:
                break
            new = self.col.deliver(trades, backfill=True)
            got += new
            top = max(int(t["timestamp"]) for t in trades)
            if new == 0 or top <= cursor:
                break
            cursor = top
        self.col.stats.backfilled_trades += got
        return got

    async def _fetch_until_back(
        self, m: LiveMarket, since_ms: int, anchors: frozenset[int], max_pages: int = 2000
    ) -> int:
        """Page backwards by time (``back_by_time``): each page is the newest ``page`` trades in
        [``since``, ``until``]; the next ``until`` is the end of the second of the page's oldest
        trade (the endpoint takes whole seconds), until a page reaches the last trades seen
        before the outage or is not full (it then holds everything back to ``since``). A page
        that does not move back (a second with more trades than a page) leaves the rest a
        recorded gap."""
        got, oldest_ms = 0, None
        until = (self.col.now_ms() // 1000 + 1) * 1000  # all of the current second
        reached = False
        size = self.policy.page
        try:
            for _ in range(max_pages):
                trades = await self.col.ex.fetch_trades(
                    m.symbol, since=since_ms, limit=size, params={"until": until}
                )
                if not trades:  # not even the trades seen at ``since``: unproven
                    break
                got += self.col.deliver(trades, backfill=True)
                oldest_ms = min(int(t["timestamp"]) for t in trades)
                if len(trades) < size or reaches_back(trades, since_ms, anchors):
                    reached = True
                    break
                nxt = (oldest_ms // 1000 + 1) * 1000
                if nxt >= until:
                    break
                until = nxt
        finally:
            self.col.stats.backfilled_trades += got
        if not reached:
            await self._unreached(m, since_ms, oldest_ms, "REST trades do not reach back")
        return got

    async def _fetch_back(
        self, m: LiveMarket, since_ms: int, anchors: frozenset[int], max_pages: int = 2000
    ) -> int:
        """Page backwards from the newest trade (``back_by_id``) until the pages reach the
        last trades seen before the outage; a history that ends first leaves a recorded gap."""
        assert self.policy.cursor is not None
        got, cursor, oldest_ms = 0, None, None
        reached = False
        try:
            for _ in range(max_pages):
                params = dict(self.policy.params)
                if cursor is not None:
                    params[self.policy.cursor] = cursor
                trades = await self.col.ex.fetch_trades(
                    m.symbol, limit=self.policy.page, params=params
                )
                if not trades:
                    break
                got += self.col.deliver(trades, backfill=True)
                oldest = min(trades, key=lambda t: trade_id_int(t.get("id")))
                oldest_ms = int(oldest["timestamp"])
                if reaches_back(trades, since_ms, anchors):
                    reached = True
                    break
                cursor = oldest["id"]
        finally:
            self.col.stats.backfilled_trades += got
        if not reached:
            await self._unreached(m, since_ms, oldest_ms, "REST trade history does not reach back")
        return got

    async def _unreached(
        self, m: LiveMarket, since_ms: int, oldest_ms: int | None, what: str
    ) -> None:
        """The REST pages stopped short of the outage: from the last trade before it to the
        oldest trade REST returned (or the last one seen) is a gap."""
        end_ms = oldest_ms if oldest_ms is not None else (self.col.state(m).last_ts_ms or since_ms)
        await self._gap(m, since_ms // 1000, end_ms // 1000 + 1, f"{what} to the outage")

    async def _gap(self, m: LiveMarket, start_s: int, end_s: int, reason: str) -> None:
        """Seconds ``[start_s, end_s)`` may miss trades that no REST call could return."""
        self.col.stats.unfilled_gaps += 1
        log.error("%s %s: %s: gap %d..%d recorded", self.col.name, m.symbol, reason, start_s, end_s)
        await self.col.on_gap(m, start_s, end_s, reason)

    async def _record_gap(self, m: LiveMarket, from_ms: int, err: BaseException) -> None:
        self.col.stats.unfilled_gaps += 1
        st = self.col.state(m)
        end_ms = st.last_ts_ms if st.last_ts_ms and st.last_ts_ms > from_ms else self.col.now_ms()
        log.error(
            "%s %s: backfill failed (%s): gap %d..%d recorded",
            self.col.name,
            m.symbol,
            err,
            from_ms,
            end_ms,
        )
        await self.col.on_gap(
            m, from_ms // 1000 + 1, end_ms // 1000, f"backfill failed: {err}"[:200]
        )
