"""``squeezeflow-feeder rehearse``: the whole stack, end to end, on a paper exchange.

1. A scenario: the labelled SYNTHETIC planted-squeeze market (``--seed``; BTC gets a long
   squeeze, ETH a short one, both resetting two candles into the live segment) or recorded
   Binance sessions (``--recording``: the first half is history, the second half live). Its time
   is shifted so that the live segment starts at a coming candle boundary of the wall clock.
2. The history before the live start is imported into the store (the import path's writer).
3. :class:`feeder.replay.paper.PaperExchange` serves the scenario on 127.0.0.1; ``squeezeflow-feeder
   run`` (its own process) collects the live trades into the store and Redis; ``freqtrade trade
   --dry-run`` (its own process, REST API with throwaway credentials on a free loopback port,
   pointed at the paper exchange only through ``exchange.ccxt_config`` URL overrides) trades the
   live segment in real time.
4. ``freqtrade backtesting`` runs the same window from the store (candles exported from it).
5. The two trade lists are compared and reported (terminal table, ``--report FILE`` JSON).

Where the data goes: the configured backend and servers, in a namespace of their own so a
rehearsal never mixes into real data: Parquet ``<workdir>/store``; InfluxDB database
``<database>_rehearse`` (dropped and recreated at start); Redis prefix
``<prefix>:rehearse:<run id>`` (deleted at the end).

How trades compare. Each trade is ``pair, direction, entry candle, entry tag, exit candle, exit
reason``; a candle is the open time of the candle whose close decided the action, for live and
backtest alike: floor(order time, timeframe) - timeframe (a backtest fills at the next candle's
open, a live bot right after the close). A live trade still open when the bot stops and a
backtest trade closed by ``force_exit`` at the end of the window are both reported as exit candle
``null``, exit reason ``open_at_end``. The window: decisions on the candles from one before the
live start to the last live candle; the bot runs until ``settle`` seconds after the live end and
the backtest over ``[live start, live end + 1 candle)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import math
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from feeder.read.flow import timeframe_seconds
from feeder.replay.binance import ccxt_overrides
from feeder.replay.binance_api import DEFAULT_MARKETS_DIR
from feeder.replay.paper import (
    FUNDING_MS,
    PaperExchange,
    assert_loopback,
    freqtrade_exchange_config,
)
from feeder.replay.recording import Recording, parse_recording_arg
from feeder.replay.tape import (
    Tape,
    next_start_ms,
    shift,
    tapes_from_recordings,
    tapes_from_scenario,
)
from feeder.settings import Settings, settings_from_dict

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
    def tf_s(self) -> int:
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
        return sorted(f"{_coin(t.symbol)}/USDT:USDT" for t in self.tapes if t.market == "usdm")


def _coin(symbol: str) -> str:
    for suffix in ("USD_PERP", "USDT", "USDC", "USD"):
        if symbol.endswith(suffix):
            return symbol[: -len(suffix)]
    raise RehearsalError(f"cannot tell the coin of {symbol}")


def _coins(tapes: list[Tape]) -> dict[str, dict[str, list[str]]]:
    coins: dict[str, dict[str, list[str]]] = {}
    for t in tapes:
        c = coins.setdefault(_coin(t.symbol), {"spot": [], "perp": []})
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


# ------------------------------------------------------------------------------ the store


def rehearsal_settings(
    settings: Settings, plan: Plan, workdir: Path, run_id: str, server_url: str, http_port: int
) -> Settings:
    """The user's settings in the rehearsal namespace, collecting from the paper exchange."""
    s = settings.model_dump(mode="json")
    s["store"]["parquet_dir"] = str(workdir / "store")
    s["store"]["influx"]["database"] = f"{settings.store.influx.database}_rehearse"
    s["redis"]["prefix"] = f"{settings.redis.prefix}:rehearse:{run_id}"
    s["redis"]["enabled"] = True
    s["coins"] = plan.coins
    by_id = {"spot": "binance", "usdm": "binanceusdm", "cm": "binancecoinm"}
    exchanges = []
    for market, ccxt_id in by_id.items():
        symbols = [_ccxt_symbol(t) for t in plan.tapes if t.market == market]
        if not symbols:
            continue
        over = ccxt_overrides(server_url, ccxt_id, api_key=None)
        assert_loopback(over["urls"])
        # quiet_s: no trade comes before the live start; no reconnects while waiting for it
        exchanges.append(
            {
                "id": ccxt_id,
                "kind": "spot" if market == "spot" else "perp",
                "symbols": symbols,
                "urls": over["urls"],
                "options": over["options"],
                "open_interest": False,
                "liquidations": False,
                "quiet_s": 300.0,
            }
        )
    s["feeder"]["exchanges"] = exchanges
    s["feeder"]["coins"] = None
    s["feeder"]["spool_dir"] = str(workdir / "spool")
    s["feeder"]["http_port"] = http_port
    s["feeder"]["http_host"] = "127.0.0.1"
    return settings_from_dict(s)


