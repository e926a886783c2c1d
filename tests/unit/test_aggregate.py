from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.ingest.aggregate import LiveBarBuilder, bars_from_trades, merge_bars, rollup, strip_keys
from feeder.ingest.models import BAR_FIELDS, Kind
from feeder.ingest.normalise import IdDeduplicator, Rejects, TradeBatch, normalise
from feeder.ingest.pipeline import DayBarWriter
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from tests.helpers import COINM, SPOT, USDM, independent_bars, raw_columns, read_derived_trades

NS = 1_000_000_000
T0 = 1_723_161_240  # a minute boundary
#: FreqTrade's worker wakes this long after a candle closes (worker.py, ``timeframe_offset=1``)
FREQTRADE_WAKE_S = 1.0


def batch_of(ts_ns, price, qty, buy, ids, liq=None, market="BINANCE:btcusdt") -> TradeBatch:
    n = len(ts_ns)
    price = np.asarray(price, float)
    qty = np.asarray(qty, float)
    return TradeBatch(
        market,
        Kind.SPOT,
        np.asarray(ts_ns, np.int64),
        price,
        qty,
        price * qty,
        np.asarray(buy, bool),
        np.asarray(ids, np.int64),
        np.zeros(n, bool) if liq is None else np.asarray(liq, bool),
    )


trades_strategy = st.lists(
    st.tuples(
        st.integers(0, 179_999_999_999),  # ns offset within three minutes
        st.floats(1.0, 1e5, allow_nan=False),
        st.floats(1e-6, 1e3, allow_nan=False),
        st.booleans(),
        st.booleans(),
    ),
    min_size=1,
    max_size=300,
    unique_by=lambda t: t[0],
)


def _batch(trades, order=None):
    if order is not None:
        trades = [trades[i] for i in order]
    off, price, qty, buy, liq = zip(*trades, strict=True)
    ts = T0 * NS + np.asarray(off, np.int64)
    ids = np.asarray(off, np.int64)  # id increases with time, unique
    return batch_of(ts, price, qty, buy, ids, liq)


@settings(max_examples=150, deadline=None)
@given(trades_strategy)
def test_bar_sums_equal_trade_sums(trades):
    b = _batch(trades)
    bars = bars_from_trades(b)
    taker = ~b.liq
    assert bars["vbuy"].sum() == pytest.approx(b.notional[b.buy & taker].sum(), rel=1e-12)
    assert bars["vsell"].sum() == pytest.approx(b.notional[~b.buy & taker].sum(), rel=1e-12)
    assert bars["lbuy"].sum() == pytest.approx(b.notional[b.buy & b.liq].sum(), rel=1e-12)
    assert bars["lsell"].sum() == pytest.approx(b.notional[~b.buy & b.liq].sum(), rel=1e-12)
    assert bars["cbuy"].sum() + bars["csell"].sum() == taker.sum()
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()


