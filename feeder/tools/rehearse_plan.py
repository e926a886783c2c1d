"""``rehearse``'s scenario: the SYNTHETIC planted squeezes or recorded sessions, shifted so that
the live segment starts at a coming candle boundary (a ``Plan``), and its funding archive.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feeder.read.flow import timeframe_seconds
from feeder.replay.paper import FUNDING_MS
from feeder.replay.recording import Recording, parse_recording_arg
from feeder.replay.tape import (
    Tape,
    next_start_ms,
    shift,
    tapes_from_recordings,
    tapes_from_scenario,
)

log = logging.getLogger(__name__)


REPO = Path(__file__).resolve().parents[2]
STRATEGY_PATH = REPO / "user_data" / "strategies"
#: Environment overrides that would redirect a child process away from the rehearsal namespace.
STORE_ENV = (
    "SQUEEZEFLOW_BACKEND",
    "SQUEEZEFLOW_PARQUET_DIR",
    "SQUEEZEFLOW_INFLUX_URL",
    "SQUEEZEFLOW_INFLUX_DATABASE",
    "SQUEEZEFLOW_INFLUX_USERNAME",
    "SQUEEZEFLOW_INFLUX_PASSWORD",
    "SQUEEZEFLOW_REDIS_URL",
)
FOUR_HOURS = 4 * 3600
LEAD_IN_MS = 60_000  # trades streamed before the live start (see Plan.stream_from_ms)
DIV_CANDLES = 14  # planted divergence length (candles)
IMBALANCE = 0.35  # planted taker imbalance
ABSORB, TURN = 0.03, 0.04  # planted price moves (log) during the divergence and the reset
PREFIX = {"spot": "BINANCE", "usdm": "BINANCE_FUTURES", "cm": "BINANCE_FUTURES"}


class RehearsalError(RuntimeError):
    """The rehearsal could not run (not: live and backtest disagree)."""


# ------------------------------------------------------------------------------ the scenario


@dataclass
class Plan:
    """What is served: shifted tapes, the live segment, the pairs and the coins' markets."""

    timeframe: str
    tapes: list[Tape]
    live_from_ms: int
    live_end_ms: int
    source: dict[str, Any]
    coins: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def timeframe_s(self) -> int:
        return timeframe_seconds(self.timeframe)

    @property
    def stream_from_ms(self) -> int:
        """The paper exchange streams from one minute before the live start (a minute boundary,
        the history is imported up to the live start): the feeder's coverage, which begins at
        its first trades, then joins the imported history without a gap, and the minute it
        writes over holds every trade of that minute."""
        return self.live_from_ms - LEAD_IN_MS

    @property
    def pairs(self) -> list[str]:
        return sorted(f"{coin_of(t.symbol)}/USDT:USDT" for t in self.tapes if t.market == "usdm")


def coin_of(symbol: str) -> str:
    for suffix in ("USD_PERP", "USDT", "USDC", "USD"):
        if symbol.endswith(suffix):
            return symbol[: -len(suffix)]
    raise RehearsalError(f"cannot tell the coin of {symbol}")


def _coins(tapes: list[Tape]) -> dict[str, dict[str, list[str]]]:
    coins: dict[str, dict[str, list[str]]] = {}
    for t in tapes:
        c = coins.setdefault(coin_of(t.symbol), {"spot": [], "perp": []})
        c["spot" if t.market == "spot" else "perp"].append(market_of(t))
    for coin, c in coins.items():
        if not c["spot"] or not c["perp"]:
            raise RehearsalError(f"{coin}: the scenario needs a spot and a perp market")
    return coins


def market_of(t: Tape) -> str:
    return f"{PREFIX[t.market]}:{t.symbol.lower()}"


def strategy_startup_candles(timeframe: str, strategy_path: Path = STRATEGY_PATH) -> int:
    """The strategy's own warm-up (``startup_candles`` of SqueezeFlow.py) for ``timeframe``."""
    spec = importlib.util.spec_from_file_location("_sf_strategy", strategy_path / "SqueezeFlow.py")
    if spec is None or spec.loader is None:
        raise RehearsalError(f"SqueezeFlow.py not found in {strategy_path}")
    sys.path.insert(0, str(strategy_path))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(strategy_path))
    return int(module.startup_candles(timeframe))


