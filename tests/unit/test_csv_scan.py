"""The C scanner of venue trade CSVs (``feeder.history.csv_scan``) gives exactly pyarrow's
columns for every file it takes, and refuses every other file, which pyarrow then reads and
counts the malformed rows of. Real files where ../shared has them (a Bybit spot day, Tardis
BitMEX rows), each venue's documented layout, and generated files with odd values."""

from __future__ import annotations

import gzip
import logging
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from feeder.history import bybit, csv_scan, okx, tardis, venue_csv
from feeder.history.venue_csv import AUTO_ID, TEXT, ids_from_text, read_columns, sides_to_seller
from feeder.history.venue_files import RawDay, discover_venue_files

D0 = 1735689600  # 2025-01-01


def test_the_scanner_is_built_by_the_install():
    assert csv_scan.available(), "pip install -e . built no feeder.history._csvscan (C compiler?)"


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values and dtype; floats compared bit for bit (rounding, -0.0)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a.view(np.int64), b.view(np.int64)))
    return bool(np.array_equal(a, b))


def _values(cols: dict[str, pa.ChunkedArray], types: dict[str, pa.DataType]) -> dict:
    out = {}
    for k, t in types.items():
        if t == TEXT:
            out[k] = sides_to_seller(cols[k])
        elif t == AUTO_ID:
            out[k] = (ids_from_text(cols[k]),)
        else:
            out[k] = (np.asarray(cols[k].to_numpy()),)
    return out


def _both(path: Path, types: dict[str, pa.DataType], monkeypatch) -> tuple[bool, object, object]:
    """(taken by the scanner, what read_columns gives, what pyarrow alone gives)."""
    try:
        taken = venue_csv._scanned(path, types, None) is not None
    except Exception:  # e.g. a header without a wanted column: both paths say so below
        taken = False

    def outcome():
        try:
            cols, bad = read_columns(path, types)
        except Exception as exc:  # both paths must fail alike
            return type(exc).__name__
        return _values(cols, types), bad

    fast = outcome()
    with monkeypatch.context() as m:
        m.setattr(csv_scan, "available", lambda: False)
        slow = outcome()
    return taken, fast, slow


def _equal(x: object, y: object) -> bool:
    if isinstance(x, str) or isinstance(y, str):
        return x == y
    (xv, xb), (yv, yb) = x, y  # type: ignore[misc]
    return (
        xb == yb
        and xv.keys() == yv.keys()
        and all(all(_same(a, b) for a, b in zip(xv[k], yv[k], strict=True)) for k in xv)
    )


def _raw_equal(a: RawDay, b: RawDay) -> bool:
    return (
        a.raw.keys() == b.raw.keys()
        and all(_same(a.raw[k], b.raw[k]) for k in a.raw)
        and (a.malformed_rows, a.refused, a.window) == (b.malformed_rows, b.refused, b.window)
    )


def _adapter_both(path: Path, monkeypatch) -> tuple[RawDay, RawDay]:
    (f,) = discover_venue_files(path)
    read = {"bybit": bybit.read, "okx": okx.read, "tardis": tardis.read}[f.fmt]
    fast = read(f)
    with monkeypatch.context() as m:
        m.setattr(csv_scan, "available", lambda: False)
        slow = read(f)
    return fast, slow


@pytest.mark.shared
def test_real_files_read_alike_through_the_scanner(market_data, tmp_path, monkeypatch):
    spot = tmp_path / "spot/1INCHUSDT/1INCHUSDT_2025-05-19.csv.gz"
    spot.parent.mkdir(parents=True)
    spot.write_bytes(gzip.compress((market_data / "RT-Data/1INCHUSDT_2025-05-19.csv").read_bytes()))
    real_tardis = market_data / "nautilus_trader/tardis/bitmex_trades_XBTUSD.csv"
    for path in (spot, real_tardis):
        assert venue_csv._scanned(path, {"price": pa.float64(), "side": TEXT}, None) is not None
        fast, slow = _adapter_both(path, monkeypatch)
        assert len(fast.raw["ts"]) > 0 and _raw_equal(fast, slow), path


