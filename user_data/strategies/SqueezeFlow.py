"""SqueezeFlow: trade spot-vs-perp CVD squeezes (method: docs/method.md).

A thin IStrategy. The method lives in the pure ``squeezeflow`` package beside this file; all
I/O sits behind ``feeder.read.flow_source.FlowSource``.
Settings come from the ``squeezeflow`` section
of the FreqTrade config (validated; a bad key stops the bot with its name).

- Backtesting/hyperopt: the whole range of flow for the pair's coin is loaded once per pair in
  ``populate_indicators`` and merged into the candles by candle open time.
- Live/dry-run: caught up from the store in ``bot_start``, then new 1-second bars from Redis in
  ``bot_loop_start`` (the store when Redis is down), which first waits (``decide_wait_s``) for the
  newest closed candle's flow to be final. A stale feed blocks new entries and sends one
  notification. Liquidations are scored only with ``score_liquidations``; OI is merged in both.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import talib.abstract as ta
from freqtrade.enums import RunMode
from freqtrade.persistence import Trade
from freqtrade.strategy import (
    DecimalParameter,
    IntParameter,
    IStrategy,
    stoploss_from_absolute,
    timeframe_to_seconds,
)
from squeezeflow import MethodParams, compute

from feeder.read.decisions import LiveDecisions
from feeder.read.flow_source import FLOW_COLUMNS, FlowSource, coin_of
from feeder.settings import settings_from_dict

log = logging.getLogger(__name__)

#: Higher timeframes of the context phase (seconds); those not above the timeframe are skipped.
CONTEXT_TFS = (3600, 14400)
#: Time stop: a trade held ``max_hold`` candles exits while its profit is below this (0.2 %).
TIME_STOP_MIN_PROFIT = 0.002
#: Size by entry score: (lowest score, leverage, share of FreqTrade's proposed stake), best
#: band first; a score below every band gets ``BASE_BAND``.
SCORE_BANDS = ((8.0, 3.0, 1.0), (7.0, 2.0, 0.75))
BASE_BAND = (1.0, 0.5)


def score_band(score: float) -> tuple[float, float]:
    """(leverage, stake share) of an entry score."""
    for lowest, leverage, stake_share in SCORE_BANDS:
        if score >= lowest:
            return leverage, stake_share
    return BASE_BAND


#: Upper ends of the hyperopt ranges that set the warm-up.
N_MAX, M_MAX, RESET_WINDOW_MAX, CTX_WINDOW = 36, 576, 48, 6


def startup_candles(timeframe: str) -> int:
    """Warm-up covering the largest windows of the hyperopt ranges and the context."""
    tf = timeframe_to_seconds(timeframe)
    ctx = [h * (CTX_WINDOW + 2) // tf for h in CONTEXT_TFS if h > tf]
    return int(max([M_MAX + N_MAX + RESET_WINDOW_MAX, *ctx]))


class SqueezeFlow(IStrategy):
    INTERFACE_VERSION = 3
    can_short = True
    timeframe = "5m"
    startup_candle_count = startup_candles("5m")
    process_only_new_candles = True
    use_exit_signal = True
    exit_profit_only = False
    minimal_roi = {"0": 10.0}  # exits come from the method, not from ROI
    stoploss = -0.15  # hard floor; the structure stop is custom_stoploss
    use_custom_stoploss = True

    # Phase 2-4 (entries)
    n = IntParameter(6, N_MAX, default=12, space="buy")
    m = IntParameter(144, M_MAX, default=288, space="buy")
    z_div = DecimalParameter(1.0, 3.0, default=1.5, decimals=2, space="buy")
    p_max = DecimalParameter(0.25, 2.0, default=1.0, decimals=2, space="buy")
    reset_window = IntParameter(6, RESET_WINDOW_MAX, default=24, space="buy")
    reset_frac = DecimalParameter(0.1, 0.7, default=0.3, decimals=2, space="buy")
    vol_mult = DecimalParameter(1.1, 3.0, default=1.5, decimals=2, space="buy")
    min_score = DecimalParameter(4.0, 8.0, default=6.0, decimals=1, space="buy")
    # Phase 5 (exits)
    exit_flow = DecimalParameter(0.02, 0.4, default=0.1, decimals=2, space="sell")
    max_hold = IntParameter(12, 288, default=96, space="sell")
    atr_mult = DecimalParameter(0.5, 3.0, default=1.0, decimals=1, space="sell")

    plot_config: dict[str, Any] = {
        "main_plot": {"stop_long": {"color": "green"}, "stop_short": {"color": "red"}},
        "subplots": {
            "CVD": {"spot_cvd": {"color": "blue"}, "perp_cvd": {"color": "orange"}},
            "Flow": {
                "spot_flow": {"color": "blue"},
                "perp_flow": {"color": "orange"},
                "flow_gap": {"color": "purple"},
            },
            "gap_z": {"gap_z": {"color": "purple"}, "price_z": {"color": "grey"}},
            "Score": {"score_long": {"color": "green"}, "score_short": {"color": "red"}},
        },
    }

    @property
    def protections(self) -> list[dict[str, Any]]:
        """Stoploss guard, max drawdown and cooldown (FreqTrade wants them in the strategy)."""
        return [
            {
                "method": "StoplossGuard",
                "lookback_period_candles": 24,
                "trade_limit": 3,
                "stop_duration_candles": 12,
                "only_per_pair": False,
            },
            {
                "method": "MaxDrawdown",
                "lookback_period_candles": 288,
                "trade_limit": 10,
                "stop_duration_candles": 72,
                "max_allowed_drawdown": 0.15,
            },
            {"method": "CooldownPeriod", "stop_duration_candles": 3},
        ]

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.timeframe = config.get("timeframe", self.timeframe)
        self.startup_candle_count = startup_candles(self.timeframe)
        self.settings = settings_from_dict(config.get("squeezeflow"))  # ConfigError names a bad key
        self.flow = FlowSource(self.settings, self.timeframe)
        self._computed_with: dict[str, MethodParams] = {}
        self.decisions = LiveDecisions(self.settings, timeframe_to_seconds(self.timeframe))

    @property
    def late_candles(self) -> int:
        """Live: candles whose flow was not final within ``decide_wait_s`` (decided incomplete)."""
        return self.decisions.late_candles

    # ----- parameters ---------------------------------------------------------------------------
    def method_params(self) -> MethodParams:
        return MethodParams(
            n=int(self.n.value),
            m=int(self.m.value),
            z_div=float(self.z_div.value),
            p_max=float(self.p_max.value),
            reset_window=int(self.reset_window.value),
            reset_frac=float(self.reset_frac.value),
            vol_mult=float(self.vol_mult.value),
            min_score=float(self.min_score.value),
            exit_flow=float(self.exit_flow.value),
            ctx_window=CTX_WINDOW,
        )

    def _runmode(self) -> RunMode | None:
        """FreqTrade sets ``dp`` when it loads the strategy; None when used on its own."""
        dp = getattr(self, "dp", None)
        return dp.runmode if dp is not None else None

    def _live(self) -> bool:
        return self._runmode() in (RunMode.DRY_RUN, RunMode.LIVE)

    def _coins(self) -> list[str]:
        pairs = self.dp.current_whitelist() if self._runmode() else []
        return sorted({coin_of(p) for p in pairs})

    # ----- live data ------------------------------------------------------------------------------
    def bot_start(self, **kwargs: Any) -> None:
        if self._live():
            for coin in self._coins():
                self.flow.catch_up(coin, self.startup_candle_count + 10)

    def bot_loop_start(self, current_time: datetime, **kwargs: Any) -> None:
        """Live: bring the flow up to date before FreqTrade analyses the newest closed candle,
        waiting (bounded) for its flow to be final: ``feeder.read.decisions.LiveDecisions``."""
        if not self._live():
            return
        coins = self._coins()
        for coin in coins:
            if not self.flow.caught_up(coin):
                self.flow.catch_up(coin, self.startup_candle_count + 10)
        for msg in self.decisions.before_analysis(self.flow, coins):
            self.dp.send_msg(msg, always_send=True)

    # ----- analysis -------------------------------------------------------------------------------
    def _merge_flow(self, df: pd.DataFrame, pair: str) -> pd.DataFrame:
        coin = coin_of(pair)
        if self._live():
            flow = self.flow.live(coin)
        else:
            flow = self.flow.history(coin, df["date"].iloc[0], df["date"].iloc[-1])
        cols = [*FLOW_COLUMNS, "oi", "complete"]
        merged = df.drop(columns=[c for c in cols if c in df]).merge(
            flow[cols], left_on="date", right_index=True, how="left"
        )
        if not self.settings.score_liquidations:
            # Archives carry no liquidations, live bars do: unscored in every mode, so a candle's
            # score never depends on where its flow came from (squeezeflow.score_liquidations).
            merged = merged.drop(columns=["perp_lbuy", "perp_lsell"])
        merged["cvd_ok"] = merged["complete"].astype("boolean").fillna(False).astype(bool)
        return merged

    def populate_indicators(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        t0 = time.perf_counter()
        df = self._merge_flow(dataframe, metadata["pair"])
        df["atr"] = ta.ATR(df, timeperiod=14)
        if self._runmode() is RunMode.HYPEROPT:
            return df  # the method runs per epoch in populate_entry_trend, with that epoch's values
        # Everywhere else the features are indicators too: plots, lookahead/recursive analysis.
        df = self._compute(df, metadata["pair"])
        if self._live():
            log.info(
                "SqueezeFlow %s: candle %s analysed in %.3fs",
                metadata["pair"],
                df["date"].iloc[-1] if len(df) else "-",
                time.perf_counter() - t0,
            )
        return df

    def _compute(self, df: pd.DataFrame, pair: str) -> pd.DataFrame:
        """Run the method unless this frame already holds a run with the current parameters."""
        p = self.method_params()
        if self._computed_with.get(pair) == p and "sf_enter_long" in df:
            return df
        out = compute(df, p, timeframe_to_seconds(self.timeframe), CONTEXT_TFS)
        df = df.drop(columns=[c for c in out.columns if c in df])
        df = pd.concat([df, out], axis=1)
        self._computed_with[pair] = p
        return df

    def populate_entry_trend(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        df = self._compute(dataframe, metadata["pair"])  # hyperopt: parameters changed
        df["enter_long"] = df["sf_enter_long"].astype(int)
        df["enter_short"] = df["sf_enter_short"].astype(int)
        # Tags only where an entry is (formatting every candle's score cost ~10 ms per pair on
        # the live decision's path): direction and rounded score, a long winning a tie.
        tags = np.full(len(df), None, dtype=object)
        for side in ("short", "long"):
            rows = np.flatnonzero(df[f"sf_enter_{side}"].to_numpy(dtype=bool))
            scores = np.round(df[f"score_{side}"].to_numpy()[rows])
            tags[rows] = [f"sf_{side}_{int(score)}" for score in scores]
        df["enter_tag"] = tags
        if self._live() and self.decisions.stale.get(coin_of(metadata["pair"]), False):
            df.loc[df.index[-1], ["enter_long", "enter_short"]] = 0
        return df

    def populate_exit_trend(
        self, dataframe: pd.DataFrame, metadata: dict[str, Any]
    ) -> pd.DataFrame:
        dataframe["exit_long"] = dataframe["sf_exit_long"].astype(int)
        dataframe["exit_short"] = dataframe["sf_exit_short"].astype(int)
        return dataframe

    # ----- callbacks ------------------------------------------------------------------------------
    @staticmethod
    def _tag_score(entry_tag: str | None) -> float:
        try:
            return float((entry_tag or "").rsplit("_", 1)[1])
        except (IndexError, ValueError):
            return 0.0

    def _last_row(self, pair: str) -> pd.Series | None:
        df, _ = self.dp.get_analyzed_dataframe(pair, self.timeframe)
        return None if df is None or len(df) == 0 else df.iloc[-1]

    def custom_stoploss(
        self,
        pair: str,
        trade: Trade,
        current_time: datetime,
        current_rate: float,
        current_profit: float,
        after_fill: bool,
        **kwargs: Any,
    ) -> float | None:
        """Structure stop: beyond the episode's extreme at entry, plus ``atr_mult`` ATRs."""
        stop = trade.get_custom_data("sf_stop")
        if stop is None:
            df, _ = self.dp.get_analyzed_dataframe(pair, self.timeframe)
            at_entry = df[df["date"] <= trade.open_date_utc].tail(1)
            if at_entry.empty:
                return None
            row = at_entry.iloc[0]
            atr = float(row["atr"]) if np.isfinite(row["atr"]) else 0.0
            if trade.is_short:
                stop = float(row["stop_short"]) + self.atr_mult.value * atr
            else:
                stop = float(row["stop_long"]) - self.atr_mult.value * atr
            if not np.isfinite(stop) or stop <= 0:
                return None
            trade.set_custom_data("sf_stop", stop)
        relative: float = stoploss_from_absolute(
            float(stop), current_rate, trade.is_short, trade.leverage
        )
        return relative

    def custom_exit(
        self,
        pair: str,
        trade: Trade,
        current_time: datetime,
        current_rate: float,
        current_profit: float,
        **kwargs: Any,
    ) -> str | None:
        row = self._last_row(pair)
        if row is None:
            return None
        gap = row.get("flow_gap", np.nan)
        if current_profit > 0 and np.isfinite(gap):
            if (not trade.is_short and gap < 0) or (trade.is_short and gap > 0):
                return "gap_resolved"
        held = (current_time - trade.open_date_utc).total_seconds()
        if (
            held >= self.max_hold.value * timeframe_to_seconds(self.timeframe)
            and current_profit < TIME_STOP_MIN_PROFIT
        ):
            return "time_stop"
        return None

    def leverage(
        self,
        pair: str,
        current_time: datetime,
        current_rate: float,
        proposed_leverage: float,
        max_leverage: float,
        entry_tag: str | None,
        side: str,
        **kwargs: Any,
    ) -> float:
        band_leverage, _ = score_band(self._tag_score(entry_tag))
        return max(1.0, min(band_leverage, self.settings.max_leverage, max_leverage))

    def custom_stake_amount(
        self,
        pair: str,
        current_time: datetime,
        current_rate: float,
        proposed_stake: float,
        min_stake: float | None,
        max_stake: float,
        leverage: float,
        entry_tag: str | None,
        side: str,
        **kwargs: Any,
    ) -> float:
        _, stake_share = score_band(self._tag_score(entry_tag))
        stake = proposed_stake * stake_share * self.settings.max_stake_fraction
        if min_stake is not None:
            stake = max(stake, min_stake)
        return min(stake, max_stake)
