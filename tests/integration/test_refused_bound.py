"""``refused.jsonl`` (the batches a store refused, kept with its message) is bounded: beyond
``feeder.refused_max_mb`` it is rotated to ``refused.jsonl.1``, keeping one previous file; what a
rotation drops is counted and ``/health`` says so. Against the real InfluxDB refusing points (a
field-type conflict), with the writer alone and with the real `run` process."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from feeder.live.spool import Batch, Spool
from feeder.live.writers import SinkStats, StoreWriter
from feeder.settings import InfluxSettings
from feeder.stores.influx import InfluxStore
from tests.store_cases import DAY0, make_bars

pytestmark = pytest.mark.backend

A = "BINANCE:btcusdt"


def _lines(path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_refused_jsonl_rotates_at_its_bound_keeps_one_previous_and_counts_the_drop(
    influx_db, tmp_path
):
    url, db = influx_db
    store = InfluxStore(InfluxSettings(url=url, database=db, max_retries=1))
    store.setup()
    store.write_lines([f'trades_1s,market={A} vbuy="n/a" {DAY0 + 500}'], rp="aggr_1s")
    stats = SinkStats()
    bound = 8_000
    writer = StoreWriter(
        store,
        Spool(tmp_path / "spool"),
        stats,
        retry_s=0.2,
        flush_s=0.05,
        refused_max_bytes=bound,
    )
    n = 40

    async def scenario():
        task = asyncio.create_task(writer.run())
        for i in range(n):  # one refused batch per round (the writer merges a round's batches)
            writer.put(Batch(A, "spot", "1s", make_bars(DAY0 + 20 * i, 20, i)))
            deadline = time.monotonic() + 30
            while stats.counters["store_refused_batches"] <= i:
                assert time.monotonic() < deadline and not task.done(), dict(stats.counters)
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    store.close()
    folder = tmp_path / "spool"
    current, previous = folder / "refused.jsonl", folder / "refused.jsonl.1"
    assert stats.counters["store_refused_batches"] == n
    assert current.stat().st_size <= bound and previous.stat().st_size <= bound
    assert sorted(p.name for p in folder.glob("refused*")) == ["refused.jsonl", "refused.jsonl.1"]
    kept = _lines(current) + _lines(previous)
    dropped = stats.counters["refused_dropped_batches"]
    assert dropped > 0 and kept + dropped == n, (kept, dropped)  # every batch accounted for
    # the newest refusals are the ones kept, whole lines, in order
    rounds = [
        (json.loads(line)["batch"]["t"][0] - DAY0) // 20
        for f in (previous, current)
        for line in f.open()
    ]
    assert rounds == list(range(dropped, n))
    assert writer.refused_alert and f"{dropped} refused batch" in writer.refused_alert


@pytest.mark.shared
@pytest.mark.slow
def test_run_says_in_health_when_rotating_refused_jsonl_drops_batches(
    market_data, influx_db, tmp_path
):
    from tests.live.test_cli_run import _processes, _trades

    url, db = influx_db
    store = InfluxStore(InfluxSettings(url=url, database=db, max_retries=1))
    store.setup()  # a string flow field in the recording's shard: every spot batch is refused
    store.write_lines([f'trades_1s,market={A} vbuy="n/a" 1723075200'], rp="aggr_1s")
    store.close()
    top = {
        "store": {"backend": "influx", "influx": {"url": url, "database": db}},
        "feeder": {"refused_max_mb": 0.01},
    }
    with _processes(market_data, tmp_path, speed=10, top=top) as (_r, feeder, wait, _h, log):
        health = wait(lambda h: _trades(h) > 0 and h["counters"].get("refused_dropped_batches"))
        feeder.terminate()
        assert feeder.wait(60) == 0, log.read_text()[-3000:]
    assert health["status"] == "failing", health
    alerts = " | ".join(health["alerts"])
    assert "refused.jsonl rotated" in alerts and "refused batch" in alerts, health["alerts"]
    assert (tmp_path / "spool" / "refused.jsonl").stat().st_size <= 0.01 * 2**20
    assert "refused.jsonl rotated" in log.read_text()
