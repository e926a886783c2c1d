"""The InfluxDB read path of ``load_flow`` (issue 9 §5): every timeframe reads each market's bars
with one query, all markets in flight together, asking only for the fields the flow uses; the
result is the Parquet store's, field for field (real InfluxDB started by scripts/test)."""

from __future__ import annotations

import re
import threading

import pandas as pd
import pytest

from feeder.ingest.aggregate import rollup
from feeder.read.flow import load_flow
from feeder.settings import InfluxSettings
from feeder.stores.influx import InfluxStore
from feeder.stores.parquet import ParquetStore
from tests import store_cases as cases

pytestmark = pytest.mark.backend


class RecordingInflux(InfluxStore):
    """Records each bar query's selected fields and the thread it ran on."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.bar_queries: list[tuple[str, list[str], str]] = []

    def _request(self, method, path, **kw):
        q = (kw.get("data") or {}).get("q", "") if path == "/query" else ""
        m = re.match(r"SELECT (.*?) FROM .*\"(trades_1[sm])\" WHERE", q)
        if m:
            fields = re.findall(r'"(\w+)"', m.group(1))
            self.bar_queries.append((m.group(2), fields, threading.current_thread().name))
        return super()._request(method, path, **kw)


@pytest.fixture
def influx(influx_db):
    url, db = influx_db
    s = RecordingInflux(InfluxSettings(url=url, database=db, max_retries=1))
    s.setup()
    yield s
    s.close()


@pytest.mark.parametrize("tf", ["1s", "15s", "1m", "5m"])
def test_flow_reads_markets_concurrently_with_only_the_fields_it_uses(influx, tmp_path, tf):
    cases.fill(influx, seconds=1800)
    parquet = ParquetStore(tmp_path)
    cases.fill(parquet, seconds=1800)
    influx.bar_queries.clear()
    end = cases.DAY0 + 1800
    got = load_flow(influx, cases.SETTINGS, "BTC", cases.DAY0, end, tf, per_market=True)
    want = load_flow(parquet, cases.SETTINGS, "BTC", cases.DAY0, end, tf, per_market=True)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)
    assert got["complete"].all() and len(got) == 1800 // pd.Timedelta(tf).seconds
    markets = len(cases.SETTINGS.markets("BTC"))
    queries = influx.bar_queries
    # one bar query per market, nothing read twice; candles of several minutes add one for the
    # close (the last minute with taker trades, as on Parquet)
    assert len(queries) == markets * (2 if tf == "5m" else 1), queries
    assert {q[0] for q in queries} == {"trades_1m" if tf.endswith("m") else "trades_1s"}
    for _, fields, thread in queries:
        assert not {"open", "high", "low"} & set(fields), fields  # never used by the flow
        assert thread.startswith("influx-read"), thread  # in flight together, off the caller


def test_a_candle_whose_last_minute_has_only_liquidations_closes_alike(influx, tmp_path):
    """A 5m candle's close is its last taker price, on InfluxDB (summed server-side from 1m
    rows) as on Parquet and as live builds it from seconds: a minute of liquidations only (no
    taker trade) does not set it."""
    parquet = ParquetStore(tmp_path)
    for store in (influx, parquet):
        bars = cases.fill(store, seconds=1800)
    m = cases.SETTINGS.markets("BTC")[0]
    b = bars[m.id]
    last_minute = (b["time"] >= cases.DAY0 + 240) & (b["time"] < cases.DAY0 + 300)
    liq = b[last_minute].copy()
    liq[["vbuy", "vsell", "cbuy", "csell"]] = 0.0
    liq["lbuy"], liq["close"] = 7000.0, 1.0  # a liquidation print far from the taker price
    for store in (influx, parquet):
        store.write_bars(m.id, m.kind.value, liq, "1s")
        store.write_bars(m.id, m.kind.value, rollup(liq, 60), "1m")
    end = cases.DAY0 + 1800
    got = load_flow(influx, cases.SETTINGS, "BTC", cases.DAY0, end, "5m", per_market=True)
    want = load_flow(parquet, cases.SETTINGS, "BTC", cases.DAY0, end, "5m", per_market=True)
    assert want[f"{m.id}|close"].iloc[0] == b.loc[b["time"] < cases.DAY0 + 240, "close"].iloc[-1]
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)
