"""Test helpers: reading the recorded trades and an independent (pandas) bar computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from feeder.ingest.models import Kind
from feeder.ingest.normalise import MarketSpec


def read_derived_trades(path: Path) -> pd.DataFrame:
    """A ../shared hftbacktest derived_trades CSV, as recorded."""
    return pd.read_csv(path, dtype={"x_type": str, "is_buyer_maker": str})


def raw_columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Recorded trades as the pipeline's raw columns."""
    x = df["x_type"].fillna("")
    return {
        "ts": df["trade_time_ms"].to_numpy(np.int64),
        "price": df["price"].to_numpy(np.float64),
        "qty": df["qty"].to_numpy(np.float64),
        "is_buyer_maker": (df["is_buyer_maker"].str.lower() == "true").to_numpy(),
        "trade_id": df["trade_id"].to_numpy(np.int64),
        "is_market": ((x == "") | (x == "MARKET")).to_numpy(),
    }


def independent_bars(df: pd.DataFrame, contract_size: float | None = None) -> pd.DataFrame:
    """1-second bars computed straight from the recorded trades with pandas groupby."""
    x = df["x_type"].fillna("")
    t = df[((x == "") | (x == "MARKET")) & (df["qty"] > 0) & (df["price"] > 0)].copy()
    t = t.drop_duplicates("trade_id").sort_values(["trade_time_ms", "trade_id"])
    t["time"] = t["trade_time_ms"] // 1000
    sell = t["is_buyer_maker"].str.lower() == "true"
    notional = t["qty"] * contract_size if contract_size else t["price"] * t["qty"]
    t["vbuy"] = np.where(sell, 0.0, notional)
    t["vsell"] = np.where(sell, notional, 0.0)
    t["cbuy"] = (~sell).astype(float)
    t["csell"] = sell.astype(float)
    g = t.groupby("time")
    out = pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "vbuy": g["vbuy"].sum(),
            "vsell": g["vsell"].sum(),
            "cbuy": g["cbuy"].sum(),
            "csell": g["csell"].sum(),
        }
    )
    out["lbuy"] = 0.0
    out["lsell"] = 0.0
    return out.reset_index()


SPOT = MarketSpec("BINANCE:btcusdt", Kind.SPOT)
USDM = MarketSpec("BINANCE_FUTURES:btcusdt", Kind.PERP)
COINM = MarketSpec("BINANCE_FUTURES:btcusd_perp", Kind.PERP, contract_size=100.0)
