"""The perps' open interest (polled over REST) and liquidations (watched on the websocket) of
one collector's exchange: both optional, both through the same paths as trades (open interest
through the store writer, liquidations through the bar intake as lbuy/lsell)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from feeder.ingest.models import Kind
from feeder.live.backoff import Backoff
from feeder.live.collector import Collector
from feeder.live.markets import LiveMarket
from feeder.live.spool import Batch
from feeder.live.writers import StoreWriter

log = logging.getLogger(__name__)

#: the intake of liquidation fills: (market, raw columns, receive ns, backfill?, liquidation?)
OnLiquidations = Callable[[LiveMarket, dict[str, np.ndarray], int, bool, bool], int]


async def oi_loop(
    col: Collector, writer: StoreWriter, counters: Counter[str], interval_s: float
) -> None:
    """Poll every perp's open interest (USD) every ``interval_s``; a failed poll is counted."""
    perps = [m for m in col.markets.values() if m.kind is Kind.PERP]
    if not perps or not col.entry.open_interest or not col.ex.has.get("fetchOpenInterest"):
        return
    while True:
        for market in perps:
            try:
                t, usd = await _oi_usd(col.ex, market)
                df = pd.DataFrame({"time": [t], "oi": [usd]})
                # through the writer: a store outage spools OI like bars, nothing lost
                writer.put(Batch(market.market, market.kind.value, "oi", df))
                counters["oi_points"] += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - OI is optional: log and go on
                counters["oi_errors"] += 1
                log.debug("open interest %s: %s", market.market, e)
        await asyncio.sleep(interval_s)


async def _oi_usd(ex: Any, market: LiveMarket) -> tuple[int, float]:
    """(epoch second, open interest in USD) of one perp."""
    oi = await ex.fetch_open_interest(market.symbol)
    value = oi.get("openInterestValue")
    amount = oi.get("openInterestAmount")
    if value is None and amount is not None:
        if market.spec.contract_size is not None:
            # inverse (Binance COIN-M): contracts of contract_size USD each
            value = float(amount) * market.spec.contract_size
        else:
            # linear: base units x mark price. Binance's openInterest has no price in it: ask
            # for the mark price (premiumIndex)
            mark = (oi.get("info") or {}).get("markPrice")
            if mark is None:
                mark = (await ex.fetch_mark_price(market.symbol)).get("markPrice")
            if mark is None:
                raise ValueError("no mark price to value the open interest")
            value = float(amount) * float(mark)
    if value is None or not np.isfinite(value) or value < 0:
        raise ValueError(f"no USD open interest in {oi.get('info')!r}")
    t = int((oi.get("timestamp") or time.time() * 1000) // 1000)
    return t, float(value)


async def liquidation_loop(
    col: Collector, on_trades: OnLiquidations, counters: Counter[str], backoff_max_s: float
) -> None:
    """Watch the perps' liquidations; a failed watch is retried after the feeder's ``Backoff``."""
    perps = [m for m in col.markets.values() if m.kind is Kind.PERP]
    if not perps or not col.entry.liquidations or not col.ex.has.get("watchLiquidationsForSymbols"):
        return
    by_symbol = {m.symbol: m for m in perps}
    backoff = Backoff(base=1.0, cap=backoff_max_s)
    while True:
        try:
            liqs = await col.ex.watch_liquidations_for_symbols(list(by_symbol))
            backoff.reset()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - liquidations are optional: retry
            counters["liquidation_errors"] += 1
            log.debug("liquidations %s: %s", col.name, e)
            await asyncio.sleep(backoff.next())
            continue
        # ccxt resolves the watch with the one liquidation that woke it; others handled in the
        # same socket read (a burst, several symbols) are only in its cache: take every entry
        # that is new since the last look
        cache = getattr(col.ex, "liquidations", None)
        if cache is not None and hasattr(cache, "getLimit"):
            new = cache.getLimit(None, None) or 0
            liqs = list(cache[-new:]) if new else []
        for lq in liqs:
            market = by_symbol.get(str(lq.get("symbol")))
            if market is None:
                continue
            raw = {
                "ts": np.array([lq.get("timestamp") or np.nan], np.float64),
                "price": np.array([lq.get("price") or np.nan], np.float64),
                "qty": np.array([lq.get("contracts") or np.nan], np.float64),
                "is_buyer_maker": np.array([lq.get("side") == "sell"]),
                "trade_id": np.array([int(lq.get("timestamp") or 0)], np.int64),
            }
            on_trades(market, raw, time.time_ns(), False, True)
