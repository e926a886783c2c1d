"""Binance public trade archives: names, discovery, checksums, streaming reads, funding, download.

Tests marked ``shared`` read the recorded archives in ../shared/data/market in place (through the
``market_data`` fixture, which skips when that directory is absent); the download tests copy them
into tmp_path and serve them from a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from feeder.history.archive import ArchiveError
from feeder.history.binance_archive import (
    PUBLIC_ARCHIVE_URL,
    ArchiveFile,
    date_range,
    discover,
    month_range,
    parse_archive_name,
    verify_checksum,
)
from feeder.history.binance_download import download
from feeder.history.binance_mark import read_funding
from feeder.history.binance_trades import RawChunkReader, iter_raw_chunks
from feeder.ingest.normalise import IdDeduplicator, Rejects, normalise
from tests.conftest import missing
from tests.helpers import COINM, SPOT

TOMMY = Path("binance_datatool/tommy-ca/data")
CM_AGG_REL = Path("futures/cm/daily/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-2026-05-08.zip")
FUNDING_REL = Path("futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2026-04.zip")
CM_AGG_SHA = "8bfbaa4cd0dfd49cc9e6cdede78e0b2851f42f1dbb7d917bc0847ce1eac4afbe"
KEYS = {"ts", "price", "qty", "is_buyer_maker", "trade_id"}


@pytest.fixture(scope="session")
def archive_root(market_data: Path) -> Path:
    root = market_data / TOMMY
    if not (root / CM_AGG_REL).is_file():
        missing(f"recorded archive {root / CM_AGG_REL} not found")
    return root


@pytest.fixture(scope="session")
def cm_agg(archive_root: Path) -> ArchiveFile:
    af = parse_archive_name(archive_root / CM_AGG_REL)
    assert af is not None
    return af


def _read_all(reader: RawChunkReader | Iterator[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    chunks = list(reader)
    if not chunks:
        return {k: np.empty(0) for k in KEYS}
    return {k: np.concatenate([c[k] for c in chunks]) for k in KEYS}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _zip(csv_path: Path, zip_path: Path | None = None) -> Path:
    zip_path = zip_path or csv_path.with_suffix(".zip")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(csv_path, csv_path.name)
    return zip_path


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "market_type", "data_type", "symbol", "period", "day"),
    [
        (
            "spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-02.zip",
            "spot",
            "trades",
            "BTCUSDT",
            "daily",
            "2025-01-02",
        ),
        (
            "futures/um/daily/aggTrades/ETHUSDT/ETHUSDT-aggTrades-2024-02-29.csv",
            "um",
            "aggTrades",
            "ETHUSDT",
            "daily",
            "2024-02-29",
        ),
        (
            "futures/cm/monthly/trades/BTCUSD_PERP/BTCUSD_PERP-trades-2024-12.zip",
            "cm",
            "trades",
            "BTCUSD_PERP",
            "monthly",
            "2024-12",
        ),
        (
            "x/data/futures/cm/daily/aggTrades/BTCUSD_240927/BTCUSD_240927-aggTrades-2024-09-01.zip",
            "cm",
            "aggTrades",
            "BTCUSD_240927",
            "daily",
            "2024-09-01",
        ),
    ],
)
def test_parse_archive_name_reads_the_layout(rel, market_type, data_type, symbol, period, day):
    af = parse_archive_name(Path("/archive") / rel)
    assert af == ArchiveFile(Path("/archive") / rel, market_type, data_type, symbol, period, day)


@pytest.mark.parametrize(
    "name",
    [
        "BTCUSDT-1h-2026-05-08.zip",  # klines
        "BTCUSDT-fundingRate-2026-04.zip",
        "BTCUSDT-trades-2026-05-08.zip.CHECKSUM",
        "BTCUSDT-trades-2026-02-30.zip",  # no such day
        "BTCUSDT-trades-2026-13.zip",  # no such month
        "BTCUSDT-trades-2026-05-08.parquet",
    ],
)
def test_parse_archive_name_refuses_other_files(name):
    assert parse_archive_name(Path("/a/spot/daily/trades/BTCUSDT") / name) is None
    assert parse_archive_name(Path("/bare") / name, "spot") is None


def test_parse_archive_name_bare_directory_needs_the_market_type():
    p = Path("/downloads/BTCUSDT-aggTrades-2025-03-01.zip")
    assert parse_archive_name(p) is None
    af = parse_archive_name(p, "um")
    assert af is not None
    assert (af.market_type, af.data_type, af.symbol, af.date) == (
        "um",
        "aggTrades",
        "BTCUSDT",
        "2025-03-01",
    )
    # the layout decides; a contradicting explicit market type is an error, not a guess
    laid_out = Path("/a/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-03-01.zip")
    assert parse_archive_name(laid_out, "um") is not None
    with pytest.raises(ArchiveError, match="contradicts"):
        parse_archive_name(laid_out, "spot")


def test_day_range_covers_the_day_or_the_month():
    day = ArchiveFile(Path("x"), "spot", "trades", "BTCUSDT", "daily", "2026-05-08")
    assert day.day_range == (1_778_198_400, 1_778_198_400 + 86_400)
    feb = ArchiveFile(Path("x"), "um", "trades", "BTCUSDT", "monthly", "2024-02")
    assert feb.day_range == (1_706_745_600, 1_706_745_600 + 29 * 86_400)
    dec = ArchiveFile(Path("x"), "um", "trades", "BTCUSDT", "monthly", "2025-12")
    assert dec.day_range == (1_764_547_200, 1_767_225_600)  # to 2026-01-01


def test_date_and_month_ranges():
    assert date_range(date(2024, 2, 28), date(2024, 3, 1)) == [
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
    ]
    assert date_range(date(2024, 3, 1), date(2024, 3, 1)) == ["2024-03-01"]
    assert date_range(date(2024, 3, 2), date(2024, 3, 1)) == []
    assert month_range(date(2024, 11, 30), date(2025, 2, 1)) == [
        "2024-11",
        "2024-12",
        "2025-01",
        "2025-02",
    ]


# --- discovery ----------------------------------------------------------------------------------


@pytest.mark.shared
def test_discover_on_the_recorded_archive(archive_root: Path):
    found = discover(archive_root, None)
    # klines, fundingRate and a CHECKSUM without its zip are not trade archives
    assert [(f.market_type, f.data_type, f.symbol, f.period, f.date) for f in found] == [
        ("cm", "aggTrades", "BTCUSD_PERP", "daily", "2026-05-08")
    ]
    assert found[0].path == archive_root / CM_AGG_REL
    assert discover(archive_root, ["btcusd_perp"]) == found
    assert discover(archive_root, ["BTCUSDT"]) == []
    assert discover(archive_root, None, market_type="cm") == found
    assert discover(archive_root, None, market_type="um") == []


def test_discover_prefers_zip_trades_and_months(tmp_path: Path):
    line = "1,100.0,1.0,100.0,1704067200000,true\n"
    spot = tmp_path / "spot/daily"
    um = tmp_path / "futures/um"
    files = [
        # zip and csv of the same name: the zip
        spot / "trades/BTCUSDT/BTCUSDT-trades-2024-01-01.csv",
        spot / "trades/BTCUSDT/BTCUSDT-trades-2024-01-01.zip",
        # trades and aggTrades of one day: trades
        spot / "aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.zip",
        # aggTrades alone on another day: kept
        spot / "aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-02.zip",
        spot / "trades/ETHUSDT/ETHUSDT-trades-2024-01-01.csv",
        # a monthly file makes the daily files of its month redundant
        um / "monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01.zip",
        um / "daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-31.zip",
        um / "daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-02-01.zip",
    ]
    for f in files:
        _write(f, line)
    _write(spot / "trades/BTCUSDT/BTCUSDT-trades-2024-01-01.zip.CHECKSUM", "0" * 64)

    got = [
        (f.market_type, f.symbol, f.data_type, f.date, f.path.suffix)
        for f in discover(tmp_path, None)
    ]
    assert got == [
        ("spot", "BTCUSDT", "trades", "2024-01-01", ".zip"),
        ("spot", "BTCUSDT", "aggTrades", "2024-01-02", ".zip"),
        ("spot", "ETHUSDT", "trades", "2024-01-01", ".csv"),
        ("um", "BTCUSDT", "aggTrades", "2024-01", ".zip"),
        ("um", "BTCUSDT", "aggTrades", "2024-02-01", ".zip"),
    ]
    assert [f.symbol for f in discover(tmp_path, ["ethusdt"])] == ["ETHUSDT"]
    assert {f.market_type for f in discover(tmp_path, None, market_type="um")} == {"um"}


def test_discover_bare_directory_with_market_type(tmp_path: Path):
    _write(tmp_path / "BTCUSD_PERP-trades-2024-08-09.csv", "1,1.0,1,1.0,1723161600000,true\n")
    _write(tmp_path / "BTCUSD_PERP-trades-2024-08-08.csv", "1,1.0,1,1.0,1723075200000,true\n")
    assert discover(tmp_path, None) == []
    found = discover(tmp_path, None, market_type="cm")
    assert [(f.market_type, f.date) for f in found] == [("cm", "2024-08-08"), ("cm", "2024-08-09")]


# --- checksums ----------------------------------------------------------------------------------


@pytest.mark.shared
def test_checksum_of_the_recorded_zip(cm_agg: ArchiveFile):
    assert verify_checksum(cm_agg.path) is True


@pytest.mark.shared
def test_checksum_mismatch_names_file_and_hashes(cm_agg: ArchiveFile, tmp_path: Path):
    copy = tmp_path / cm_agg.path.name
    shutil.copyfile(cm_agg.path, copy)
    shutil.copyfile(cm_agg.path.with_name(cm_agg.path.name + ".CHECKSUM"), f"{copy}.CHECKSUM")
    assert verify_checksum(copy) is True
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    actual = hashlib.sha256(data).hexdigest()
    with pytest.raises(ArchiveError) as err:
        verify_checksum(copy)
    msg = str(err.value)
    assert str(copy) in msg and CM_AGG_SHA in msg and actual in msg
    assert isinstance(err.value, ValueError)


def test_checksum_absent_or_malformed(tmp_path: Path):
    f = _write(tmp_path / "BTCUSDT-trades-2024-01-01.zip", "x")
    assert verify_checksum(f) is None
    _write(tmp_path / "BTCUSDT-trades-2024-01-01.zip.CHECKSUM", "<html>not found</html>")
    with pytest.raises(ArchiveError, match="not a sha256"):
        verify_checksum(f)


# --- reading ------------------------------------------------------------------------------------


@pytest.mark.shared
def test_recorded_zip_streams_in_chunks(cm_agg: ArchiveFile):
    reader = RawChunkReader(cm_agg, chunk_rows=10_000)
    chunks = list(reader)
    assert [len(c["ts"]) for c in chunks] == [10_000] * 10 + [5_280]
    assert reader.rows == 105_280 and reader.invalid_rows == 0 and not reader.fallback
    assert reader.has_header
    first = chunks[0]
    assert set(first) == KEYS
    assert {k: v.dtype for k, v in first.items()} == {
        "ts": np.int64,
        "price": np.float64,
        "qty": np.float64,
        "is_buyer_maker": np.bool_,
        "trade_id": np.int64,
    }
    assert first["trade_id"][0] == 480_537_903
    assert first["price"][0] == 79972.8
    assert first["qty"][0] == 542.0  # contracts
    assert first["ts"][0] == 1_778_198_400_020
    assert not first["is_buyer_maker"][0]
    cols = _read_all(iter(chunks))
    # gap-free agg ids, and the whole day inside the file's range
    assert np.all(np.diff(cols["trade_id"]) == 1)
    start, end = cm_agg.day_range
    assert cols["ts"].min() >= start * 1000 and cols["ts"].max() < end * 1000
    assert cols["is_buyer_maker"].any() and not cols["is_buyer_maker"].all()
    # the arrays are owned and writable
    assert first["price"].flags.writeable and first["price"].flags.owndata


@pytest.mark.shared
def test_recorded_zip_chunks_feed_normalise(cm_agg: ArchiveFile):
    dedup, rej, n = IdDeduplicator(), Rejects(), 0
    for chunk in iter_raw_chunks(cm_agg, chunk_rows=50_000):
        batch = normalise(COINM, **chunk, dedup=dedup, rejects=rej)
        n += len(batch)
    assert n == 105_280 and rej.total() == 0


@pytest.mark.shared
def test_chunk_size_does_not_change_the_data(cm_agg: ArchiveFile):
    a = _read_all(iter_raw_chunks(cm_agg, chunk_rows=7))
    b = _read_all(RawChunkReader(cm_agg, chunk_rows=1_000_000, block_size=1 << 16))
    for k in KEYS:
        np.testing.assert_array_equal(a[k], b[k])


UM_HEADER = "id,price,qty,quote_qty,time,is_buyer_maker\n"
UM_ROWS = (
    "5001,42000.10,0.003,126.0003,1704067200001,true\n"
    "5002,42000.20,1.500,63000.3,1704067200002,FALSE\n"
    "5003,41999.90,0.010,419.999,1704067200003,False\n"
)


@pytest.mark.parametrize("zipped", [False, True])
def test_header_and_headerless_files_read_the_same(tmp_path: Path, zipped: bool):
    d = tmp_path / "futures/um/daily/trades/BTCUSDT"
    with_header = _write(d / "BTCUSDT-trades-2024-01-01.csv", UM_HEADER + UM_ROWS)
    headerless = _write(d / "BTCUSDT-trades-2024-01-02.csv", UM_ROWS)
    if zipped:
        with_header, headerless = _zip(with_header), _zip(headerless)
    results = []
    for path in (with_header, headerless):
        af = parse_archive_name(path)
        assert af is not None and af.market_type == "um"
        reader = RawChunkReader(af)
        results.append(_read_all(reader))
        assert reader.invalid_rows == 0
    a, b = results
    for k in KEYS:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["trade_id"], [5001, 5002, 5003])
    np.testing.assert_array_equal(a["ts"], [1704067200001, 1704067200002, 1704067200003])
    np.testing.assert_array_equal(a["qty"], [0.003, 1.5, 0.01])
    np.testing.assert_array_equal(a["is_buyer_maker"], [True, False, False])


def test_header_is_detected(tmp_path: Path):
    d = tmp_path / "futures/um/daily/trades/BTCUSDT"
    h = RawChunkReader(
        parse_archive_name(_write(d / "BTCUSDT-trades-2024-01-01.csv", UM_HEADER + UM_ROWS))
    )
    n = RawChunkReader(parse_archive_name(_write(d / "BTCUSDT-trades-2024-01-02.csv", UM_ROWS)))
    list(h), list(n)
    assert h.has_header and not n.has_header
    assert h.rows == n.rows == 3


def test_spot_microsecond_trades_with_best_match_column(tmp_path: Path):
    # spot trades: 7 columns, no header, microseconds from 2025, Python-style booleans
    rows = (
        "4000000000,95000.17000000,0.04688450,4454.03547037,1735689600016208,True,True\n"
        "4000000001,95000.58000000,0.02163508,2055.34514835,1735689600022482,False,True\n"
    )
    csv = _write(tmp_path / "spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-01.csv", rows)
    cols = _read_all(iter_raw_chunks(parse_archive_name(_zip(csv))))
    np.testing.assert_array_equal(cols["ts"], [1735689600016208, 1735689600022482])
    np.testing.assert_array_equal(cols["trade_id"], [4000000000, 4000000001])
    np.testing.assert_array_equal(cols["price"], [95000.17, 95000.58])
    np.testing.assert_array_equal(cols["is_buyer_maker"], [True, False])
    # normalise takes the microseconds as they are
    batch = normalise(SPOT, **cols)
    np.testing.assert_array_equal(batch.ts, [1735689600016208000, 1735689600022482000])


@pytest.mark.parametrize(
    ("market", "text", "ts"),
    [
        # spot aggTrades: 8 columns, no header
        (
            "spot",
            "26129,0.01633102,4.70443515,27781,27781,1498793709153,true,true\n",
            1498793709153,
        ),
        # um/cm aggTrades with header
        (
            "cm",
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
            "is_buyer_maker\n26129,80000.1,3.0,27781,27783,1498793709153,TRUE\n",
            1498793709153,
        ),
    ],
)
def test_agg_trades_columns(tmp_path: Path, market: str, text: str, ts: int):
    prefix = "spot" if market == "spot" else f"futures/{market}"
    f = _write(tmp_path / prefix / "daily/aggTrades/X/X-aggTrades-2017-06-30.csv", text)
    cols = _read_all(iter_raw_chunks(parse_archive_name(f)))
    assert cols["trade_id"].tolist() == [26129]  # the agg id, not first_trade_id
    assert cols["ts"].tolist() == [ts]
    assert cols["is_buyer_maker"].tolist() == [True]


def test_cm_trades_quantity_is_contracts(tmp_path: Path):
    text = "id,price,qty,base_qty,time,is_buyer_maker\n7,60000.0,12,0.02,1723161600000,false\n"
    f = _write(
        tmp_path / "futures/cm/daily/trades/BTCUSD_PERP/BTCUSD_PERP-trades-2024-08-09.csv", text
    )
    cols = _read_all(iter_raw_chunks(parse_archive_name(f)))
    assert cols["qty"].tolist() == [12.0]


def test_malformed_rows_are_counted_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    good = [
        f"{i},100.5,0.25,25.125,{1704067200000 + i},{'true' if i % 2 else 'false'}"
        for i in range(1, 2001)
    ]
    lines = list(good)
    # inserted from the end so each index is the line's place among the good rows
    lines.insert(1800, "55555,100.5,0.25,25.1,1704067200000,maybe")  # not a boolean
    lines.insert(1500, "77777,abc,0.25,25.1,1704067200000,true")  # unparseable price
    lines.insert(1200, "id,price,qty,quote_qty,time,is_buyer_maker")  # a header mid-file
    lines.insert(900, "66666,100.5,,25.1,1704067200000,true")  # empty quantity
    lines.insert(300, "88888,100.5,0.25,25.1,1704067200000,true,extra,more")  # too many fields
    lines.insert(100, "99999,100.5,0.25")  # too few fields
    f = _write(
        tmp_path / "futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01-01.csv",
        "\n".join(lines) + "\n",
    )
    # small blocks and chunks: the unparseable rows are met after chunks were already yielded
    reader = RawChunkReader(parse_archive_name(f), chunk_rows=128, block_size=4096)
    cols = _read_all(reader)
    assert reader.invalid_rows == 6
    assert reader.fallback
    assert len(reader.invalid_samples) >= 1
    np.testing.assert_array_equal(cols["trade_id"], np.arange(1, 2001))
    np.testing.assert_array_equal(cols["ts"], 1704067200000 + np.arange(1, 2001))
    np.testing.assert_array_equal(cols["is_buyer_maker"], np.arange(1, 2001) % 2 == 1)
    assert reader.rows == 2000
    fallback_msg = next(r.getMessage() for r in caplog.records if "tolerant mode" in r.getMessage())
    assert int(fallback_msg.rsplit(" ", 1)[1]) >= 1024  # chunks were yielded before the retry


def test_wrong_field_counts_only_stay_on_the_fast_path(tmp_path: Path):
    text = UM_ROWS + "6000,1.0\n" + UM_ROWS.replace("500", "600")
    f = _write(tmp_path / "futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01-01.csv", text)
    reader = RawChunkReader(parse_archive_name(f))
    assert len(_read_all(reader)["ts"]) == 6
    assert reader.invalid_rows == 1 and not reader.fallback
    assert "6000,1.0" in reader.invalid_samples[0]


def test_empty_header_only_and_wrong_files(tmp_path: Path):
    d = tmp_path / "futures/um/daily/trades/BTCUSDT"
    assert (
        list(iter_raw_chunks(parse_archive_name(_write(d / "BTCUSDT-trades-2024-01-01.csv", ""))))
        == []
    )
    assert (
        list(
            iter_raw_chunks(
                parse_archive_name(_write(d / "BTCUSDT-trades-2024-01-02.csv", UM_HEADER))
            )
        )
        == []
    )
    klines_like = "open_time,open,high,low,close,volume,close_time\n1,2,3,4,5,6,7\n"
    with pytest.raises(ArchiveError, match="unexpected header"):
        list(
            iter_raw_chunks(
                parse_archive_name(_write(d / "BTCUSDT-trades-2024-01-03.csv", klines_like))
            )
        )
    with pytest.raises(ArchiveError, match="at least 6"):
        list(
            iter_raw_chunks(
                parse_archive_name(_write(d / "BTCUSDT-trades-2024-01-04.csv", "1,2,3\n"))
            )
        )
    with pytest.raises(ArchiveError, match="not a valid zip"):
        list(
            iter_raw_chunks(parse_archive_name(_write(d / "BTCUSDT-trades-2024-01-05.zip", "junk")))
        )


# --- funding ------------------------------------------------------------------------------------


@pytest.mark.shared
def test_read_funding_from_the_recorded_zip(archive_root: Path, tmp_path: Path):
    df = read_funding(archive_root / FUNDING_REL)
    assert list(df.columns) == ["date", "funding_rate"]
    assert len(df) == 90
    assert str(df["date"].dtype) == "datetime64[ms, UTC]"
    assert df["funding_rate"].dtype == np.float64
    assert df["date"].iloc[0] == pd.Timestamp("2026-04-01 00:00", tz="UTC")
    assert df["date"].iloc[-1] == pd.Timestamp("2026-04-30 16:00", tz="UTC")
    assert df["funding_rate"].iloc[0] == pytest.approx(-0.00003449, abs=0)
    assert df["date"].is_monotonic_increasing
    # the same data unzipped, and without its header
    with zipfile.ZipFile(archive_root / FUNDING_REL) as zf:
        text = zf.read(zf.namelist()[0]).decode()
    plain = read_funding(_write(tmp_path / "BTCUSDT-fundingRate-2026-04.csv", text))
    headerless = read_funding(_write(tmp_path / "h.csv", text.split("\n", 1)[1]))
    pd.testing.assert_frame_equal(df, plain)
    pd.testing.assert_frame_equal(df, headerless)


# --- download -----------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()


@pytest.fixture
def archive_server(archive_root: Path, tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A real HTTP server on 127.0.0.1 serving copies of the recorded archives under ``data/``."""
    served = tmp_path / "served"
    for rel in (CM_AGG_REL, FUNDING_REL):
        for name in (rel, rel.with_name(rel.name + ".CHECKSUM")):
            (served / "data" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(archive_root / name, served / "data" / name)
    # a corrupted zip served next to the genuine CHECKSUM of the original
    bad = served / "data" / CM_AGG_REL.with_name("BTCUSD_PERP-aggTrades-2026-05-09.zip")
    data = bytearray((archive_root / CM_AGG_REL).read_bytes())
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    shutil.copyfile(archive_root / f"{CM_AGG_REL}.CHECKSUM", f"{bad}.CHECKSUM")
    # a zip whose CHECKSUM is missing
    shutil.copyfile(
        archive_root / CM_AGG_REL, bad.with_name("BTCUSD_PERP-aggTrades-2026-05-10.zip")
    )

    handler = functools.partial(_Handler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "dest", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=30) as c:
        yield c


@pytest.mark.shared
def test_download_fetches_verifies_and_skips(archive_server, client, cm_agg: ArchiveFile):
    base, dest, requests = archive_server
    af = download(base + "/", "cm", "aggTrades", "btcusd_perp", "2026-05-08", dest, client)
    assert af.path == dest / CM_AGG_REL
    assert (af.market_type, af.data_type, af.symbol, af.date) == (
        "cm",
        "aggTrades",
        "BTCUSD_PERP",
        "2026-05-08",
    )
    assert af.path.read_bytes() == cm_agg.path.read_bytes()
    assert verify_checksum(af.path) is True
    assert sorted(requests) == [f"/data/{CM_AGG_REL}", f"/data/{CM_AGG_REL}.CHECKSUM"]
    assert not list(af.path.parent.glob("*.part"))
    assert sum(len(c["ts"]) for c in iter_raw_chunks(af)) == 105_280

    # already there with a valid checksum: nothing is fetched
    requests.clear()
    assert download(base, "cm", "aggTrades", "BTCUSD_PERP", "2026-05-08", dest, client) == af
    assert requests == []

    # a corrupted local copy is fetched again
    af.path.write_bytes(b"corrupt")
    download(base, "cm", "aggTrades", "BTCUSD_PERP", "2026-05-08", dest, client)
    assert verify_checksum(af.path) is True
    assert f"/data/{CM_AGG_REL}" in requests


@pytest.mark.shared
def test_download_404_names_the_url(archive_server, client):
    base, dest, _ = archive_server
    url = f"{base}/data/futures/cm/daily/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-2026-05-07.zip"
    with pytest.raises(ArchiveError, match="404") as err:
        download(base, "cm", "aggTrades", "BTCUSD_PERP", "2026-05-07", dest, client)
    assert url in str(err.value)
    # zip present but its CHECKSUM missing: also an error naming the URL
    with pytest.raises(ArchiveError, match="404") as err:
        download(base, "cm", "aggTrades", "BTCUSD_PERP", "2026-05-10", dest, client)
    assert "BTCUSD_PERP-aggTrades-2026-05-10.zip.CHECKSUM" in str(err.value)
    assert not list(dest.rglob("*.zip")) and not list(dest.rglob("*.part"))


@pytest.mark.shared
def test_download_checksum_mismatch_leaves_nothing(archive_server, client):
    base, dest, _ = archive_server
    url = f"{base}/data/futures/cm/daily/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-2026-05-09.zip"
    with pytest.raises(ArchiveError, match="checksum mismatch") as err:
        download(base, "cm", "aggTrades", "BTCUSD_PERP", "2026-05-09", dest, client)
    assert url in str(err.value) and CM_AGG_SHA in str(err.value)
    leftovers = [p for p in dest.rglob("*") if p.is_file()]
    assert leftovers == []


def test_download_rejects_a_bad_date_before_any_request(tmp_path: Path, client):
    with pytest.raises(ValueError, match="daily format"):
        download(PUBLIC_ARCHIVE_URL, "spot", "trades", "BTCUSDT", "2026-05", tmp_path, client)
    with pytest.raises(ValueError, match="monthly format"):
        download(
            PUBLIC_ARCHIVE_URL,
            "spot",
            "trades",
            "BTCUSDT",
            "2026-05-01",
            tmp_path,
            client,
            period="monthly",
        )
    assert PUBLIC_ARCHIVE_URL == "https://data.binance.vision"
