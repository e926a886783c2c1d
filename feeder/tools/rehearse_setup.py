"""``rehearse``'s setup: the settings in the rehearsal namespace, the store reset and its history
imported, the paper exchange and child processes, the FreqTrade config.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from feeder.replay.binance import ccxt_overrides
from feeder.replay.paper import (
    PaperExchange,
    assert_loopback,
    freqtrade_exchange_config,
)
from feeder.replay.tape import Tape
from feeder.settings import Settings, settings_from_dict
from feeder.tools.rehearse_plan import (
    REPO,
    STORE_ENV,
    Plan,
    RehearsalError,
    coin_of,
    market_of,
)

log = logging.getLogger(__name__)


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
    coin = coin_of(t.symbol)
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


def wait_for(
    what: str, until: Any, timeout: float, proc: subprocess.Popen[bytes], log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RehearsalError(
                f"{what}: the process ended (status {proc.returncode}); "
                f"last log lines:\n{tail(log_path)}"
            )
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if until():
                return
        time.sleep(0.5)
    raise RehearsalError(
        f"{what}: not ready after {timeout:.0f} s; last log lines:\n{tail(log_path)}"
    )


def tail(path: Path, n: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    return ""


def sleep_until(t: float) -> None:
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
    return dict(cfg)
