"""Binance 1-minute klines with taker volume -> 1-minute bars (years of flow in small files).

Layout below an archive root (data.binance.vision):
``{spot|futures/um|futures/cm}/{daily|monthly}/klines/<SYMBOL>/1m/<SYMBOL>-1m-<DATE>.zip``; a
flat folder of such files needs ``--market-types``. A real row (spot BTCUSDT 2020-01-01, no
header; futures files have one)::

    1577836800000,7195.24,7196.25,7183.14,7186.68,51.642812,1577836859999,371233.51835535,493,19.59823,140888.41428273,0

Columns: open_time, open, high, low, close, volume, close_time, quote_volume, count,
taker_buy_volume, taker_buy_quote_volume, ignore. Per minute: ``vbuy`` = taker-buy quote volume,
``vsell`` = quote volume - ``vbuy`` (USD for USDT-quoted spot and USD-M); COIN-M ``volume`` is in
contracts, so ``vbuy`` = taker-buy contracts x contract size (USD), as the trade import converts.

What klines lose: trade counts per side (``count`` is the total only): ``cbuy``/``csell`` are
left unknown (NaN; omitted in InfluxDB), exactly 0 only in a minute without trades. The method
does not use counts, so its signals are the same. Liquidations are not flagged in klines, as in
the trade archives (``lbuy``/``lsell`` 0).

Coverage is recorded under ``minute_key(market)`` (minute resolution: no 1-second bars behind
it); ``load_flow`` at whole-minute timeframes uses it, a sub-minute request over it is flagged
incomplete with a message saying only minutes exist. Minutes already covered by trade-built bars
are not written (trade-built bars win); trades imported later overwrite kline minutes.
"""

from __future__ import annotations

import calendar
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from feeder.history.binance_archive import MarketType, open_data, split_header, verify_checksum
from feeder.history.importer import PREFIX, coin_m_contract_size, import_each
from feeder.ingest.models import Kind, market_id
from feeder.ingest.normalise import timestamps_to_ns
from feeder.ingest.pipeline import ImportReport
from feeder.settings import Settings
from feeder.stores import MINUTE_SUFFIX, BarStore
from feeder.stores.coverage import as_intervals, merge_intervals, subtract_intervals

log = logging.getLogger(__name__)

_NAME_RE: Final = re.compile(
    r"^(?P<symbol>[A-Z0-9_]+)-1m-(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.(?:zip|csv)$"
)


def minute_key(market: str) -> str:
    """The coverage key of a market's minute-resolution (kline) coverage."""
    return market + MINUTE_SUFFIX


@dataclass(frozen=True)
class KlineFile:
    path: Path
    market_type: MarketType
    symbol: str
    date: str  # YYYY-MM-DD or YYYY-MM

    @property
    def market(self) -> str:
        return market_id(PREFIX[self.market_type], self.symbol)

    @property
    def span(self) -> tuple[int, int]:
        if len(self.date) == 10:
            s = calendar.timegm(date.fromisoformat(self.date).timetuple())
            return s, s + 86_400
        y, m = (int(x) for x in self.date.split("-"))
        s = calendar.timegm((y, m, 1, 0, 0, 0))
        return s, s + calendar.monthrange(y, m)[1] * 86_400

    @property
    def ledger_key(self) -> str:
        return f"{self.market_type}/klines-1m/{self.symbol}/{self.date}"


def _layout_type(path: Path) -> MarketType | None:
    p = path.parents
    if len(p) < 6 or p[0].name != "1m" or p[2].name != "klines":
        return None
    if p[4].name == "spot":
        return "spot"
    if p[4].name in ("um", "cm") and len(p) >= 7 and p[5].name == "futures":
        return cast(MarketType, p[4].name)
    return None


def parse_name(path: Path, market_type: MarketType | None = None) -> KlineFile | None:
    m = _NAME_RE.match(path.name)
    if m is None:
        return None
    try:
        day = m["date"]
        date.fromisoformat(day if len(day) == 10 else day + "-01")
    except ValueError:
        return None
    mt = _layout_type(path) or market_type
    if mt is None:
        return None
    return KlineFile(path, mt, m["symbol"], m["date"])


