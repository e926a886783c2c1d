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

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from feeder.replay.binance_api import DEFAULT_MARKETS_DIR
from feeder.replay.paper import PaperExchange
from feeder.settings import Settings
from feeder.tools.rehearse_plan import (
    REPO,
    STRATEGY_PATH,
    Plan,
    RehearsalError,
    market_of,
    recording_plan,
    synthetic_plan,
    write_funding,
)
from feeder.tools.rehearse_report import (
    TradeRow,
    backtest_trades,
    in_order,
    iso,
    live_trades,
)
from feeder.tools.rehearse_setup import (
    BackgroundServer,
    child_env,
    drop_redis,
    free_port,
    freqtrade_config,
    import_history,
    process,
    rehearsal_settings,
    reset_namespace,
    sleep_until,
    tail,
    wait_for,
)

log = logging.getLogger(__name__)


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
    tf = plan.timeframe_s
    settle = opt.settle_s if opt.settle_s is not None else min(30.0, tf / 2)
    log.info(
        "rehearsal %s: live %s .. %s (%s), workdir %s",
        run_id,
        iso(pd.Timestamp(plan.live_from_ms, unit="ms", tz="UTC")),
        iso(pd.Timestamp(plan.live_end_ms, unit="ms", tz="UTC")),
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
                wait_for("feeder", collecting, 120, fd, workdir / "feeder.log")
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

                    wait_for(
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
                    sleep_until(plan.live_end_ms / 1000 + settle)
                    if ft.poll() is not None:
                        raise RehearsalError(
                            f"freqtrade trade ended early:\n{tail(workdir / 'freqtrade-trade.log')}"
                        )
                if fd.poll() is not None:
                    raise RehearsalError(f"the feeder ended early:\n{tail(workdir / 'feeder.log')}")
            unserved = list(server.unserved)
            requests = len(server.requests)
        live, latency = live_trades(workdir / "dryrun.sqlite", tf)
        backtest = run_backtest(plan, sf, workdir, userdir, common, markets_dir)
    finally:
        if sf is not None:
            with contextlib.suppress(Exception):
                drop_redis(sf)
    live, backtest = in_order(live), in_order(backtest)
    report = {
        "matched": live == backtest,
        "live_trades": [asdict(r) for r in live],
        "backtest_trades": [asdict(r) for r in backtest],
        "signal_latency_s": latency,
        "timeframe": plan.timeframe,
        "window": {
            "live_from": iso(pd.Timestamp(plan.live_from_ms, unit="ms", tz="UTC")),
            "live_end": iso(pd.Timestamp(plan.live_end_ms, unit="ms", tz="UTC")),
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
    end = plan.live_end_ms // 1000 + 2 * plan.timeframe_s
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
    t_to = datetime.fromtimestamp(plan.live_end_ms / 1000 + plan.timeframe_s, UTC).strftime(fmt)
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
        raise RehearsalError(f"freqtrade backtesting failed ({r.returncode}):\n{tail(log_path)}")
    return backtest_trades(results, plan.timeframe_s)