@settings(max_examples=100, deadline=None)
@given(trades_strategy, st.randoms(use_true_random=False))
def test_order_of_trades_inside_a_second_does_not_matter(trades, rnd):
    order = list(range(len(trades)))
    rnd.shuffle(order)
    a = bars_from_trades(_batch(trades))
    b = bars_from_trades(_batch(trades, order))
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(trades_strategy, st.integers(1, 299))
def test_merging_bars_of_split_batches_is_exact(trades, cut):
    b = _batch(trades)
    cut = min(cut, len(b))
    whole = bars_from_trades(b)
    parts = merge_bars(
        bars_from_trades(b.take(np.arange(cut))), bars_from_trades(b.take(np.arange(cut, len(b))))
    )
    pd.testing.assert_frame_equal(whole, parts, check_exact=False, rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(trades_strategy, st.sampled_from([60, 300, 3600]))
def test_rollups_equal_bars_computed_directly_at_the_coarser_interval(trades, seconds):
    """Rolling 1-second bars up equals aggregating the trades of each coarser interval at once.

    The direct bars come from ``bars_from_trades`` itself: every trade's timestamp is squeezed
    into the first second of its interval, order kept, so one "second" holds all of it."""
    b = _batch(trades)
    rolled = rollup(strip_keys(bars_from_trades(b)), seconds)
    span = seconds * NS
    squeezed = (b.ts // span) * span + (b.ts % span) // seconds  # < 1 s into the interval
    coarse = TradeBatch(
        b.market, b.kind, squeezed, b.price, b.qty, b.notional, b.buy, b.trade_id, b.liq
    )
    direct = strip_keys(bars_from_trades(coarse))
    assert (direct["time"] % seconds == 0).all()
    pd.testing.assert_frame_equal(rolled, direct[rolled.columns], check_exact=False, rtol=1e-12)


def test_bars_are_keyed_by_exchange_time_not_arrival():
    b = batch_of([T0 * NS + 999_999_999, (T0 + 1) * NS], [1, 2], [1, 1], [True, True], [1, 2])
    assert bars_from_trades(b)["time"].tolist() == [T0, T0 + 1]


def test_liquidations_count_only_as_liquidations():
    b = batch_of([T0 * NS, T0 * NS + 1], [10, 10], [1, 2], [True, False], [1, 2], liq=[True, False])
    bar = bars_from_trades(b).iloc[0]
    assert (bar["lbuy"], bar["vbuy"], bar["vsell"], bar["cbuy"], bar["csell"]) == (10, 0, 20, 0, 1)


@settings(max_examples=150, deadline=None)
@given(trades_strategy)
def test_price_comes_from_taker_trades_and_from_liquidations_only_in_seconds_without(trades):
    b = _batch(trades)
    bars = bars_from_trades(b).set_index("time")
    ohlc = ["open", "high", "low", "close"]
    taker, liq = b.take(~b.liq), b.take(b.liq)
    want = bars_from_trades(taker).set_index("time")[ohlc]
    only_liq = bars_from_trades(liq).set_index("time")[ohlc]
    want = pd.concat([want, only_liq.loc[only_liq.index.difference(want.index)]]).sort_index()
    pd.testing.assert_frame_equal(bars[ohlc], want, check_exact=False, rtol=1e-12)


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "spec", "size"),
    [
        ("spot_btcusdt_20240808_trades.csv", SPOT, None),
        ("usdm_btcusdt_20240808_trades.csv", USDM, None),
        ("usdm_btcusdt_20230405_trades.csv", USDM, None),
        ("cm_btcusd_perp_20240808_trades.csv", COINM, 100.0),
    ],
)
def test_pipeline_bars_on_real_recordings_equal_an_independent_computation(
    market_data, tmp_path, name, spec, size
):
    df = read_derived_trades(market_data / "hftbacktest/derived_trades" / name)
    store = ParquetStore(tmp_path)
    writer = DayBarWriter(store, spec)
    raw = raw_columns(df)
    for i in range(0, len(df), 997):  # odd chunk size: seconds split across chunks
        writer.add_raw({k: v[i : i + 997] for k, v in raw.items()})
    writer.close()
    lo, hi = int(df["trade_time_ms"].min() // 1000), int(df["trade_time_ms"].max() // 1000) + 1
    got = store.read_bars(spec.market, lo, hi, "1s")
    want = independent_bars(df, size)
    assert len(got) == len(want) > 100
    pd.testing.assert_frame_equal(
        got[["time", *BAR_FIELDS]],
        want[["time", *BAR_FIELDS]],
        check_exact=False,
        rtol=1e-9,
        check_dtype=False,
    )
    got_1m = store.read_bars(spec.market, lo - 60, hi + 60, "1m")
    assert got_1m["vbuy"].sum() == pytest.approx(want["vbuy"].sum())
    assert got_1m["cbuy"].sum() + got_1m["csell"].sum() == want["cbuy"].sum() + want["csell"].sum()


class TestLiveBarBuilder:
    def _trades(self, secs_and_ids):
        return batch_of(
            [T0 * NS + int(s * NS) for s, _ in secs_and_ids],
            [100] * len(secs_and_ids),
            [1] * len(secs_and_ids),
            [True] * len(secs_and_ids),
            [i for _, i in secs_and_ids],
        )

    def test_a_second_closes_on_the_watermark_without_a_next_trade(self):
        lb = LiveBarBuilder("BINANCE:btcusdt", grace_s=2.0)
        lb.advance(T0 * NS)
        lb.add(self._trades([(0.5, 1)]))
        assert len(lb.advance((T0 + 2) * NS).bars_1s) == 0  # second 0 ends at +1, grace 2
        out = lb.advance((T0 + 3) * NS + 1)
        assert out.bars_1s["time"].tolist() == [T0]

    def test_at_the_default_grace_a_candles_last_second_is_final_before_freqtrade_wakes(self):
        """FreqTrade's worker decides a candle one second after its close (freqtrade/worker.py,
        ``timeframe_offset=1``). At the default ``grace_s`` the feeder's bar clock has closed the
        candle's last second by then, so the live decision does not wait for the feeder (issue 8
        section 5: a 2 s grace made every decision wait until close + 2.1 s)."""
        from feeder.live.runtime import Feeder

        settings = settings_from_dict(None, env=False)
        lb = LiveBarBuilder(USDM.market, settings.grace_s, settings.feeder.retain_s)
        close = T0 + 60  # a candle close; its last second is T0 + 59
        lb.advance((close - 5) * NS)
        lb.add(self._trades([(59.95, 1)]))  # a trade at the very end of the candle
        wake = close + FREQTRADE_WAKE_S
        tick = close * NS
        while tick <= (wake - Feeder.tick_s) * NS:  # the bar clock's ticks before the wake
            lb.advance(tick)
            tick += int(Feeder.tick_s * NS)
        assert lb.watermark is not None and lb.watermark >= close

    def test_a_late_trade_re_emits_the_corrected_bar_and_is_counted(self):
        lb = LiveBarBuilder("BINANCE:btcusdt", grace_s=1.0)
        lb.advance(T0 * NS)
        lb.add(self._trades([(0.1, 1)]))
        first = lb.advance((T0 + 5) * NS).bars_1s
        assert first["cbuy"].tolist() == [1.0]
        lb.add(self._trades([(0.2, 2)]))
        out = lb.advance((T0 + 6) * NS)
        assert out.bars_1s["time"].tolist() == [T0]
        assert out.bars_1s["cbuy"].tolist() == [2.0]
        assert out.corrected_seconds == 1 and lb.late_trades == 1

    def test_too_late_trades_are_counted_as_dropped(self):
        lb = LiveBarBuilder("BINANCE:btcusdt", grace_s=1.0, retain_s=10)
        lb.advance(T0 * NS)
        lb.add(self._trades([(0.1, 1)]))
        lb.advance((T0 + 100) * NS)
        lb.add(self._trades([(0.2, 2)]))
        assert lb.rejects.counts["late_dropped"] == 1

    @pytest.mark.shared
    def test_live_bars_and_minutes_equal_batch_bars_on_a_real_recording(self, market_data):
        df = read_derived_trades(
            market_data / "hftbacktest/derived_trades/usdm_btcusdt_20240808_trades.csv"
        )
        batch = normalise(USDM, **raw_columns(df), dedup=IdDeduplicator(), rejects=Rejects())
        want = strip_keys(bars_from_trades(batch))
        lb = LiveBarBuilder(USDM.market, grace_s=2.0)
        recv = df["local_ts"].to_numpy(np.int64)  # arrival order and clock from the recording
        lb.advance(int(recv[0]))
        got_1s, got_1m = [], []
        for i in range(0, len(batch), 50):
            lb.add(batch.take(np.arange(i, min(i + 50, len(batch)))))
            out = lb.advance(int(recv[min(i + 49, len(recv) - 1)]))
            got_1s.append(out.bars_1s)
            got_1m.append(out.bars_1m)
        out = lb.advance(int(recv[-1]) + 10 * NS)
        got = pd.concat([*got_1s, out.bars_1s]).drop_duplicates("time", keep="last")
        got = got.sort_values("time", ignore_index=True)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
        minutes = pd.concat([*got_1m, out.bars_1m]).drop_duplicates("time", keep="last")
        full = rollup(want, 60)
        # the first minute of the session is partial and not emitted as a rollup
        full = full[full["time"] >= minutes["time"].min()].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            minutes.reset_index(drop=True), full, check_exact=False, rtol=1e-12
        )


