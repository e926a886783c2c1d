from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from feeder.stores.parquet import ParquetStore
from tests import store_cases as cases


def test_round_trip_and_idempotent_rewrite(tmp_path):
    cases.check_round_trip_and_idempotent_rewrite(ParquetStore(tmp_path))


def test_flow_sums_the_markets_of_each_kind_at_any_timeframe(tmp_path):
    cases.check_flow_sums_markets_of_each_kind(ParquetStore(tmp_path))


def test_gaps_are_flagged_and_never_zero(tmp_path):
    cases.check_gaps_are_flagged_not_zero(ParquetStore(tmp_path))


def test_partitioned_by_market_and_day(tmp_path):
    store = ParquetStore(tmp_path)
    store.write_bars(
        "BINANCE_FUTURES:btcusdt", "perp", cases.make_bars(cases.DAY0 + 86_000, 800, 1), "1s"
    )
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert files == [
        "bars_1s/BINANCE_FUTURES.btcusdt/2024-01-01.parquet",
        "bars_1s/BINANCE_FUTURES.btcusdt/2024-01-02.parquet",
    ]
    assert store.markets() == {"BINANCE_FUTURES:btcusdt": "perp"}


def test_coverage_intervals_merge(tmp_path):
    store = ParquetStore(tmp_path)
    store.add_coverage("BINANCE:btcusdt", 10, 20)
    store.add_coverage("BINANCE:btcusdt", 20, 30)
    store.add_coverage("BINANCE:btcusdt", 50, 60)
    assert store.coverage("BINANCE:btcusdt").tolist() == [[10, 30], [50, 60]]


def test_a_writer_killed_mid_write_never_leaves_a_half_file(tmp_path):
    """SIGKILL a process rewriting a big day file over and over; the file always reads whole."""
    store = ParquetStore(tmp_path)
    bars = cases.make_bars(cases.DAY0, 86_400, 5, quiet_every=10**9)
    store.write_bars("BINANCE:btcusdt", "spot", bars, "1s")
    code = (
        "import sys, numpy as np\n"
        "from feeder.stores.parquet import ParquetStore\n"
        "from tests.store_cases import make_bars, DAY0\n"
        "s = ParquetStore(sys.argv[1])\n"
        "b = make_bars(DAY0, 86400, 6, quiet_every=10**9)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    b['vbuy'] += 1.0\n"
        "    s.write_bars('BINANCE:btcusdt', 'spot', b, '1s')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    day_dir = tmp_path / "bars_1s/BINANCE.btcusdt"
    target = day_dir / "2024-01-01.parquet"
    mid_write_kills = attempts = 0
    while mid_write_kills < 3:  # kill it mid-write (a temporary file is being written) 3 times
        attempts += 1
        assert attempts <= 30, f"only {mid_write_kills} of {attempts - 1} kills hit a write"
        p = subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env
        )
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 60
        while not any(f.name.endswith(".tmp") for f in os.scandir(day_dir)):
            assert time.monotonic() < deadline and p.poll() is None, "the writer never wrote"
            time.sleep(0.001)
        p.send_signal(signal.SIGKILL)  # a write is in progress: its temporary file exists
        p.wait()
        leftovers = [f for f in day_dir.iterdir() if f.name.endswith(".tmp")]
        mid_write_kills += bool(leftovers)  # else the write finished before the kill landed
        got = store.read_bars("BINANCE:btcusdt", cases.DAY0, cases.DAY0 + 86_400, "1s")
        assert len(got) == 86_400
        assert np.isfinite(got["vbuy"]).all()
        assert pd.read_parquet(target).shape[0] == 86_400  # the target is always whole
        for f in leftovers:  # what a crash leaves: a temporary file, never a broken target
            f.unlink()


def test_live_appends_are_parts_merged_on_read_and_compacted(tmp_path):
    store = ParquetStore(tmp_path)
    bars = cases.make_bars(cases.DAY0, 300, 4, quiet_every=10**9)
    for i in range(0, 300, 10):
        store.append_bars("BINANCE:btcusdt", "spot", bars.iloc[i : i + 10], "1s")
    fix = bars.iloc[[5]].copy()
    fix["vbuy"] = 1.0
    store.append_bars("BINANCE:btcusdt", "spot", fix, "1s")  # a correction: the later part wins
    got = store.read_bars("BINANCE:btcusdt", cases.DAY0, cases.DAY0 + 300, "1s")
    assert len(got) == 300 and got["vbuy"].iloc[5] == 1.0
    base = tmp_path / "bars_1s" / "BINANCE.btcusdt"
    assert len(list(base.glob("*.part-*.parquet"))) < 64  # compacted along the way
    store.compact("BINANCE:btcusdt", "1s", "2024-01-01")
    assert [p.name for p in base.iterdir()] == ["2024-01-01.parquet"]
    again = store.read_bars("BINANCE:btcusdt", cases.DAY0, cases.DAY0 + 300, "1s")
    pd.testing.assert_frame_equal(again, got)


def test_open_interest_sums_the_last_value_of_every_perp(tmp_path):
    cases.check_open_interest_is_the_last_value_in_each_candle_summed_over_perps(
        ParquetStore(tmp_path)
    )