def test_each_layout_reads_alike_through_the_scanner(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    n = 3000
    ts = np.sort(rng.uniform(D0, D0 + 86_399, n))
    size = rng.uniform(0.001, 2, n)  # full-precision floats: the strtod path too
    price = rng.uniform(90_000, 95_000, n).round(1)
    sides = rng.choice(["Buy", "Sell", "buy", "SELL", "Hold"], n)
    files = []
    p = tmp_path / "a/trading/BTCUSDT/BTCUSDT2025-01-01.csv.gz"
    p.parent.mkdir(parents=True)
    head = "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,"
    lines = [head + "foreignNotional"]
    ids = [str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64)) for _ in range(n)]
    ids[7] = ids[3]  # a row listed twice
    for i in range(n):
        lines.append(
            f"{ts[i]:.4f},BTCUSDT,{sides[i]},{float(size[i])!r},{price[i]},PlusTick,{ids[i]},0,1,2"
        )
    p.write_bytes(gzip.compress(("\r\n".join(lines) + "\r\n").encode()))
    files.append(p)
    p = tmp_path / "b/binance-futures_trades_2025-01-01_BTCUSDT.csv.gz"
    p.parent.mkdir()
    rows = [
        f"binance-futures,BTCUSDT,{int(t * 1e6)},{int(t * 1e6) + 80_000},{10_000 + i},"
        f"{sides[i].lower()},{price[i]},{size[i]:.3f}"
        for i, t in enumerate(ts)
    ]
    head = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
    p.write_bytes(gzip.compress((head + "\n".join(rows)).encode()))  # no final newline
    files.append(p)
    p = tmp_path / "c/trades/daily/20250101/BTC-USDT-SWAP-trades-2025-01-01.zip"
    p.parent.mkdir(parents=True)
    body = "".join(
        f"BTC-USDT-SWAP,{500 + i},{sides[i].lower()},{price[i]},{int(size[i] * 100) + 1},"
        f"{int(t * 1000) - 8 * 3_600_000}\n"
        for i, t in enumerate(ts)
    )
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        head = "instrument_name,trade_id,side,price,size,created_time\n"
        zf.writestr(p.name.replace(".zip", ".csv"), head + body + body)  # early OKX: rows twice
    files.append(p)
    for path in files:
        (f,) = discover_venue_files(path)
        assert venue_csv._scanned(path, {"price": pa.float64(), "side": TEXT}, None) is not None
        fast, slow = _adapter_both(path, monkeypatch)
        assert len(fast.raw["ts"]) > 0 and _raw_equal(fast, slow), path
        assert fast.malformed_rows > 0  # the "Hold" sides


# -- generated files: odd values, refused rows, line endings --------------------------------------

_FLOATS = st.one_of(
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False).map(repr),
    st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda x: f"{x:.4f}"),
    st.floats(min_value=1e-300, max_value=1e300).map(lambda x: f"{x:.17e}"),
    st.sampled_from(
        ["0.051000000000000004", "123456789012345678901234.5", "-0.0", "007.50", "1E+05", "2e-7"]
    ),
)
_ODD = st.sampled_from(["", " 1", "1.", ".5", "+1", "nan", "inf", "1e", "abc", '"1"', "1,5", "1\r"])
_INTS = st.integers(-(10**18) + 1, 10**18 - 1).map(str)
_BIGINT = st.sampled_from(["9223372036854775807", "0x1", "-", "1.0", "0042"])
_SIDES = st.sampled_from(["buy", "sell", "Buy", "SELL", "bUy", "hold", "unknown", "ß", "sel"])
_UUIDS = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
_IDS_ODD = st.sampled_from(["abc", "12", "0f9c6b0a-1234-5678-9abc-def01234567", "g" * 36])

_ROW = st.fixed_dictionaries(
    {
        "ts": _INTS | _BIGINT | _ODD,
        "px": _FLOATS | _ODD,
        "side": _SIDES | _ODD,
        "id": _UUIDS | _IDS_ODD,
        "note": st.sampled_from(["x", "", "long text here", "a;b"]),
    }
)
_CLEAN = st.fixed_dictionaries(
    {
        "ts": _INTS,
        "px": _FLOATS,
        "side": _SIDES.filter(str.isascii),  # other text is left to pyarrow's UTF-8 check
        "id": _UUIDS,
        "note": st.just("x"),
    }
)
_TYPES = {"ts": pa.int64(), "px": pa.float64(), "side": TEXT, "id": AUTO_ID}


