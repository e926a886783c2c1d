"""``flow.require``: the explicit rule of which markets make a complete candle (load_flow and
the live FlowSource share ``assemble``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feeder.read.flow import load_flow
from feeder.settings import ConfigError, settings_from_dict
from feeder.stores.parquet import ParquetStore

DAY = 1735689600
COINS = {
    "BTC": {"spot": ["BINANCE:btcusdt", "BYBIT_SPOT:btcusdt"], "perp": ["BINANCE_FUTURES:btcusdt"]}
}


def _bars(vbuy: float) -> pd.DataFrame:
    t = DAY + 60 * np.arange(1440, dtype=np.int64)
    return pd.DataFrame(
        {
            "time": t,
            "open": 1.0,
            "high": 1.0,
            "low": 1.0,
            "close": 1.0,
            "vbuy": vbuy,
            "vsell": 1.0,
            "cbuy": 1.0,
            "csell": 1.0,
            "lbuy": 0.0,
            "lsell": 0.0,
        }
    )


def test_require_all_or_each_kind(tmp_path):
    s = ParquetStore(tmp_path)
    for m, kind, v in (("BINANCE:btcusdt", "spot", 2.0), ("BINANCE_FUTURES:btcusdt", "perp", 3.0)):
        s.write_bars(m, kind, _bars(v), "1m")
        s.add_coverage(m, DAY, DAY + 86_400)
    # BYBIT_SPOT has history for the first hour only
    s.write_bars("BYBIT_SPOT:btcusdt", "spot", _bars(100.0).iloc[:60], "1m")
    s.add_coverage("BYBIT_SPOT:btcusdt", DAY, DAY + 3600)
    strict = settings_from_dict({"coins": COINS, "flow": {"require": "all"}})
    df = load_flow(s, strict, "BTC", DAY, DAY + 86_400, "1h")
    assert df["complete"].tolist() == [True] + [False] * 23  # all markets required
    loose = settings_from_dict({"coins": COINS, "flow": {"require": "each_kind"}})
    df = load_flow(s, loose, "BTC", DAY, DAY + 86_400, "1h")
    assert df["complete"].all()
    assert df["spot_vbuy"].iloc[0] == (2.0 + 100.0) * 60
    assert (df["spot_vbuy"].iloc[1:] == 2.0 * 60).all()  # only covering markets contribute
    assert (df["perp_vbuy"] == 3.0 * 60).all()
    with pytest.raises(ConfigError, match="flow.require"):
        settings_from_dict({"flow": {"require": "most"}})
