"""The labelled-SYNTHETIC planted scenario, built once per session through the real import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from feeder.history import binance_metrics as metrics
from feeder.history.binance_archive import discover
from feeder.history.binance_metrics import import_metrics
from feeder.history.export import candles
from feeder.history.importer import import_files
from feeder.read.flow import load_flow
from feeder.settings import Settings, settings_from_dict
from feeder.stores.parquet import ParquetStore
from feeder.tools.synthetic import Scenario, generate, store_liquidations

BTC_SETTINGS = settings_from_dict(None, env=False)  # BTC: Binance spot, USD-M, COIN-M


@dataclass
class Built:
    archive: Path
    store: ParquetStore
    settings: Settings
    episodes: list[dict]
    t0: int
    t1: int

    def frame(self, timeframe: str = "5m", end: int | None = None) -> pd.DataFrame:
        """FreqTrade-like candles (perp prices) merged with flow by candle open time, loaded
        from the store for ``[t0, end)`` (default: the whole scenario)."""
        t1 = self.t1 if end is None else end
        c = candles(self.store, "BINANCE_FUTURES:btcusdt", self.t0, t1, timeframe)
        fl = load_flow(self.store, self.settings, "BTC", self.t0, t1, timeframe)
        df = c.merge(fl, left_on="date", right_index=True, how="left")
        df["cvd_ok"] = df["complete"].astype("boolean").fillna(False).astype(bool)
        return df.reset_index(drop=True)


def build(root: Path, scenario: Scenario) -> Built:
    manifest = generate(scenario, root / "archive")
    store = ParquetStore(root / "store")
    import_files(discover(root / "archive", None), store, BTC_SETTINGS, progress=False)
    if scenario.open_interest:  # the metrics archives, through the importer users run
        import_metrics(metrics.discover(root / "archive"), store, BTC_SETTINGS)
    store_liquidations(scenario, store, BTC_SETTINGS)  # none unless scenario.liquidations
    return Built(
        root / "archive",
        store,
        BTC_SETTINGS,
        manifest["episodes"],  # type: ignore[arg-type]
        scenario.t0,
        scenario.t0 + scenario.days * 86_400,
    )


def mirror(df: pd.DataFrame) -> pd.DataFrame:
    """The mirrored market: taker buys and sells swapped, log prices reflected."""
    m = df.copy()
    for k in ("spot", "perp"):
        m[f"{k}_vbuy"], m[f"{k}_vsell"] = df[f"{k}_vsell"], df[f"{k}_vbuy"]
        m[f"{k}_cbuy"], m[f"{k}_csell"] = df[f"{k}_csell"], df[f"{k}_cbuy"]
        m[f"{k}_lbuy"], m[f"{k}_lsell"] = df[f"{k}_lsell"], df[f"{k}_lbuy"]
    ref = float(df["close"].iloc[0])
    m["open"] = ref**2 / df["open"]
    m["close"] = ref**2 / df["close"]
    m["high"] = ref**2 / df["low"]
    m["low"] = ref**2 / df["high"]
    return m


def entries(out: pd.DataFrame, dates: pd.Series, side: str) -> list[pd.Timestamp]:
    return list(dates[out[f"sf_enter_{side}"].to_numpy(bool)])


def near_planted(ts: pd.Timestamp, episodes: list[dict], direction: int, hours: float = 3) -> bool:
    t = ts.timestamp()
    return any(
        e["direction"] == direction and 0 <= t - e["start"] <= hours * 3600 for e in episodes
    )


def eq_nan(a: pd.Series, b: pd.Series) -> bool:
    x, y = a.to_numpy(), b.to_numpy()
    if x.dtype.kind in "fc" or y.dtype.kind in "fc":
        x, y = x.astype(float), y.astype(float)
        return bool(np.all((x == y) | (np.isnan(x) & np.isnan(y))))
    return bool(np.all(x == y))