def _ccxt_symbol(t: Tape) -> str:
    coin = _coin(t.symbol)
    if t.market == "spot":
        return f"{coin}/{t.symbol[len(coin) :]}"
    if t.market == "usdm":
        return f"{coin}/USDT:USDT"
    return f"{coin}/USD:{coin}"


def reset_namespace(settings: Settings) -> None:
    """A fresh rehearsal store: InfluxDB database dropped and recreated (Parquet: a new dir)."""
    if settings.store.backend == "influx":
        from feeder.stores.influx import InfluxStore

        with InfluxStore(settings.store.influx) as influx:
            influx.execute(f'DROP DATABASE "{settings.store.influx.database}"')
            influx.setup()


def drop_redis(settings: Settings) -> int:
    import redis

    client = redis.Redis.from_url(settings.redis.url)
    try:
        keys = list(client.scan_iter(match=f"{settings.redis.prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def import_history(settings: Settings, plan: Plan) -> dict[str, int]:
    """Every trade before the live start -> 1-second bars + 1-minute rollups in the store (the
    import path's writer), with coverage from the first trade's second to the live start."""
    from feeder.ingest.models import Kind
    from feeder.ingest.normalise import MarketSpec
    from feeder.ingest.pipeline import DayBarWriter
    from feeder.stores import open_store

    store = open_store(settings)
    out = {}
    live_s = plan.live_from_ms // 1000
    for t in plan.tapes:
        k = t.split(plan.live_from_ms)
        if k == 0:
            continue
        market = market_of(t)
        kind = Kind.SPOT if t.market == "spot" else Kind.PERP
        size = settings.market(market, kind).contract_size if t.market == "cm" else None
        writer = DayBarWriter(store, MarketSpec(market, kind, "binance", contract_size=size))
        step = 1_000_000
        for a in range(0, k, step):
            b = min(k, a + step)
            writer.add_raw(
                {
                    "ts": t.ms[a:b],
                    "price": t.price[a:b],
                    "qty": t.qty[a:b],
                    "is_buyer_maker": t.buyer_maker[a:b],
                    "trade_id": t.ids[a:b],
                }
            )
        stats = writer.close()
        store.add_coverage(market, int(t.ms[0]) // 1000, live_s)
        out[market] = stats.trades_ok
    return out


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


# ------------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """The paper exchange on its own event loop in a thread (the rehearsal waits on processes)."""

    def __init__(self, server: PaperExchange) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="paper", daemon=True)

    def __enter__(self) -> PaperExchange:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(60)
        return self.server

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


def child_env(extra: dict[str, str]) -> dict[str, str]:
    # FreqTrade settings from the environment stay out (the rehearsal writes its own config),
    # except Telegram's: a rehearsal notifies where the live bot will.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in STORE_ENV
        and (not k.startswith("FREQTRADE__") or k.startswith("FREQTRADE__TELEGRAM__"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


@contextlib.contextmanager
def process(cmd: list[str], log_path: Path, env: dict[str, str], stop: int) -> Iterator[Any]:
    """A child process logging to ``log_path``; ended with ``stop`` (then killed) on exit."""
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _wait(
    what: str, until: Any, timeout: float, proc: subprocess.Popen[bytes], log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RehearsalError(
                f"{what}: the process ended (status {proc.returncode}); "
                f"last log lines:\n{_tail(log_path)}"
            )
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if until():
                return
        time.sleep(0.5)
    raise RehearsalError(
        f"{what}: not ready after {timeout:.0f} s; last log lines:\n{_tail(log_path)}"
    )


def _tail(path: Path, n: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    return ""


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 1.0))


# ------------------------------------------------------------------------------ FreqTrade


def freqtrade_config(
    base: dict[str, Any], plan: Plan, sf: Settings, server_url: str, api_port: int
) -> dict[str, Any]:
    """The user's FreqTrade config for the rehearsal: the paper exchange (URL overrides only,
    every URL asserted loopback), the scenario's pairs, ``--timeframe``, the rehearsal's
    squeezeflow section; no ws candles (the paper exchange streams trades only), no fiat
    conversion (it would call CoinGecko), no Telegram."""
    cfg = json.loads(json.dumps(base))
    cfg["timeframe"] = plan.timeframe
    cfg["dry_run"] = True
    cfg.pop("fiat_display_currency", None)
    ex = cfg.setdefault("exchange", {})
    ex.update(freqtrade_exchange_config(server_url))
    ex["name"] = "binance"
    ex["enable_ws"] = False
    ex["pair_whitelist"] = plan.pairs
    ex["pair_blacklist"] = []
    assert_loopback({k: ex[k] for k in ("ccxt_config", "ccxt_async_config")})
    cfg["pairlists"] = [{"method": "StaticPairList"}]
    cfg["telegram"] = {"enabled": False, "token": "", "chat_id": ""}
    api = cfg.setdefault("api_server", {})
    api.update({"enabled": True, "listen_ip_address": "127.0.0.1", "listen_port": api_port})
    cfg.setdefault("internals", {})["process_throttle_secs"] = 1
    cfg["squeezeflow"] = sf.model_dump(mode="json")
    return cfg


@dataclass(frozen=True)
class TradeRow:
    pair: str
    direction: str
    entry_candle: str
    entry_tag: str | None
    exit_candle: str | None
    exit_reason: str


def _decided(t: pd.Timestamp, tf_s: int) -> pd.Timestamp:
    """The open time of the candle whose close decided an action at ``t``."""
    return t.floor(f"{tf_s}s") - pd.Timedelta(seconds=tf_s)


def _iso(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(v: Any) -> pd.Timestamp:
    t = pd.Timestamp(v)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def live_trades(db: Path, tf_s: int) -> tuple[list[TradeRow], list[float]]:
    """The dry-run bot's trades (its sqlite database) and each entry's signal latency: the
    entry order's time minus the close of the candle that decided it."""
    con = sqlite3.connect(db)
    try:
        trades = con.execute(
            "SELECT id, pair, is_short, open_date, close_date, exit_reason, "
            "enter_tag, is_open FROM trades ORDER BY id"
        ).fetchall()
        orders = con.execute(
            "SELECT ft_trade_id, ft_order_side, order_date FROM orders ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    entry_side = {int(t[0]): "sell" if t[2] else "buy" for t in trades}
    first_order: dict[int, pd.Timestamp] = {}
    for tid, side, when in orders:
        if side == entry_side.get(int(tid)):
            first_order.setdefault(int(tid), _ts(when))
    rows, latency = [], []
    for tid, pair, is_short, open_date, close_date, reason, tag, is_open in trades:
        entered = first_order.get(int(tid), _ts(open_date))
        candle = _decided(entered, tf_s)
        latency.append(round((entered - candle).total_seconds() - tf_s, 3))
        if is_open:
            exit_candle, exit_reason = None, "open_at_end"
        else:
            exit_candle, exit_reason = _iso(_decided(_ts(close_date), tf_s)), str(reason)
        rows.append(
            TradeRow(
                pair, "short" if is_short else "long", _iso(candle), tag, exit_candle, exit_reason
            )
        )
    return rows, latency


def backtest_trades(results_dir: Path, tf_s: int) -> list[TradeRow]:
    from freqtrade.data.btanalysis import load_backtest_data

    df = load_backtest_data(results_dir)
    rows = []
    for r in df.itertuples():
        if r.exit_reason == "force_exit":
            exit_candle, exit_reason = None, "open_at_end"
        else:
            exit_candle, exit_reason = _iso(_decided(_ts(r.close_date), tf_s)), str(r.exit_reason)
        tag = r.enter_tag if isinstance(r.enter_tag, str) else None
        rows.append(
            TradeRow(
                r.pair,
                "short" if r.is_short else "long",
                _iso(_decided(_ts(r.open_date), tf_s)),
                tag,
                exit_candle,
                exit_reason,
            )
        )
    return rows


def _order(rows: list[TradeRow]) -> list[TradeRow]:
    return sorted(rows, key=lambda r: (r.entry_candle, r.pair, r.direction))


# ------------------------------------------------------------------------------ the run


@dataclass
class Options:
    timeframe: str = "1m"
    seed: int | None = 7
    recordings: list[str] = field(default_factory=list)
    live_candles: int = 6
    lead_s: float = 90.0
    settle_s: float | None = None
    workdir: Path | None = None
    markets_dir: Path | None = None
    report: Path | None = None
    strategy: str = "SqueezeFlow"
    strategy_path: Path = STRATEGY_PATH


def rehearse(settings: Settings, base_config: dict[str, Any], opt: Options) -> dict[str, Any]:
    """Run a rehearsal; returns the report (also written to ``opt.report``)."""
    t_begin = time.time()
    run_id = uuid.uuid4().hex[:8]
    workdir = (opt.workdir or Path("user_data") / "rehearse" / run_id).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    markets_dir = Path(
        opt.markets_dir or os.environ.get("SQUEEZEFLOW_OFFLINE_MARKETS") or DEFAULT_MARKETS_DIR
    )
    if opt.recordings:
        plan = recording_plan(opt.recordings, opt.timeframe, opt.lead_s)
    else:
        plan = synthetic_plan(opt.seed or 0, opt.timeframe, opt.live_candles, opt.lead_s)
    tf = plan.tf_s
    settle = opt.settle_s if opt.settle_s is not None else min(30.0, tf / 2)
    log.info(
        "rehearsal %s: live %s .. %s (%s), workdir %s",
        run_id,
        _iso(pd.Timestamp(plan.live_from_ms, unit="ms", tz="UTC")),
        _iso(pd.Timestamp(plan.live_end_ms, unit="ms", tz="UTC")),
        plan.timeframe,
        workdir,
    )
    server = PaperExchange(plan.tapes, plan.stream_from_ms, markets_dir=markets_dir)
    feeder_port, api_port = free_port(), free_port()
    sf: Settings | None = None
    try:
        with BackgroundServer(server):
            sf = rehearsal_settings(settings, plan, workdir, run_id, server.rest_url, feeder_port)
            reset_namespace(sf)
            imported = import_history(sf, plan)
            log.info("history imported: %s", imported)
            (workdir / "feeder.json").write_text(
                json.dumps({"squeezeflow": sf.model_dump(mode="json")}, indent=1)
            )
            ft_cfg = freqtrade_config(base_config, plan, sf, server.rest_url, api_port)
            (workdir / "freqtrade.json").write_text(json.dumps(ft_cfg, indent=1))
            user = secrets.token_hex(8)
            password = secrets.token_hex(16)
            ft_env = child_env(
                {
                    "FREQTRADE__API_SERVER__USERNAME": user,
                    "FREQTRADE__API_SERVER__PASSWORD": password,
                    "FREQTRADE__API_SERVER__JWT_SECRET_KEY": secrets.token_hex(32),
                    "FREQTRADE__API_SERVER__WS_TOKEN": secrets.token_hex(16),
                }
            )
            feeder_env = child_env(
                {
                    f"SQUEEZEFLOW_API_KEY_{x}": "paper-no-key"
                    for x in ("BINANCE", "BINANCEUSDM", "BINANCECOINM")
                }
            )
            userdir = workdir / "user_data"
            for sub in ("logs", "backtest_results", "strategies", "data"):
                (userdir / sub).mkdir(parents=True, exist_ok=True)
            feeder_cmd = [
                sys.executable,
                "-m",
                "feeder.tools.cli",
                "--config",
                str(workdir / "feeder.json"),
                "run",
            ]
            common = [
                "--config",
                str(workdir / "freqtrade.json"),
                "--strategy",
                opt.strategy,
                "--strategy-path",
                str(opt.strategy_path),
                "--userdir",
                str(userdir),
                "--datadir",
                str(userdir / "data" / "binance"),
            ]
            trade_cmd = [
                sys.executable,
                "-m",
                "freqtrade",
                "trade",
                "--dry-run",
                *common,
                "--db-url",
                f"sqlite:///{workdir / 'dryrun.sqlite'}",
            ]
            want = {market_of(t) for t in plan.tapes}

            def collecting() -> bool:
                h = httpx.get(f"http://127.0.0.1:{feeder_port}/health", timeout=2).json()
                connected = all(s["connected"] for s in h["streams"].values())
                return connected and want <= set(h["markets"])

            with process(feeder_cmd, workdir / "feeder.log", feeder_env, signal.SIGTERM) as fd:
                _wait("feeder", collecting, 120, fd, workdir / "feeder.log")
                if time.time() > plan.stream_from_ms / 1000 - 1:
                    raise RehearsalError(
                        "the feeder was not collecting before the paper "
                        "exchange started streaming: raise --lead-s"
                    )
                with process(
                    trade_cmd, workdir / "freqtrade-trade.log", ft_env, signal.SIGINT
                ) as ft:
                    api = f"http://127.0.0.1:{api_port}/api/v1"

                    def running() -> bool:
                        r = httpx.get(f"{api}/show_config", auth=(user, password), timeout=3)
                        return r.status_code == 200 and r.json().get("state") == "running"

                    _wait(
                        "freqtrade trade",
                        running,
                        max(30.0, plan.live_from_ms / 1000 - time.time() + 30),
                        ft,
                        workdir / "freqtrade-trade.log",
                    )
                    ready = time.time()
                    if ready > plan.live_from_ms / 1000:  # it decides that candle's close
                        raise RehearsalError(
                            f"FreqTrade was running only {ready - plan.live_from_ms / 1000:.0f} s "
                            "after the live start: raise --lead-s"
                        )
                    log.info(
                        "FreqTrade running %.0f s before the live start",
                        plan.live_from_ms / 1000 - ready,
                    )
                    _sleep_until(plan.live_end_ms / 1000 + settle)
                    if ft.poll() is not None:
                        raise RehearsalError(
                            f"freqtrade trade ended early:\n"
                            f"{_tail(workdir / 'freqtrade-trade.log')}"
                        )
                if fd.poll() is not None:
                    raise RehearsalError(
                        f"the feeder ended early:\n{_tail(workdir / 'feeder.log')}"
                    )
            unserved = list(server.unserved)
            requests = len(server.requests)
        live, latency = live_trades(workdir / "dryrun.sqlite", tf)
        backtest = run_backtest(plan, sf, workdir, userdir, common, markets_dir)
    finally:
        if sf is not None:
            with contextlib.suppress(Exception):
                drop_redis(sf)
    live, backtest = _order(live), _order(backtest)
    report = {
        "matched": live == backtest,
        "live_trades": [asdict(r) for r in live],
        "backtest_trades": [asdict(r) for r in backtest],
        "signal_latency_s": latency,
        "timeframe": plan.timeframe,
        "window": {
            "live_from": _iso(pd.Timestamp(plan.live_from_ms, unit="ms", tz="UTC")),
            "live_end": _iso(pd.Timestamp(plan.live_end_ms, unit="ms", tz="UTC")),
            "settle_s": settle,
        },
        "store": sf.store.backend if sf else settings.store.backend,
        "source": plan.source,
        "paper_exchange": {"requests": requests, "unserved": unserved},
        "workdir": str(workdir),
        "run_id": run_id,
        "seconds": round(time.time() - t_begin, 1),
    }
    if opt.report is not None:
        opt.report.write_text(json.dumps(report, indent=1))
    return report


def run_backtest(
    plan: Plan, sf: Settings, workdir: Path, userdir: Path, common: list[str], markets_dir: Path
) -> list[TradeRow]:
    """Candles exported from the rehearsal store, then ``freqtrade backtesting`` of the window."""
    from feeder.history.export import export_candles
    from feeder.stores import open_store

    store = open_store(sf)
    archive = write_funding(plan, workdir / "archive")
    start = min(int(t.ms[0]) for t in plan.tapes) // 1000
    end = plan.live_end_ms // 1000 + 2 * plan.tf_s
    for pair in plan.pairs:
        export_candles(
            store,
            pair,
            [plan.timeframe],
            userdir / "data" / "binance",
            start,
            end,
            archive_dir=archive,
        )
    fmt = "%Y%m%dT%H%M"
    t_from = datetime.fromtimestamp(plan.live_from_ms / 1000, UTC).strftime(fmt)
    t_to = datetime.fromtimestamp(plan.live_end_ms / 1000 + plan.tf_s, UTC).strftime(fmt)
    results = workdir / "backtest"
    results.mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "feeder.tools.offline",
        "--markets",
        str(markets_dir),
        "backtesting",
        *common,
        "--timerange",
        f"{t_from}-{t_to}",
        "--timeframe",
        plan.timeframe,
        "--export",
        "trades",
        "--backtest-directory",
        str(results),
        "--cache",
        "none",
    ]
    log_path = workdir / "freqtrade-backtest.log"
    with log_path.open("w") as out:
        r = subprocess.run(
            cmd,
            cwd=REPO,
            env=child_env({}),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    if r.returncode != 0:
        raise RehearsalError(f"freqtrade backtesting failed ({r.returncode}):\n{_tail(log_path)}")
    return backtest_trades(results, plan.tf_s)


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    if not out.is_terminal:
        out = Console(width=160)
    t = Table(
        title=f"rehearsal {report['run_id']} ({report['timeframe']}, {report['store']}): "
        f"live {report['window']['live_from']} .. {report['window']['live_end']}"
    )
    for col in (
        "run",
        "pair",
        "dir",
        "entry candle",
        "entry tag",
        "exit candle",
        "exit reason",
        "latency s",
    ):
        t.add_column(col, no_wrap=True)
    lat = list(report["signal_latency_s"])
    for side in ("live", "backtest"):
        for i, r in enumerate(report[f"{side}_trades"]):
            t.add_row(
                side,
                r["pair"],
                r["direction"],
                r["entry_candle"],
                r["entry_tag"] or "-",
                r["exit_candle"] or "-",
                r["exit_reason"],
                f"{lat[i]:.2f}" if side == "live" and i < len(lat) else "",
            )
    out.print(t)
    if lat:
        a = np.array(lat)
        out.print(
            f"signal latency: p50 {np.percentile(a, 50):.2f} s, max {a.max():.2f} s "
            f"over {len(a)} entries"
        )
    if report["paper_exchange"]["unserved"]:
        out.print(
            f"[yellow]paper exchange: unserved requests: "
            f"{report['paper_exchange']['unserved'][:5]}[/]"
        )
    verdict = "[bold green]MATCHED[/]" if report["matched"] else "[bold red]DIFFERENT[/]"
    out.print(
        f"{verdict}: {len(report['live_trades'])} live, {len(report['backtest_trades'])} "
        f"backtest trades ({report['seconds']:.0f} s); files in {report['workdir']}"
    )
