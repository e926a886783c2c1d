"""`import` stopped at every store write (SIGKILL, or a write error) never leaves coverage
claiming bars that are not on disk, nor a ledger entry for a file whose bars are missing; a
re-run then completes the store exactly as an uninterrupted import.

Each run is the real command line in its own process; the store's file commit
(``_atomic_write``) counts its calls and, at the chosen one, the process kills itself with
SIGKILL or the write fails (``ENOSPC``), before or after the file is in place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feeder.ingest.models import BAR_FIELDS
from feeder.stores.parquet import ParquetStore
from tests.conftest import REPO

pytestmark = pytest.mark.slow

DAY_MS = 86_400_000
DAY0 = 1_704_067_200_000  # 2024-01-01
HEAD = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
FILES = {  # market -> (archive folder, file symbol)
    "BINANCE_FUTURES:btcusdt": ("futures/um/daily/aggTrades/BTCUSDT", "BTCUSDT"),
    "BINANCE:btcusdt": ("spot/daily/aggTrades/BTCUSDT", "BTCUSDT"),
}
DAYS = 2  # BINANCE:btcusdt gets the first only: three files, two markets, two days

_DRIVER = """
import errno, os, signal, sys
import feeder.stores.parquet as parquet
at, mode = int(sys.argv[1]), sys.argv[2]
real = parquet._atomic_write
calls = [0]
def commit(path, write):
    calls[0] += 1
    if calls[0] == at and mode == "kill-before":
        os.kill(os.getpid(), signal.SIGKILL)
    if calls[0] == at and mode == "fail":
        raise parquet.StoreWriteError(f"cannot write {path}: {os.strerror(errno.ENOSPC)}")
    real(path, write)
    if calls[0] == at and mode == "kill-after":
        os.kill(os.getpid(), signal.SIGKILL)
parquet._atomic_write = commit
from feeder.tools.cli import main
rc = main(sys.argv[3:])
print(f"store writes: {calls[0]}", file=sys.stderr)
sys.exit(rc)
"""


def _archive(root: Path) -> None:
    rng = np.random.default_rng(7)
    for folder, symbol in FILES.values():
        for d in range(1 if folder == FILES["BINANCE:btcusdt"][0] else DAYS):
            day = DAY0 + d * DAY_MS
            n = 400
            t = np.sort(rng.integers(day, day + DAY_MS, n))
            rows = "".join(
                f"{i},{42_000 + rng.normal():.2f},{rng.uniform(0.001, 2):.4f},{i},{i},{t[i]},"
                f"{str(bool(rng.integers(2))).lower()}\n"
                for i in range(n)
            )
            name = pd.Timestamp(day, unit="ms").strftime("%Y-%m-%d")
            path = root / folder / f"{symbol}-aggTrades-{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(HEAD + rows)


def _import(archive: Path, store: Path, at: int, mode: str) -> subprocess.CompletedProcess:
    argv = ["--store-dir", str(store), "import", "--from", str(archive), "--no-progress"]
    return subprocess.run(
        [sys.executable, "-c", _DRIVER, str(at), mode, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _covered_seconds(cov: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(a, b) for a, b in cov]) if len(cov) else np.array([], int)


def _assert_consistent(store: ParquetStore, ref: ParquetStore, where: str) -> None:
    """Covered seconds hold exactly the reference's bars; a ledger entry's day is on disk."""
    lo, hi = DAY0 // 1000, DAY0 // 1000 + DAYS * 86_400
    for market in FILES:
        want = ref.read_bars(market, lo, hi, "1s").set_index("time")[list(BAR_FIELDS)]
        got = store.read_bars(market, lo, hi, "1s").set_index("time")[list(BAR_FIELDS)]
        for res, want_r, got_r in (
            ("1s", want, got),
            (
                "1m",
                ref.read_bars(market, lo, hi, "1m").set_index("time")[list(BAR_FIELDS)],
                store.read_bars(market, lo, hi, "1m").set_index("time")[list(BAR_FIELDS)],
            ),
        ):
            secs = _covered_seconds(store.coverage(market))
            times = want_r.index[want_r.index.isin(secs)]
            missing = times[~times.isin(got_r.index)]
            assert len(missing) == 0, (where, market, res, "covered but not on disk", missing[:5])
            pd.testing.assert_frame_equal(got_r.loc[times], want_r.loc[times], obj=where)
    for key, info in store.imported().items():
        market = info["market"]
        day = pd.Timestamp(key.rsplit("/", 1)[1], tz="UTC").value // 10**9
        secs = _covered_seconds(store.coverage(market))
        assert day in secs and day + 86_399 in secs, (where, key, "in the ledger, not covered")
        want = ref.read_bars(market, day, day + 86_400, "1s")
        got = store.read_bars(market, day, day + 86_400, "1s")
        assert len(got) == len(want), (where, key, "in the ledger, bars missing")


def test_import_stopped_at_every_store_write_leaves_nothing_falsely_covered(tmp_path):
    archive = tmp_path / "archive"
    _archive(archive)
    ref_dir = tmp_path / "reference"
    clean = _import(archive, ref_dir, 0, "none")
    assert clean.returncode == 0, clean.stderr
    writes = int(clean.stderr.rsplit("store writes: ", 1)[1].split()[0])
    ref = ParquetStore(ref_dir)
    assert len(ref.imported()) == 3
    assert writes >= 3 * 4  # 1s, 1m, coverage, ledger per file at least
    runs = 0
    for at in range(1, writes + 1):
        # killed after write k is killed before write k + 1: only the last needs its own run
        for mode in ("kill-before", "fail") + (("kill-after",) if at == writes else ()):
            store_dir = tmp_path / f"store-{at}-{mode}"
            out = _import(archive, store_dir, at, mode)
            where = f"{mode} at store write {at} of {writes}"
            if mode == "fail":
                assert out.returncode != 0 or "FAILED" in out.stdout + out.stderr, where
                assert "Traceback" not in out.stderr, (where, out.stderr[-2000:])
            else:
                assert out.returncode == -9, (where, out.returncode, out.stderr[-2000:])
            store = ParquetStore(store_dir)
            _assert_consistent(store, ref, where)
            runs += 1
            if mode == "fail":
                continue  # the same states as a kill before it: their re-runs are done there
            again = _import(archive, store_dir, 0, "none")  # the re-run completes the store
            assert again.returncode == 0, (where, again.stderr[-2000:])
            _assert_consistent(store, ref, where + ", re-run")
            assert store.imported().keys() == ref.imported().keys(), where
            for market in FILES:
                np.testing.assert_array_equal(store.coverage(market), ref.coverage(market))
    assert runs == 2 * writes + 1
