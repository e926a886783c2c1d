"""A user's first hour with the feeder: honest stores (never synthetic and real together) and
loud errors where a silent result would mislead (issue 10)."""

from __future__ import annotations

import json
import logging
import shutil

import pandas as pd
import pytest

from feeder.read.flow_source import FlowSource
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from feeder.tools.cli import main
from feeder.tools.synthetic import Scenario, generate

pytestmark = pytest.mark.shared

CM_ZIP = "futures/cm/daily/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-2026-05-08.zip"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Two days of the labelled SYNTHETIC market (2024-01-01, 2024-01-02), thinly traded."""
    root = tmp_path_factory.mktemp("syn") / "archive"
    generate(Scenario(days=2, trades_per_s=0.05), root)
    return root


@pytest.fixture
def archive(market_data):
    return market_data / "binance_datatool/tommy-ca/data"


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def imported(capsys, store, source):
    rc, out = run(
        capsys, "--store-dir", str(store), "import", "--from", str(source), "--no-progress"
    )
    return rc, out


def settings(store, **coins):
    return settings_from_dict({"store": {"parquet_dir": str(store)}, **coins}, env=False)


# ----- synthetic and real never mix --------------------------------------------------------------
def test_synthetic_import_marks_the_store_and_status_and_export_say_so(synthetic, tmp_path, capsys):
    store = tmp_path / "s"
    rc, out = imported(capsys, store, synthetic)
    assert rc == 0, out
    assert "SYNTHETIC" in out
    ledger = ParquetStore(store).imported()
    assert ledger and all(v.get("synthetic") is True for v in ledger.values())
    rc, out = run(capsys, "--store-dir", str(store), "status", "--json")
    rows = json.loads(out[out.index("[") :])
    stored = [r for r in rows if r["covered_hours"] > 0]
    assert stored and all(r["synthetic"] for r in stored)
    rc, out = run(capsys, "--store-dir", str(store), "status")
    assert "SYNTHETIC" in out
    rc, out = run(
        capsys,
        "--store-dir",
        str(store),
        "export-candles",
        "--pairs",
        "BTC/USDT:USDT",
        "--timeframes",
        "5m",
        "--datadir",
        str(tmp_path / "d"),
    )
    assert rc == 0, out
    assert "SYNTHETIC" in out


def test_real_and_synthetic_archives_never_merge_into_one_store(
    synthetic, archive, tmp_path, capsys
):
    syn_store, real_store = tmp_path / "syn", tmp_path / "real"
    assert imported(capsys, syn_store, synthetic)[0] == 0
    before = ParquetStore(syn_store).imported()
    rc, out = imported(capsys, syn_store, archive)
    assert rc == 2
    assert "SYNTHETIC" in out and "refusing to import real" in out
    assert ParquetStore(syn_store).imported() == before  # nothing was written

    assert imported(capsys, real_store, archive)[0] == 0
    before = ParquetStore(real_store).imported()
    markets = ParquetStore(real_store).markets()
    rc, out = imported(capsys, real_store, synthetic)
    assert rc == 2
    assert "refusing to import SYNTHETIC files" in out
    assert ParquetStore(real_store).imported() == before
    assert ParquetStore(real_store).markets() == markets


def test_a_backtest_on_synthetic_flow_says_so(synthetic, tmp_path, capsys, caplog):
    store = tmp_path / "s"
    assert imported(capsys, store, synthetic)[0] == 0
    flow = FlowSource(settings(store), "5m")
    with caplog.at_level(logging.WARNING):
        df = flow.history(
            "BTC", pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02 23:55", tz="UTC")
        )
    assert len(df) == 576 and df["complete"].all()
    assert any("SYNTHETIC" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


# ----- a backtest with missing flow is loud ------------------------------------------------------
def test_flow_missing_for_most_candles_warns_with_coin_markets_store_range_and_import(
    archive, tmp_path, capsys, caplog
):
    store = tmp_path / "s"
    assert imported(capsys, store, archive)[0] == 0  # COIN-M only: no spot, no USD-M
    # default rule each_kind: COIN-M stands in for the perps, so only spot is to import; the
    # strict rule (all) needs USD-M too
    for rule, types in (("each_kind", "spot --start"), ("all", "spot um --start")):
        flow = FlowSource(settings(store, flow={"require": rule}), "5m")
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            df = flow.history(
                "BTC",
                pd.Timestamp("2026-05-08", tz="UTC"),
                pd.Timestamp("2026-05-08 23:55", tz="UTC"),
            )
        assert not df["complete"].any()
        msgs = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        missing = [m for m in msgs if "missing for" in m]
        assert len(missing) == 1, msgs
        w = missing[0]
        for part in (
            "BTC",
            "BINANCE:btcusdt",
            "BINANCE_FUTURES:btcusdt",
            str(store),
            "2026-05-08",
            f"squeezeflow-feeder import --download --symbols BTCUSDT --market-types {types}",
        ):
            assert part in w, (part, w)


def test_a_configured_market_id_absent_from_the_store_is_named_with_the_closest(
    synthetic, tmp_path, capsys, caplog
):
    store = tmp_path / "s"
    assert imported(capsys, store, synthetic)[0] == 0
    coins = {"BTC": {"spot": ["BINANCE:btcusdtt"], "perp": ["BINANCE_FUTURES:btcusdt"]}}
    flow = FlowSource(settings(store, coins=coins), "5m")
    with caplog.at_level(logging.WARNING):
        flow.history(
            "BTC", pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-01 23:55", tz="UTC")
        )
    msgs = " | ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "market BINANCE:btcusdtt" in msgs and "did you mean BINANCE:btcusdt?" in msgs


# ----- export-candles does what its help says or refuses -----------------------------------------
@pytest.fixture
def syn_store(synthetic, tmp_path, capsys):
    store = tmp_path / "s"
    assert imported(capsys, store, synthetic)[0] == 0
    return store


def export(capsys, store, datadir, *args):
    return run(
        capsys, "--store-dir", str(store), "export-candles", "--datadir", str(datadir), *args
    )


def test_export_start_alone_runs_to_the_last_stored_day_and_end_alone_from_the_first(
    syn_store, tmp_path, capsys
):
    d = tmp_path / "d"
    rc, out = export(
        capsys,
        syn_store,
        d,
        "--pairs",
        "BTC/USDT:USDT",
        "--timeframes",
        "5m",
        "--start",
        "2024-01-02",
    )
    assert rc == 0, out
    df = pd.read_feather(d / "futures" / "BTC_USDT_USDT-5m-futures.feather")
    assert df["date"].iloc[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert df["date"].iloc[-1] == pd.Timestamp("2024-01-02 23:55", tz="UTC")
    rc, out = export(
        capsys,
        syn_store,
        d,
        "--pairs",
        "BTC/USDT:USDT",
        "--timeframes",
        "5m",
        "--end",
        "2024-01-01",
    )
    assert rc == 0, out
    df = pd.read_feather(d / "futures" / "BTC_USDT_USDT-5m-futures.feather")
    assert df["date"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert df["date"].iloc[-1] == pd.Timestamp("2024-01-01 23:55", tz="UTC")


def test_export_outside_the_stored_range_is_refused(syn_store, tmp_path, capsys):
    for args in (
        ("--start", "2025-01-01"),
        ("--end", "2023-06-01"),
        ("--start", "2025-01-01", "--end", "2025-01-02"),
    ):
        rc, out = export(
            capsys,
            syn_store,
            tmp_path / "d",
            "--pairs",
            "BTC/USDT:USDT",
            "--timeframes",
            "5m",
            *args,
        )
        assert rc == 2, (args, out)
        assert "holds no data" in out and "2024-01-01..2024-01-02" in out, out
    assert not (tmp_path / "d" / "futures" / "BTC_USDT_USDT-5m-futures.feather").exists()


def test_export_refuses_a_timeframe_freqtrade_cannot_use(syn_store, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export(capsys, syn_store, tmp_path / "d", "--pairs", "BTC/USDT:USDT", "--timeframes", "7m")
    assert e.value.code == 2
    assert "'7m' is not one FreqTrade can use" in capsys.readouterr().err


def test_missing_funding_for_coin_m_points_to_the_coin_m_folder(
    syn_store, synthetic, tmp_path, capsys
):
    rc, out = export(
        capsys,
        syn_store,
        tmp_path / "d",
        "--pairs",
        "BTC/USD:BTC",
        "--timeframes",
        "5m",
        "--archive-dir",
        str(synthetic),
    )
    assert rc == 0, out
    assert "MISSING FUNDING" in out
    assert "futures/cm/monthly/fundingRate/BTCUSD_PERP" in out.replace("\n", "")
    assert "futures/um/monthly" not in out


def test_a_re_export_without_funding_removes_the_stale_funding_file(
    syn_store, synthetic, tmp_path, capsys
):
    d = tmp_path / "d"
    funding = d / "futures" / "BTC_USDT_USDT-1h-funding_rate.feather"
    rc, out = export(
        capsys,
        syn_store,
        d,
        "--pairs",
        "BTC/USDT:USDT",
        "--timeframes",
        "5m",
        "--archive-dir",
        str(synthetic),
    )
    assert rc == 0 and funding.exists(), out
    rc, out = export(capsys, syn_store, d, "--pairs", "BTC/USDT:USDT", "--timeframes", "5m")
    assert rc == 0, out
    assert "MISSING FUNDING" in out and "removed" in out
    assert not funding.exists()


# ----- import: bad files reported, the rest imported ---------------------------------------------
def test_a_corrupt_zip_without_checksum_is_reported_and_the_rest_imported(
    archive, tmp_path, capsys
):
    root = tmp_path / "arch"
    shutil.copytree(archive / "futures/cm", root / "futures/cm")
    bad = root / "futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-05-08.zip"
    bad.parent.mkdir(parents=True)
    data = bytearray((archive / CM_ZIP).read_bytes())
    data[200:4000] = bytes(3800)  # damaged inside the compressed member, no CHECKSUM beside it
    bad.write_bytes(bytes(data))
    store = tmp_path / "s"
    rc, out = imported(capsys, store, root)
    assert rc == 2, out
    assert "Traceback" not in out
    assert "BTCUSDT-aggTrades-2026-05-08.zip" in out and "FAILED 1 file(s)" in out
    assert "imported 1 file(s)" in out
    ledger = ParquetStore(store).imported()
    assert list(ledger) == ["cm/aggTrades/BTCUSD_PERP/2026-05-08"]


def test_import_from_a_missing_folder_says_it_does_not_exist(tmp_path, capsys):
    rc, out = imported(capsys, tmp_path / "s", tmp_path / "nowhere")
    assert rc == 2
    assert "does not exist" in out and str(tmp_path / "nowhere") in out


def test_non_trade_archives_found_are_counted_in_the_summary(archive, tmp_path, capsys):
    rc, out = imported(capsys, tmp_path / "s", archive)
    assert rc == 0, out
    assert (
        "skipped 3 archive file(s) that are not trades or aggTrades (fundingRate 1, klines 2)"
        in " ".join(out.split())
    )


# ----- the dry-run catch-up line ----------------------------------------------------------------
def _catch_up_lines(caplog):
    return [r.getMessage() for r in caplog.records if "caught up" in r.getMessage()]


def test_dry_run_catch_up_on_an_old_store_states_staleness_once_in_human_units(
    synthetic, tmp_path, capsys, caplog
):
    store = tmp_path / "s"
    assert imported(capsys, store, synthetic)[0] == 0  # flow 2024-01-01 .. 2024-01-03
    now = pd.Timestamp("2026-11-29 12:00", tz="UTC").timestamp()
    s = settings_from_dict(
        {"store": {"parquet_dir": str(store)}, "redis": {"enabled": False}}, env=False
    )
    flow = FlowSource(s, "5m", clock=lambda: now)
    with caplog.at_level(logging.INFO):
        flow.catch_up("BTC", 100)
        for _ in range(3):  # bot loops: the store is polled (Redis disabled)
            flow.poll(["BTC"])
    lines = _catch_up_lines(caplog)
    assert len(lines) == 1, lines
    assert "store complete until" not in lines[0]
    assert "1061 days" in lines[0] and "since 2024-01-03" in lines[0], lines[0]


def test_dry_run_catch_up_on_a_current_store_says_complete_until(
    synthetic, tmp_path, capsys, caplog
):
    store = tmp_path / "s"
    assert imported(capsys, store, synthetic)[0] == 0
    now = pd.Timestamp("2024-01-02 12:02:30", tz="UTC").timestamp()
    s = settings_from_dict(
        {"store": {"parquet_dir": str(store)}, "redis": {"enabled": False}}, env=False
    )
    flow = FlowSource(s, "5m", clock=lambda: now)
    with caplog.at_level(logging.INFO):
        flow.catch_up("BTC", 100)
    lines = _catch_up_lines(caplog)
    assert len(lines) == 1 and "store complete until 2024-01-02 12:05" in lines[0], lines


def test_closest_market_is_a_typo_of_the_symbol_or_the_exchange_never_another_market():
    from feeder.read.diagnostics import closest_market

    known = ["BINANCE:btcusdt", "BINANCE_FUTURES:btcusdt", "BINANCE_FUTURES:btcusd_perp"]
    assert closest_market("BINANCE:btcusdtt", known) == "BINANCE:btcusdt"
    assert closest_market("BINANCE_FUTURE:btcusdt", known) == "BINANCE_FUTURES:btcusdt"
    assert closest_market("BINANCE:ethusdt", known) is None
    assert closest_market("BINANCE:btcusdt", known[1:]) is None  # spot is not a perp


def test_the_live_feeder_refuses_to_write_into_a_synthetic_store(synthetic, tmp_path, capsys):
    store = tmp_path / "s"
    assert imported(capsys, store, synthetic)[0] == 0
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "squeezeflow": {
                    "store": {"parquet_dir": str(store)},
                    "redis": {"enabled": False},
                    "feeder": {
                        "spool_dir": str(tmp_path / "spool"),
                        "exchanges": [
                            {
                                "id": "binance",
                                "kind": "spot",
                                "symbols": ["BTC/USDT"],
                                "urls": {"api": {"public": "http://127.0.0.1:9/api/v3"}},
                            }
                        ],
                    },
                }
            }
        )
    )
    rc, out = run(capsys, "--config", str(cfg), "run", "--no-redis")
    assert rc == 2
    assert "SYNTHETIC" in out and str(store) in out
