"""Binance 1-minute klines as minute-resolution bars: real spot klines from ../shared, and a day
built both ways (trades, and klines made from the same trades in the test: no real pair of a
kline file and the trade file of the same day and market exists in ../shared)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feeder.read.flow import load_flow
from feeder.settings import settings_from_dict
from feeder.stores import MINUTE_SUFFIX
from feeder.stores.parquet import ParquetStore
from feeder.tools.cli import main

DAY = 1735689600  # 2025-01-01
REAL_DAY = 1577836800  # 2020-01-01


def _import(capsys, store: Path, *argv: str):
    rc = main(["--store-dir", str(store), "import", *argv, "--no-progress"])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.shared
def test_real_spot_klines_are_minute_bars_used_at_whole_minute_timeframes(
    market_data, tmp_path, capsys
):
    src = market_data / "binance_datatool/lostleaf"
    store = tmp_path / "s"
    rc, out = _import(capsys, store, "--from", str(src), "--market-types", "spot")
    assert rc == 0, out
    assert "imported 3 file(s)" in out
    s = ParquetStore(store)
    assert [tuple(c) for c in s.coverage("BINANCE:btcusdt" + MINUTE_SUFFIX)] == [
        (REAL_DAY, REAL_DAY + 3 * 86_400)
    ]
    assert len(s.coverage("BINANCE:btcusdt")) == 0  # no 1-second bars behind them
    rc = main(["--store-dir", str(store), "status", "--json"])
    text = capsys.readouterr().out
    row = next(r for r in json.loads(text[text.index("[") :]) if r["market"] == "BINANCE:btcusdt")
    assert row["minute_hours"] == 72.0 and row["covered_hours"] == 0.0
    with zipfile.ZipFile(src / "BTCUSDT-1m-2020-01-01.zip") as z:
        k = pd.read_csv(z.open(z.namelist()[0]), header=None)
    bars = s.read_bars("BINANCE:btcusdt", REAL_DAY, REAL_DAY + 86_400, "1m")
    assert len(bars) == len(k) == 1440
    np.testing.assert_allclose(bars["vbuy"], k[10])
    np.testing.assert_allclose(bars["vsell"], k[7] - k[10])
    assert bars["cbuy"].isna().all()  # counts per side are not in klines: never invented
    settings = settings_from_dict(None)
    df = load_flow(s, settings, "BTC", REAL_DAY, REAL_DAY + 86_400, "5m", per_market=True)
    assert df["BINANCE:btcusdt|complete"].all()
    assert df["BINANCE:btcusdt|vbuy"].sum() == pytest.approx(k[10].sum())
    assert "notes" not in df.attrs
    sub = load_flow(s, settings, "BTC", REAL_DAY, REAL_DAY + 3600, "30s", per_market=True)
    assert not sub["BINANCE:btcusdt|complete"].any()
    assert any("only 1-minute bars (klines)" in n for n in sub.attrs["notes"])


def _trades(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(DAY * 1000, (DAY + 86_400) * 1000, n))
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "price": rng.uniform(90_000, 95_000, n).round(1),
            "qty": rng.integers(1, 50, n).astype(float),
            "time": t,
            "bm": rng.random(n) < 0.45,
        }
    )


def _write_zip(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(path.with_suffix(".csv").name, text)


def _agg_csv(tr: pd.DataFrame) -> str:
    return "".join(
        f"{i},{p},{q},{i},{i},{t},{'true' if b else 'false'}\n"
        for i, p, q, t, b in zip(tr.id, tr.price, tr.qty, tr.time, tr.bm, strict=True)
    )


def _klines_from_trades(tr: pd.DataFrame, contract_usd: float | None) -> str:
    """Binance 1m kline rows computed from the trades (as the venue computes them)."""
    m = (tr.time // 60_000) * 60_000
    base = tr.qty * contract_usd / tr.price if contract_usd else tr.qty
    quote = tr.qty if contract_usd else tr.qty * tr.price  # cm: quote column is base volume
    vol = tr.qty if contract_usd else base
    f = pd.DataFrame(
        {
            "m": m,
            "p": tr.price,
            "vol": vol,
            "quote": quote if not contract_usd else base,
            "buy": ~tr.bm,
        }
    )
    f["bvol"] = np.where(f.buy, f.vol, 0.0)
    f["bquote"] = np.where(f.buy, f.quote, 0.0)
    g = f.groupby("m")
    k = pd.DataFrame(
        {
            "open": g.p.first(),
            "high": g.p.max(),
            "low": g.p.min(),
            "close": g.p.last(),
            "vol": g.vol.sum(),
            "quote": g.quote.sum(),
            "n": g.p.size(),
            "bvol": g.bvol.sum(),
            "bquote": g.bquote.sum(),
        }
    )
    return "".join(
        f"{t},{r.open},{r.high},{r.low},{r.close},{float(r.vol)!r},{t + 59_999},"
        f"{float(r.quote)!r},{r.n},{float(r.bvol)!r},{float(r.bquote)!r},0\n"
        for t, r in k.iterrows()
    )


@pytest.mark.parametrize(
    ("prefix", "symbol", "market", "contract"),
    [
        ("spot", "BTCUSDT", "BINANCE:btcusdt", None),
        ("futures/cm", "BTCUSD_PERP", "BINANCE_FUTURES:btcusd_perp", 100.0),
    ],
)
def test_klines_and_trades_give_the_same_minute_sums_and_trades_win(
    tmp_path, capsys, prefix, symbol, market, contract
):
    tr = _trades(20_000, seed=3)
    arch, karch = tmp_path / "arch", tmp_path / "karch"
    _write_zip(
        arch / f"{prefix}/daily/aggTrades/{symbol}/{symbol}-aggTrades-2025-01-01.zip", _agg_csv(tr)
    )
    _write_zip(
        karch / f"{prefix}/daily/klines/{symbol}/1m/{symbol}-1m-2025-01-01.zip",
        _klines_from_trades(tr, contract),
    )
    kl, trd = tmp_path / "kl", tmp_path / "trd"
    rc, out = _import(capsys, kl, "--from", str(karch))
    assert rc == 0, out
    rc, out = _import(capsys, trd, "--from", str(arch))
    assert rc == 0, out
    a = ParquetStore(kl).read_bars(market, DAY, DAY + 86_400, "1m").set_index("time")
    b = ParquetStore(trd).read_bars(market, DAY, DAY + 86_400, "1m").set_index("time")
    assert len(a) == len(b) > 1000
    for f in ("vbuy", "vsell", "open", "high", "low", "close"):
        np.testing.assert_allclose(a[f], b[f], rtol=1e-9, err_msg=f)
    # both in one store, trades first: the kline import writes no minute over trade-built ones
    rc, out = _import(capsys, trd, "--from", str(karch))
    assert rc == 0, out
    s = ParquetStore(trd)
    entry = s.imported()[f"{prefix.split('/')[-1]}/klines-1m/{symbol}/2025-01-01"]
    assert entry["minutes"] == 0
    assert len(s.coverage(market + MINUTE_SUFFIX)) == 0
    both = s.read_bars(market, DAY, DAY + 86_400, "1m")
    assert both["cbuy"].notna().all()  # trade counts kept


@pytest.mark.backend
@pytest.mark.shared
def test_kline_minutes_in_influx_leave_unknown_counts_out(market_data, influx_db, tmp_path):
    """Kline minutes carry no per-side counts: read at 1m, and summed server-side into longer
    candles, the counts stay unknown (NaN), never zero; the flow equals the Parquet store's."""
    from feeder.history import binance_klines
    from feeder.settings import InfluxSettings
    from feeder.stores.influx import InfluxStore

    url, db = influx_db
    s = InfluxStore(InfluxSettings(url=url, database=db, max_retries=1))
    s.setup()
    parquet = ParquetStore(tmp_path / "p")
    settings = settings_from_dict(None)
    try:
        files = binance_klines.discover(market_data / "binance_datatool/lostleaf", "spot")[:1]
        rep = binance_klines.import_klines(files, s, settings)
        assert rep.files_done == 1
        assert binance_klines.import_klines(files, parquet, settings).files_done == 1
        bars = s.read_bars("BINANCE:btcusdt", REAL_DAY, REAL_DAY + 86_400, "1m")
        assert len(bars) == 1440 and bars["cbuy"].isna().all() and bars["vbuy"].gt(0).any()
        for tf in ("1m", "5m", "1h"):
            df = load_flow(s, settings, "BTC", REAL_DAY, REAL_DAY + 86_400, tf, per_market=True)
            assert df["BINANCE:btcusdt|complete"].all()
            assert df["BINANCE:btcusdt|vbuy"].sum() == pytest.approx(bars["vbuy"].sum())
            assert df["BINANCE:btcusdt|cbuy"].isna().all(), tf
            want = load_flow(
                parquet, settings, "BTC", REAL_DAY, REAL_DAY + 86_400, tf, per_market=True
            )
            pd.testing.assert_frame_equal(df, want, check_exact=False, rtol=1e-9)
    finally:
        s.close()