def discover(root: Path, market_type: MarketType | None = None) -> list[KlineFile]:
    """1-minute kline files below ``root`` (daily files inside an imported month are dropped)."""
    paths = [root] if root.is_file() else sorted(root.rglob("*-1m-*"))
    found: dict[tuple[str, str, str], KlineFile] = {}
    for p in paths:
        if not p.is_file():
            continue
        kf = parse_name(p, market_type)
        if kf is None:
            continue
        key = (kf.market_type, kf.symbol, kf.date)
        if key not in found or p.suffix == ".zip":
            found[key] = kf
    months = {(k.market_type, k.symbol, k.date) for k in found.values() if len(k.date) == 7}
    out = [
        k
        for k in found.values()
        if len(k.date) == 7 or (k.market_type, k.symbol, k.date[:7]) not in months
    ]
    return sorted(out, key=lambda k: (k.market_type, k.symbol, k.date))


def read_bars(f: KlineFile, contract_size: float | None) -> tuple[pd.DataFrame, int]:
    """1-minute bars (``time``, BAR_FIELDS) of a kline file, and the count of malformed rows."""
    with open_data(f.path) as fh:
        head = fh.read(1 << 12)
    first = head.split(b"\n", 1)[0].rstrip(b"\r").removeprefix(b"\xef\xbb\xbf")
    if not first.strip():
        return _empty(), 0
    fields, has_header = split_header(first)
    num, bad = _read_numeric(f.path, has_header)
    ns, bad_ts = timestamps_to_ns(num[0])
    sec = ns // 1_000_000_000
    keep = ~bad_ts & (sec % 60 == 0)
    bad += int((~keep).sum())
    num, sec = {k: v[keep] for k, v in num.items()}, sec[keep]
    if contract_size is not None:  # COIN-M: volumes in contracts
        total = num[5] * contract_size
        vbuy = num[9] * contract_size
    else:
        total = num[7]
        vbuy = num[10]
    count = num[8]
    unknown = np.where(count == 0, 0.0, np.nan)  # counts per side are not in klines
    bars = pd.DataFrame(
        {
            "time": sec.astype(np.int64),
            "open": num[1],
            "high": num[2],
            "low": num[3],
            "close": num[4],
            "vbuy": vbuy,
            "vsell": np.maximum(total - vbuy, 0.0),
            "cbuy": unknown,
            "csell": unknown.copy(),
            "lbuy": 0.0,
            "lsell": 0.0,
        }
    )
    return bars.drop_duplicates("time").sort_values("time", ignore_index=True), bad


def _read_numeric(path: Path, has_header: bool) -> tuple[dict[int, np.ndarray], int]:
    """Columns 0..10 of a kline CSV as numpy (time int64, the rest float64), malformed rows
    (wrong field count, unparseable or empty values) dropped and counted."""
    bad = 0

    def on_invalid(_row: pa_csv.InvalidRow) -> str:
        nonlocal bad
        bad += 1
        return "skip"

    names = [f"c{i}" for i in range(12)]
    types = {n: (pa.int64() if i in (0, 6, 8) else pa.float64()) for i, n in enumerate(names)}

    def read(typed: bool) -> pa.Table:
        with open_data(path) as fh:
            return pa_csv.read_csv(
                fh,
                read_options=pa_csv.ReadOptions(column_names=names, skip_rows=int(has_header)),
                parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid),
                convert_options=pa_csv.ConvertOptions(
                    include_columns=names[:11],
                    column_types=types if typed else {n: pa.string() for n in names},
                ),
            )

    try:
        table = read(True)
        cols = {i: table.column(i).to_numpy() for i in range(11)}
        ok = np.ones(table.num_rows, np.bool_)
        for i in range(11):
            if table.column(i).null_count:
                ok &= np.asarray(table.column(i).is_valid().to_numpy(zero_copy_only=False))
    except pa.ArrowInvalid:  # a value that does not parse: the tolerant, slower path
        bad = 0
        table = read(False)
        frame = table.to_pandas().apply(pd.to_numeric, errors="coerce")
        ok = frame.notna().all(axis=1).to_numpy()
        cols = {i: frame.iloc[:, i].to_numpy(np.float64) for i in range(11)}
    bad += int((~ok).sum())
    out = {i: np.asarray(c[ok], np.float64) for i, c in cols.items()}
    out[0] = np.asarray(cols[0][ok], np.int64)
    return out, bad


