"""Bybit, OKX and Tardis trade archives: real rows where ../shared has them (a whole Bybit spot
day, Tardis BitMEX rows), files in the venue's documented layout otherwise."""

from __future__ import annotations

import gzip
import json
import shutil
import threading
import uuid
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feeder.history import okx, tardis
from feeder.history.archive import ArchiveError
from feeder.history.venue_csv import ids_from_text
from feeder.history.venue_files import discover_venue_files
from feeder.history.venue_import import TARDIS_TAIL_S
from feeder.live.markets import ccxt_market_id, spec_from_ccxt
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from feeder.tools.cli import main

D0 = 1735689600  # 2025-01-01 00:00:00 UTC
BYBIT_SPOT_DAY = 1747612800  # 2025-05-19


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def _import(capsys, store: Path, *argv: str):
    return run(capsys, "--store-dir", str(store), "import", *argv, "--no-progress")


def _status(capsys, store: Path) -> dict[str, dict]:
    rc, out = run(capsys, "--store-dir", str(store), "status", "--json")
    assert rc == 0, out
    return {r["market"]: r for r in json.loads(out[out.index("[") :])}


def _gz(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fi, gzip.open(dest, "wb") as fo:
        shutil.copyfileobj(fi, fo)
    return dest


# -- Bybit ---------------------------------------------------------------------------------------


@pytest.mark.shared
def test_real_bybit_spot_day_imports_every_fill_under_the_ccxt_market_id(
    market_data, tmp_path, capsys
):
    real = market_data / "RT-Data/1INCHUSDT_2025-05-19.csv"
    root = tmp_path / "arch"
    _gz(real, root / "spot/1INCHUSDT/1INCHUSDT_2025-05-19.csv.gz")  # the venue's own file
    store = tmp_path / "s"
    rc, out = _import(capsys, store, "--from", str(root))
    assert rc == 0, out
    assert "imported 1 file(s)" in out and "accepted 6,682" in out  # identical fills kept
    market = ccxt_market_id("bybit", {"id": "1INCHUSDT", "spot": True})
    assert market == "BYBIT_SPOT:1inchusdt"
    rows = pd.read_csv(real)
    bars = ParquetStore(store).read_bars(market, BYBIT_SPOT_DAY, BYBIT_SPOT_DAY + 86_400, "1s")
    buy = rows["side"] == "buy"
    assert bars["vbuy"].sum() == pytest.approx((rows.price * rows.volume)[buy].sum())
    assert bars["vsell"].sum() == pytest.approx((rows.price * rows.volume)[~buy].sum())
    assert int(bars["cbuy"].sum()) == int(buy.sum())
    st = _status(capsys, store)[market]
    assert st["covered_hours"] == 24.0 and st["kind"] == "spot"
    rc, out = _import(capsys, store, "--from", str(root))
    assert "imported 0 file(s), skipped 1 already imported" in out
    # the gunzipped copy, by its bare name, forced to the Bybit format
    rc, out = _import(capsys, tmp_path / "s2", "--from", str(real), "--format", "bybit")
    assert rc == 0 and "accepted 6,682" in out, out


def _bybit_trading(path: Path, rows: list[tuple[float, str, float, float]], sym: str) -> Path:
    lines = [
        "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,"
        "foreignNotional"
    ]
    for ts, side, size, price in rows:
        lines.append(
            f"{ts:.4f},{sym},{side},{size},{price},ZeroPlusTick,{uuid.uuid4()},0,{size},"
            f"{size * price}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def test_bybit_derivatives_linear_and_inverse_and_bad_rows(tmp_path, capsys):
    root = tmp_path / "arch"
    rng = np.random.default_rng(1)
    n = 500
    ts = np.sort(D0 + rng.uniform(0, 86_399, n))[::-1]  # newest first: order does not matter
    side = rng.choice(["Buy", "Sell"], n)
    size = rng.uniform(0.001, 2, n).round(3)
    price = rng.uniform(90_000, 95_000, n).round(1)
    lin = _bybit_trading(
        root / "trading/BTCUSDT/BTCUSDT2025-01-01.csv.gz",
        list(zip(ts, side, size, price, strict=True)),
        "BTCUSDT",
    )
    with gzip.open(lin, "at") as fh:  # a truncated row, a bad side, a row of the next day
        fh.write(f"{D0 + 5:.4f},BTCUSDT,Buy\n")
        fh.write(f"{D0 + 6:.4f},BTCUSDT,Hold,1,90000,ZeroPlusTick,{uuid.uuid4()},0,1,90000\n")
        fh.write(f"{D0 + 86_400 + 1:.4f},BTCUSDT,Buy,1,90000,ZeroPlusTick,{uuid.uuid4()},0,1,9\n")
    _bybit_trading(
        root / "trading/BTCUSD/BTCUSD2025-01-01.csv.gz",
        [(D0 + 10.5, "Buy", 1000, 94_000.0), (D0 + 11.25, "Sell", 250, 94_010.0)],
        "BTCUSD",
    )
    store = tmp_path / "s"
    rc, out = _import(capsys, store, "--from", str(root))
    assert rc == 0, out
    assert "imported 2 file(s)" in out
    assert "malformed rows skipped: 2" in out and "outside_file_day 1" in out
    s = ParquetStore(store)
    assert ccxt_market_id("bybit", {"id": "BTCUSDT"}) == "BYBIT:btcusdt"
    bars = s.read_bars("BYBIT:btcusdt", D0, D0 + 86_400, "1s")
    buy = side == "Buy"
    assert bars["vbuy"].sum() == pytest.approx((size * price)[buy].sum())
    assert int(bars["cbuy"].sum() + bars["csell"].sum()) == n
    inv = s.read_bars("BYBIT:btcusd", D0, D0 + 86_400, "1s")  # 1 USD contracts
    assert inv["vbuy"].sum() == pytest.approx(1000.0) and inv["vsell"].sum() == pytest.approx(250)
    ledger = s.imported()
    entry = ledger["bybit/trading/BTCUSDT/2025-01-01"]
    assert entry["refused"] == {"outside_file_day": 1} and entry["malformed_rows"] == 2


def test_uuid_trade_ids_are_vectorised_and_stable():
    import pyarrow as pa

    ids = ["0f9c6b0a-1234-5678-9abc-def012345678", "ffffffff-ffff-ffff-ffff-ffffffffffff"]
    out = ids_from_text(pa.chunked_array([pa.array(ids)]))
    assert out[0] == 0x0F9C6B0A12345678 and out[1] == 0x7FFF_FFFF_FFFF_FFFF
    assert list(ids_from_text(pa.chunked_array([pa.array(["12", "7"])]))) == [12, 7]
    odd = ids_from_text(pa.chunked_array([pa.array(["not-an-id"])]))
    assert odd[0] > 0


# -- OKX -----------------------------------------------------------------------------------------


def _okx_zip(path: Path, inst: str, rows: list[tuple[int, str, float, float, int]]) -> Path:
    text = "instrument_name,trade_id,side,price,size,created_time\n" + "".join(
        f"{inst},{tid},{side},{price},{size},{ts}\n" for tid, side, price, size, ts in rows
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(path.with_suffix(".csv").name, text)
    return path


def test_okx_swap_in_contracts_doubled_rows_and_utc8_day(tmp_path, capsys):
    root = tmp_path / "arch"
    rows = [
        (100 + i, "buy" if i % 3 else "sell", 94_000.0 + i, float(1 + i % 5), (D0 + 60 * i) * 1000)
        for i in range(300)
    ]
    _okx_zip(
        root / "trades/daily/20250101/BTC-USDT-SWAP-trades-2025-01-01.zip",
        "BTC-USDT-SWAP",
        rows + rows,
    )  # early files list every trade twice
    # a spot file cut at UTC+8 midnight: 2025-01-02 (UTC+8) starts 2025-01-01 16:00 UTC
    spot = [
        (7, "sell", 94_100.0, 0.5, (D0 + 16 * 3600 + 5) * 1000),
        (8, "buy", 94_200.0, 0.25, (D0 + 86_400 + 3600) * 1000),
    ]
    _okx_zip(root / "trades/daily/20250102/BTC-USDT-trades-2025-01-02.zip", "BTC-USDT", spot)
    store = tmp_path / "s"
    rc, out = _import(capsys, store, "--from", str(root))
    assert rc == 0, out
    assert "duplicate_id 300" in out and "imported 2 file(s)" in out
    want = spec_from_ccxt("okx", {"id": "BTC-USDT-SWAP", "contract": True, "contractSize": 0.01})
    assert okx.spec_for_inst("BTC-USDT-SWAP", settings_from_dict(None)) == want
    s = ParquetStore(store)
    bars = s.read_bars(want.market, D0, D0 + 86_400, "1s")
    exp_buy = sum(p * sz * 0.01 for _, sd, p, sz, _ in rows if sd == "buy")
    assert bars["vbuy"].sum() == pytest.approx(exp_buy)
    assert int(bars["cbuy"].sum() + bars["csell"].sum()) == 300
    cov = s.coverage("OKEX:btc-usdt")
    assert [tuple(c) for c in cov] == [(D0 + 16 * 3600, D0 + 86_400 + 16 * 3600)]


def test_okx_unknown_contract_value_is_refused_with_advice(tmp_path, capsys):
    root = tmp_path / "arch"
    _okx_zip(
        root / "PEPE-USDT-SWAP-trades-2025-01-01.zip",
        "PEPE-USDT-SWAP",
        [(1, "buy", 1.0, 1.0, D0 * 1000)],
    )
    rc, out = _import(capsys, tmp_path / "s", "--from", str(root))
    assert rc == 2 and "contract_sizes['OKEX:pepe-usdt-swap']" in out


# -- Tardis --------------------------------------------------------------------------------------


@pytest.mark.shared
def test_real_tardis_rows_map_to_our_market_and_contracts(market_data, tmp_path, capsys):
    real = market_data / "nautilus_trader/tardis/bitmex_trades_XBTUSD.csv"
    store = tmp_path / "s"
    rc, out = _import(capsys, store, "--from", str(real))  # no date in the name: no coverage
    assert rc == 0, out
    assert "accepted 10" in out
    rows = pd.read_csv(real)
    s = ParquetStore(store)
    bars = s.read_bars("BITMEX:xbtusd", 1583020800, 1583020900, "1s")
    assert bars["vsell"].sum() == pytest.approx(rows.loc[rows.side == "sell", "amount"].sum())
    assert len(s.coverage("BITMEX:xbtusd")) == 0
    # the same rows in a dated day file: the day minus the tail of the last day of the stream
    dated = tmp_path / "t" / "bitmex_trades_2020-03-01_XBTUSD.csv"
    dated.parent.mkdir()
    shutil.copy(real, dated)
    rc, out = _import(capsys, tmp_path / "s2", "--from", str(dated.parent))
    assert rc == 0, out
    cov = ParquetStore(tmp_path / "s2").coverage("BITMEX:xbtusd")
    assert [tuple(c) for c in cov] == [(1583020800, 1583020800 + 86_400 - TARDIS_TAIL_S)]


def _tardis(path: Path, ex: str, sym: str, rows: list[tuple[int, int, int, str, float, float]]):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n")
        for ts, local, tid, side, price, amount in rows:
            fh.write(f"{ex},{sym},{ts},{local},{tid},{side},{price},{amount}\n")


def test_tardis_days_cut_by_receive_time_join_in_one_stream(tmp_path, capsys):
    root = tmp_path / "arch"
    us = 1_000_000
    d1 = D0 + 86_400
    day0 = [
        ((D0 + 100) * us, (D0 + 100) * us + 90_000, 1, "buy", 94_000.0, 0.5),
        ((d1 - 1) * us, (d1 - 1) * us + 50_000, 2, "sell", 94_000.0, 1.0),
    ]
    # first row of day 1's file: an exchange time of day 0's last second, received after midnight
    day1 = [
        ((d1 - 1) * us + 950_000, d1 * us + 20_000, 3, "sell", 94_001.0, 2.0),
        ((d1 + 5) * us, (d1 + 5) * us + 80_000, 4, "buy", 94_002.0, 0.25),
    ]
    _tardis(
        root / "binance-futures_trades_2025-01-01_BTCUSDT.csv.gz",
        "binance-futures",
        "BTCUSDT",
        day0,
    )
    _tardis(
        root / "binance-futures_trades_2025-01-02_BTCUSDT.csv.gz",
        "binance-futures",
        "BTCUSDT",
        day1,
    )
    store = tmp_path / "s"
    rc, out = _import(capsys, store, "--from", str(root))
    assert rc == 0, out
    s = ParquetStore(store)
    m = "BINANCE_FUTURES:btcusdt"
    last = s.read_bars(m, d1 - 1, d1, "1s")
    assert last["vsell"].sum() == pytest.approx(94_000.0 * 1.0 + 94_001.0 * 2.0)  # both files
    assert [tuple(c) for c in s.coverage(m)] == [(D0, d1 + 86_400 - TARDIS_TAIL_S)]

    # day 1 alone: the previous day's trade is refused (its day is not in this stream)
    rc, out = _import(
        capsys,
        tmp_path / "s2",
        "--from",
        str(root / ("binance-futures_trades_2025-01-02_BTCUSDT.csv.gz")),
    )
    assert rc == 0 and "outside_file_day 1" in out, out


def test_a_tardis_file_whose_rows_name_another_market_is_refused(tmp_path):
    """The rows' exchange and symbol must be the file name's (a renamed file would store one
    market's trades under another's id)."""
    us = 1_000_000
    path = tmp_path / "binance-futures_trades_2025-01-01_BTCUSDT.csv.gz"
    _tardis(path, "binance-futures", "ETHUSDT", [((D0 + 1) * us, (D0 + 1) * us, 1, "buy", 3e3, 1)])
    f = tardis.parse_name(path)
    assert f is not None
    with pytest.raises(ArchiveError, match="rows are binance-futures ETHUSDT, the file name says"):
        tardis.read(f)


def test_tardis_exchange_names_map_to_live_ids(tmp_path):
    s = settings_from_dict(None)
    cases = {
        ("binance", "BTCUSDT"): ccxt_market_id("binance", {"id": "BTCUSDT"}),
        ("binance-futures", "BTCUSDT"): ccxt_market_id("binanceusdm", {"id": "BTCUSDT"}),
        ("binance-delivery", "BTCUSD_PERP"): ccxt_market_id("binancecoinm", {"id": "BTCUSD_PERP"}),
        ("bybit", "BTCUSDT"): ccxt_market_id("bybit", {"id": "BTCUSDT"}),
        ("bybit-spot", "BTCUSDT"): ccxt_market_id("bybit", {"id": "BTCUSDT", "spot": True}),
        ("okex-swap", "BTC-USDT-SWAP"): ccxt_market_id("okx", {"id": "BTC-USDT-SWAP"}),
        ("okex", "BTC-USDT"): ccxt_market_id("okx", {"id": "BTC-USDT"}),
        ("coinbase", "BTC-USD"): ccxt_market_id("coinbase", {"id": "BTC-USD"}),
    }
    for (ex, sym), want in cases.items():
        f = tardis.parse_name(tmp_path / tardis.local_name(ex, sym, "2025-01-01"))
        assert f is not None and tardis.spec(f, s).market == want
    cm = tardis.spec(
        tardis.parse_name(tmp_path / "binance-delivery_trades_2025-01-01_BTCUSD_PERP.csv.gz"), s
    )
    assert cm.contract_size == 100.0  # same COIN-M contract as the Binance import


# -- format recognition and downloads -------------------------------------------------------------


def test_layouts_are_recognised_and_format_can_be_forced(tmp_path):
    names = [
        "trading/BTCUSDT/BTCUSDT2025-01-01.csv.gz",
        "spot/BTCUSDT/BTCUSDT_2025-01-01.csv.gz",
        "trades/daily/20250101/BTC-USDT-SWAP-trades-2025-01-01.zip",
        "coinbase_trades_2025-01-01_BTC-USD.csv.gz",
        "futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-01-01.zip",  # Binance: not ours
    ]
    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_bytes(b"")
    got = {(f.fmt, f.venue, f.symbol) for f in discover_venue_files(tmp_path)}
    assert got == {
        ("bybit", "trading", "BTCUSDT"),
        ("bybit", "spot", "BTCUSDT"),
        ("okx", "trades", "BTC-USDT-SWAP"),
        ("tardis", "coinbase", "BTC-USD"),
    }
    assert {f.fmt for f in discover_venue_files(tmp_path, "okx")} == {"okx"}


def test_download_each_venue_from_a_loopback_server_missing_day_reported(tmp_path, capsys):
    served = tmp_path / "www"
    _bybit_trading(
        served / "trading/BTCUSDT/BTCUSDT2025-01-01.csv.gz",
        [(D0 + 1.5, "Buy", 0.5, 94_000.0)],
        "BTCUSDT",
    )
    _okx_zip(
        served / "cdn/okex/traderecords/trades/daily/20250101/BTC-USDT-SWAP-trades-2025-01-01.zip",
        "BTC-USDT-SWAP",
        [(1, "sell", 94_000.0, 3.0, (D0 + 2) * 1000)],
    )
    _tardis(
        served / "v1/coinbase/trades/2025/01/01/BTC-USD.csv.gz",
        "coinbase",
        "BTC-USD",
        [((D0 + 3) * 1_000_000, (D0 + 3) * 1_000_000 + 5, 11, "buy", 94_000.0, 0.1)],
    )
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = tmp_path / "s"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        common = [
            "--download",
            "--base-url",
            url,
            "--start",
            "2025-01-01",
            "--end",
            "2025-01-02",
            "--archive-dir",
            str(tmp_path / "arch"),
        ]
        for fmt, sym, extra in (
            ("bybit", "BTCUSDT", ["--market-types", "um"]),
            ("okx", "BTC-USDT-SWAP", []),
            ("tardis", "coinbase:BTC-USD", []),
        ):
            rc, out = _import(capsys, store, "--format", fmt, "--symbols", sym, *common, *extra)
            assert rc == 0, out
            flat = out.replace("\n", "")
            assert "missing upstream" in flat, out  # day 2 is not served
            assert "2025-01-02" in flat or "2025/01/02" in flat, out
            assert "imported 1 file(s)" in out
    finally:
        server.shutdown()
        server.server_close()
    s = ParquetStore(store)
    assert s.read_bars("BYBIT:btcusdt", D0, D0 + 60, "1s")["vbuy"].sum() == pytest.approx(47_000)
    assert s.read_bars("OKEX:btc-usdt-swap", D0, D0 + 60, "1s")["vsell"].sum() == pytest.approx(
        94_000 * 3 * 0.01
    )
    assert s.read_bars("COINBASE:btc-usd", D0, D0 + 60, "1s")["vbuy"].sum() == pytest.approx(9400)
    assert (tmp_path / "arch/bybit/trading/BTCUSDT/BTCUSDT2025-01-01.csv.gz").exists()


def test_consecutive_bybit_spot_days_keep_every_row_although_ids_restart(tmp_path, capsys):
    root = tmp_path / "arch"
    for day, d in ((D0, "2025-01-01"), (D0 + 86_400, "2025-01-02")):
        p = root / f"spot/BTCUSDT/BTCUSDT_{d}.csv.gz"
        p.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(p, "wt") as fh:  # ids are row counters from 1 in every file
            fh.write("id,timestamp,price,volume,side,rpi\n")
            fh.writelines(f"{i},{(day + 10 * i) * 1000},94000,0.5,buy,0\n" for i in range(1, 301))
    rc, out = _import(capsys, tmp_path / "s", "--from", str(root))
    assert rc == 0, out
    assert "accepted 600" in out and "duplicate_id" not in out


@pytest.mark.shared
def test_one_folder_with_bybit_binance_klines_and_trades_imports_all(market_data, tmp_path, capsys):
    root = tmp_path / "arch"
    _gz(
        market_data / "RT-Data/1INCHUSDT_2025-05-19.csv",
        root / "spot/1INCHUSDT/1INCHUSDT_2025-05-19.csv.gz",
    )
    k = root / "spot/daily/klines/BTCUSDT/1m"
    k.mkdir(parents=True)
    shutil.copy(market_data / "binance_datatool/lostleaf/BTCUSDT-1m-2020-01-01.zip", k)
    rc, out = _import(capsys, tmp_path / "s", "--from", str(root))
    assert rc == 0, out
    st = _status(capsys, tmp_path / "s")
    assert st["BYBIT_SPOT:1inchusdt"]["covered_hours"] == 24.0
    assert st["BINANCE:btcusdt"]["minute_hours"] == 24.0


def test_bybit_derivatives_rows_listed_twice_are_dropped_by_trade_id(tmp_path, capsys):
    p = _bybit_trading(
        tmp_path / "a/trading/BTCUSDT/BTCUSDT2025-01-01.csv.gz",
        [(D0 + 1.0, "Buy", 1.0, 90_000.0), (D0 + 2.0, "Sell", 2.0, 90_000.0)],
        "BTCUSDT",
    )
    with gzip.open(p, "rt") as fh:
        lines = fh.read().splitlines()
    with gzip.open(p, "wt") as fh:
        fh.write("\n".join([*lines, lines[1]]) + "\n")  # the first trade again
    rc, out = _import(capsys, tmp_path / "s", "--from", str(tmp_path / "a"))
    assert rc == 0 and "duplicate_id 1" in out and "accepted 2" in out, out