def _write(tmp: Path, rows: list[dict], crlf: bool, final_newline: bool, gz: bool) -> Path:
    nl = "\r\n" if crlf else "\n"
    text = nl.join(["note,ts,px,side,id", *(",".join(r[c] for c in r) for r in rows)])
    text = text + nl if final_newline else text
    path = tmp / ("t.csv.gz" if gz else "t.csv")
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _reorder(r: dict) -> dict:
    return {"note": r["note"], "ts": r["ts"], "px": r["px"], "side": r["side"], "id": r["id"]}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(_ROW, max_size=12),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    gz=st.booleans(),
    blank=st.booleans(),
)
@example(
    rows=[{"ts": "1", "px": "1.5", "side": "buy", "id": "abc", "note": "x"}],
    crlf=False,
    final_newline=False,
    gz=False,
    blank=True,
)
def test_any_file_reads_alike_with_and_without_the_scanner(
    tmp_path_factory, monkeypatch, rows, crlf, final_newline, gz, blank
):
    rows = [_reorder(r) for r in rows]
    if blank and rows:
        rows.insert(len(rows) // 2, {"note": "", "ts": "", "px": "", "side": "", "id": ""})
    path = _write(tmp_path_factory.mktemp("csv"), rows, crlf, final_newline, gz)
    if blank and rows:  # a truly empty line (the row above is four commas)
        text = path.read_bytes()
        raw = gzip.decompress(text) if gz else text
        raw = raw.replace(b",,,,", b"", 1)
        path.write_bytes(gzip.compress(raw) if gz else raw)
    _, fast, slow = _both(path, _TYPES, monkeypatch)
    assert _equal(fast, slow), (fast, slow)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(_CLEAN, min_size=1, max_size=12), crlf=st.booleans(), gz=st.booleans())
def test_clean_files_are_taken_by_the_scanner(tmp_path_factory, monkeypatch, rows, crlf, gz):
    path = _write(tmp_path_factory.mktemp("csv"), [_reorder(r) for r in rows], crlf, True, gz)
    taken, fast, slow = _both(path, _TYPES, monkeypatch)
    assert taken and _equal(fast, slow), (fast, slow)


def test_a_file_longer_than_one_piece_and_a_short_size_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_scan, "PIECE", 1 << 12)  # many pieces, rows split between them
    n = 5000
    text = "ts,px,side,id,note\n" + "".join(
        f"{D0 * 1000 + i},{100 + i / 7!r},{'buy' if i % 3 else 'SELL'},{uuid.UUID(int=i << 64)},"
        f"{'y' * 10_000 if i == 4000 else 'x'}\n"  # one line longer than a piece
        for i in range(n)
    )
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    with venue_csv.open_member(path) as fh:
        cols = csv_scan.scan(
            fh, [csv_scan.INT, csv_scan.FLOAT, csv_scan.SIDE, csv_scan.UUID, 0], 10
        )
    assert cols is not None and len(cols[0]) == n  # grown past the hint, no row lost
    taken, fast, slow = _both(path, _TYPES, monkeypatch)
    assert taken and _equal(fast, slow)
    assert list(cols[0][:2]) == [D0 * 1000, D0 * 1000 + 1] and cols[3][1] == 1


# -- Binance trade archives (RawChunkReader): the scanner, and pyarrow from its first refusal --


def _binance_both(path: Path, monkeypatch, chunk_rows: int = 1_000_000):
    from feeder.history.binance_archive import parse_archive_name
    from feeder.history.binance_trades import RawChunkReader

    af = parse_archive_name(path)
    assert af is not None

    def read():
        r = RawChunkReader(af, chunk_rows=chunk_rows)
        chunks = list(r)
        cols = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}
        return cols, [len(c["ts"]) for c in chunks], r.invalid_rows, r.rows

    fast = read()
    with monkeypatch.context() as m:
        m.setattr(csv_scan, "available", lambda: False)
        slow = read()
    return fast, slow


def _binance_equal(fast, slow) -> bool:
    (fc, fn, fi, fr), (sc, sn, si, sr) = fast, slow
    return (
        (fn, fi, fr) == (sn, si, sr)
        and fc.keys() == sc.keys()
        and all(_same(fc[k], sc[k]) for k in fc)
    )


@pytest.mark.shared
def test_real_binance_archives_read_alike_through_the_scanner(market_data, monkeypatch):
    root = market_data / "binance_datatool/tommy-ca/data"
    paths = sorted(root.rglob("*-aggTrades-*.zip"))
    assert paths
    for path in paths:
        fast, slow = _binance_both(path, monkeypatch, chunk_rows=1000)
        assert fast[3] > 0 and _binance_equal(fast, slow), path


