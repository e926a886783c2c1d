"""Vectorised trade normalisation: one code path for archive import and live collection.

Raw trades arrive as columns (an archive chunk, or a list of ccxt trades turned into columns).
``normalise`` validates them, converts timestamps of any unit to nanoseconds, converts inverse
contracts to USD notional, derives the taker side once (``SELL`` when the buyer was the maker),
drops duplicates by trade id, and counts every dropped row by reason. Nothing it accepts is
changed later; nothing it refuses is silently lost (see ``Rejects``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from feeder.ingest.models import Kind, Side, Trade

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

# Plausible epoch range (2009-01-01 .. 2100-01-01) expressed in each unit; a raw timestamp
# inside none of these windows has an unknown unit and is refused.
_EPOCH_LO_S = 1_230_768_000
_EPOCH_HI_S = 4_102_444_800
_UNIT_SCALE = {  # unit name: (multiplier to ns, divisor from ns-seconds window)
    "s": 1_000_000_000,
    "ms": 1_000_000,
    "us": 1_000,
    "ns": 1,
}

REASONS = (
    "price_invalid",
    "qty_invalid",
    "not_market_trade",
    "duplicate_id",
    "timestamp_unit",
)


@dataclass(slots=True)
class Rejects:
    """Counts of refused trades by reason (see ``REASONS``), plus late trades seen downstream."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, reason: str, n: int) -> None:
        if n:
            self.counts[reason] += int(n)

    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: Rejects) -> None:
        self.counts.update(other.counts)


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """What the normaliser must know about a market.

    ``contract_size`` is set for inverse (coin-margined) contracts, whose quantity is a number of
    contracts worth ``contract_size`` USD each; for linear and spot markets it is ``None``.
    ``base_per_contract`` converts a linear contract quantity to base (OKX BTC-USDT-SWAP: 0.01);
    1.0 for spot and for venues that quote quantity in base.
    """

    market: str
    kind: Kind
    exchange: str = "binance"
    contract_size: float | None = None
    base_per_contract: float = 1.0


