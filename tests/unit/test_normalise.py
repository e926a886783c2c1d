from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.ingest.normalise import (
    IdDeduplicator,
    Rejects,
    _mixed_units_to_ns,
    normalise,
    timestamps_to_ns,
)
from feeder.live.markets import trade_id_int
from tests.helpers import COINM, SPOT, USDM

T0_S = 1_723_161_255  # 2024-08-08 23:54:15 UTC


def _norm(spec=SPOT, **over):
    cols = dict(
        ts=np.array([T0_S * 1000, T0_S * 1000 + 1]),
        price=np.array([100.0, 101.0]),
        qty=np.array([1.0, 2.0]),
        is_buyer_maker=np.array([True, False]),
        trade_id=np.array([1, 2]),
    )
    cols.update(over)
    rej = Rejects()
    return normalise(spec, **cols, dedup=IdDeduplicator(), rejects=rej), rej


@pytest.mark.parametrize(
    ("raw", "unit"),
    [(T0_S, "s"), (T0_S * 1000, "ms"), (T0_S * 1_000_000, "us"), (T0_S * 1_000_000_000, "ns")],
)
def test_every_timestamp_unit_normalises_to_the_same_nanoseconds(raw, unit):
    ns, bad = timestamps_to_ns(np.array([raw, raw + 1]))
    assert not bad.any(), unit
    assert ns[0] == T0_S * 1_000_000_000


def test_float_seconds_keep_microseconds():
    ns, bad = timestamps_to_ns(np.array([T0_S + 0.123456]))
    assert not bad.any()
    assert ns[0] == T0_S * 1_000_000_000 + 123_456_000


def test_mixed_units_in_one_batch_like_binance_spot_switching_to_microseconds():
    ns, bad = timestamps_to_ns(np.array([T0_S * 1000, T0_S * 1_000_000]))
    assert not bad.any()
    assert ns[0] == ns[1]


