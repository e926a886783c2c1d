"""The feeder's command line, end to end on the real archive files in ../shared."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from feeder.read.flow import load_flow
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from feeder.tools.cli import build_parser, main

pytestmark = pytest.mark.shared

CM_ZIP = "futures/cm/daily/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-2026-05-08.zip"
FUNDING = "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2026-04.zip"


@pytest.fixture
def archive(market_data):
    return market_data / "binance_datatool/tommy-ca/data"


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_import_then_status_then_resume_skips(archive, tmp_path, capsys):
    store = tmp_path / "store"
    rc, out = run(
        capsys, "--store-dir", str(store), "import", "--from", str(archive), "--no-progress"
    )
    assert rc == 0, out
    assert "imported 1 file(s)" in out and "accepted 105,280" in out
    rc, out = run(
        capsys, "--store-dir", str(store), "import", "--from", str(archive), "--no-progress"
    )
    assert "imported 0 file(s), skipped 1 already imported" in out
    rc, out = run(capsys, "--store-dir", str(store), "status", "--json")
    rows = {r["market"]: r for r in json.loads(out[out.index("[") :])}
    perp = rows["BINANCE_FUTURES:btcusd_perp"]
    assert perp["covered_hours"] == 24.0
    assert perp["first_bar"] == "2026-05-08 00:00:00"
    assert rows["BINANCE:btcusdt"]["covered_hours"] == 0.0


def test_imported_coin_m_flow_is_usd_notional_from_contracts(archive, tmp_path, capsys):
    store = tmp_path / "store"
    assert (
        run(capsys, "--store-dir", str(store), "import", "--from", str(archive), "--no-progress")[0]
        == 0
    )
    import zipfile

    with zipfile.ZipFile(archive / CM_ZIP) as z:
        raw = pd.read_csv(z.open(z.namelist()[0]))
    want_buy = raw.loc[~raw["is_buyer_maker"], "quantity"].sum() * 100.0
    bars = ParquetStore(store).read_bars(
        "BINANCE_FUTURES:btcusd_perp", 1778198400, 1778284800, "1m"
    )
    assert bars["vbuy"].sum() == pytest.approx(want_buy)
    assert bars["cbuy"].sum() + bars["csell"].sum() == len(raw)


def test_a_tampered_archive_is_refused_with_a_clear_error(archive, tmp_path, capsys):
    root = tmp_path / "arch"
    dst = root / CM_ZIP
    dst.parent.mkdir(parents=True)
    data = bytearray((archive / CM_ZIP).read_bytes())
    data[1000] ^= 0xFF
    dst.write_bytes(bytes(data))
    shutil.copy(archive / (CM_ZIP + ".CHECKSUM"), root / (CM_ZIP + ".CHECKSUM"))
    rc, out = run(
        capsys, "--store-dir", str(tmp_path / "s"), "import", "--from", str(root), "--no-progress"
    )
    assert rc == 2
    assert "checksum" in out.lower() and "BTCUSD_PERP-aggTrades-2026-05-08.zip" in out


def test_download_from_an_archive_server_then_import(archive, tmp_path, capsys):
    served = tmp_path / "www"
    (served / "data" / CM_ZIP).parent.mkdir(parents=True)
    shutil.copy(archive / CM_ZIP, served / "data" / CM_ZIP)
    shutil.copy(archive / (CM_ZIP + ".CHECKSUM"), served / "data" / (CM_ZIP + ".CHECKSUM"))
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        rc, out = run(
            capsys,
            "--store-dir",
            str(tmp_path / "s"),
            "import",
            "--download",
            "--base-url",
            url,
            "--symbols",
            "BTCUSD_PERP",
            "--market-types",
            "cm",
            "--start",
            "2026-05-07",
            "--end",
            "2026-05-08",
            "--archive-dir",
            str(tmp_path / "arch"),
            "--no-progress",
        )
    finally:
        server.shutdown()
    assert rc == 0, out
    assert "not found (404)" in out  # 2026-05-07 is not on the server: named, not fatal
    assert "imported 1 file(s)" in out
    assert (tmp_path / "arch" / CM_ZIP).exists()


def test_export_candles_writes_freqtrade_files_and_says_what_is_missing(archive, tmp_path, capsys):
    store = tmp_path / "store"
    run(capsys, "--store-dir", str(store), "import", "--from", str(archive), "--no-progress")
    datadir = tmp_path / "data" / "binance"
    rc, out = run(
        capsys,
        "--store-dir",
        str(store),
        "export-candles",
        "--pairs",
        "BTC/USD:BTC",
        "--timeframes",
        "5m",
        "1h",
        "--datadir",
        str(datadir),
        "--archive-dir",
        str(archive),
    )
    assert rc == 0, out
    assert "MISSING FUNDING" in out  # only the USD-M funding archive exists
    from freqtrade.data.history import load_pair_history
    from freqtrade.enums import CandleType

    df = load_pair_history(
        pair="BTC/USD:BTC", timeframe="5m", datadir=datadir, candle_type=CandleType.FUTURES
    )
    assert len(df) == 288
    assert df["date"].iloc[0] == pd.Timestamp("2026-05-08", tz="UTC")
    assert (df["high"] >= df["low"]).all() and (df["volume"] > 0).all()
    h = pd.read_feather(datadir / "futures" / "BTC_USD_BTC-1h-futures.feather")
    assert h["close"].iloc[-1] == df["close"].iloc[-1]
    assert (datadir / "futures" / "BTC_USD_BTC-1h-mark.feather").exists()


def test_export_writes_funding_from_the_archive(tmp_path, capsys, archive):
    from feeder.history.export import export_candles
    from tests.store_cases import make_bars

    store = ParquetStore(tmp_path / "s")
    t0 = 1775001600  # 2026-04-01
    from feeder.ingest.aggregate import rollup

    bars = make_bars(t0, 86_400, 1)
    store.write_bars("BINANCE_FUTURES:btcusdt", "perp", rollup(bars, 60), "1m")
    res = export_candles(
        store, "BTC/USDT:USDT", ["5m"], tmp_path / "d", t0, t0 + 86_400, archive_dir=archive
    )
    fr = pd.read_feather(tmp_path / "d" / "futures" / "BTC_USDT_USDT-1h-funding_rate.feather")
    assert len(fr) == 3  # three 8-hour fundings on 2026-04-01
    assert fr["open"].iloc[0] == pytest.approx(-0.00003449)
    assert not any("MISSING FUNDING" in w for w in res.warnings)


def test_imported_flow_reads_back_through_the_read_api(archive, tmp_path, capsys):
    store = tmp_path / "store"
    run(capsys, "--store-dir", str(store), "import", "--from", str(archive), "--no-progress")
    s = settings_from_dict(
        {"coins": {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": ["BINANCE_FUTURES:btcusd_perp"]}}},
        env=False,
    )
    flow = load_flow(
        ParquetStore(store), s, "BTC", "2026-05-08", "2026-05-09", "1h", per_market=True
    )
    assert len(flow) == 24
    assert flow["BINANCE_FUTURES:btcusd_perp|complete"].all()
    assert not flow["complete"].any()  # the spot market has no data that day: flagged
    assert flow["spot_vbuy"].isna().all()
    assert np.isfinite(flow["perp_vbuy"]).all()


def test_bad_config_key_is_refused_at_start(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"squeezeflow": {"store": {"bakend": "influx"}}}))
    rc, out = run(capsys, "--config", str(cfg), "status")
    assert rc == 2
    assert "squeezeflow.store.bakend: unknown key" in out


def test_help_lists_every_command(capsys):
    """Every subcommand the parser accepts is listed, with its help line, in ``--help``."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(sub.choices)
    assert len(commands) >= 7  # import, export-candles, status, setup-influx, run, replay, ...
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    listed = re.findall(r"^ {4}(\S+)(?: +\S|\n {20,}\S)", out, flags=re.M)
    assert listed == commands
