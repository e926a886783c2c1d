"""The spool and the store writer: nothing accepted is lost or duplicated when the store fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pandas as pd

from feeder.live.spool import Batch, Spool
from feeder.live.writers import SinkStats, StoreWriter
from feeder.stores.parquet import ParquetStore
from tests.store_cases import DAY0, make_bars


async def until(condition: Callable[[], object], what: str, timeout_s: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after a generous deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for: {what}")
        await asyncio.sleep(0.02)


def test_spool_round_trips_batches_in_order_and_quarantines_a_torn_last_line(tmp_path):
    sp = Spool(tmp_path)
    a = Batch("BINANCE:btcusdt", "spot", "1s", make_bars(DAY0, 30, 1))
    b = Batch("BINANCE:btcusdt", "spot", "coverage", None, DAY0, DAY0 + 30)
    c = Batch("BINANCE_FUTURES:btcusdt", "perp", "oi", pd.DataFrame({"time": [DAY0], "oi": [1.5]}))
    sp.append([a, b, c])
    with sp.path.open("ab") as fh:
        fh.write(b'{"m":"BINANCE:btcusdt","k":"spot","r":"1s","t":[1,2')  # crash mid-write
    got = list(sp.read())
    assert [g.series for g in got] == ["1s", "coverage", "oi"]
    assert got[2].bars is not None and got[2].bars.to_dict("list") == {"time": [DAY0], "oi": [1.5]}
    assert got[0].bars is not None
    pd.testing.assert_frame_equal(got[0].bars, a.bars.reset_index(drop=True), check_dtype=False)
    assert (got[1].start, got[1].end) == (DAY0, DAY0 + 30)
    assert sp.quarantined == 1 and len(sp) == 3


def test_a_failing_store_spools_then_replays_everything_once_in_order(tmp_path):
    root = tmp_path / "store"
    root.write_text("not a directory")  # every write fails: a real I/O error
    store = ParquetStore(root)
    stats = SinkStats()
    writer = StoreWriter(
        store, Spool(tmp_path / "spool"), stats, queue_size=4, retry_s=0.2, flush_s=0.1
    )
    bars = make_bars(DAY0, 600, 7, quiet_every=10**9)
    oi = pd.DataFrame({"time": [DAY0, DAY0 + 60], "oi": [8.5e9, 8.25e9]})

    async def scenario():
        task = asyncio.create_task(writer.run())
        for i in range(0, 600, 60):  # ten batches; the queue holds four: overflow spools too
            writer.put(Batch("BINANCE:btcusdt", "spot", "1s", bars.iloc[i : i + 60]))
        writer.put(Batch("BINANCE:btcusdt", "spot", "coverage", None, DAY0, DAY0 + 600))
        writer.put(Batch("BINANCE_FUTURES:btcusdt", "perp", "oi", oi))  # open interest too
        await until(lambda: len(writer.spool) >= 12, "all 12 batches spooled")
        assert not stats.store_up
        root.unlink()  # the store comes back
        await until(lambda: stats.store_up and not len(writer.spool), "the spool replayed")
        assert await writer.drain(timeout=60)
        task.cancel()

    asyncio.run(scenario())
    got = ParquetStore(root).read_bars("BINANCE:btcusdt", DAY0, DAY0 + 600, "1s")
    pd.testing.assert_frame_equal(got, bars.reset_index(drop=True), check_dtype=False)
    assert ParquetStore(root).coverage("BINANCE:btcusdt").tolist() == [[DAY0, DAY0 + 600]]
    assert stats.counters["spool_replayed_batches"] >= 12
    got_oi = ParquetStore(root).read_oi("BINANCE_FUTURES:btcusdt", DAY0, DAY0 + 600)
    assert got_oi["time"].tolist() == [DAY0, DAY0 + 60] and got_oi["oi"].tolist() == [8.5e9, 8.25e9]


_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from feeder.live.spool import Batch, Spool, SpoolError
from tests.store_cases import DAY0, make_bars

sp = Spool(Path(sys.argv[1]))
sp.append([Batch("BINANCE:btcusdt", "spot", "1s", make_bars(DAY0, 5, 1))])
size = sp.bytes
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel then answers EFBIG, like ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, size + 100))  # the disk fills up
try:
    sp.append([Batch("BINANCE:btcusdt", "spot", "1s", make_bars(DAY0 + 5, 60, 2))])
except SpoolError as e:
    print("refused:", e)
print("size", sp.bytes - size)
"""


def test_a_full_disk_short_write_is_undone_and_raised_never_left_torn(tmp_path):
    """A write the disk cannot take whole (the kernel writes part of it, then refuses the rest)
    is undone and raised: the spool keeps its whole records only."""
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "refused: cannot write the spool" in out.stdout, out.stdout
    assert "size 0" in out.stdout, out.stdout  # the partial record was cut back off
    sp = Spool(tmp_path)
    assert len(sp) == 1 and sp.quarantined == 0
    assert [len(b.bars) for b in sp.read() if b.bars is not None] == [len(make_bars(DAY0, 5, 1))]


def test_the_spool_is_bounded_dropped_seconds_become_gaps_never_coverage(tmp_path):
    """The store is down for long: the spool stops at its bound; what is dropped after that is
    counted, alerted, and never covered (recorded as a gap once the store is back)."""
    root = tmp_path / "store"
    root.write_text("not a directory")  # the store is down
    stats = SinkStats()
    writer = StoreWriter(
        ParquetStore(root),
        Spool(tmp_path / "spool"),
        stats,
        queue_size=10,
        retry_s=0.2,
        flush_s=0.05,
        spool_max_bytes=100_000,
    )
    bars = make_bars(DAY0, 3_000, 5, quiet_every=10**9)

    async def scenario():
        task = asyncio.create_task(writer.run())
        for i in range(0, 3_000, 60):  # fifty ticks of bars, each followed by its coverage
            writer.put(Batch("BINANCE:btcusdt", "spot", "1s", bars.iloc[i : i + 60]))
            writer.put(Batch("BINANCE:btcusdt", "spot", "coverage", None, DAY0 + i, DAY0 + i + 60))
            await asyncio.sleep(0.01)
        await until(lambda: writer.queue.empty() and writer.alert, "the queue drained, alerted")
        assert 0 < writer.spool.bytes <= 100_000, writer.spool.bytes  # bounded
        root.unlink()  # the store is back
        # Everything queued written (the batches the writer holds too, not only an empty
        # queue), the spool replayed: the writer's own drain, as the feeder's stop uses it.
        assert await writer.drain(timeout=60)
        assert stats.store_up and not len(writer.spool)
        task.cancel()

    asyncio.run(scenario())
    assert stats.counters["spool_full_dropped"] > 0 and writer.alert
    store = ParquetStore(root)
    cov = store.coverage("BINANCE:btcusdt")
    got = store.read_bars("BINANCE:btcusdt", DAY0, DAY0 + 3_000, "1s").set_index("time")
    want = bars.set_index("time")
    covered_t = [t for s, e in cov for t in range(int(s), int(e))]
    assert 0 < len(covered_t) < 3_000
    pd.testing.assert_frame_equal(got.loc[covered_t], want.loc[covered_t], check_dtype=False)
    gaps = store.gaps("BINANCE:btcusdt")
    assert len(gaps) and (gaps["reason"] == "spool full while the store was down").all()
    gap_t = {t for s, e in zip(gaps["start"], gaps["end"], strict=True) for t in range(s, e)}
    assert gap_t | set(covered_t) == set(range(DAY0, DAY0 + 3_000))
