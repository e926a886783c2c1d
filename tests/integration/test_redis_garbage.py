"""Garbage on the Redis streams (issue 12): skipped and counted, never folded in, never fatal."""

from __future__ import annotations

import logging
import uuid

import pandas as pd
import pytest

from feeder.ingest.aggregate import rollup
from feeder.read.flow import load_flow
from feeder.read.flow_source import FlowSource
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from feeder.stores.redis_stream import RedisBarStream, state_key, stream_key
from tests.store_cases import make_bars

pytestmark = pytest.mark.backend

T0 = 1_704_067_200
SPOT, PERP = "BINANCE:btcusdt", "BINANCE_FUTURES:btcusdt"
GOOD = {
    "market": SPOT,
    "kind": "spot",
    "time": str(T0 + 30),
    "open": "1",
    "high": "1",
    "low": "1",
    "close": "1",
    "vbuy": "5",
    "vsell": "5",
    "cbuy": "1",
    "csell": "1",
    "lbuy": "0",
    "lsell": "0",
    "wm": str(T0 + 31),
}
BAD = [
    {**GOOD, "evil": "1"},  # a foreign field
    {k: v for k, v in GOOD.items() if k != "vsell"},  # a missing field
    {**GOOD, "time": "soon"},  # a non-numeric time
    {**GOOD, "wm": "1e9x"},  # a non-numeric watermark
    {**GOOD, "vbuy": "nan"},
    {**GOOD, "vsell": "inf"},
    {**GOOD, "close": "abc"},
    {**GOOD, "market": PERP, "vbuy": "1e12"},  # another market's bar on this stream
]


def test_bad_entries_are_skipped_counted_and_logged_once(redis_url, tmp_path, caplog):
    prefix = f"sfbad{uuid.uuid4().hex[:8]}"
    settings = settings_from_dict(
        {
            "coins": {"BTC": {"spot": [SPOT], "perp": [PERP]}},
            "redis": {"url": redis_url, "prefix": prefix},
        },
        env=False,
    )
    store = ParquetStore(tmp_path / "live")
    ref = ParquetStore(tmp_path / "ref")
    pub = RedisBarStream(redis_url, prefix=prefix)
    clock = [T0 + 1]
    src = FlowSource(settings, "1m", store=store, clock=lambda: clock[0])
    src.catch_up("BTC", 5)
    for i, (m, kind) in enumerate(((SPOT, "spot"), (PERP, "perp"))):
        b = make_bars(T0, 600, seed=i)
        pub.publish(m, kind, b[b["time"] < T0 + 300], watermark=T0 + 300, coverage=[[T0, T0 + 300]])
        for e in BAD if m == SPOT else BAD[:-1]:  # garbage in the middle of both streams
            pub.r.xadd(stream_key(prefix, m), {**e, "market": e["market"] if m == SPOT else m})
        rest = b[b["time"] >= T0 + 300]
        pub.publish(m, kind, rest, watermark=T0 + 600, coverage=[[T0, T0 + 600]])
        ref.write_bars(m, kind, b, "1s")
        ref.write_bars(m, kind, rollup(b, 60), "1m")
        ref.add_coverage(m, T0, T0 + 600)
    clock[0] = T0 + 602
    with caplog.at_level(logging.WARNING, logger="feeder.stores.redis_codec"):
        src.poll(["BTC"])
        src.poll(["BTC"])
    want = load_flow(ref, settings, "BTC", T0, T0 + 600, "1m")
    got = src.live("BTC").loc[want.index]
    pd.testing.assert_frame_equal(got, want[got.columns], check_freq=False)
    counts = src.bad_entries
    assert sum(counts.values()) == 2 * len(BAD) - 1
    assert counts["market"] == 1 and counts["non_finite"] == 4 and counts["fields"] == 4
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == len(set(counts))  # each reason logged once

    # A garbage state (non-numeric watermark) makes its market incomplete, never the other's.
    pub.r.hset(state_key(prefix, PERP), "watermark", "later")
    clock[0] = T0 + 700
    src.poll(["BTC"])
    assert src.bad_entries["state"] >= 1
    assert not src.live("BTC").loc[want.index, "complete"].any()
    assert src.age("BTC") >= 100  # PERP's watermark now comes from its store coverage: none

    # A state key holding another type is garbage too: counted, poll goes on.
    pub.r.delete(state_key(prefix, SPOT))
    pub.r.set(state_key(prefix, SPOT), "not a hash")
    before = src.bad_entries["state"]
    src.poll(["BTC"])
    assert src.bad_entries["state"] > before
