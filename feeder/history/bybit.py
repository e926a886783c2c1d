"""Bybit public trade archives (``public.bybit.com``).

Derivatives ``trading/<SYMBOL>/<SYMBOL><YYYY-MM-DD>.csv.gz`` (documented layout; timestamp in
float seconds, ``side`` = taker side, ``size`` in base for linear, in USD contracts for inverse)::

    timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional
    1735689600.0974,BTCUSDT,Buy,0.001,93576.00,ZeroPlusTick,0f9c6b0a-...,9.357600e+09,0.001,93.576

Spot ``spot/<SYMBOL>/<SYMBOL>_<YYYY-MM-DD>.csv.gz`` (a real row, 1INCHUSDT 2025-05-19; ``id`` is
a per-file row counter, timestamp in ms, ``side`` lowercase taker side; identical rows are
separate fills and are kept)::

    id,timestamp,price,volume,side,rpi
    1,1747612836878,0.2271,220.16,buy,0

Derivatives rows repeated with the same ``trdMatchID`` are dropped (``duplicate_id``); rows
are then numbered in file order, so trades of one instant keep the venue's order for open and
close. Market ids as the live feeder's (ccxt ``bybit``): ``BYBIT:btcusdt`` (linear: size in base),
``BYBIT:btcusd`` (inverse: size in contracts of 1 USD, as ccxt's contractSize), and
``BYBIT_SPOT:btcusdt``. Bybit publishes no checksums for these files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa

from feeder.history.venue_csv import (
    AUTO_ID,
    TEXT,
    dedup_to_row_ids,
    ids_from_text,
    read_columns,
    taker_day,
)
from feeder.history.venue_files import Adapter, RawDay, VenueFile, valid_date
from feeder.ingest.models import Kind, market_id
from feeder.ingest.normalise import MarketSpec
from feeder.live.markets import PREFIX
from feeder.settings import Settings

BASE_URL: Final = "https://public.bybit.com"
_TRADING_RE: Final = re.compile(r"^(?P<sym>[A-Z0-9]+?)(?P<date>\d{4}-\d{2}-\d{2})\.csv(?:\.gz)?$")
_SPOT_RE: Final = re.compile(r"^(?P<sym>[A-Z0-9]+)_(?P<date>\d{4}-\d{2}-\d{2})\.csv(?:\.gz)?$")
#: Quote suffixes of linear contracts (size in base); other symbols are inverse (USD contracts).
LINEAR_QUOTES: Final = ("USDT", "USDC", "PERP")


def parse_name(path: Path) -> VenueFile | None:
    """A Bybit file from ``trading/<SYM>/<SYM><date>.csv.gz`` or ``spot/<SYM>/<SYM>_<date>...``;
    a bare spot name ``<SYM>_<date>.csv[.gz]`` is recognised outside that layout too."""
    parent = path.parent.name
    family = path.parent.parent.name if len(path.parents) >= 2 else ""
    m = _TRADING_RE.match(path.name)
    if m and family == "trading" and parent == m["sym"] and valid_date(m["date"]):
        return VenueFile(path, "bybit", "trading", m["sym"], m["date"])
    m = _SPOT_RE.match(path.name)
    if (
        m
        and valid_date(m["date"])
        and (family == "spot" and parent == m["sym"] or family != "trading")
    ):
        return VenueFile(path, "bybit", "spot", m["sym"], m["date"])
    return None


def is_linear(symbol: str) -> bool:
    return symbol.upper().endswith(LINEAR_QUOTES)


def spec(f: VenueFile, settings: Settings) -> MarketSpec:
    if f.venue == "spot":
        return MarketSpec(market_id("BYBIT_SPOT", f.symbol), Kind.SPOT, "bybit")
    market = market_id(PREFIX["bybit"], f.symbol)
    if is_linear(f.symbol):
        return MarketSpec(market, Kind.PERP, "bybit")
    size = settings.contract_sizes.get(market, 1.0)
    return MarketSpec(market, Kind.PERP, "bybit", contract_size=size)


def read(f: VenueFile) -> RawDay:
    if f.venue == "spot":
        cols, bad = read_columns(
            f.path,
            {
                "id": pa.int64(),
                "timestamp": pa.int64(),
                "price": pa.float64(),
                "volume": pa.float64(),
                "side": TEXT,
            },
        )
        ids = np.asarray(cols["id"].to_numpy(), np.int64)
        ts = np.asarray(cols["timestamp"].to_numpy(), np.int64)
        qty = np.asarray(cols["volume"].to_numpy(), np.float64)
    else:
        cols, bad = read_columns(
            f.path,
            {
                "timestamp": pa.float64(),
                "side": TEXT,
                "size": pa.float64(),
                "price": pa.float64(),
                "trdMatchID": AUTO_ID,
            },
        )
        uuids = ids_from_text(cols["trdMatchID"])
        ts = np.asarray(cols["timestamp"].to_numpy(), np.float64)
        qty = np.asarray(cols["size"].to_numpy(), np.float64)
    price = np.asarray(cols["price"].to_numpy(), np.float64)
    if f.venue == "spot":
        return taker_day(
            f, cols["side"], {"ts": ts, "price": price, "qty": qty, "trade_id": ids}, bad
        )
    # trdMatchIDs are UUIDs: duplicates dropped here, rows numbered in file order
    rows = np.arange(1, len(uuids) + 1, dtype=np.int64)
    columns = {"ts": ts, "price": price, "qty": qty, "trade_id": rows, "uuid": uuids}
    day = taker_day(f, cols["side"], columns, bad)
    fresh, n_dup = dedup_to_row_ids(day.raw.pop("uuid"))
    day.refused["duplicate_id"] = n_dup
    if n_dup:
        day.raw = {k: v[fresh] for k, v in day.raw.items()}
    return day


def relpath(symbol: str, day: str, spot: bool) -> str:
    sym = symbol.upper()
    if spot:
        return f"spot/{sym}/{sym}_{day}.csv.gz"
    return f"trading/{sym}/{sym}{day}.csv.gz"


ADAPTER: Final = Adapter("bybit", parse_name, spec, read)
