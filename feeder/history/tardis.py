"""Tardis.dev downloadable CSV ``trades`` (``<exchange>_trades_<YYYY-MM-DD>_<SYMBOL>.csv.gz``).

A real file (nautilus_trader's fixture, BitMEX XBTUSD 2020-03-01)::

    exchange,symbol,timestamp,local_timestamp,id,side,price,amount
    bitmex,XBTUSD,1583020803145000,1583020803307160,ccc3c1fa-212c-e8b0-1706-9b9c4f3d5ecf,sell,8531.5,2152

``timestamp`` (exchange) and ``local_timestamp`` (Tardis' receive time) are us since the epoch;
bars use the exchange time, as the live feeder does. ``side`` is the taker side; ``amount`` is
the quantity as the venue sends it, so the venue's contract conversion applies (contracts for
Binance COIN-M, OKX swaps, BitMEX). ``id`` is the venue trade id (integers kept, UUIDs by their
first 63 bits). Tardis cuts day files by ``local_timestamp``: see ``feeder.history.venue_import``.

Tardis exchange names map to the live feeder's market ids (``EXCHANGES``); the symbol is the
venue's own, lower-cased: ``binance-futures`` ``BTCUSDT`` -> ``BINANCE_FUTURES:btcusdt``,
``okex-swap`` ``BTC-USDT-SWAP`` -> ``OKEX:btc-usdt-swap``, ``coinbase`` ``BTC-USD`` ->
``COINBASE:btc-usd``. A name without a date (a head fixture) is imported without coverage.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa

from feeder.history import bybit, okx
from feeder.history.archive import ArchiveError
from feeder.history.venue_csv import (
    AUTO_ID,
    TEXT,
    first_row,
    ids_from_text,
    read_columns,
    taker_day,
)
from feeder.history.venue_files import Adapter, RawDay, VenueFile, valid_date
from feeder.ingest.models import Kind, market_id
from feeder.ingest.normalise import MarketSpec
from feeder.settings import Settings

BASE_URL: Final = "https://datasets.tardis.dev"
_NAME_RE: Final = re.compile(
    r"^(?P<ex>[a-z0-9-]+)_trades_(?:(?P<date>\d{4}-\d{2}-\d{2})_)?(?P<sym>[A-Za-z0-9_.\-]+?)"
    r"\.csv(?:\.gz)?$"
)
#: Tardis exchange -> (our prefix, kind); contract rules per venue in ``spec``.
EXCHANGES: Final[dict[str, tuple[str, Kind]]] = {
    "binance": ("BINANCE", Kind.SPOT),
    "binance-futures": ("BINANCE_FUTURES", Kind.PERP),
    "binance-delivery": ("BINANCE_FUTURES", Kind.PERP),
    "bybit": ("BYBIT", Kind.PERP),
    "bybit-spot": ("BYBIT_SPOT", Kind.SPOT),
    "okex": ("OKEX", Kind.SPOT),
    "okex-swap": ("OKEX", Kind.PERP),
    "coinbase": ("COINBASE", Kind.SPOT),
    "bitmex": ("BITMEX", Kind.PERP),
}
#: BitMEX inverse perpetuals: USD per contract.
BITMEX_INVERSE_USD: Final = {"XBTUSD": 1.0}


def parse_name(path: Path) -> VenueFile | None:
    m = _NAME_RE.match(path.name)
    if m is None or (m["date"] is not None and not valid_date(m["date"])):
        return None
    return VenueFile(path, "tardis", m["ex"], m["sym"].upper(), m["date"])


def spec(f: VenueFile, settings: Settings) -> MarketSpec:
    if f.venue not in EXCHANGES:
        raise ArchiveError(
            f"{f.path.name}: Tardis exchange {f.venue!r} has no market id mapping "
            f"(known: {', '.join(sorted(EXCHANGES))})"
        )
    prefix, kind = EXCHANGES[f.venue]
    market = market_id(prefix, f.symbol)
    if f.venue == "binance-delivery":
        size = settings.market(market, Kind.PERP).contract_size
        return MarketSpec(market, kind, "binancecoinm", contract_size=size)
    if f.venue == "bybit":
        return bybit.spec(VenueFile(f.path, "bybit", "trading", f.symbol, f.date), settings)
    if f.venue in ("okex", "okex-swap"):
        return okx.spec_for_inst(f.symbol, settings)
    if f.venue == "bitmex":
        size = settings.contract_sizes.get(market, BITMEX_INVERSE_USD.get(f.symbol))
        if size is None:
            raise ArchiveError(
                f"{f.symbol}: BitMEX contract unknown; set contract_sizes[{market!r}]"
            )
        return MarketSpec(market, kind, "bitmex", contract_size=size)
    exchange = {"binance-futures": "binanceusdm", "bybit-spot": "bybit"}.get(f.venue, f.venue)
    return MarketSpec(market, kind, exchange)


def read(f: VenueFile) -> RawDay:
    cols, bad = read_columns(
        f.path,
        {
            "timestamp": pa.int64(),
            "local_timestamp": pa.int64(),
            "id": AUTO_ID,
            "side": TEXT,
            "price": pa.float64(),
            "amount": pa.float64(),
        },
    )
    # a file holds one exchange's symbol: its first row names them (not parsed for every row)
    row = first_row(f.path)
    if row and not {"exchange", "symbol"} <= row.keys():
        raise ArchiveError(f"{f.path}: header {list(row)!r} has no 'exchange' and 'symbol' columns")
    ex, sym = row.get("exchange", f.venue), row.get("symbol", f.symbol).upper()
    if ex != f.venue or sym != f.symbol:
        raise ArchiveError(
            f"{f.path}: rows are {ex} {sym}, the file name says {f.venue} {f.symbol}"
        )
    columns = {
        "ts": np.asarray(cols["timestamp"].to_numpy(), np.int64),
        "price": np.asarray(cols["price"].to_numpy(), np.float64),
        "qty": np.asarray(cols["amount"].to_numpy(), np.float64),
        "trade_id": ids_from_text(cols["id"]),
    }
    # Tardis cuts its days by receive time; its coverage is set per stream (venue_import)
    local = np.asarray(cols["local_timestamp"].to_numpy(), np.int64)
    return taker_day(f, cols["side"], columns, bad, day_ts=local, record_window=False)


def relpath(exchange: str, symbol: str, day: str) -> str:
    """The dataset URL path (``/v1/<exchange>/trades/<YYYY>/<MM>/<DD>/<SYMBOL>.csv.gz``)."""
    y, m, d = day.split("-")
    return f"v1/{exchange}/trades/{y}/{m}/{d}/{symbol.upper()}.csv.gz"


def local_name(exchange: str, symbol: str, day: str) -> str:
    return f"{exchange}_trades_{day}_{symbol.upper()}.csv.gz"


ADAPTER: Final = Adapter("tardis", parse_name, spec, read)
