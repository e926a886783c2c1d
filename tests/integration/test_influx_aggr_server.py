"""Databases aggr-server wrote: it leaves a field out when it is zero (flows only when non-zero,
OHLC only when the second had a normal trade). A missing flow field is a zero, never NaN."""

from __future__ import annotations

import json

import numpy as np
import pytest

from feeder.read.flow import load_flow
from feeder.settings import InfluxSettings, settings_from_dict
from feeder.stores.influx import InfluxStore
from tests.store_cases import DAY0

pytestmark = pytest.mark.backend

M = "BINANCE_FUTURES:btcusdt"


@pytest.fixture
def store(influx_db):
    url, db = influx_db
    s = InfluxStore(InfluxSettings(url=url, database=db, max_retries=1))
    s.setup()
    yield s
    s.close()


def _aggr_server_points(store: InfluxStore) -> None:
    """Sixty seconds the way aggr-server writes them: a buy-only second, a sell-only second, a
    liquidation-only second (no OHLC, no taker flow) and their 1-minute rollup."""
    lines = []
    for i in range(0, 60, 3):
        t = DAY0 + i
        lines.append(
            f"trades_1s,market={M} open=100,high=101,low=99,close=100.5,vbuy=1000,cbuy=2 {t}"
        )
        lines.append(
            f"trades_1s,market={M} open=100,high=100,low=100,close=100,vsell=500,csell=1 {t + 1}"
        )
        lines.append(f"trades_1s,market={M} lsell=250 {t + 2}")
    store.write_lines(lines, rp="aggr_1s")
    minute = (
        f"trades_1m,market={M} open=100,high=101,low=99,close=100,vbuy=20000,vsell=10000,"
        f"cbuy=40,csell=20,lsell=5000 {DAY0}"
    )
    store.write_lines([minute], rp="aggr_1m")


def test_fields_aggr_server_leaves_out_read_as_zero_flows(store):
    _aggr_server_points(store)
    bars = store.read_bars(M, DAY0, DAY0 + 60, "1s")
    assert len(bars) == 60
    flows = bars[["vbuy", "vsell", "cbuy", "csell", "lbuy", "lsell"]].to_numpy()
    assert not np.isnan(flows).any()
    assert bars["vbuy"].sum() == 20_000 and bars["lsell"].sum() == 5_000
    liq_only = bars[bars["lsell"] > 0]
    assert liq_only["close"].isna().all()  # no trade price that second: still no price
    coins = {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": [M]}}
    settings = settings_from_dict({"coins": coins}, env=False)
    flow = load_flow(store, settings, "BTC", DAY0, DAY0 + 60, "1s", per_market=True)
    assert flow[f"{M}|complete"].all() and not flow[f"{M}|vbuy"].isna().any()
    assert flow[f"{M}|vbuy"].sum() == 20_000 and flow[f"{M}|lsell"].sum() == 5_000


def test_status_and_load_flow_infer_the_same_coverage_from_the_1m_bars(store):
    from feeder.tools.status import store_status

    _aggr_server_points(store)
    coins = {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": [M]}}
    settings = settings_from_dict({"coins": coins}, env=False)
    row = {r.market: r for r in store_status(store, settings)}[M]
    assert row.coverage_inferred
    assert row.coverage == [("2024-01-01 00:00:00", "2024-01-01 00:01:00")]
    assert row.covered_hours == round(60 / 3600, 3)
    flow = load_flow(store, settings, "BTC", DAY0 - 60, DAY0 + 120, "1m", per_market=True)
    assert flow[f"{M}|complete"].tolist() == [False, True, False]


def test_setup_influx_leaves_an_existing_retention_policy_as_it_is_unless_asked(
    store, tmp_path, capsys
):
    from feeder.tools.cli import main

    db = store.s.database
    store.execute(
        f'ALTER RETENTION POLICY "aggr_1s" ON "{db}" DURATION 1h23m REPLICATION 1 SHARD DURATION 1h'
    )
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "squeezeflow": {
                    "store": {"backend": "influx", "influx": {"url": store.s.url, "database": db}}
                }
            }
        )
    )

    def duration() -> str:
        return {r[0]: r[1] for r in store.show(f'SHOW RETENTION POLICIES ON "{db}"')}["aggr_1s"]

    assert main(["--config", str(cfg), "setup-influx"]) == 0
    out = capsys.readouterr()
    assert duration() == "1h23m0s"
    assert (
        "retention policy 'aggr_1s' exists (duration 1h23m0s): left as it is" in out.err + out.out
    )
    assert main(["--config", str(cfg), "setup-influx", "--alter-retention"]) == 0
    out = capsys.readouterr()
    assert duration() == "0s"
    assert "retention policy 'aggr_1s' altered with duration INF (was 1h23m0s)" in out.err + out.out


def test_rewriting_seconds_aggr_server_holds_overwrites_them_in_its_own_series(store):
    """aggr-server's series have only the ``market`` tag and integer counts here: our rewrite
    of the same seconds lands in that series (no second series, no doubled sums) with the
    integer type the measurement has (no field type conflict)."""
    lines = [
        f"trades_1s,market={M} open=100,high=101,low=99,close=100.5,vbuy=1000,vsell=250,"
        f"cbuy=2i,csell=1i {DAY0 + i}"
        for i in range(60)
    ]
    store.write_lines(lines, rp="aggr_1s")
    before = store.read_bars(M, DAY0, DAY0 + 60, "1s")
    fresh = InfluxStore(store.s)  # a new process: the layout is asked from the server
    try:
        assert fresh.write_bars(M, "perp", before, "1s") == 60
    finally:
        fresh.close()
    after = store.read_bars(M, DAY0, DAY0 + 60, "1s")
    assert len(after) == 60 and after["vbuy"].sum() == 60_000 and after["cbuy"].sum() == 120
    assert _series(store) == [f"market={M}"]
    types = dict(store.show('SHOW FIELD KEYS FROM "aggr_1s"."trades_1s"'))
    assert types["cbuy"] == "integer" and types["vbuy"] == "float"


def test_a_new_database_gets_our_schema_with_the_kind_tag(store):
    bars = store.read_bars(M, DAY0, DAY0 + 1, "1s")  # empty frame of the right columns
    bars.loc[0] = [DAY0, 100, 101, 99, 100.5, 1000, 250, 2, 1, 0, 0]
    store.write_bars(M, "perp", bars, "1s")
    assert _series(store) == [f"kind=perp,market={M}"]


def _series(store: InfluxStore) -> list[str]:
    """The tag sets of the 1-second measurement's series."""
    df = store.query('SELECT count("close") FROM "aggr_1s"."trades_1s" GROUP BY *', chunked=False)
    return sorted(df["tags"].tolist())