def synthetic_plan(seed: int, timeframe: str, live_candles: int, lead_s: float) -> Plan:
    """The planted scenario: history for the strategy's warm-up, then a live segment in which
    BTC's long squeeze and ETH's short squeeze reset two candles after the live start.

    Each episode: divergence for ``DIV_CANDLES`` candles ending two candles into the live
    segment (price absorbed: ``ABSORB``), reset for 10 (price turning: ``TURN``), run for 30;
    strong enough that the method's score at the reset reaches ``min_score`` (6) without the
    higher-timeframe context part, wherever the 1h/4h candle boundaries fall (the shift to now is
    a multiple of 4 hours; where the live start falls in the 4 h grid follows the wall clock).
    The strategy runs with its default parameters."""
    from feeder.tools.synthetic import Scenario

    tf = timeframe_seconds(timeframe)
    if tf % 60 or tf > 3600:
        raise RehearsalError("the synthetic rehearsal supports timeframes from 1m to 1h")
    t0 = Scenario(start_day="2024-01-01").t0
    history = (strategy_startup_candles(timeframe) + 30) * tf
    earliest = t0 + math.ceil(history / FOUR_HOURS) * FOUR_HOURS
    real_start = next_start_ms(lead_s, tf) // 1000
    live = earliest + (real_start - earliest) % FOUR_HOURS  # same place in the 4 h grid
    end = live + live_candles * tf
    days = math.ceil((end + 3600 - t0) / 86_400)
    scenarios = planted_scenarios(seed, tf, live, days)
    tapes = [t for sc in scenarios for t in tapes_from_scenario(sc)]
    keep_until = (end + 600) * 1000
    tapes = [_cut(t, keep_until) for t in tapes]
    offset_s = real_start - live
    tapes = shift(tapes, live * 1000, real_start * 1000)
    source = {
        "synthetic": True,
        "seed": seed,
        "note": "SYNTHETIC planted-squeeze scenario",
        "episodes": [
            {"symbol": sc.symbol, **asdict(e), "start": e.start + offset_s}
            for sc in scenarios
            for e in sc.episodes
        ],
    }
    return Plan(
        timeframe,
        tapes,
        real_start * 1000,
        (real_start + live_candles * tf) * 1000,
        source,
        _coins(tapes),
    )


def planted_scenarios(seed: int, tf: int, live: int, days: int) -> list[Any]:
    """BTC: a long squeeze, ETH: a short one, both resetting two candles after ``live``."""
    from feeder.tools.synthetic import Episode, Scenario

    reset_at = live + 2 * tf

    def episode(direction: int) -> Episode:
        return Episode(
            start=reset_at - DIV_CANDLES * tf,
            direction=direction,
            div_len=DIV_CANDLES * tf,
            reset_len=10 * tf,
            run_len=30 * tf,
            absorb=ABSORB,
            turn=TURN,
        )

    return [
        Scenario(
            start_day="2024-01-01",
            days=days,
            symbol="BTCUSDT",
            seed=seed,
            imbalance=IMBALANCE,
            episodes=[episode(1)],
        ),
        Scenario(
            start_day="2024-01-01",
            days=days,
            symbol="ETHUSDT",
            seed=seed + 1,
            price=2_500.0,
            contract_usd=10.0,
            imbalance=IMBALANCE,
            episodes=[episode(-1)],
        ),
    ]


def _cut(t: Tape, until_ms: int) -> Tape:
    k = t.split(until_ms)
    return Tape(t.market, t.symbol, t.ms[:k], t.ids[:k], t.price[:k], t.qty[:k], t.buyer_maker[:k])


def recording_plan(
    values: list[str], timeframe: str, lead_s: float, warmup_candles: int | None = None
) -> Plan:
    """Recorded Binance sessions: the candles of the second half are live, the rest history,
    which must cover the strategy's warm-up (``warmup_candles``, default its startup candles:
    FreqTrade's backtest refuses a window without them)."""
    recs = [Recording.load(*parse_recording_arg(v)) for v in values]
    tapes = [t for t in tapes_from_recordings(recs) if len(t)]
    if not any(t.market == "usdm" for t in tapes):
        raise RehearsalError("FreqTrade trades USD-M: give a usdm recording (PATH:usdm)")
    tf = timeframe_seconds(timeframe) * 1000
    first = min(int(t.ms[0]) for t in tapes)
    last = min(int(t.ms[-1]) for t in tapes)  # every market still has trades
    live = -(-(first + (last - first) // 2) // tf) * tf
    end = last // tf * tf
    if end <= live:
        raise RehearsalError(
            f"the recordings overlap for {(last - first) / 1000:.0f} s: too "
            f"short for a live segment of {timeframe} candles"
        )
    if warmup_candles is None:
        warmup_candles = strategy_startup_candles(timeframe)
    if live - first < warmup_candles * tf:
        raise RehearsalError(
            f"the recordings hold {(live - first) / 60_000:.0f} min of history before their live "
            f"half; the strategy needs {warmup_candles} {timeframe} candles "
            f"({warmup_candles * tf / 3_600_000:.1f} h) of warm-up before it (FreqTrade's backtest "
            "refuses a window without them): use longer recordings or the synthetic scenario"
        )
    real_start = next_start_ms(lead_s, tf // 1000)
    tapes = shift(tapes, live, real_start)
    source = {"recordings": [str(r.path) for r in recs], "synthetic": False}
    return Plan(timeframe, tapes, real_start, real_start + end - live, source, _coins(tapes))


def write_funding(plan: Plan, root: Path) -> Path:
    """The paper exchange's funding (every 8 h, its rate) as Binance fundingRate archive CSVs."""
    first = min(int(t.ms[0]) for t in plan.tapes)
    last = max(int(t.ms[-1]) for t in plan.tapes)
    for t in plan.tapes:
        if t.market != "usdm":
            continue
        folder = root / "futures" / "um" / "monthly" / "fundingRate" / t.symbol
        folder.mkdir(parents=True, exist_ok=True)
        months: dict[str, list[str]] = {}
        for ms in range(-(-first // FUNDING_MS) * FUNDING_MS, last + 1, FUNDING_MS):
            m = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m")
            months.setdefault(m, []).append(f"{ms},8,0.00010000\n")
        for m, rows in months.items():
            (folder / f"{t.symbol}-fundingRate-{m}.csv").write_text(
                "calc_time,funding_interval_hours,last_funding_rate\n" + "".join(rows)
            )
    return root