def _empty() -> pd.DataFrame:
    from feeder.ingest.models import BAR_FIELDS

    return pd.DataFrame(
        {"time": pd.Series(dtype="int64"), **{f: pd.Series(dtype="float64") for f in BAR_FIELDS}}
    )


def write_minutes(store: BarStore, market: str, kind: str, bars: pd.DataFrame) -> int:
    """Write kline minutes; on InfluxDB unknown counts are omitted instead of written as NaN."""
    if store.name != "influx" or not bars[["cbuy", "csell"]].isna().any().any():
        return store.write_bars(market, kind, bars, "1m")
    from feeder.ingest.models import BAR_FIELDS
    from feeder.stores.influx import COUNTS_UNKNOWN
    from feeder.stores.influx_client import escape_measurement, escape_tag

    s = store.s  # type: ignore[attr-defined]
    tags = f"kind={escape_tag(kind)},market={escape_tag(market)}"
    prefix = f"{escape_measurement(s.measurement_1m)},{tags} "
    cols = {f: bars[f].to_numpy(np.float64).tolist() for f in BAR_FIELDS}
    t = bars["time"].to_numpy(np.int64).tolist()
    lines = []
    for i in range(len(t)):
        vals = ((f, cols[f][i]) for f in BAR_FIELDS)
        fields = ",".join(f"{f}={v!r}" for f, v in vals if v == v)  # NaN != NaN: left out
        if cols["cbuy"][i] != cols["cbuy"][i]:
            fields += f",{COUNTS_UNKNOWN}=1.0"
        lines.append(f"{prefix}{fields} {t[i]}")
    store.write_lines(lines, rp=s.rp_1m)  # type: ignore[attr-defined]
    return len(lines)


def import_klines(
    files: Iterable[KlineFile],
    store: BarStore,
    settings: Settings,
    *,
    force: bool = False,
    report: ImportReport | None = None,
) -> ImportReport:
    """Import 1-minute kline files as minute-resolution bars (see the module docstring)."""

    def one(f: KlineFile) -> tuple[str, dict[str, object], int]:
        checksum = verify_checksum(f.path)
        market = f.market
        kind = Kind.SPOT if f.market_type == "spot" else Kind.PERP
        size = coin_m_contract_size(settings, market, kind) if f.market_type == "cm" else None
        bars, bad = read_bars(f, size)
        lo, hi = f.span
        bars = bars[(bars["time"] >= lo) & (bars["time"] < hi)]
        # trade-built minutes win: write only minutes the trades do not cover
        trade_cov = store.coverage(market)
        if len(trade_cov) and len(bars):
            t = bars["time"].to_numpy(np.int64)
            from feeder.stores.coverage import covered

            bars = bars[~covered(t, 60, trade_cov)]
        written = write_minutes(store, market, kind.value, bars) if len(bars) else 0
        free = subtract_intervals(as_intervals([(lo, hi)]), merge_intervals(trade_cov))
        for a, b in free:
            store.add_coverage(minute_key(market), int(a), int(b))
        log.info("%s -> %s: %d minute bars (klines)", f.path.name, market, written)
        info: dict[str, object] = {
            "timeframe": "1m",
            "checksum": "verified" if checksum else "absent",
            "minutes": written,
        }
        return market, info, bad

    return import_each(files, store, one, force=force, report=report)