@pytest.mark.parametrize("raw", [0, -5, 12_345, 99_999_999_999_999_999, 5 * 10**19 // 10])
def test_unknown_timestamp_units_are_refused(raw):
    _, bad = timestamps_to_ns(np.array([raw], dtype=np.int64))
    assert bad.all()


def test_non_finite_float_timestamps_are_refused():
    _, bad = timestamps_to_ns(np.array([np.nan, np.inf, T0_S * 1.0]))
    assert bad.tolist() == [True, True, False]


def test_taker_side_comes_from_is_buyer_maker():
    batch, _ = _norm()
    assert batch.buy.tolist() == [False, True]  # buyer was maker => taker sold


def test_linear_notional_is_price_times_quantity():
    batch, _ = _norm(spec=USDM)
    assert batch.notional.tolist() == [100.0, 202.0]
    assert batch.qty.tolist() == [1.0, 2.0]


def test_inverse_contracts_become_usd_notional_and_base_quantity():
    batch, _ = _norm(spec=COINM, qty=np.array([4.0, 1.0]), price=np.array([50_000.0, 40_000.0]))
    assert batch.notional.tolist() == [400.0, 100.0]
    assert batch.qty.tolist() == pytest.approx([400.0 / 50_000, 100.0 / 40_000])


@pytest.mark.parametrize(
    ("field", "values", "reason"),
    [
        ("price", [0.0, 101.0], "price_invalid"),
        ("price", [-1.0, 101.0], "price_invalid"),
        ("price", [np.nan, 101.0], "price_invalid"),
        ("price", [np.inf, 101.0], "price_invalid"),
        ("qty", [0.0, 2.0], "qty_invalid"),
        ("qty", [np.nan, 2.0], "qty_invalid"),
        ("qty", [-3.0, 2.0], "qty_invalid"),
    ],
)
def test_bad_price_or_quantity_is_counted_and_dropped(field, values, reason):
    batch, rej = _norm(**{field: np.array(values)})
    assert len(batch) == 1
    assert batch.trade_id.tolist() == [2]
    assert rej.counts == {reason: 1}


def test_futures_rows_that_are_not_market_trades_are_refused():
    batch, rej = _norm(spec=USDM, is_market=np.array([False, True]))
    assert batch.trade_id.tolist() == [2]
    assert rej.counts == {"not_market_trade": 1}


def test_the_price_zero_row_of_the_recordings_counts_once_as_not_market():
    # TRX USD-M row 9328: price 0, qty 0, empty X. One reason per row, not three.
    batch, rej = _norm(
        spec=USDM,
        price=np.array([0.0, 1.0]),
        qty=np.array([0.0, 1.0]),
        is_market=np.array([False, True]),
    )
    assert len(batch) == 1
    assert rej.total() == 1


def test_duplicate_trade_ids_within_a_batch_and_across_batches_are_dropped():
    dedup = IdDeduplicator()
    rej = Rejects()
    kw = dict(
        price=np.ones(3),
        qty=np.ones(3),
        is_buyer_maker=np.zeros(3, bool),
        ts=np.full(3, T0_S * 1000),
    )
    a = normalise(SPOT, trade_id=np.array([5, 6, 5]), dedup=dedup, rejects=rej, **kw)
    b = normalise(SPOT, trade_id=np.array([6, 7, 8]), dedup=dedup, rejects=rej, **kw)
    assert a.trade_id.tolist() == [5, 6]
    assert b.trade_id.tolist() == [7, 8]
    assert rej.counts == {"duplicate_id": 2}


def test_a_reconnect_overlap_replayed_out_of_order_is_deduplicated():
    dedup = IdDeduplicator(window=100)
    assert dedup.fresh(np.arange(10, 20)).all()
    keep = dedup.fresh(np.array([25, 15, 21, 19, 22]))
    assert keep.tolist() == [True, False, True, False, True]


def test_unknown_timestamp_unit_is_counted():
    _, rej = _norm(ts=np.array([12345, T0_S * 1000]))
    assert rej.counts == {"timestamp_unit": 1}


def test_real_recording_keeps_only_market_trades(market_data):
    from tests.helpers import raw_columns, read_derived_trades

    df = read_derived_trades(
        market_data / "hftbacktest/derived_trades/usdm_btcusdt_20230405_trades.csv"
    )
    rej = Rejects()
    batch = normalise(USDM, **raw_columns(df), dedup=IdDeduplicator(), rejects=rej)
    assert rej.counts == {"not_market_trade": 1}  # the one INSURANCE_FUND trade
    assert len(batch) == len(df) - 1


def test_records_carry_exchange_and_receive_time_beside_event_time():
    from feeder.ingest.models import Side, Trade

    rej = Rejects()
    batch = normalise(
        COINM,
        ts=np.array([T0_S * 1000]),
        price=np.array([50_000.0]),
        qty=np.array([3.0]),
        is_buyer_maker=np.array([True]),
        trade_id=np.array([7]),
        ts_recv=T0_S * 1_000_000_000 + 5,
        rejects=rej,
    )
    (rec,) = list(batch.records())
    assert rec == Trade(
        exchange="binance",
        market="BINANCE_FUTURES:btcusd_perp",
        kind=COINM.kind,
        ts_event=T0_S * 1_000_000_000,
        ts_recv=T0_S * 1_000_000_000 + 5,
        price=50_000.0,
        qty=300.0 / 50_000.0,
        notional=300.0,
        side=Side.SELL,
        trade_id=7,
    )


def test_receive_times_stay_aligned_when_duplicates_and_bad_rows_are_dropped():
    dedup = IdDeduplicator()
    kw = dict(
        price=np.array([1.0, -1.0, 1.0, 1.0]),
        qty=np.ones(4),
        is_buyer_maker=np.zeros(4, bool),
        ts=np.full(4, T0_S * 1000),
        ts_recv=np.array([10, 11, 12, 13]),
    )
    normalise(SPOT, trade_id=np.array([1, 2, 3, 4]), dedup=dedup, **kw)
    b = normalise(SPOT, trade_id=np.array([4, 5, 4, 6]), dedup=dedup, **kw)
    assert b.trade_id.tolist() == [6]  # 4 seen, 5 has a bad price, 4 again
    assert b.ts_recv is not None and b.ts_recv.tolist() == [13]
    assert len(b.take(np.ones(1, bool))) == 1


def test_recent_hashed_trade_ids_are_recognised_as_duplicates():
    ids = np.array(
        [trade_id_int(str(uuid.uuid5(uuid.NAMESPACE_OID, str(i)))) for i in range(25_000)], np.int64
    )
    dedup = IdDeduplicator(window=20_000)  # the live runtime's window
    for k in range(0, len(ids), 50):  # the live stream, 50 trades a message
        dedup.fresh(ids[k : k + 50])
    again = dedup.fresh(ids[-500:])  # a backfill returning the last 500 trades again
    assert int(again.sum()) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 60), max_size=12), max_size=30), st.integers(1, 20))
def test_dedup_remembers_exactly_the_last_window_ids_in_arrival_order(batches, window):
    dedup = IdDeduplicator(window=window)
    seen: list[int] = []  # every accepted id, in arrival order
    for batch in batches:
        ids = np.asarray(batch, np.int64)
        keep = dedup.fresh(ids)
        recent, top = set(seen[-window:]), max(seen, default=-1)
        increasing = len(batch) and batch[0] > top and all(np.diff(ids) > 0)
        want = (
            [True] * len(batch)
            if increasing
            else [i not in recent and i not in batch[:k] for k, i in enumerate(batch)]
        )
        assert keep.tolist() == want
        seen += [int(i) for i, k in zip(ids, keep, strict=True) if k]


@settings(max_examples=300, deadline=None)
@given(
    unit=st.sampled_from([1, 1000, 1_000_000, 1_000_000_000]),
    offsets=st.lists(st.floats(-3e9, 3e9, allow_nan=False), min_size=1, max_size=20),
    as_float=st.booleans(),
)
def test_the_one_unit_fast_path_equals_the_general_conversion(unit, offsets, as_float):
    """Batches in one unit take a single multiply; the result (values and refusals) equals the
    per-unit masked conversion that mixed batches take, edges of the epoch window included."""
    raw = np.array([(T0_S + o) * unit for o in offsets])
    raw = raw if as_float else np.floor(raw).astype(np.int64)
    ns, bad = timestamps_to_ns(raw)
    ref_ns, ref_bad = _mixed_units_to_ns(raw)
    assert bad.tolist() == ref_bad.tolist()
    assert ns[~bad].tolist() == ref_ns[~ref_bad].tolist()
