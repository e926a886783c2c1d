"""The strategy's live data path against the real Redis: catch-up, stream, fallback, staleness."""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pandas as pd
import pytest

from feeder.ingest.aggregate import rollup
from feeder.read.flow import load_flow
from feeder.read.flow_source import FLOW_COLUMNS, FlowSource
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from feeder.stores.redis_stream import RedisBarStream
from tests.store_cases import make_bars

pytestmark = pytest.mark.backend

T0 = 1_704_067_200
BOUNDARY = T0 + 3600  # the store is complete until here; later bars only exist on Redis
MARKETS = {"spot": ["BINANCE:btcusdt"], "perp": ["BINANCE_FUTURES:btcusdt"]}


def ts(t: int) -> pd.Timestamp:
    return pd.Timestamp(t, unit="s", tz="UTC")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def live(tmp_path, redis_url):
    prefix = f"sflive{uuid.uuid4().hex[:8]}"
    settings = settings_from_dict(
        {
            "coins": {"BTC": MARKETS},
            "redis": {"url": redis_url, "prefix": prefix},
            "staleness_limit_s": 30,
        },
        env=False,
    )
    store = ParquetStore(tmp_path)
    bars = {}
    for i, m in enumerate(settings.markets("BTC")):
        b = make_bars(T0, 2 * 3600, seed=i)
        bars[m.id] = b
        old = b[b["time"] < BOUNDARY]
        store.write_bars(m.id, m.kind.value, old, "1s")
        store.write_bars(m.id, m.kind.value, rollup(old, 60), "1m")
        store.add_coverage(m.id, T0, BOUNDARY)
    clock = Clock(BOUNDARY + 900 + 0.5)
    src = FlowSource(settings, "5m", store=store, clock=clock)
    pub = RedisBarStream(redis_url, prefix=prefix)
    return src, pub, bars, clock, settings


def _publish(pub, settings, bars, until):
    for m in settings.markets("BTC"):
        b = bars[m.id]
        pub.publish(
            m.id,
            m.kind.value,
            b[(b["time"] >= BOUNDARY) & (b["time"] < until)],
            watermark=until,
            coverage=[[BOUNDARY - 60, until]],
        )


def test_catch_up_then_stream_bars_fill_the_candles_exactly(live):
    src, pub, bars, clock, settings = live
    flow = src.catch_up("BTC", 24)
    stored = (flow.index >= ts(T0)) & (flow.index < ts(BOUNDARY))
    assert flow["complete"].to_numpy().tolist() == stored.tolist()
    _publish(pub, settings, bars, BOUNDARY + 600)
    src.poll(["BTC"])
    f = src.live("BTC")
    after = f[f.index >= ts(BOUNDARY)]
    assert after["complete"].tolist() == [True, True, False, False]  # watermark at +600 s
    b = bars["BINANCE:btcusdt"]
    want = b[(b["time"] >= BOUNDARY) & (b["time"] < BOUNDARY + 300)]["vbuy"].sum()
    assert after["spot_vbuy"].iloc[0] == pytest.approx(want)
    assert np.isnan(after["spot_vbuy"].iloc[-1])  # not covered, nothing arrived: NaN, not 0
    assert f.loc[ts(T0) : ts(BOUNDARY - 300), "complete"].all()
    assert not f.loc[: ts(T0 - 300), "complete"].any()  # before the data: a gap
    assert src.age("BTC") == pytest.approx(clock.t - (BOUNDARY + 600))


def test_a_corrected_bar_on_the_stream_replaces_the_old_one(live):
    src, pub, bars, clock, settings = live
    src.catch_up("BTC", 24)
    _publish(pub, settings, bars, BOUNDARY + 600)
    src.poll(["BTC"])
    first = src.live("BTC").loc[ts(BOUNDARY), "spot_vbuy"]
    b = bars["BINANCE:btcusdt"]
    row = b[b["time"] >= BOUNDARY].iloc[[0]].copy()
    row["vbuy"] += 1000.0
    pub.publish("BINANCE:btcusdt", "spot", row, watermark=BOUNDARY + 600)
    src.poll(["BTC"])
    assert src.live("BTC").loc[ts(BOUNDARY), "spot_vbuy"] == pytest.approx(first + 1000.0)


def test_staleness_is_the_age_of_the_slowest_market(live):
    src, pub, bars, clock, settings = live
    src.catch_up("BTC", 24)
    _publish(pub, settings, bars, BOUNDARY + 900)
    pub.publish(
        "BINANCE:btcusdt", "spot", bars["BINANCE:btcusdt"].iloc[:0], watermark=BOUNDARY + 300
    )
    src.poll(["BTC"])
    assert src.age("BTC") == pytest.approx(clock.t - (BOUNDARY + 300))
    assert src.age("BTC") > settings.staleness_limit_s


