"""When the live strategy decides a candle: only once its flow is final, within a bound.

FreqTrade wakes one second after a candle closes and then calls ``bot_loop_start``, then
``analyze`` (once per new candle: ``process_only_new_candles``). The feeder closes a second only
``grace_s`` after it ends, so the first time a loop sees a new candle, :class:`LiveDecisions`
waits, up to ``decide_wait_s``, for every market's watermark to pass that candle's end. A candle
still not final then is decided incomplete (no entry), logged once and counted in
``late_candles``. A feed whose age passes ``staleness_limit_s`` blocks new entries; the change
(stale, fresh again) is logged and returned once, for the strategy to notify.
"""

from __future__ import annotations

import logging

import pandas as pd

from feeder.read.diagnostics import staleness_text
from feeder.read.flow_source import FlowSource
from feeder.settings import Settings

#: The strategy's own logger: these lines are its decisions (bench/signal_latency.py reads them).
log = logging.getLogger("SqueezeFlow")


class LiveDecisions:
    """The live strategy's per-candle bookkeeping: which candle each coin decided, late candles,
    and which feeds are stale."""

    def __init__(self, settings: Settings, timeframe_s: int) -> None:
        self.settings = settings
        self.timeframe_s = timeframe_s
        #: candles whose flow was not final within decide_wait_s (decided incomplete)
        self.late_candles = 0
        self.decided: dict[str, int] = {}  # coin -> end of the newest candle decided
        self.stale: dict[str, bool] = {}

    def before_analysis(self, flow_source: FlowSource, coins: list[str]) -> list[str]:
        """Wait (bounded) for the newest closed candle's flow, read it, count a late candle, and
        return the staleness changes to notify (each once)."""
        tf = self.timeframe_s
        now = int(flow_source.clock())
        closed = now - now % tf  # end of the newest closed candle
        new = [c for c in coins if self.decided.get(c, 0) < closed]
        fresh = [c for c in new if flow_source.age(c) <= self.settings.staleness_limit_s]
        t_wake = flow_source.clock()
        if fresh:
            flow_source.wait_final(fresh, closed, self.settings.decide_wait_s)
        t_final = flow_source.clock()
        flow_source.poll(coins)
        if new:
            # Where a live decision's time goes (bench/signal_latency.py reads this line).
            log.info(
                "SqueezeFlow: candle closing %s: wake +%.3fs, flow final +%.3fs, read +%.3fs "
                "after the close",
                pd.Timestamp(closed, unit="s", tz="UTC"),
                t_wake - closed,
                t_final - closed,
                flow_source.clock() - closed,
            )
        for coin in new:
            self.decided[coin] = closed
            flow = flow_source.live(coin)
            candle = pd.Timestamp(closed - tf, unit="s", tz="UTC")
            if candle in flow.index and not bool(flow.at[candle, "complete"]):
                self.late_candles += 1
                log.warning(
                    "SqueezeFlow %s: candle %s decided incomplete: its flow was not final %.1fs "
                    "after the close + FreqTrade's wake (late candles so far: %d)",
                    coin,
                    candle,
                    self.settings.decide_wait_s,
                    self.late_candles,
                )
        return self._staleness_changes(flow_source, coins)

    def _staleness_changes(self, flow_source: FlowSource, coins: list[str]) -> list[str]:
        changes = []
        for coin in coins:
            age = flow_source.age(coin)
            stale = age > self.settings.staleness_limit_s
            if stale != self.stale.get(coin, False):
                what = staleness_text(age, flow_source.clock())
                msg = (
                    f"SqueezeFlow {coin}: flow feed stale ({what}, limit "
                    f"{self.settings.staleness_limit_s:.0f}s): no new entries"
                    if stale
                    else f"SqueezeFlow {coin}: flow feed fresh again ({what})"
                )
                log.warning(msg)
                changes.append(msg)
            self.stale[coin] = stale
        return changes