class _RegroupEveryChunk(DayBarWriter):
    """The writer as it was: the day's held bars re-merged with every chunk (the reference)."""

    def _add_part(self, day: int, part: pd.DataFrame) -> None:
        prev = self._days.get(day)
        self._days[day] = [merge_bars(prev[0], part) if prev else part]


@settings(max_examples=40, deadline=None)
@given(
    trades=st.lists(
        st.tuples(
            st.integers(0, 2 * 86_400 * NS - 1),  # two UTC days
            st.sampled_from([100.0, 100.5, 101.0, 99.5]),
            st.floats(1e-3, 10.0, allow_nan=False),
            st.booleans(),
            st.integers(0, 5),  # 0: liquidation fill
        ),
        min_size=1,
        max_size=200,
    ),
    chunk=st.integers(1, 40),
    clustered=st.booleans(),
    shuffle_seed=st.none() | st.integers(0, 2**16),
)
def test_day_writer_holds_chunks_exactly_as_merging_every_chunk(
    tmp_path_factory, trades, chunk, clustered, shuffle_seed
):
    """The writer merges only a second split between chunks (or everything once, for input out
    of order within the day); the bars written equal the old regroup-per-chunk writer's, bit for
    bit, for sorted and unsorted chunks, liquidations and seconds split across chunks."""
    off = np.asarray([t[0] for t in trades], np.int64)
    if clustered:  # many trades per second, so chunk boundaries split seconds
        off = off // (NS * 20_000) * NS + off % 3
    order = np.argsort(off, kind="stable")
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(order)
    raw = {
        "ts": (1_735_689_600 * NS + off[order]),
        "price": np.asarray([t[1] for t in trades])[order],
        "qty": np.asarray([t[2] for t in trades])[order],
        "is_buyer_maker": np.asarray([t[3] for t in trades])[order],
        "trade_id": np.arange(len(trades), dtype=np.int64) + 1,
        "liquidation": np.asarray([t[4] == 0 for t in trades])[order],
    }
    written = []
    for cls in (_RegroupEveryChunk, DayBarWriter):
        store = ParquetStore(tmp_path_factory.mktemp("s"))
        w = cls(store, USDM)
        try:
            for s in range(0, len(off), chunk):
                w.add_raw({k: v[s : s + chunk] for k, v in raw.items()})
            w.close()
            error = None
        except Exception as exc:  # the same refusal (out of order across days) for both
            error = type(exc)
        written.append(
            (
                error,
                [
                    store.read_bars(
                        USDM.market, 1_735_689_600, 1_735_689_600 + 2 * 86_400, res
                    ).reset_index(drop=True)
                    for res in ("1s", "1m")
                ],
            )
        )
    (old_err, old), (new_err, new) = written
    assert old_err == new_err
    for a, b in zip(old, new, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    if old_err is None:
        assert len(old[0]) > 0
