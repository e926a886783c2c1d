"""Open interest and liquidations in the live feeder: real ccxt pro against the replay server.

NOT RECORDED DATA. ../shared/data/market has no open-interest history and no ``forceOrder``
(liquidation) stream (see its MANIFEST.md). The open-interest series and the liquidation events
below are made up for these tests; the replay server serves them in Binance's formats
(``/fapi/v1/openInterest``, ``/dapi/v1/openInterest``, ``<symbol>@forceOrder``) next to the
recorded trades of 2024-08-08 23:54:15-23:59:59 UTC (USD-M BTCUSDT, COIN-M BTCUSD_PERP). The
mark price the feeder needs to value USD-M open interest comes from the server's
``premiumIndex``, which stands in the last recorded trade price.

Binance semantics checked: a ``forceOrder`` with side ``SELL`` is a long being liquidated (a
forced sell) and lands in ``lsell``; ``BUY`` (a short) in ``lbuy``. USD-M sizes are base units
(notional = average price x quantity), COIN-M sizes contracts of 100 USD (notional = contracts x
100). USD-M open interest is in BTC (stored in USD: x mark price), COIN-M in contracts (x 100).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pandas as pd
import pytest

from feeder.live.bars import EventClock
from feeder.live.runtime import Feeder
from feeder.read.flow import OI_MAX_AGE_S, load_flow
from feeder.replay.binance import ReplayServer
from feeder.replay.binance_inputs import Liquidation, OpenInterestPoint, RestFault
from feeder.replay.recording import MarketType
from feeder.settings import InfluxSettings, Settings, settings_from_dict
from feeder.stores import BarStore
from feeder.stores.parquet import ParquetStore
from tests.helpers import independent_bars, read_derived_trades
from tests.live.conftest import replay_factory

pytestmark = [pytest.mark.shared, pytest.mark.slow]

USDM, CM = "BINANCE_FUTURES:btcusdt", "BINANCE_FUTURES:btcusd_perp"
RAW = {
    USDM: "hftbacktest/raw/usdm/btcusdt_20240808.gz",
    CM: "hftbacktest/raw/cm/btcusd_perp_20240808.gz",
}
CSV = {
    USDM: "hftbacktest/derived_trades/usdm_btcusdt_20240808_trades.csv",
    CM: "hftbacktest/derived_trades/cm_btcusd_perp_20240808_trades.csv",
}
REPLAY_MARKET: dict[str, MarketType] = {USDM: "usdm", CM: "cm"}
SYMBOL = {USDM: "BTCUSDT", CM: "BTCUSD_PERP"}
CONTRACT_USD = {USDM: None, CM: 100.0}  # COIN-M BTCUSD_PERP: 100 USD per contract
START, END = 1_723_161_240, 1_723_161_660  # 23:54:00 .. 00:01:00 UTC

# --- made-up open interest (NOT recorded): a point every 30 s from 23:54:00 to 00:00:30. The
# recorded trades end at 23:59:59.8 (USD-M) and 00:00:00.719 (COIN-M), so the replay's exchange
# clock reaches the 00:00:00 point but never the 00:00:30 one: it must never be served or stored.
OI_TIMES_MS = [START * 1000 + 30_000 * k for k in range(14)]
OI_VALUES = {
    USDM: [f"{77_312.504 + 3.25 * k * (-1) ** k:.3f}" for k in range(14)],  # BTC
    CM: [str(6_471_234 + 517 * k * (-1) ** (k // 2)) for k in range(14)],  # contracts
}
OI_NEVER_REACHED_MS = OI_TIMES_MS[-1]


def oi_points() -> list[OpenInterestPoint]:
    return [
        OpenInterestPoint(REPLAY_MARKET[m], SYMBOL[m], t, v)
        for m in (USDM, CM)
        for t, v in zip(OI_TIMES_MS, OI_VALUES[m], strict=True)
    ]


# --- made-up liquidations (NOT recorded), at most one per symbol and second like Binance's
# snapshot stream. Two coincide with a recorded trade (same time, price, size and taker side):
# Binance prints a liquidation's fill on the trade stream too, and the feeder must count it in
# both vsell (the trade) and lsell (the liquidation), not drop one as a duplicate.
USDM_TRADE_TWIN = (1_723_161_398_847, 5_266_588_935, "61725.1", "0.033")  # time, id, p, q: SELL
CM_TRADE_TWIN = (1_723_161_478_749, 849_715_402, "61647.5", "2")  # SELL
CM_QUIET_SECOND = 1_723_161_301  # no COIN-M trade in this second: a liquidation-only bar

MAIN_LIQUIDATIONS = [
    Liquidation(
        "usdm",
        "BTCUSDT",
        "SELL",
        "0.014",
        "61690.0",
        1_723_161_300_250,
        avg_price="61702.4",
        event_ms=1_723_161_300_251,
    ),
    Liquidation(
        "usdm", "BTCUSDT", "SELL", USDM_TRADE_TWIN[3], USDM_TRADE_TWIN[2], USDM_TRADE_TWIN[0]
    ),
    Liquidation(
        "usdm", "BTCUSDT", "BUY", "1.250", "61800.0", 1_723_161_450_000, avg_price="61760.3"
    ),
    Liquidation(
        "usdm", "BTCUSDT", "BUY", "0.500", "61810.0", 1_723_161_451_200, avg_price="61771.9"
    ),
    Liquidation(
        "cm",
        "BTCUSD_PERP",
        "SELL",
        "25",
        "61650.0",
        CM_QUIET_SECOND * 1000 + 400,
        avg_price="61655.5",
    ),
    Liquidation("cm", "BTCUSD_PERP", "SELL", CM_TRADE_TWIN[3], CM_TRADE_TWIN[2], CM_TRADE_TWIN[0]),
    Liquidation(
        "cm", "BTCUSD_PERP", "BUY", "130", "61720.0", 1_723_161_520_300, avg_price="61712.1"
    ),
]


def burst_liquidations(n: int = 40) -> list[Liquidation]:
    """``n`` liquidations per market one second apart (23:56:00 on): replayed as fast as
    possible they reach the feeder back to back, many in one socket read."""
    out = []
    for k in range(n):
        side: Literal["BUY", "SELL"] = "SELL" if k % 3 else "BUY"
        t = 1_723_161_360_000 + 1000 * k + 37 * (k % 7)
        qty, price, avg = f"{0.001 * (k + 1):.3f}", f"{61_700 + k:.1f}", f"{61_700.5 + k:.1f}"
        out.append(Liquidation("usdm", "BTCUSDT", side, qty, price, t, avg_price=avg))
        out.append(Liquidation("cm", "BTCUSD_PERP", side, str(k + 1), price, t + 211))
    return out


# ---------------------------------------------------------------------------------------------
# running the feeder


def settings_for(tmp: Path, oi_interval_s: float) -> Settings:
    common = {"quiet_s": 20.0, "open_interest": True, "liquidations": True}
    doc: dict[str, Any] = {
        "coins": {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": [USDM, CM]}},
        "store": {"parquet_dir": str(tmp / "store")},
        "redis": {"enabled": False},
        "feeder": {
            "exchanges": [
                {"id": "binanceusdm", "kind": "perp", "symbols": ["BTC/USDT:USDT"], **common},
                {"id": "binancecoinm", "kind": "perp", "symbols": ["BTC/USD:BTC"], **common},
            ],
            "spool_dir": str(tmp / "spool"),
            "http_port": 0,
            "oi_interval_s": oi_interval_s,
        },
    }
    return settings_from_dict(doc, env=False)


def last_trade_id(market_data: Path, market: str) -> int:
    return int(read_derived_trades(market_data / CSV[market])["trade_id"].max())


@dataclass
class Run:
    feeder: Feeder
    server: ReplayServer
    store: BarStore
    settings: Settings
    liquidations: list[Liquidation]
    health: dict[str, Any]
    metrics: str
    oi_tasks_alive: bool


async def run_feeder(
    market_data: Path,
    tmp: Path,
    store: BarStore,
    *,
    speed: float,
    liquidations: list[Liquidation],
    rest_faults: tuple[RestFault, ...] = (),
    oi_interval_s: float = 0.1,
    timeout: float = 150.0,  # noqa: ASYNC109 - a test deadline
) -> Run:
    """The real feeder (USD-M + COIN-M perps, trades, liquidations, open interest) against the
    replay, started once every trade and liquidation stream is subscribed; stopped when every
    recorded trade and every liquidation is in and open interest was polled after the end."""
    settings = settings_for(tmp, oi_interval_s)
    server = ReplayServer(
        [(market_data / RAW[m], REPLAY_MARKET[m]) for m in (USDM, CM)],
        speed=speed,
        start_on_subscribe=None,
        open_interest=oi_points(),
        liquidations=liquidations,
        rest_faults=rest_faults,
    )
    await server.start()

    feeder = Feeder(
        settings,
        store=store,
        exchange_factory=replay_factory(server),
        clock=EventClock(),
        tick_s=0.05,
        redis=False,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(feeder.run(until=stop, install_signals=False))
    try:
        deadline = time.monotonic() + timeout
        streams = [
            ("btcusdt@trade", "usdm"),
            ("btcusd_perp@trade", "cm"),
            ("btcusdt@forceOrder", "usdm"),
            ("btcusd_perp@forceOrder", "cm"),
        ]
        while not all(server.subscriber_count(s, m) for s, m in streams):  # type: ignore[arg-type]
            assert not task.done(), "the feeder stopped before subscribing"
            assert time.monotonic() < deadline, f"not subscribed: {server.client_messages}"
            await asyncio.sleep(0.02)
        server.start_replay()
        # done when each market's collector has seen its last recorded trade with no hole
        last_ids = {m: last_trade_id(market_data, m) for m in (USDM, CM)}
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            states = [
                (col.state(m), m.market) for col in feeder.collectors for m in col.markets.values()
            ]
            if (
                server.done
                and all(st.last_id == last_ids[m] and st.hold_ms is None for st, m in states)
                and feeder.counters["liquidations"] >= len(liquidations)
            ):
                break
        await asyncio.sleep(4 * oi_interval_s + 0.5)  # open interest polled after the end
        async with httpx.AsyncClient() as client:
            base = f"http://127.0.0.1:{feeder.http_port}"
            health = (await client.get(f"{base}/health")).json()
            metrics = (await client.get(f"{base}/metrics")).text
        oi_tasks = [t for t in feeder._tasks if t.get_name().startswith("oi:")]
        oi_alive = len(oi_tasks) == 2 and not any(t.done() for t in oi_tasks)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await server.stop()
    return Run(feeder, server, store, settings, liquidations, health, metrics, oi_alive)


# ---------------------------------------------------------------------------------------------
# expectations


def trade_bars(market_data: Path, market: str) -> pd.DataFrame:
    """1 s bars of the recorded trades alone (pandas groupby, no liquidations)."""
    return independent_bars(read_derived_trades(market_data / CSV[market]), CONTRACT_USD[market])


def liquidation_flow(liqs: list[Liquidation], market: str) -> pd.DataFrame:
    """USD liquidated per second and side: USD-M ``ap`` x ``l`` (BTC), COIN-M ``l`` x 100."""
    rows = []
    for lq in liqs:
        if lq.symbol != SYMBOL[market]:
            continue
        qty, size = float(lq.last_qty or lq.qty), CONTRACT_USD[market]
        usd = qty * size if size else qty * float(lq.avg_price or lq.price)
        rows.append(
            {
                "time": lq.time_ms // 1000,
                "lbuy": usd * (lq.side == "BUY"),
                "lsell": usd * (lq.side == "SELL"),
            }
        )
    return pd.DataFrame(rows).groupby("time").sum()


def check_bars(run: Run, market_data: Path) -> None:
    """Trades exactly as recorded in v*/c*; liquidations only, and exactly, in l*."""
    for market in (USDM, CM):
        got = run.store.read_bars(market, START, END, "1s").set_index("time")
        want = trade_bars(market_data, market).set_index("time")
        liq = liquidation_flow(run.liquidations, market)
        assert len(liq) and liq.index.isin(got.index).all(), market
        # every recorded trade second is there; the only extra seconds are liquidation-only
        assert set(want.index) <= set(got.index), market
        extra = sorted(set(got.index) - set(want.index))
        assert set(extra) == set(liq.index) - set(want.index), (market, extra[:5])
        # liquidations are not taker volume or trade counts: those equal the recorded trades
        flows = ["vbuy", "vsell", "cbuy", "csell"]
        g = got[flows].reindex(want.index)
        pd.testing.assert_frame_equal(g, want[flows], check_exact=False, rtol=1e-12)
        assert (got.loc[extra, flows] == 0).all().all()
        # lbuy/lsell: exactly the liquidations, by side, in USD; zero in every other second
        expect_l = liq.reindex(got.index, fill_value=0.0)
        pd.testing.assert_frame_equal(
            got[["lbuy", "lsell"]],
            expect_l[["lbuy", "lsell"]],
            check_exact=False,
            rtol=1e-12,
            check_names=False,
        )
        # open/high/low/close of seconds without a liquidation are the recorded trades'
        quiet = want.index.difference(liq.index)
        ohlc = ["open", "high", "low", "close"]
        pd.testing.assert_frame_equal(
            got.loc[quiet, ohlc], want.loc[quiet, ohlc], check_exact=False, rtol=1e-12
        )


def served_marks(run: Run) -> set[float]:
    return {float(row["markPrice"]) for m, row in run.server.mark_prices_served if m == "usdm"}


def check_open_interest(run: Run, market_data: Path, *, all_points: bool) -> None:
    """Stored rows are the served points: same times, COIN-M contracts x 100 exactly, USD-M
    BTC x a mark price the server served (stand-in: a recorded trade price)."""
    recorded_prices = set(read_derived_trades(market_data / CSV[USDM])["price"].astype(float))
    marks = served_marks(run)
    assert marks and marks <= recorded_prices
    stored: dict[str, pd.DataFrame] = {}
    for market in (USDM, CM):
        oi = run.store.read_oi(market, START, END)
        stored[market] = oi
        supplied = dict(zip(OI_TIMES_MS, OI_VALUES[market], strict=True))
        times_ms = [int(t) * 1000 for t in oi["time"]]
        assert oi["time"].is_monotonic_increasing and oi["time"].is_unique
        assert set(times_ms) <= set(supplied), market  # no invented times
        assert OI_NEVER_REACHED_MS not in times_ms  # never served before its time
        reached = [t for t in OI_TIMES_MS if t != OI_NEVER_REACHED_MS]
        assert reached[-1] in times_ms, market  # polled after the end: the last reached point
        if all_points:
            assert times_ms == reached, market
        for t_ms, value in zip(times_ms, oi["oi"], strict=True):
            amount = float(supplied[t_ms])
            size = CONTRACT_USD[market]
            if size:
                assert value == pytest.approx(amount * size, rel=1e-12)
            else:
                assert any(math.isclose(value, amount * p, rel_tol=1e-12) for p in marks), (
                    t_ms,
                    value,
                    amount,
                )
    # the strategy's read path: summed perp open interest as observed by each candle's close
    # (each market's last value before it, at most OI_MAX_AGE_S old)
    for tf, step in (("30s", 30), ("1m", 60)):
        flow = load_flow(run.store, run.settings, "BTC", START, END, tf)
        opens = flow.index.as_unit("s").asi8
        for i, t in enumerate(opens):
            per = []
            for market in (USDM, CM):
                oi = stored[market]
                end = t + step
                seen = oi[(oi["time"] < end) & (oi["time"] >= end - max(step, OI_MAX_AGE_S))]
                per.append(seen["oi"].iloc[-1] if len(seen) else np.nan)
            want = per[0] + per[1]
            if np.isnan(want):
                assert np.isnan(flow["oi"].iloc[i]), (tf, t)
            else:
                assert flow["oi"].iloc[i] == pytest.approx(want, rel=1e-12), (tf, t)
        if all_points:  # both points from 23:54:00 on, carried to the end of the range
            first = max(int(oi["time"].iloc[0]) for oi in stored.values())
            assert flow["oi"].notna().sum() == (opens + step > first).sum(), tf
        else:
            assert flow["oi"].notna().sum() >= 1, tf


def check_counters(run: Run) -> None:
    c, n = run.feeder.counters, len(run.liquidations)
    assert c["liquidations"] == n
    assert run.server.liquidations_sent == n
    assert c["liquidation_errors"] == 0 and c["task_deaths"] == 0
    assert c["oi_points"] >= 2 * 13 and run.oi_tasks_alive
    rejects = run.feeder.rejects.counts
    assert not {"price_invalid", "qty_invalid", "late_dropped"} & set(rejects), rejects
    # /health (served over HTTP) carries the same counters
    hc = run.health["counters"]
    assert hc["liquidations"] == n and hc["oi_points"] >= 26
    assert set(run.health["markets"]) == {USDM, CM}
    # /metrics: trades counted by path; liquidations are not trades
    live = re.search(r'^squeezeflow_trades_total\{path="live"\} (\d+)$', run.metrics, re.M)
    assert live is not None and int(live.group(1)) == c["trades_live"] > 0


# ---------------------------------------------------------------------------------------------
# the paced run: USD-M + COIN-M, OI every 30 s of recorded time, liquidations among the trades


@pytest.fixture(scope="module", params=["parquet", "influx"])
def paced(request, market_data, tmp_path_factory) -> Any:
    tmp = tmp_path_factory.mktemp(f"oi_liq_{request.param}")
    db = None
    if request.param == "parquet":
        store: BarStore = ParquetStore(tmp / "store")
    else:
        from feeder.stores.influx import InfluxStore

        url = request.getfixturevalue("influx_url")
        db = f"sf_test_{uuid.uuid4().hex[:10]}"
        store = InfluxStore(InfluxSettings(url=url, database=db))
        store.setup()
    # 20x: ~17 s for 5 m 45 s; 30 s of recorded time (one OI point) is 1.5 s, 15 polls
    run = asyncio.run(
        run_feeder(market_data, tmp, store, speed=20.0, liquidations=MAIN_LIQUIDATIONS)
    )
    yield run
    if db is not None:
        httpx.post(f"{url}/query", params={"q": f'DROP DATABASE "{db}"'}, timeout=30)


def test_fixture_twins_are_recorded_trades(market_data):
    """The two liquidations that coincide with a recorded trade do (guards the fixture)."""
    for market, (t, tid, price, qty) in ((USDM, USDM_TRADE_TWIN), (CM, CM_TRADE_TWIN)):
        df = read_derived_trades(market_data / CSV[market])
        row = df[df["trade_id"] == tid].iloc[0]
        assert (row["trade_time_ms"], row["price"], row["qty"]) == (t, float(price), float(qty))
        assert row["is_buyer_maker"].lower() == "true"  # taker SELL, like the forced sell
    cm = read_derived_trades(market_data / CSV[CM])
    assert not (cm["trade_time_ms"] // 1000 == CM_QUIET_SECOND).any()


def test_open_interest_is_stored_with_the_served_values_and_times(paced, market_data):
    check_open_interest(paced, market_data, all_points=True)
    # what the server answered: Binance's formats, times never ahead of the replay clock
    served = paced.server.open_interest_served
    usdm = [body for m, body in served if m == "usdm"]
    cm = [body for m, body in served if m == "cm"]
    assert usdm and cm
    assert set(usdm[0]) == {"openInterest", "symbol", "time"}
    assert set(cm[0]) == {"symbol", "pair", "openInterest", "contractType", "time"}
    assert cm[0]["pair"] == "BTCUSD" and cm[0]["contractType"] == "PERPETUAL"
    assert all(b["time"] != OI_NEVER_REACHED_MS for b in usdm + cm)
    assert not paced.server.unserved


def test_open_interest_reaches_influx_points(paced):
    if paced.store.name != "influx":
        pytest.skip("InfluxDB variant only")
    for market in (USDM, CM):
        df = paced.store.query(
            f"SELECT count(oi) FROM open_interest WHERE market = '{market}'", chunked=False
        )
        assert int(df["count"].iloc[0]) == 13  # one point per served time, rewrites merged


def test_liquidations_land_in_lbuy_lsell_only(paced, market_data):
    check_bars(paced, market_data)
    usdm = paced.store.read_bars(USDM, START, END, "1s").set_index("time")
    # the twin: the recorded trade in vsell and the forced sell in lsell, both there
    t, _tid, price, qty = USDM_TRADE_TWIN
    assert usdm.loc[t // 1000, "lsell"] == pytest.approx(float(price) * float(qty), rel=1e-12)
    assert usdm.loc[t // 1000, "vsell"] >= float(price) * float(qty)
    cm = paced.store.read_bars(CM, START, END, "1s").set_index("time")
    assert cm.loc[CM_QUIET_SECOND, "lsell"] == 2500.0  # 25 contracts x 100 USD
    assert cm.loc[CM_QUIET_SECOND, ["vbuy", "vsell", "cbuy", "csell"]].sum() == 0
    # the 1-minute rollups carry the same liquidation totals
    for market in (USDM, CM):
        m1 = paced.store.read_bars(market, START, END, "1m")
        liq = liquidation_flow(paced.liquidations, market)
        minutes = liq.groupby(liq.index // 60 * 60).sum()
        got = m1.set_index("time")[["lbuy", "lsell"]].reindex(minutes.index)
        pd.testing.assert_frame_equal(
            got, minutes, check_exact=False, rtol=1e-12, check_names=False
        )


def test_counters_health_and_metrics(paced):
    check_counters(paced)
    assert paced.feeder.counters["oi_errors"] == 0


def test_liquidations_do_not_move_the_price_of_a_second(paced, market_data):
    for market in (USDM, CM):
        got = paced.store.read_bars(market, START, END, "1s").set_index("time")
        want = trade_bars(market_data, market).set_index("time")
        ohlc = ["open", "high", "low", "close"]
        both = want.index.intersection(got.index)
        pd.testing.assert_frame_equal(
            got.loc[both, ohlc], want.loc[both, ohlc], check_exact=False, rtol=1e-12
        )


def test_metrics_export_liquidations_and_open_interest(paced):
    def total(pattern: str) -> int:
        lines = re.findall(
            rf"^squeezeflow_\w*{pattern}\w*(?:\{{[^}}]*\}})? (\d+)$", paced.metrics, re.M
        )
        assert lines, pattern
        return sum(int(v) for v in lines)

    assert total("liquidation") == len(paced.liquidations)
    assert total("open_interest") >= 26


# ---------------------------------------------------------------------------------------------
# as fast as possible: liquidation bursts, and open-interest requests that fail

FAULTS = (
    RestFault("openInterest", market="usdm", times=3),  # HTTP 500, Binance -1001
    RestFault(
        "openInterest",
        market="usdm",
        status=429,
        code=-1003,
        times=1,
        msg="Too many requests; current limit is 2400 requests per minute.",
    ),
    RestFault("premiumIndex", market="usdm", status=503, code=-1001, times=2),
    RestFault(
        "openInterest",
        market="cm",
        status=502,
        times=2,
        body="<html><body><h1>502 Bad Gateway</h1></body></html>",
    ),
    RestFault("openInterest", market="cm", status=400, code=-1121, msg="Invalid symbol.", times=1),
)


def test_bursts_and_failing_open_interest_requests(market_data, tmp_path):
    store = ParquetStore(tmp_path / "store")
    liqs = burst_liquidations()
    run = asyncio.run(
        run_feeder(
            market_data,
            tmp_path,
            store,
            speed=0,
            liquidations=liqs,
            rest_faults=FAULTS,
            oi_interval_s=0.05,
        )
    )
    # every failed request was counted once and the pollers went on to store points
    n_faults = sum(f.times for f in FAULTS)
    assert len(run.server.rest_faults_served) == n_faults
    assert run.feeder.counters["oi_errors"] == n_faults
    assert run.health["counters"]["oi_errors"] == n_faults
    check_open_interest(run, market_data, all_points=False)
    check_counters(run)
    # 80 liquidations sent back to back, none lost
    check_bars(run, market_data)
