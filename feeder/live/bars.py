"""The live bar path of one market: trades in (normalised, deduplicated, folded into the
market's bar builder), final seconds out (bars and rollups to the store writer, the session's
coverage with them, the watermark and new bars to the Redis publisher)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from feeder.ingest.aggregate import NS, LiveBarBuilder
from feeder.ingest.normalise import IdDeduplicator, Rejects, normalise
from feeder.live.collector import Collector
from feeder.live.markets import LiveMarket
from feeder.live.spool import Batch
from feeder.live.writers import LiveItem, RedisPublisher, StoreWriter
from feeder.stores.redis_stream import MAX_INTERVALS

log = logging.getLogger(__name__)

#: a trade stamped further than this ahead of the feeder's clock is refused (future_timestamp)
FUTURE_TOLERANCE_S = 300


class EventClock:
    """Replay clock: "now" is the newest exchange event time seen (rehearsals, tests)."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns

    def saw(self, ts_ns: int) -> None:
        self.now_ns = max(self.now_ns, ts_ns)


@dataclass
class MarketRuntime:
    live_market: LiveMarket
    builder: LiveBarBuilder
    dedup: IdDeduplicator
    collector: Collector | None = None
    covered_until: int | None = None
    trades: int = 0
    last_trade_recv: float = 0.0
    #: this session's coverage as written to the store (published with the watermark)
    session_cov: list[tuple[int, int]] = field(default_factory=list)
    published_wm: int | None = None

    def hold_ms(self) -> int | None:
        """The time the market is complete up to while its collector misses trades, else None."""
        if self.collector is None:
            return None
        return self.collector.state(self.live_market).hold_ms


def extend_coverage(cov: list[tuple[int, int]], start: int, end: int) -> None:
    """Add ``[start, end)`` to a session's coverage list (sorted, appended in time order)."""
    if cov and cov[-1][1] >= start:
        cov[-1] = (cov[-1][0], max(cov[-1][1], end))
    else:
        cov.append((start, end))
    if len(cov) > MAX_INTERVALS:  # the oldest coverage is forgotten: less complete, never more
        del cov[0]


def fold_trades(
    rt: MarketRuntime,
    raw: dict[str, np.ndarray],
    recv_ns: int,
    backfill: bool,
    liquidation: bool,
    clock: Callable[[], int],
    rejects: Rejects,
    counters: Counter[str],
) -> int:
    """Normalise, deduplicate and fold trades into the market's bars; returns how many
    were accepted (new)."""
    market = rt.live_market
    n = len(raw["price"])
    batch = normalise(
        market.spec,
        ts=raw["ts"],
        price=raw["price"],
        qty=raw["qty"],
        is_buyer_maker=raw["is_buyer_maker"],
        trade_id=raw["trade_id"],
        is_market=raw.get("is_market"),
        liquidation=np.ones(n, np.bool_) if liquidation else None,
        ts_recv=recv_ns,
        dedup=None if liquidation else rt.dedup,
        rejects=rejects,
    )
    if liquidation:  # not trades: neither the trade counters nor the stream's liveness
        counters["liquidations"] += len(batch)
    else:
        counters["trades_in"] += n
        counters["trades_backfilled" if backfill else "trades_live"] += len(batch)
    now = clock()
    if now > 0 and len(batch):  # (an event clock that has seen nothing yet cannot judge)
        ahead = batch.ts > now + FUTURE_TOLERANCE_S * NS
        if ahead.any():  # a broken venue clock must not close (and cover) years of seconds
            rejects.add("future_timestamp", int(ahead.sum()))
            if rejects.counts["future_timestamp"] == int(ahead.sum()):
                log.warning(
                    "%s: trade(s) stamped more than %d s ahead of the clock refused",
                    market.market,
                    FUTURE_TOLERANCE_S,
                )
            batch = batch.take(~ahead)
    if len(batch) == 0:
        return 0
    if not liquidation:
        rt.trades += len(batch)
        rt.last_trade_recv = time.time()
    if isinstance(clock, EventClock):
        clock.saw(int(batch.ts.max()))
    rt.builder.add(batch)
    return len(batch)


def close_seconds(
    rt: MarketRuntime,
    now: int,
    final: bool,
    cover_limit: int | None,
    grace_s: float,
    writer: StoreWriter,
    publisher: RedisPublisher | None,
    counters: Counter[str],
) -> None:
    """Close the market's final seconds and queue its bars, rollups, coverage, live item."""
    limit = now
    hold = rt.hold_ms()
    if not final and hold is not None:
        # Seconds from the last trade before the outage on stay open for the backfill.
        limit = min(now, (hold // 1000) * NS + int(grace_s * NS))
    out = rt.builder.advance(limit)
    counters["corrected_seconds"] += out.corrected_seconds
    if final:
        out.bars_1m = pd.concat([out.bars_1m, rt.builder.finish()], ignore_index=True)
    market, kind = rt.live_market.market, rt.live_market.kind.value
    wm = rt.builder.watermark
    if len(out.bars_1s):
        writer.put(Batch(market, kind, "1s", out.bars_1s))
    if len(out.bars_1m):
        writer.put(Batch(market, kind, "1m", out.bars_1m))
    if wm is None:
        return
    # a session covers only what it received whole: from after its first trade's second
    start = rt.builder.covered_from
    assert start is not None
    if rt.covered_until is None or rt.covered_until < start:
        rt.covered_until = start
    end = wm if cover_limit is None else min(wm, cover_limit)
    if end > rt.covered_until:
        writer.put(Batch(market, kind, "coverage", None, rt.covered_until, end))
        extend_coverage(rt.session_cov, rt.covered_until, end)
        rt.covered_until = end
    # Every new watermark is published, quiet seconds too: readers' completeness must not
    # wait for the next trade.
    if publisher is not None and (len(out.bars_1s) or final or wm != rt.published_wm):
        publisher.put(
            LiveItem(market, kind, out.bars_1s, wm, list(rt.session_cov), rt.published_wm)
        )
        rt.published_wm = wm
