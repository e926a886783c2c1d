"""Binance futures ``metrics`` archives -> the stores' ``open_interest`` (USD), as the live poll.

Layout: ``futures/{um,cm}/daily/metrics/<SYMBOL>/<SYMBOL>-metrics-<YYYY-MM-DD>.zip`` (a flat
folder needs ``--market-types um|cm``). Documented header and a row (binance-public-data issue
#211, USD-M BTCUSDT; no real file was available)::

    create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio
    2023-01-21 00:05:00,BTCUSDT,98666.163,2236289208.197267,0.7665,1.1363,0.8332,0.9253

Rows are 5-minute snapshots, not always time-sorted upstream (sorted here; a repeated time keeps
its last row). USD, exactly as ``feeder.live.oi_liquidations`` stores a poll:

* USD-M: ``sum_open_interest_value`` (USDT: base amount x mark price, the live poll's
  ``openInterestAmount x markPrice``);
* COIN-M: ``sum_open_interest`` is in contracts (``sum_open_interest_value`` is in the base
  coin, not USD), so USD = contracts x the contract size (100 USD for BTC, 10 for others), the
  live poll's ``openInterestAmount x contract_size``.
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

from feeder.history.archive import ArchiveError
from feeder.history.binance_archive import MarketType, open_data, verify_checksum
from feeder.history.importer import PREFIX, coin_m_contract_size, import_each
from feeder.ingest.models import Kind, market_id
from feeder.ingest.pipeline import ImportReport
from feeder.settings import Settings
from feeder.stores import BarStore

log = logging.getLogger(__name__)

_NAME_RE: Final = re.compile(
    r"^(?P<symbol>[A-Z0-9_]+)-metrics-(?P<date>\d{4}-\d{2}-\d{2})\.(?:zip|csv)$"
)


@dataclass(frozen=True)
class MetricsFile:
    path: Path
    market_type: MarketType
    symbol: str
    date: str

    @property
    def market(self) -> str:
        return market_id(PREFIX[self.market_type], self.symbol)

    @property
    def ledger_key(self) -> str:
        return f"{self.market_type}/metrics/{self.symbol}/{self.date}"

    @property
    def span(self) -> tuple[int, int]:
        s = calendar.timegm(date.fromisoformat(self.date).timetuple())
        return s, s + 86_400


def parse_name(path: Path, market_type: MarketType | None = None) -> MetricsFile | None:
    m = _NAME_RE.match(path.name)
    if m is None:
        return None
    try:
        date.fromisoformat(m["date"])
    except ValueError:
        return None
    p = path.parents
    mt: MarketType | None = market_type
    if (
        len(p) >= 6
        and p[1].name == "metrics"
        and p[3].name in ("um", "cm")
        and p[4].name == "futures"
    ):
        mt = cast(MarketType, p[3].name)
    if mt not in ("um", "cm"):
        return None
    return MetricsFile(path, mt, m["symbol"], m["date"])


def discover(root: Path, market_type: MarketType | None = None) -> list[MetricsFile]:
    paths = [root] if root.is_file() else sorted(root.rglob("*-metrics-*"))
    found: dict[tuple[str, str, str], MetricsFile] = {}
    for p in paths:
        mf = parse_name(p, market_type) if p.is_file() else None
        if mf is not None and (
            (k := (mf.market_type, mf.symbol, mf.date)) not in found or p.suffix == ".zip"
        ):
            found[k] = mf
    return sorted(found.values(), key=lambda m: (m.market_type, m.symbol, m.date))


def read_oi(f: MetricsFile, contract_size: float | None) -> tuple[pd.DataFrame, int]:
    """``time`` (epoch s) and ``oi`` (USD) of a metrics file, and the count of malformed rows."""
    with open_data(f.path) as fh:
        raw = pd.read_csv(fh, dtype=str, on_bad_lines="skip", skipinitialspace=True)
    cols = [c.strip().lower() for c in raw.columns]
    raw.columns = cols
    need = ["create_time", "sum_open_interest", "sum_open_interest_value"]
    if any(c not in cols for c in need):
        raise ArchiveError(f"{f.path}: unexpected metrics header {cols!r} (expected {need})")
    t = pd.to_datetime(raw["create_time"], utc=True, errors="coerce", format="mixed")
    amount = pd.to_numeric(raw["sum_open_interest"], errors="coerce")
    value = pd.to_numeric(raw["sum_open_interest_value"], errors="coerce")
    usd = amount * contract_size if contract_size is not None else value
    ok = (t.notna() & usd.notna() & (usd >= 0)).to_numpy()
    secs = (t[ok] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    df = pd.DataFrame({"time": secs.to_numpy(np.int64), "oi": usd[ok].to_numpy(np.float64)})
    df = df.sort_values("time", kind="stable").drop_duplicates("time", keep="last")
    return df.reset_index(drop=True), int((~ok).sum())


def import_metrics(
    files: Iterable[MetricsFile],
    store: BarStore,
    settings: Settings,
    *,
    force: bool = False,
    report: ImportReport | None = None,
) -> ImportReport:
    """Import metrics files as the perps' open interest (USD; see the module docstring)."""

    def one(f: MetricsFile) -> tuple[str, dict[str, object], int]:
        checksum = verify_checksum(f.path)
        size = (
            coin_m_contract_size(settings, f.market, Kind.PERP) if f.market_type == "cm" else None
        )
        oi, bad = read_oi(f, size)
        lo, hi = f.span
        oi = oi[(oi["time"] >= lo) & (oi["time"] < hi)]
        n = store.write_oi(f.market, oi) if len(oi) else 0
        log.info("%s -> %s: %d open-interest points (USD)", f.path.name, f.market, n)
        info: dict[str, object] = {
            "open_interest_points": n,
            "checksum": "verified" if checksum else "absent",
        }
        return f.market, info, bad

    return import_each(files, store, one, force=force, report=report)
