"""OKX daily trade files (``www.okx.com/cdn/okex/traderecords/trades/daily/<YYYYMMDD>/
<INST>-trades-<YYYY-MM-DD>.zip``; documented layout, no real file was available)::

    instrument_name,trade_id,side,price,size,created_time
    BTC-USDT-SWAP,1235813,buy,94210.1,3,1735689600117

``side`` is the taker side, ``created_time`` ms. ``size`` is in base for spot and in contracts
for swaps: a linear swap's contract is ``ctVal`` base (BTC-USDT-SWAP: 0.01 BTC), an inverse
swap's ``ctVal`` USD (BTC-USD-SWAP: 100 USD), exactly as the live feeder converts through ccxt's
``contractSize``. ``CONTRACT_VALUES`` holds the venue's values for common swaps; any other swap
needs ``squeezeflow.contract_sizes["OKEX:<inst>"]`` (its ctVal) and is refused with that advice.

Early files list each trade twice: rows are deduplicated by ``trade_id`` over the whole file
(counted as ``duplicate_id``). The day is cut at UTC midnight or, in some files, at UTC+8
midnight; the cut is detected per file from the trade times. Market ids as the live feeder's
(ccxt ``okx``): ``OKEX:btc-usdt``, ``OKEX:btc-usdt-swap``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa

from feeder.history.archive import ArchiveError
from feeder.history.venue_csv import AUTO_ID, TEXT, ids_from_text, read_columns, taker_day
from feeder.history.venue_files import Adapter, RawDay, VenueFile, valid_date
from feeder.ingest.models import Kind, market_id
from feeder.ingest.normalise import MarketSpec
from feeder.live.markets import PREFIX
from feeder.settings import Settings

BASE_URL: Final = "https://www.okx.com"
_NAME_RE: Final = re.compile(
    r"^(?P<inst>[A-Z0-9]+-[A-Z0-9]+(?:-SWAP)?)-trades-(?P<date>\d{4}-\d{2}-\d{2})\.(?:zip|csv)$"
)
#: ctVal of OKX swaps (public/instruments): base per contract (linear), USD (inverse).
CONTRACT_VALUES: Final[dict[str, float]] = {
    "BTC-USDT-SWAP": 0.01,
    "ETH-USDT-SWAP": 0.1,
    "SOL-USDT-SWAP": 1.0,
    "XRP-USDT-SWAP": 100.0,
    "DOGE-USDT-SWAP": 1000.0,
    "BTC-USD-SWAP": 100.0,
    "ETH-USD-SWAP": 10.0,
}
UTC8_S: Final = -8 * 3600


def parse_name(path: Path) -> VenueFile | None:
    m = _NAME_RE.match(path.name)
    if m is None or not valid_date(m["date"]):
        return None
    return VenueFile(path, "okx", "trades", m["inst"], m["date"])


def spec_for_inst(inst: str, settings: Settings, *, exchange: str = "okx") -> MarketSpec:
    """The live feeder's spec of an OKX instrument (``BTC-USDT-SWAP`` etc.)."""
    market = market_id(PREFIX["okx"], inst)
    if not inst.upper().endswith("-SWAP"):
        return MarketSpec(market, Kind.SPOT, exchange)
    ct = settings.contract_sizes.get(market, CONTRACT_VALUES.get(inst.upper()))
    if ct is None:
        raise ArchiveError(
            f"{inst}: contract value unknown; set squeezeflow.contract_sizes[{market!r}] to the "
            "instrument's ctVal (OKX public/instruments) before importing its trades"
        )
    quote = inst.upper().split("-")[1]
    if quote == "USD":  # inverse: ctVal USD per contract
        return MarketSpec(market, Kind.PERP, exchange, contract_size=ct)
    return MarketSpec(market, Kind.PERP, exchange, base_per_contract=ct)


def spec(f: VenueFile, settings: Settings) -> MarketSpec:
    return spec_for_inst(f.symbol, settings)


def read(f: VenueFile) -> RawDay:
    cols, bad = read_columns(
        f.path,
        {
            "trade_id": AUTO_ID,
            "side": TEXT,
            "price": pa.float64(),
            "size": pa.float64(),
            "created_time": pa.int64(),
        },
        aliases={"created_time": ("ts", "timestamp"), "trade_id": ("tradeId",)},
    )
    columns = {
        "ts": np.asarray(cols["created_time"].to_numpy(), np.int64),
        "price": np.asarray(cols["price"].to_numpy(), np.float64),
        "qty": np.asarray(cols["size"].to_numpy(), np.float64),
        "trade_id": ids_from_text(cols["trade_id"]),
    }
    day = taker_day(f, cols["side"], columns, bad, offsets_s=(0, UTC8_S))
    raw, refused = day.raw, day.refused
    # Doubled rows: keep each trade id's first row, in time order.
    ids = raw["trade_id"]
    if len(ids) > 1 and bool(np.all(ids[1:] > ids[:-1])):
        return day
    _, first = np.unique(ids, return_index=True)
    if len(first) != len(ids):
        refused["duplicate_id"] = len(raw["trade_id"]) - len(first)
        first.sort()
        day.raw = {k: v[first] for k, v in raw.items()}
    return day


def relpath(inst: str, day: str) -> str:
    return (
        f"cdn/okex/traderecords/trades/daily/{day.replace('-', '')}/{inst.upper()}-trades-{day}.zip"
    )


ADAPTER: Final = Adapter("okx", parse_name, spec, read)
