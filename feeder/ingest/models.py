"""The normalised trade record and the bar schema shared by every source and sink."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Kind(StrEnum):
    """Which side of the squeeze a market feeds."""

    SPOT = "spot"
    PERP = "perp"


class Side(StrEnum):
    """The taker's (aggressor's) side."""

    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True, slots=True)
class Trade:
    """One public trade after normalisation.

    Attributes:
        exchange: exchange id as in ccxt (``binance``, ``binanceusdm``, ...).
        market: market id in aggr-server form, e.g. ``BINANCE:btcusdt``.
        kind: spot or perp.
        ts_event: exchange trade time, nanoseconds since the epoch (UTC).
        ts_recv: our receive time, nanoseconds since the epoch (UTC).
        price: trade price in quote currency.
        qty: base quantity (inverse contracts already converted to base).
        notional: USD (quote) notional; for inverse contracts contracts x contract size.
        side: taker side (``SELL`` when the buyer was the maker).
        trade_id: the exchange's trade id, unique within the market.
        liquidation: True for a forced-liquidation fill (counts into lbuy/lsell).
    """

    exchange: str
    market: str
    kind: Kind
    ts_event: int
    ts_recv: int
    price: float
    qty: float
    notional: float
    side: Side
    trade_id: int
    liquidation: bool = False


#: Columns of a bar, in storage order. ``time`` is the bar's open time in epoch seconds
#: (1-second bars) or epoch seconds of the minute (1-minute rollups).
PRICE_FIELDS: Final = ("open", "high", "low", "close")
FLOW_FIELDS: Final = ("vbuy", "vsell", "cbuy", "csell", "lbuy", "lsell")
BAR_FIELDS: Final = PRICE_FIELDS + FLOW_FIELDS
COUNT_FIELDS: Final = ("cbuy", "csell")
BAR_COLUMNS: Final = ("market", "time", *BAR_FIELDS)


def market_id(exchange_prefix: str, symbol: str) -> str:
    """``market_id("BINANCE_FUTURES", "BTCUSDT") == "BINANCE_FUTURES:btcusdt"``."""
    return f"{exchange_prefix.upper()}:{symbol.lower()}"
