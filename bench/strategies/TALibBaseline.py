"""The plain TA-Lib strategy the SqueezeFlow backtest is compared with (bench only)."""

from __future__ import annotations

import pandas as pd
import talib.abstract as ta
from freqtrade.strategy import IStrategy


class TALibBaseline(IStrategy):
    INTERFACE_VERSION = 3
    can_short = True
    timeframe = "5m"
    startup_candle_count = 200
    minimal_roi = {"0": 0.02}
    stoploss = -0.03

    def populate_indicators(self, df: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        df["ema_fast"] = ta.EMA(df, timeperiod=12)
        df["ema_slow"] = ta.EMA(df, timeperiod=26)
        df["rsi"] = ta.RSI(df, timeperiod=14)
        df["atr"] = ta.ATR(df, timeperiod=14)
        return df

    def populate_entry_trend(self, df: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        up = (df["ema_fast"] > df["ema_slow"]) & (
            df["ema_fast"].shift(1) <= df["ema_slow"].shift(1)
        )
        down = (df["ema_fast"] < df["ema_slow"]) & (
            df["ema_fast"].shift(1) >= df["ema_slow"].shift(1)
        )
        df.loc[up & (df["rsi"] < 70), "enter_long"] = 1
        df.loc[down & (df["rsi"] > 30), "enter_short"] = 1
        return df

    def populate_exit_trend(self, df: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        df.loc[df["rsi"] > 75, "exit_long"] = 1
        df.loc[df["rsi"] < 25, "exit_short"] = 1
        return df
