"""The strategy's live path (dry-run) against the real Redis: when a candle is decided, and the
staleness guard. FreqTrade's worker calls ``bot_loop_start`` then ``analyze`` one second after a
candle closes (freqtrade/worker.py, ``timeframe_offset=1``); these tests call them the same way.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest
from freqtrade.enums import RunMode
from SqueezeFlow import SqueezeFlow

from feeder.read.flow_source import FlowSource
from feeder.stores.redis_stream import RedisBarStream
from tests.conftest import REPO

pytestmark = pytest.mark.backend


class BotDP:
    """What FreqTrade's DataProvider gives the strategy in dry-run: run mode, whitelist, msgs."""

    runmode = RunMode.DRY_RUN

    def __init__(self) -> None:
        self.messages: list[str] = []

    def current_whitelist(self) -> list[str]:
        return ["BTC/USDT:USDT"]

    def send_msg(self, msg: str, always_send: bool = False) -> None:
        self.messages.append(msg)


def live_strategy(store_dir, redis_url: str, clock, timeframe: str = "5m", **sf) -> SqueezeFlow:
    cfg = json.loads((REPO / "config.json").read_text())
    cfg["timeframe"] = timeframe
    cfg["squeezeflow"]["store"]["parquet_dir"] = str(store_dir)
    cfg["squeezeflow"]["redis"] = {"url": redis_url, "prefix": f"sfstrat{uuid.uuid4().hex[:8]}"}
    cfg["squeezeflow"].update(sf)
    strat = SqueezeFlow(cfg)
    strat.dp = BotDP()  # type: ignore[assignment]
    strat.flow = FlowSource(strat.settings, timeframe, store=strat.flow.store, clock=clock)
    return strat


def publish_state(strat: SqueezeFlow, watermark: int, coverage_from: int) -> None:
    pub = RedisBarStream(strat.settings.redis.url, prefix=strat.settings.redis.prefix)
    for m in strat.settings.markets("BTC"):
        pub.publish(
            m.id,
            m.kind.value,
            pd.DataFrame(columns=["time"]),
            watermark=watermark,
            coverage=[[coverage_from, watermark]],
        )


def test_the_newest_candle_is_decided_once_its_flow_is_final(planted, redis_url, caplog):
    """The feeder closes the candle's last second only ``grace_s`` after it: the strategy waits
    for it (bounded by ``decide_wait_s``) instead of deciding on a candle with missing flow."""
    close = planted.t0 + 3 * 86_400  # a candle close inside the planted store's coverage
    now = close + 1  # FreqTrade's wake: close + 1 s
    strat = live_strategy(planted.store.root, redis_url, lambda: now, decide_wait_s=10)
    # The store (the feeder's writer) has everything up to now; Redis is the live path.
    strat.flow.catch_up("BTC", strat.startup_candle_count + 10)
    strat.flow._store_cov.clear()  # the store lags: only what Redis says is final counts live
    strat.flow._seconds = {m: s[s["time"] < close - 300] for m, s in strat.flow._seconds.items()}
    strat.flow._boundary["BTC"] = close - 300
    publish_state(strat, close - 2, close - 3600)  # at the wake: the last 2 s not yet final
    # the feeder closes them 1.2 s later (grace)
    later = threading.Timer(1.2, publish_state, (strat, close + 1, close - 3600))
    later.start()
    strat.bot_loop_start(current_time=datetime.fromtimestamp(now, UTC))
    later.join()
    flow = strat.flow.live("BTC")
    candle = pd.Timestamp(close - 300, unit="s", tz="UTC")
    assert flow.loc[candle, "complete"]
    assert strat.late_candles == 0

    # The feeder never closes the next candle in time: it is decided incomplete, counted, and
    # logged once, however many bot loops see it.
    strat.settings = strat.settings.model_copy(update={"decide_wait_s": 0.5})
    now = close + 301
    publish_state(strat, close + 298, close - 3600)  # fresh (3 s old), but short of the close
    with caplog.at_level(logging.WARNING):
        strat.bot_loop_start(current_time=datetime.fromtimestamp(now, UTC))
        strat.bot_loop_start(current_time=datetime.fromtimestamp(now + 5, UTC))
    assert not strat.flow.live("BTC").loc[pd.Timestamp(close, unit="s", tz="UTC"), "complete"]
    assert strat.late_candles == 1
    late = [r for r in caplog.records if "decided incomplete" in r.getMessage()]
    assert len(late) == 1


def test_a_stale_feed_blocks_an_entry_the_same_candle_takes_when_fresh(planted, redis_url):
    """A candle of the planted scenario that enters in dry-run while the feed is fresh does not
    enter once the feed is older than ``staleness_limit_s``: the guard alone makes the
    difference (everything else, the flow included, is the same)."""
    bt = json.loads((REPO / "config.json").read_text())
    bt["squeezeflow"]["store"]["parquet_dir"] = str(planted.store.root)
    candles = planted.frame("5m")[["date", "open", "high", "low", "close", "volume"]]
    full = SqueezeFlow(bt).analyze_ticker(candles.copy(), {"pair": "BTC/USDT:USDT"})
    entries = full.index[(full["enter_long"] == 1) | (full["enter_short"] == 1)]
    assert len(entries) > 0
    clock = [0.0]
    strat = live_strategy(planted.store.root, redis_url, lambda: clock[0])
    n = strat.startup_candle_count
    for i in entries:
        if i < n:
            continue
        close = int(candles.loc[i, "date"].timestamp()) + 300
        clock[0] = close + 1
        window = candles.iloc[i + 1 - n : i + 1].reset_index(drop=True)
        strat.flow = FlowSource(
            strat.settings, "5m", store=strat.flow.store, clock=lambda: clock[0]
        )
        strat.decisions.decided.clear()
        strat._computed_with.clear()
        publish_state(strat, close + 1, close - 3600)  # fresh: final past the close
        strat.bot_start()
        strat.bot_loop_start(current_time=datetime.fromtimestamp(clock[0], UTC))
        fresh = strat.analyze_ticker(window.copy(), {"pair": "BTC/USDT:USDT"})
        if fresh[["enter_long", "enter_short"]].iloc[-1].sum() == 1:
            break
    else:
        pytest.fail("no planted entry is taken live with a fresh feed")
    assert strat.dp.messages == []  # type: ignore[attr-defined]
    assert fresh["cvd_ok"].iloc[-1]
    # The feeder stops: its newest final bar is now two minutes old, the flow is unchanged.
    publish_state(strat, close - 120, close - 3600)
    strat._computed_with.clear()
    strat.bot_loop_start(current_time=datetime.fromtimestamp(clock[0], UTC))
    stale = strat.analyze_ticker(window.copy(), {"pair": "BTC/USDT:USDT"})
    assert stale["cvd_ok"].iloc[-1]  # the candle's flow is still complete (from the store)
    assert stale[["enter_long", "enter_short"]].iloc[-1].sum() == 0
    assert any("stale" in m for m in strat.dp.messages)  # type: ignore[attr-defined]
