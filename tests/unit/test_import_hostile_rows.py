"""Hostile rows in an archive file are refused one by one, counted, and never stored: an
infinite notional, a row dated outside the file's day."""

from __future__ import annotations

import numpy as np
import pytest

from feeder.stores.parquet import ParquetStore
from feeder.tools.cli import main

DAY = 1_704_067_200_000  # 2024-01-01 00:00:00 UTC in ms
REL = "futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.csv"
M = "BINANCE_FUTURES:btcusdt"


def _rows(*rows: tuple[int, float, float, int, bool]) -> str:
    head = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
    return head + "".join(
        f"{i},{p!r},{q!r},{i},{i},{t},{str(m).lower()}\n" for i, p, q, t, m in rows
    )


def test_infinite_notionals_and_rows_outside_the_files_day_are_refused_and_counted(
    tmp_path, capsys
):
    src = tmp_path / "archive" / REL
    src.parent.mkdir(parents=True)
    src.write_text(
        _rows(
            (1, 42_000.0, 0.5, DAY + 1_000, False),
            (2, 1e308, 1e308, DAY + 2_000, False),  # finite price and qty, infinite notional
            (3, 42_001.0, 0.25, DAY + 3_000, True),
            (4, 42_002.0, 0.1, 4_070_908_800_000, False),  # 2099-01-01 inside a 2024-01-01 file
            (5, 42_003.0, 0.2, DAY + 4_000, False),
        )
    )
    store_dir = tmp_path / "store"
    rc = main(
        [
            "--store-dir",
            str(store_dir),
            "import",
            "--from",
            str(tmp_path / "archive"),
            "--no-progress",
        ]
    )
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == 0, text
    assert "notional_invalid 1" in text and "outside_file_period 1" in text, text
    store = ParquetStore(store_dir)
    assert store.bar_days(M, "1s") == ["2024-01-01"]  # no 2099 day file
    bars = store.read_bars(M, DAY // 1000, DAY // 1000 + 86_400, "1s")
    assert len(bars) == 3 and np.isfinite(bars.drop(columns="time").to_numpy()).all()
    assert bars["cbuy"].sum() + bars["csell"].sum() == 3


_UMASK = """
import os, stat, sys
from pathlib import Path
os.umask(int(sys.argv[2], 8))
from feeder.stores.parquet import ParquetStore
from tests.store_cases import DAY0, make_bars
store = ParquetStore(Path(sys.argv[1]))
store.write_bars("BINANCE:btcusdt", "spot", make_bars(DAY0, 60, 1), "1s")
store.add_coverage("BINANCE:btcusdt", DAY0, DAY0 + 60)
modes = {oct(stat.S_IMODE(p.stat().st_mode)) for p in Path(sys.argv[1]).rglob("*") if p.is_file()}
print(sorted(modes))
"""


def test_store_files_get_the_mode_the_umask_gives(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    for umask, mode in (("022", "0o644"), ("002", "0o664")):
        out = subprocess.run(
            [sys.executable, "-c", _UMASK, str(tmp_path / umask), umask],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == f"['{mode}']", out.stdout + out.stderr


def test_one_non_utf8_byte_refuses_its_row_and_keeps_the_rest(tmp_path, capsys):
    src = tmp_path / "archive" / REL
    src.parent.mkdir(parents=True)
    text = _rows(*((i, 42_000.0 + i, 0.5, DAY + i * 1_000, bool(i % 2)) for i in range(1, 7)))
    lines = text.encode().split(b"\n")
    lines[3] = lines[3].replace(b",0.5,", b",0.\xff5,")  # row 3: one byte that is not UTF-8
    src.write_bytes(b"\n".join(lines))
    store_dir = tmp_path / "store"
    rc = main(
        [
            "--store-dir",
            str(store_dir),
            "import",
            "--from",
            str(tmp_path / "archive"),
            "--no-progress",
        ]
    )
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == 0, text
    bars = ParquetStore(store_dir).read_bars(M, DAY // 1000, DAY // 1000 + 86_400, "1s")
    assert len(bars) == 5 and 3_000 not in (bars["time"] - DAY // 1000).tolist()
    assert "malformed rows skipped: 1" in text, text


_FULL_DISK_IMPORT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel then answers EFBIG, like ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))  # no file may grow past 30 kB
from feeder.tools.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.shared
def test_a_full_disk_during_import_is_one_clear_line_and_a_non_zero_exit(market_data, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    archive = market_data / "binance_datatool/tommy-ca/data"
    store = tmp_path / "store"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _FULL_DISK_IMPORT,
            "--store-dir",
            str(store),
            "import",
            "--from",
            str(archive),
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "File too large" in errors[0] and str(store) in errors[0], text
    assert not ParquetStore(store).imported()  # nothing recorded as imported