def test_redis_down_falls_back_to_the_store_and_says_so_once(live, caplog):
    src, pub, bars, clock, settings = live
    down = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": "redis://127.0.0.1:9/0"})}
    )
    src2 = FlowSource(down, "5m", store=src.store, clock=clock)
    src2.catch_up("BTC", 24)
    with caplog.at_level(logging.WARNING, logger="feeder.read.flow_source"):
        src2.poll(["BTC"])
        src2.poll(["BTC"])
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1
    assert src2.source == "store"
    assert src2.live("BTC").loc[ts(T0) : ts(BOUNDARY - 300), "complete"].all()
    assert src2.age("BTC") == pytest.approx(clock.t - BOUNDARY)  # from the store's coverage


def test_live_candles_carry_the_open_interest_the_feeder_stored(live):
    src, pub, bars, clock, settings = live
    src.catch_up("BTC", 24)
    perp = [m for m in settings.markets("BTC") if m.kind.value == "perp"][0]
    t = np.arange(T0 + 10, BOUNDARY + 900, 420, dtype=np.int64)  # polled every 7 minutes
    src.store.write_oi(perp.id, pd.DataFrame({"time": t, "oi": 5e8 + t - T0}))
    _publish(pub, settings, bars, BOUNDARY + 600)
    src.poll(["BTC"])
    f = src.live("BTC")
    want = load_flow(src.store, settings, "BTC", T0, BOUNDARY + 900, "5m")["oi"]
    after = f.loc[(f.index >= ts(BOUNDARY)) & (f.index < ts(BOUNDARY + 900)), "oi"]
    assert after.notna().all()
    assert after.tolist() == want[after.index].tolist()
    # as observed by each candle's close: the newest poll before BOUNDARY + 300 is at T0 + 3790
    assert after.iloc[0] == 5e8 + 3790


def test_a_long_uptime_keeps_the_live_read_bounded_and_equal_to_the_store(tmp_path, redis_url):
    """Three hours of live polls: candles whose flow is final (complete, and older than the
    feeder's correction window) move behind the boundary, so each poll rebuilds only the newest
    candles from a bounded 1-second buffer; the candles equal ``load_flow`` on the same bars
    stored, field by field (before, every poll rebuilt everything since catch-up, and the buffer
    was cut at 200,000 rows per market, about 2.3 days, under candles still rebuilt from it)."""
    hours = 3
    settings = settings_from_dict(
        {
            "coins": {"BTC": MARKETS},
            "redis": {"url": redis_url, "prefix": f"sflong{uuid.uuid4().hex[:8]}"},
            "staleness_limit_s": 30,
        },
        env=False,
    )
    store, ref = ParquetStore(tmp_path / "s"), ParquetStore(tmp_path / "ref")
    bars = {}
    for i, m in enumerate(settings.markets("BTC")):
        b = make_bars(T0, (1 + hours) * 3600, seed=i)
        bars[m.id] = b
        for st, part in ((store, b[b["time"] < BOUNDARY]), (ref, b)):
            st.write_bars(m.id, m.kind.value, part, "1s")
            st.write_bars(m.id, m.kind.value, rollup(part, 60), "1m")
        store.add_coverage(m.id, T0, BOUNDARY)
        ref.add_coverage(m.id, T0, T0 + (1 + hours) * 3600)
    clock = Clock(BOUNDARY + 0.5)
    src = FlowSource(settings, "5m", store=store, clock=clock)
    src.catch_up("BTC", 24)
    pub = RedisBarStream(redis_url, prefix=settings.redis.prefix)
    held = []
    for step in range(1, hours * 12 + 1):
        until = BOUNDARY + 300 * step
        for m in settings.markets("BTC"):
            b = bars[m.id]
            new = b[(b["time"] >= until - 300) & (b["time"] < until)]
            pub.publish(m.id, m.kind.value, new, watermark=until, coverage=[[BOUNDARY, until]])
        clock.t = until + 1.5
        src.poll(["BTC"])
        held.append(max(len(src._seconds[m.id]) for m in settings.markets("BTC")))
    live = src.live("BTC")
    cols = [*FLOW_COLUMNS, "oi", "complete"]
    want = load_flow(ref, settings, "BTC", live.index[0], live.index[-1] + pd.Timedelta("5m"), "5m")
    pd.testing.assert_frame_equal(live[cols], want[cols], check_exact=False, rtol=1e-12)
    assert live.loc[ts(BOUNDARY) : ts(BOUNDARY + hours * 3600 - 300), "complete"].all()
    # bounded: the seconds of the correction window and the newest candles, not three hours
    window = settings.feeder.retain_s + 3 * 300
    assert held[-1] <= window, held
    assert max(held[len(held) // 2 :]) <= window, held