@pytest.mark.shared
def test_export_candles_finds_the_range_of_kline_only_markets(market_data, tmp_path, capsys):
    store = tmp_path / "s"
    src = market_data / "binance_datatool/lostleaf"
    assert _import(capsys, store, "--from", str(src), "--market-types", "spot")[0] == 0
    rc = main(
        [
            "--store-dir",
            str(store),
            "export-candles",
            "--pairs",
            "BTC/USDT",
            "--timeframes",
            "5m",
            "--datadir",
            str(tmp_path / "d"),
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    files = list((tmp_path / "d").rglob("BTC_USDT-5m*.feather"))
    assert files and len(pd.read_feather(files[0])) == 3 * 288


@pytest.mark.shared
def test_download_klines_verified_from_a_loopback_archive_then_imported(
    market_data, tmp_path, capsys
):
    import shutil
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    src = market_data / "binance_datatool/lostleaf"
    served = tmp_path / "www/data/spot/daily/klines/BTCUSDT/1m"
    served.mkdir(parents=True)
    for f in src.glob("BTCUSDT-1m-2020-01-0[12].zip*"):  # real zips and their CHECKSUMs
        shutil.copy(f, served / f.name)
    bad = served / "BTCUSDT-1m-2020-01-03.zip"
    shutil.copy(src / "BTCUSDT-1m-2020-01-02.zip", bad)  # wrong content for its CHECKSUM
    shutil.copy(src / "BTCUSDT-1m-2020-01-03.zip.CHECKSUM", served / (bad.name + ".CHECKSUM"))
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rc, out = _import(
            capsys,
            tmp_path / "s",
            "--download",
            "--data-type",
            "klines",
            "--base-url",
            f"http://127.0.0.1:{server.server_address[1]}",
            "--symbols",
            "BTCUSDT",
            "--market-types",
            "spot",
            "--start",
            "2020-01-01",
            "--end",
            "2020-01-04",
            "--archive-dir",
            str(tmp_path / "arch"),
        )
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 0, out
    flat = out.replace("\n", "")
    assert "checksum mismatch" in flat and "404" in flat  # 01-03 tampered, 01-04 missing
    assert "downloaded 2 klines file(s)" in flat and "imported 2 file(s)" in flat
    assert not (tmp_path / "arch/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-03.zip").exists()
    s = ParquetStore(tmp_path / "s")
    assert [tuple(c) for c in s.coverage("BINANCE:btcusdt" + MINUTE_SUFFIX)] == [
        (REAL_DAY, REAL_DAY + 2 * 86_400)
    ]


def test_malformed_kline_rows_are_counted_not_imported(tmp_path):
    from feeder.history import binance_klines

    good = "1735689600000,1,2,0.5,1.5,10,1735689659999,15,7,4,6,0\n"
    text = good + "oops,1,2,3\n" + "1735689660000,x,2,0.5,1.5,10,1735689719999,15,7,4,6,0\n"
    p = tmp_path / "spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01-01.zip"
    _write_zip(p, text)
    f = binance_klines.discover(tmp_path)[0]
    bars, bad = binance_klines.read_bars(f, None)
    assert bad == 2 and len(bars) == 1
    assert bars["vbuy"].iloc[0] == 6.0 and bars["vsell"].iloc[0] == 9.0
