"""export-candles' mark file: from markPriceKlines archives (files in the documented layout), the
trade-price approximation otherwise, and never the approximation over a real mark file."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest

from feeder.history.export import export_candles
from feeder.stores.parquet import ParquetStore

DAY = 1735689600


def _store(tmp_path) -> ParquetStore:
    s = ParquetStore(tmp_path / "store")
    t = DAY + 60 * np.arange(1440, dtype=np.int64)
    close = 94_000 + np.arange(1440, dtype=np.float64)
    bars = pd.DataFrame(
        {
            "time": t,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "vbuy": 1e5,
            "vsell": 1e5,
            "cbuy": 1.0,
            "csell": 1.0,
            "lbuy": 0.0,
            "lsell": 0.0,
        }
    )
    s.write_bars("BINANCE_FUTURES:btcusdt", "perp", bars, "1m")
    s.add_coverage("BINANCE_FUTURES:btcusdt", DAY, DAY + 86_400)
    return s


def _mark_zip(root, rows):
    p = root / "futures/um/daily/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2025-01-01.zip"
    p.parent.mkdir(parents=True)
    text = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n"  # noqa: E501
    text += "".join(
        f"{t * 1000},{o},{o + 5},{o - 5},{o + 1},0,{t * 1000 + 3599999},0,60,0,0,0\n"
        for t, o in rows
    )
    with zipfile.ZipFile(p, "w") as z:
        z.writestr(p.with_suffix(".csv").name, text)


def test_mark_from_archive_and_a_real_mark_file_is_never_replaced(tmp_path):
    s = _store(tmp_path)
    datadir = tmp_path / "data"
    mark = datadir / "futures/BTC_USDT_USDT-1h-mark.feather"
    # 1. no archive: the approximation, said so
    res = export_candles(s, "BTC/USDT:USDT", ["1h"], datadir, DAY, DAY + 86_400)
    assert mark in res.files and any("built from trade prices" in w for w in res.warnings)
    # 2. archive mark klines replace our approximation
    arch = tmp_path / "arch"
    _mark_zip(arch, [(DAY + 3600 * h, 90_000.0 + h) for h in range(24)])
    res = export_candles(s, "BTC/USDT:USDT", ["1h"], datadir, DAY, DAY + 86_400, archive_dir=arch)
    got = pd.read_feather(mark)
    assert len(got) == 24 and got["open"].iloc[3] == 90_003.0 and got["close"].iloc[0] == 90_001.0
    assert not any("built from trade prices" in w for w in res.warnings)
    # 3. a real mark file (the archive's, or FreqTrade's download) is kept without the archive
    res = export_candles(s, "BTC/USDT:USDT", ["1h"], datadir, DAY, DAY + 86_400)
    assert mark not in res.files and any(
        "kept the existing mark-price file" in w for w in res.warnings
    )
    pd.testing.assert_frame_equal(pd.read_feather(mark), got)


@pytest.mark.shared
def test_download_funding_where_export_finds_it(market_data, tmp_path, capsys):
    import shutil
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from feeder.history.export import Pair, find_funding_files
    from feeder.tools.cli import main

    rel = "futures/um/monthly/fundingRate/BTCUSDT"
    served = tmp_path / "www/data" / rel
    served.mkdir(parents=True)
    for f in (market_data / "binance_datatool/tommy-ca/data" / rel).iterdir():
        shutil.copy(f, served / f.name)  # the real zip and its CHECKSUM
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rc = main(
            [
                "--store-dir",
                str(tmp_path / "s"),
                "import",
                "--download",
                "--data-type",
                "fundingRate",
                "--base-url",
                f"http://127.0.0.1:{server.server_address[1]}",
                "--symbols",
                "BTCUSDT",
                "--market-types",
                "um",
                "--start",
                "2026-03-01",
                "--end",
                "2026-04-30",
                "--archive-dir",
                str(tmp_path / "arch"),
                "--no-progress",
            ]
        )
    finally:
        server.shutdown()
        server.server_close()
    out = capsys.readouterr()
    text = (out.out + out.err).replace("\n", "")
    assert rc == 0, text
    assert "404" in text and "downloaded 1 fundingRate file(s)" in text  # March is not served
    found = find_funding_files(tmp_path / "arch", Pair.parse("BTC/USDT:USDT"))
    assert [f.name for f in found] == ["BTCUSDT-fundingRate-2026-04.zip"]
