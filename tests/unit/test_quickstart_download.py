"""The quick start's online data (issue 9 §4): 1-minute klines of BTC spot, USD-M and COIN-M, open
interest from metrics, funding and mark, fetched from a loopback HTTP server in the public
archive's layout (files in the documented layouts, with CHECKSUMs) and imported through the real
command line; a file type the archive does not answer is reported, not fatal."""

from __future__ import annotations

import hashlib
import sys
import threading
import zipfile
from datetime import date
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from feeder.history.export import Pair, find_funding_files
from feeder.read.flow import load_flow
from feeder.settings import Settings
from feeder.stores import MINUTE_SUFFIX
from feeder.stores.parquet import ParquetStore
from feeder.tools import quickstart

DAY = 1735689600  # 2025-01-01
DAYS = 3
KLINE = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n"  # noqa: E501
METRICS = (
    "create_time,symbol,sum_open_interest,sum_open_interest_value,"
    "count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,count_long_short_ratio,"
    "sum_taker_long_short_vol_ratio\n"
)


def _zip(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(path.with_suffix(".csv").name, text)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}\n")


def _klines(t0: int, step: int, n: int) -> str:
    rows = []
    for i in range(n):
        t = (t0 + i * step) * 1000
        p = 94_000.0 + i % 50
        rows.append(
            f"{t},{p},{p + 5},{p - 5},{p + 1},12.5,{t + step * 1000 - 1},1175000.0,"
            f"300,6.0,564000.0,0\n"
        )
    return KLINE + "".join(rows)


def _archive(www: Path) -> None:
    data = www / "data"
    for d in range(DAYS):
        t0 = DAY + d * 86_400
        day = f"2025-01-0{d + 1}"
        for prefix, sym in (
            ("spot", "BTCUSDT"),
            ("futures/um", "BTCUSDT"),
            ("futures/cm", "BTCUSD_PERP"),
        ):
            _zip(data / f"{prefix}/daily/klines/{sym}/1m/{sym}-1m-{day}.zip", _klines(t0, 60, 1440))
        for prefix, sym, amount, value in (
            ("futures/um", "BTCUSDT", 75_000.0, 75_000.0 * 94_000),
            ("futures/cm", "BTCUSD_PERP", 550_000.0, 550_000.0 * 100 / 94_000),
        ):
            rows = "".join(
                f"{_ts(t0 + 300 * i)},{sym},{amount},{value},0.7,1.1,0.8,0.9\n" for i in range(288)
            )
            _zip(data / f"{prefix}/daily/metrics/{sym}/{sym}-metrics-{day}.zip", METRICS + rows)
    funding = "calc_time,funding_interval_hours,last_funding_rate\n" + "".join(
        f"{(DAY + 8 * 3600 * i) * 1000},8,0.0001\n" for i in range(3 * DAYS)
    )
    _zip(data / "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2025-01.zip", funding)
    # no markPriceKlines served: the archive does not answer for them


def _ts(t: int) -> str:
    import pandas as pd

    return f"{pd.Timestamp(t, unit='s'):%Y-%m-%d %H:%M:%S}"


@pytest.mark.slow
def test_quick_start_fetches_klines_oi_and_funding_from_the_archive(tmp_path, capfd):
    _archive(tmp_path / "www")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store, archive = tmp_path / "store", tmp_path / "archive"
    try:
        quickstart.download_recent(
            [sys.executable, "-m", "feeder.tools.cli"],
            store,
            archive,
            f"http://127.0.0.1:{server.server_address[1]}",
            date(2025, 1, 1),
            date(2025, 1, DAYS),
        )
    finally:
        server.shutdown()
        server.server_close()
    out = " ".join(capfd.readouterr().err.split())
    assert "no markPriceKlines for BTCUSDT (um): the backtest runs without it" in out, out[-3000:]
    s = ParquetStore(store)
    for m in ("BINANCE:btcusdt", "BINANCE_FUTURES:btcusdt", "BINANCE_FUTURES:btcusd_perp"):
        assert [tuple(c) for c in s.coverage(m + MINUTE_SUFFIX)] == [(DAY, DAY + DAYS * 86_400)], m
        assert len(s.read_oi(m, DAY, DAY + DAYS * 86_400)) == (288 * DAYS if "FUT" in m else 0)
    assert [f.name for f in find_funding_files(archive, Pair.parse("BTC/USDT:USDT"))] == [
        "BTCUSDT-fundingRate-2025-01.zip"
    ]
    # the backtest's flow, with the default all-venue coins and rule: complete, with OI
    flow = load_flow(s, Settings(), "BTC", DAY + 86_400, DAY + DAYS * 86_400, "5m")
    assert len(flow) == 288 * (DAYS - 1) and flow["complete"].all()
    assert flow["oi"].notna().all() and (flow["spot_vbuy"] > 0).all()