@dataclass(frozen=True, slots=True)
class TradeBatch:
    """Accepted trades of one market, as columns (``records()`` yields them as ``Trade``).

    ``ts`` is the exchange's event time and ``ts_recv`` our receive time, both ns since the epoch;
    ``qty`` is base quantity, ``notional`` USD, ``buy`` the taker side.
    """

    market: str
    kind: Kind
    ts: I64
    price: F64
    qty: F64
    notional: F64
    buy: B
    trade_id: I64
    liq: B
    ts_recv: I64 | None = None
    exchange: str = ""

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def take(self, mask_or_idx: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> TradeBatch:
        return TradeBatch(
            self.market,
            self.kind,
            self.ts[mask_or_idx],
            self.price[mask_or_idx],
            self.qty[mask_or_idx],
            self.notional[mask_or_idx],
            self.buy[mask_or_idx],
            self.trade_id[mask_or_idx],
            self.liq[mask_or_idx],
            None if self.ts_recv is None else self.ts_recv[mask_or_idx],
            self.exchange,
        )

    @classmethod
    def concat(cls, batches: list[TradeBatch]) -> TradeBatch:
        """One batch from several of the same market (receive times kept when all have them)."""
        if len(batches) == 1:
            return batches[0]
        b0 = batches[0]
        recv = (
            None
            if any(b.ts_recv is None for b in batches)
            else np.concatenate([b.ts_recv for b in batches if b.ts_recv is not None])
        )

        def cat(name: str) -> Any:
            return np.concatenate([getattr(b, name) for b in batches])

        return cls(
            b0.market,
            b0.kind,
            cat("ts"),
            cat("price"),
            cat("qty"),
            cat("notional"),
            cat("buy"),
            cat("trade_id"),
            cat("liq"),
            recv,
            b0.exchange,
        )

    def records(self) -> Iterator[Trade]:
        """The trades one by one as normalised ``Trade`` records."""
        recv = self.ts_recv if self.ts_recv is not None else self.ts
        for i in range(len(self)):
            yield Trade(
                exchange=self.exchange,
                market=self.market,
                kind=self.kind,
                ts_event=int(self.ts[i]),
                ts_recv=int(recv[i]),
                price=float(self.price[i]),
                qty=float(self.qty[i]),
                notional=float(self.notional[i]),
                side=Side.BUY if self.buy[i] else Side.SELL,
                trade_id=int(self.trade_id[i]),
                liquidation=bool(self.liq[i]),
            )


def timestamps_to_ns(raw: npt.ArrayLike) -> tuple[I64, B]:
    """Convert epoch timestamps in s, ms, us or ns (mixed is fine) to ns.

    Returns the converted values and a mask of rows whose unit could not be recognised (not
    finite, not positive, or outside 2009..2100 in every unit). Integers are kept exact; float
    seconds keep microsecond precision.
    """
    arr = np.asarray(raw)
    one = _one_unit(arr)
    if one is not None:
        return one, np.zeros(arr.shape, np.bool_)
    return _mixed_units_to_ns(arr)


def _one_unit(arr: npt.NDArray[Any]) -> I64 | None:
    """The common case, every value in one unit's window: one multiply, no masks; ``None``
    otherwise (mixed units, non-finite, out of range, or empty)."""
    if arr.size == 0 or arr.dtype.kind not in "iuf":
        return None
    lo, hi = arr.min(), arr.max()  # NaN makes both comparisons below false
    for mult in _UNIT_SCALE.values():
        per_s = 1_000_000_000 // mult
        if lo >= _EPOCH_LO_S * per_s and hi < _EPOCH_HI_S * per_s:
            ints = arr.astype(np.int64)
            out = ints * mult
            if arr.dtype.kind == "f" and mult >= 1000:
                out += np.round((arr - ints) * (mult // 1000)).astype(np.int64) * 1000
            return out
    return None


def _mixed_units_to_ns(arr: npt.NDArray[Any]) -> tuple[I64, B]:
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        ints = np.where(finite, arr, 0).astype(np.int64)
        frac = np.where(finite, arr - ints, 0.0)
    else:
        finite = np.ones(arr.shape, np.bool_)
        ints = arr.astype(np.int64, copy=False)
        frac = None
    out = np.zeros(arr.shape, np.int64)
    known = np.zeros(arr.shape, np.bool_)
    for mult in _UNIT_SCALE.values():
        per_s = 1_000_000_000 // mult
        in_unit = finite & (ints >= _EPOCH_LO_S * per_s) & (ints < _EPOCH_HI_S * per_s)
        if in_unit.any():
            out[in_unit] = ints[in_unit] * mult
            if frac is not None and mult >= 1000:
                # float64 epoch values carry about 0.2 us of precision: round to the microsecond
                us = np.round(frac[in_unit] * (mult // 1000)).astype(np.int64)
                out[in_unit] += us * 1000
            known |= in_unit
    return out, ~known


@dataclass(slots=True)
class IdDeduplicator:
    """Drops trade ids already seen in a market.

    Archive files and live streams deliver increasing ids, so the common case costs one pass
    (a strictly increasing batch above everything seen). Otherwise ids are checked against the
    last ``window`` ids seen in arrival order, which covers reconnect overlaps and REST
    backfills; arrival order, not the largest ids, because hashed ids (Bybit's uuids) carry no
    order.
    """

    window: int = 200_000
    last_id: int = -1
    _ring: I64 = field(default_factory=lambda: np.empty(0, np.int64))  # the last ids, a ring
    _filled: int = 0  # how many slots of the ring hold ids
    _pos: int = 0  # where the next id goes

    def fresh(self, ids: I64) -> B:
        """Mask of ids not seen before (first occurrence kept); updates the state."""
        n = ids.shape[0]
        if n == 0:
            return np.ones(0, np.bool_)
        if ids[0] > self.last_id and (n == 1 or bool(np.all(ids[1:] > ids[:-1]))):
            self.last_id = int(ids[-1])
            self._remember(ids)
            return np.ones(n, np.bool_)
        keep = np.zeros(n, np.bool_)
        _, first = np.unique(ids, return_index=True)
        keep[first] = True
        if self._filled:
            keep &= ~np.isin(ids, self._ring[: self._filled])
        new_ids = ids[keep]
        if new_ids.shape[0]:
            self.last_id = max(self.last_id, int(new_ids.max()))
            self._remember(new_ids)
        return keep

    def _remember(self, ids: I64) -> None:
        """Keep the last ``window`` ids in the order they arrived: O(len(ids)), not O(window)."""
        w = self.window
        if w <= 0:
            return
        if self._ring.shape[0] != w:
            self._ring = np.empty(w, np.int64)
        ids = ids[-w:]
        k = ids.shape[0]
        head = min(k, w - self._pos)
        self._ring[self._pos : self._pos + head] = ids[:head]
        self._ring[: k - head] = ids[head:]
        self._pos = (self._pos + k) % w
        self._filled = min(w, self._filled + k)


def normalise(
    spec: MarketSpec,
    *,
    ts: npt.ArrayLike,
    price: npt.ArrayLike,
    qty: npt.ArrayLike,
    is_buyer_maker: npt.ArrayLike,
    trade_id: npt.ArrayLike,
    is_market: npt.ArrayLike | None = None,
    liquidation: npt.ArrayLike | None = None,
    ts_recv: npt.ArrayLike | int | None = None,
    dedup: IdDeduplicator | None = None,
    rejects: Rejects | None = None,
) -> TradeBatch:
    """Validate and normalise one market's raw trades.

    Args:
        spec: the market (id, kind, contract size for inverse contracts).
        ts: exchange trade time in s, ms, us or ns.
        price, qty: as the exchange sends them (qty in contracts for inverse contracts).
        is_buyer_maker: True when the taker sold.
        trade_id: the exchange's trade id.
        is_market: False for futures rows that are not plain market trades (INSURANCE_FUND,
            ADL, ...); None when the source has no such field.
        liquidation: True for forced liquidation fills (counted as lbuy/lsell, not vbuy/vsell).
        ts_recv: our receive time in ns (one value for the batch, or per row; default: now).
        dedup: per-market id state carried across batches.
        rejects: counter updated with every refused row by reason.
    """
    rej = rejects if rejects is not None else Rejects()
    p = np.asarray(price, dtype=np.float64)
    q = np.asarray(qty, dtype=np.float64)
    ids = np.asarray(trade_id, dtype=np.int64)
    bm = np.asarray(is_buyer_maker, dtype=np.bool_)
    ts_ns, bad_ts = timestamps_to_ns(ts)
    recv = np.broadcast_to(
        np.asarray(time.time_ns() if ts_recv is None else ts_recv, np.int64), ts_ns.shape
    )

    with np.errstate(invalid="ignore"):
        bad_price = ~(np.isfinite(p) & (p > 0))
        bad_qty = ~(np.isfinite(q) & (q > 0))
    bad_kind = ~np.asarray(is_market, dtype=np.bool_) if is_market is not None else None

    # Reasons are attributed in a fixed order so each refused row is counted exactly once.
    ok = ~bad_ts
    rej.add("timestamp_unit", int(bad_ts.sum()))
    if bad_kind is not None:
        rej.add("not_market_trade", int((ok & bad_kind).sum()))
        ok &= ~bad_kind
    rej.add("price_invalid", int((ok & bad_price).sum()))
    ok &= ~bad_price
    rej.add("qty_invalid", int((ok & bad_qty).sum()))
    ok &= ~bad_qty
    all_ok = bool(ok.all())
    if not all_ok:
        ts_ns, p, q, ids, bm, recv = ts_ns[ok], p[ok], q[ok], ids[ok], bm[ok], recv[ok]

    liq = (
        np.asarray(liquidation, dtype=np.bool_)
        if liquidation is not None
        else np.zeros(ids.shape[0] if all_ok else int(ok.sum()), np.bool_)
    )
    if liquidation is not None and not all_ok:
        liq = liq[ok]

    if dedup is not None:
        fresh = dedup.fresh(ids)
        n_dup = int(fresh.shape[0] - fresh.sum())
        if n_dup:
            rej.add("duplicate_id", n_dup)
            ts_ns, p, q, ids, bm, liq = (
                ts_ns[fresh],
                p[fresh],
                q[fresh],
                ids[fresh],
                bm[fresh],
                liq[fresh],
            )
            recv = recv[fresh]

    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if spec.contract_size is not None:
            notional = q * spec.contract_size
            base = notional / p
        else:
            base = q if spec.base_per_contract == 1.0 else q * spec.base_per_contract
            notional = p * base
        # finite price and quantity can still make an infinite notional (1e308 x 1e308)
        bad_notional = ~(np.isfinite(notional) & np.isfinite(base) & (notional > 0) & (base > 0))
    if bad_notional.any():
        rej.add("notional_invalid", int(bad_notional.sum()))
        keep = ~bad_notional
        ts_ns, p, base, notional, bm, ids, liq, recv = (
            ts_ns[keep],
            p[keep],
            base[keep],
            notional[keep],
            bm[keep],
            ids[keep],
            liq[keep],
            recv[keep],
        )
    return TradeBatch(
        spec.market, spec.kind, ts_ns, p, base, notional, ~bm, ids, liq, recv, spec.exchange
    )
