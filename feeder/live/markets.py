"""Which markets the live feeder collects: discovered from each exchange's markets or listed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from feeder.ingest.models import Kind, market_id
from feeder.ingest.normalise import MarketSpec
from feeder.settings import ExchangeSettings

#: aggr-server exchange prefix per ccxt exchange id.
PREFIX = {
    "binance": "BINANCE",
    "binanceusdm": "BINANCE_FUTURES",
    "binancecoinm": "BINANCE_FUTURES",
    "bybit": "BYBIT",
    "okx": "OKEX",
    "coinbase": "COINBASE",
}


@dataclass(frozen=True)
class LiveMarket:
    """One collected market: its ccxt identity and our normalisation spec."""

    exchange: str  # ccxt exchange id
    symbol: str  # ccxt unified symbol
    coin: str
    spec: MarketSpec

    @property
    def market(self) -> str:
        return self.spec.market

    @property
    def kind(self) -> Kind:
        return self.spec.kind


def ccxt_market_id(exchange_id: str, m: Mapping[str, Any]) -> str:
    """Our id of a ccxt market: its venue's prefix (``PREFIX``; Bybit spot is ``BYBIT_SPOT``, the
    same ids as its perps) and the exchange's symbol, formatted by ``market_id``
    (``BINANCE_FUTURES:btcusdt``)."""
    prefix = PREFIX.get(exchange_id, exchange_id.upper())
    if exchange_id == "bybit" and m.get("spot"):
        prefix = "BYBIT_SPOT"
    return market_id(prefix, str(m["id"]))


def spec_from_ccxt(exchange_id: str, m: Mapping[str, Any]) -> MarketSpec:
    mid = ccxt_market_id(exchange_id, m)
    if m.get("contract"):
        size = float(m.get("contractSize") or 1.0)
        if m.get("inverse"):
            return MarketSpec(mid, Kind.PERP, exchange_id, contract_size=size)
        return MarketSpec(mid, Kind.PERP, exchange_id, base_per_contract=size)
    return MarketSpec(mid, Kind.SPOT, exchange_id)


def select_markets(
    exchange_id: str,
    markets: Mapping[str, Mapping[str, Any]],
    entry: ExchangeSettings,
    coins: Iterable[str],
) -> list[LiveMarket]:
    """The entry's markets: its ``symbols`` if listed, else every active market of a configured
    coin with an allowed quote that is spot (``kind == spot``) or a perpetual swap (``perp``)."""
    wanted = {c.upper() for c in coins}
    out: list[LiveMarket] = []
    if entry.symbols:
        for sym in entry.symbols:
            if sym not in markets:
                raise ValueError(f"{exchange_id}: symbol {sym!r} is not one of its markets")
            m = markets[sym]
            out.append(
                LiveMarket(exchange_id, sym, str(m["base"]).upper(), spec_from_ccxt(exchange_id, m))
            )
        return out
    for sym, m in sorted(markets.items()):
        if m.get("active") is False or str(m.get("base", "")).upper() not in wanted:
            continue
        is_spot = bool(m.get("spot"))
        is_perp = bool(m.get("swap")) and not m.get("expiry")
        if (entry.kind is Kind.SPOT and not is_spot) or (entry.kind is Kind.PERP and not is_perp):
            continue
        if str(m.get("quote", "")).upper() not in entry.quotes:
            continue
        out.append(
            LiveMarket(exchange_id, sym, str(m["base"]).upper(), spec_from_ccxt(exchange_id, m))
        )
    return out


def trade_id_int(tid: Any) -> int:
    """The exchange's trade id as int64: numeric ids as they are, others by a stable hash."""
    try:
        return int(tid)
    except (TypeError, ValueError):
        digest = hashlib.blake2b(str(tid).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


#: The info keys of an OKX ``trades``-channel row (``count`` matches of one taker order).
_OKX_AGGREGATE_KEYS = ("instId", "tradeId", "count")


def split_aggregated(trades: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """OKX's ``trades`` websocket channel sends one row per taker order and price: ``tradeId``
    is the *last* of ``count`` consecutive trade ids and ``sz`` their total (OKX API v5 docs,
    "Trades channel"). Its REST trades are single matches. Each such row becomes ``count``
    rows with ids ``tradeId - count + 1 .. tradeId`` and equal shares of the amount, so trade
    counts match the venue's and a REST backfill overlapping it is deduplicated by id instead of
    being counted again (per-second volume is the same up to float rounding). Rows of other
    exchanges, and OKX rows with ``count`` 1, are returned as they are."""
    out: list[Mapping[str, Any]] | None = None
    for i, t in enumerate(trades):
        info = t.get("info")
        n = 1
        if isinstance(info, dict) and all(k in info for k in _OKX_AGGREGATE_KEYS):
            try:
                n = int(info["count"])
                last = int(t["id"])
            except (TypeError, ValueError, KeyError):
                n = 1
        if n > 1 and out is None:
            out = list(trades[:i])
        if out is None:
            continue
        if n <= 1:
            out.append(t)
            continue
        a = t.get("amount")
        share = None if a is None else float(a) / n
        out.extend({**t, "id": str(last - n + 1 + k), "amount": share} for k in range(n))
    return trades if out is None else out


def raw_from_ccxt(trades: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """ccxt unified trades -> the normaliser's raw columns.

    A ccxt trade (Binance ``@trade`` parsed)::

        {'id': '3735683259', 'timestamp': 1723161255342, 'symbol': 'BTC/USDT', 'side': 'sell',
         'price': 61837.63, 'amount': 0.02, 'info': {'e': 'trade', 't': 3735683259, 'm': True,
         'X': 'MARKET', ...}}

    ``side`` is the taker's side (ccxt derives it from ``m``). Futures frames carry ``X``: only
    ``MARKET`` fills are trades. Missing values become NaN and are refused by the normaliser.
    OKX ``trades``-channel rows that aggregate several matches are split back into them
    (:func:`split_aggregated`).
    """
    trades = split_aggregated(trades)
    n = len(trades)
    ts = np.empty(n, np.float64)
    price = np.empty(n, np.float64)
    qty = np.empty(n, np.float64)
    is_buyer_maker = np.empty(n, np.bool_)
    ids = np.empty(n, np.int64)
    mkt = np.empty(n, np.bool_)
    for i, t in enumerate(trades):
        ts[i] = t.get("timestamp") or np.nan
        p, a = t.get("price"), t.get("amount")
        price[i] = np.nan if p is None else p
        qty[i] = np.nan if a is None else a
        is_buyer_maker[i] = t.get("side") == "sell"
        ids[i] = trade_id_int(t.get("id"))
        info = t.get("info") or {}
        x = info.get("X") if isinstance(info, dict) else None
        mkt[i] = x is None or x == "MARKET"
    return {
        "ts": ts,
        "price": price,
        "qty": qty,
        "is_buyer_maker": is_buyer_maker,
        "trade_id": ids,
        "is_market": mkt,
    }
