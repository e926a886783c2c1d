"""Binance ``metrics`` archives -> open interest in USD as the live poll stores it (files in the
documented layout: no real metrics file exists in ../shared)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feeder.live.markets import spec_from_ccxt
from feeder.read.flow import load_flow
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from feeder.tools.cli import main

DAY = 1735689600  # 2025-01-01
HEADER = (
    "create_time,symbol,sum_open_interest,sum_open_interest_value,"
    "count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,count_long_short_ratio,"
    "sum_taker_long_short_vol_ratio\n"
)


def _metrics(path: Path, symbol: str, rows: list[tuple[int, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(
        f"{pd.Timestamp(t, unit='s'):%Y-%m-%d %H:%M:%S},{symbol},{a},{v},0.7,1.1,0.8,0.9\n"
        for t, a, v in rows
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(path.with_suffix(".csv").name, HEADER + body + "garbage,row\n")


def test_metrics_give_usd_open_interest_like_the_live_poll(tmp_path, capsys):
    rng = np.random.default_rng(5)
    times = DAY + 300 * np.arange(288)
    um = [
        (int(t), float(a), float(a) * 94_000.0)
        for t, a in zip(times, rng.uniform(7e4, 8e4, 288), strict=True)
    ]
    cm = [
        (int(t), float(c), float(c) * 100 / 94_000.0)
        for t, c in zip(times, rng.integers(5e5, 6e5, 288), strict=True)
    ]
    arch = tmp_path / "arch"
    _metrics(
        arch / "futures/um/daily/metrics/BTCUSDT/BTCUSDT-metrics-2025-01-01.zip",
        "BTCUSDT",
        um[::-1],
    )  # unsorted upstream
    _metrics(
        arch / "futures/cm/daily/metrics/BTCUSD_PERP/BTCUSD_PERP-metrics-2025-01-01.zip",
        "BTCUSD",
        cm,
    )
    store = tmp_path / "s"
    rc = main(["--store-dir", str(store), "import", "--from", str(arch), "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert "open interest (USD) from 2 metrics file(s)" in out.out + out.err
    s = ParquetStore(store)
    a = s.read_oi("BINANCE_FUTURES:btcusdt", DAY, DAY + 86_400)
    np.testing.assert_allclose(a["oi"], [v for _, _, v in um])  # USDT value as published
    assert list(a["time"]) == list(times)
    # COIN-M: contracts x contract size, the live poll's conversion (ccxt contractSize 100)
    live = spec_from_ccxt(
        "binancecoinm",
        {"id": "BTCUSD_PERP", "contract": True, "inverse": True, "contractSize": 100},
    )
    b = s.read_oi("BINANCE_FUTURES:btcusd_perp", DAY, DAY + 86_400)
    np.testing.assert_allclose(b["oi"], [c * live.contract_size for _, c, _ in cm])
    df = load_flow(s, settings_from_dict(None), "BTC", DAY, DAY + 86_400, "5m")
    assert df["oi"].notna().all()
    assert df["oi"].iloc[0] == pytest.approx(um[0][2] + cm[0][1] * 100)
    assert s.imported()["um/metrics/BTCUSDT/2025-01-01"]["malformed_rows"] == 1
