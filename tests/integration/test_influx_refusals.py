"""A store that refuses points itself (InfluxDB 4xx) is not an outage: the live writer keeps
them aside with the server's message, keeps every other market flowing, never covers the
refused seconds, and its spool does not grow. Credentials never appear in what is printed."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest

from feeder.live.spool import Batch, Spool
from feeder.live.writers import SinkStats, StoreWriter
from feeder.settings import InfluxSettings
from feeder.stores.influx import InfluxStore
from feeder.stores.influx_client import InfluxError
from tests.store_cases import DAY0, make_bars

pytestmark = pytest.mark.backend

A, B = "BINANCE:btcusdt", "BINANCE_FUTURES:btcusdt"
DB = DAY0 + 30 * 86_400


@pytest.fixture
def store(influx_db):
    url, db = influx_db
    s = InfluxStore(InfluxSettings(url=url, database=db, max_retries=1))
    s.setup()
    yield s
    s.close()


def test_a_field_type_conflict_is_refused_aside_and_other_markets_keep_flowing(store, tmp_path):
    # a measurement holding a flow field as a string in the shard A's bars go to (field types
    # are per shard: B's bars, a month later, are in another one): no number fits there
    store.write_lines([f'trades_1s,market={A} vbuy="n/a" {DAY0 + 500}'], rp="aggr_1s")
    stats = SinkStats()
    writer = StoreWriter(store, Spool(tmp_path / "spool"), stats, retry_s=0.2, flush_s=0.1)
    bars_a, bars_b = make_bars(DAY0, 120, 1), make_bars(DB, 120, 2)

    async def scenario():
        task = asyncio.create_task(writer.run())
        for _ in range(3):  # three ticks' worth: the refusal must not repeat forever
            writer.put(Batch(A, "spot", "1s", bars_a))
            writer.put(Batch(B, "perp", "1s", bars_b))
        writer.put(Batch(A, "spot", "coverage", None, DAY0, DAY0 + 120))
        writer.put(Batch(B, "perp", "coverage", None, DB, DB + 120))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if writer.queue.empty() and stats.counters["written_batches"] >= 8:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    got_b = store.read_bars(B, DB, DB + 120, "1s")
    pd.testing.assert_frame_equal(got_b, bars_b.reset_index(drop=True), check_dtype=False)
    assert store.coverage(B).tolist() == [[DB, DB + 120]]
    assert store.coverage(A).tolist() == [], (dict(stats.counters), store.gaps(A))  # never covered
    gaps = store.gaps(A)
    assert len(gaps) and "field type conflict" in gaps["reason"].iloc[0]
    assert len(writer.spool) == 0 and stats.store_up  # not an outage: nothing spooled
    refused = [json.loads(line) for line in (tmp_path / "spool" / "refused.jsonl").open()]
    assert refused and all("field type conflict" in r["error"] for r in refused)
    assert {r["batch"]["m"] for r in refused} == {A}
    assert writer.refused and "field type conflict" in writer.refused


def test_an_unreachable_server_is_an_outage_and_its_url_shows_no_credentials():
    s = InfluxStore(InfluxSettings(url="http://sf:hunter2@127.0.0.1:9", max_retries=1, timeout_s=1))
    with pytest.raises(InfluxError) as e:
        s.write_lines(["m f=1 1"], rp=None)
    assert "unreachable" in str(e.value) and not e.value.permanent
    assert "hunter2" not in str(e.value) and "http://***@127.0.0.1:9" in str(e.value)