def test_a_binance_file_the_scanner_refuses_midway_reads_on_with_pyarrow(
    tmp_path, monkeypatch, caplog
):
    p = tmp_path / "futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2025-01-01.zip"
    p.parent.mkdir(parents=True)
    rows = [
        f"{i},{94000 + i / 3!r},{0.001 * (i % 7 + 1)!r},{i},{i},{D0 * 1000 + i},"
        f"{'true' if i % 2 else 'False'},true"
        for i in range(4000)
    ]
    rows[2500] = "2500,94000.5,,2500,2500,1735689602500,true,true"  # an empty quantity
    rows[3100] = "3100,94000.5,0.1,3100,3100"  # too few fields
    text = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
    text += "is_buyer_maker,is_best_match\n" + "\n".join(rows) + "\n"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(p.with_suffix(".csv").name, text)
    monkeypatch.setattr(csv_scan, "PIECE", 1 << 12)
    with caplog.at_level(logging.DEBUG, logger="feeder.history.binance_trades"):
        fast, slow = _binance_both(p, monkeypatch, chunk_rows=700)
    assert fast[3] == 3998 and fast[2] == 2 and _binance_equal(fast, slow)
    assert "read by pyarrow from row 2100" in caplog.text  # 3 chunks of 700 came from the scanner


def test_without_the_built_scanner_pyarrow_reads_and_the_import_warns_once(
    tmp_path, monkeypatch, caplog
):
    import importlib.util

    real_find = importlib.util.find_spec

    def find(name, *args):
        return None if name == "feeder.history._csvscan" else real_find(name, *args)

    path = tmp_path / "t.csv"
    path.write_text("ts,px,side,id,note\n1735689600000,1.5,buy,12,x\n1735689600001,2.5,Sell,13,y\n")
    monkeypatch.setattr(importlib.util, "find_spec", find)
    csv_scan._lib.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="feeder.history.csv_scan"):
            for _ in range(2):
                cols, bad = read_columns(path, _TYPES)
                assert bad == 0 and list(ids_from_text(cols["id"])) == [12, 13]
                assert list(sides_to_seller(cols["side"])[0]) == [False, True]
        assert not csv_scan.available()
        assert caplog.text.count("read by pyarrow alone") == 1 and "C compiler" in caplog.text
    finally:
        monkeypatch.undo()
        csv_scan._lib.cache_clear()
    assert csv_scan.available()


# -- headers and values the scanner must not take differently (a review's findings) --------------


@pytest.mark.parametrize(
    ("data", "types"),
    [
        # a wanted column named twice: pyarrow takes the first
        (b"a,price,price\n1,2.5,3.5\n", {"a": pa.int64(), "price": pa.float64()}),
        # a quoted header name holding a comma: pyarrow has 3 columns, the rows 4 fields
        (b'"x,y",a,side\n1,2,3,buy\n', {"a": pa.int64(), "side": TEXT}),
        # spaces around a header name: pyarrow does not strip them
        (b"a, side\n1,buy\n", {"a": pa.int64(), "side": TEXT}),
        # a lone CR in the header ends pyarrow's header line there
        (b"a,side\r1,sell\nbuy\n", {"a": pa.int64(), "side": TEXT}),
        # bytes that are not UTF-8 in a side or a text id: pyarrow refuses the file
        (b"a,side\n1,\xff\xfe\n2,sell\n", {"a": pa.int64(), "side": TEXT}),
        (
            b"a,id\n1,0f9c6b0a-1234-5678-9abc-def0123456\xff\xfe\n",
            {"a": pa.int64(), "id": AUTO_ID},
        ),
        # a blank line before the first row: the id type comes from no row
        (
            b"a,id\n\n1,000000000000000000000000000000000012\n2,000000000000000000000000000000000013\n",
            {"a": pa.int64(), "id": AUTO_ID},
        ),
    ],
)
def test_headers_and_text_the_scanner_must_leave_to_pyarrow(tmp_path, monkeypatch, data, types):
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    _, fast, slow = _both(path, types, monkeypatch)
    assert _equal(fast, slow), (fast, slow)


def test_a_zip_member_declaring_a_huge_size_fails_as_a_corrupt_file(tmp_path):
    p = tmp_path / "BTC-USDT-SWAP-trades-2025-01-01.zip"
    body = "".join(f"BTC-USDT-SWAP,{i},buy,94000.5,1,{D0 * 1000 + i}\n" for i in range(100_000))
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            p.with_suffix(".csv").name,
            "instrument_name,trade_id,side,price,size,created_time\n" + body,
        )
        zf.infolist()[0].file_size = 2**50  # a lying central directory
    with pytest.raises(venue_csv.ArchiveError, match="corrupt"):
        read_columns(p, {"price": pa.float64(), "side": TEXT})
