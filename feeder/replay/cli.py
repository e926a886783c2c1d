"""The Binance replay server's command line: ``python -m feeder.replay`` (and
``squeezeflow-feeder replay``, which shares :func:`add_arguments` and :func:`run`)::

    python -m feeder.replay --recording PATH[:spot|usdm|cm] ... [--port N] [--speed X] [--loop]
        [--open-interest FILE.csv ...] [--liquidations FILE.jsonl[:usdm|cm] ...]

It prints the URLs and the ccxt configuration to paste (:func:`describe`), then serves until
interrupted (or, with ``--exit-at-end``, until the replay ends).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feeder.replay.binance import ReplayServer, ccxt_overrides
from feeder.replay.binance_api import ENDPOINTS
from feeder.replay.binance_inputs import load_liquidations_jsonl, load_open_interest_csv
from feeder.replay.recording import MARKET_TYPES, parse_recording_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recording",
        action="append",
        required=True,
        metavar="PATH[:spot|usdm|cm]",
        help="hftbacktest recording (gzip '<ts> <combined JSON>' lines); repeat for several "
        "(one clock for all); the market defaults to the spot/usdm/cm folder in PATH",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="1 = recorded pace (default), N = N times faster, 0 = as fast as clients read",
    )
    parser.add_argument("--loop", action="store_true", help="start again at the end")
    parser.add_argument(
        "--start-on-subscribe",
        type=int,
        default=1,
        metavar="N",
        help="start the clock once N recorded streams have subscribers (0: at once; default 1)",
    )
    parser.add_argument(
        "--markets",
        type=Path,
        default=None,
        help="directory with the saved exchangeInfo JSON files (default: "
        "$SQUEEZEFLOW_OFFLINE_MARKETS or ../shared/data/market/cryptofeed)",
    )
    parser.add_argument(
        "--exit-at-end", action="store_true", help="stop when the replay ends (no --loop)"
    )
    parser.add_argument(
        "--open-interest",
        action="append",
        default=[],
        metavar="FILE.csv",
        help="open interest to serve on /fapi/v1/openInterest and /dapi/v1/openInterest (NOT "
        "recorded data: the recordings have none). CSV with the header "
        "market,symbol,time,openInterest: market usdm or cm, symbol as Binance names it "
        "(BTCUSDT, BTCUSD_PERP), time in ms, openInterest as Binance sends it (base units for "
        "USD-M, contracts for COIN-M). Each value is served from its time on (replay clock) "
        "until the next one; repeatable",
    )
    parser.add_argument(
        "--liquidations",
        action="append",
        default=[],
        metavar="FILE.jsonl[:usdm|cm]",
        help="liquidations to send on <symbol>@forceOrder and !forceOrder@arr (NOT recorded "
        'data). One Binance forceOrder event per line: {"e":"forceOrder","E":ms,"o":{"s":..,'
        '"S":"SELL"|"BUY","o":"LIMIT","f":"IOC","q":..,"p":..,"ap":..,"X":"FILLED","l":..,'
        '"z":..,"T":ms}} (or its {"stream":..,"data":..} form); sent among the recorded frames '
        "at its event time E. The market defaults to cm for events with a pair (ps), else "
        "usdm; repeatable",
    )


def describe(server: ReplayServer) -> str:
    """The URLs and the ccxt config to use, as printed by the CLI."""
    markets = sorted({r.market for r in server.recordings}, key=MARKET_TYPES.index)
    lines = [
        f"replay server on {server.rest_url} ({len(server)} frames, speed "
        f"{server.speed or 'max'}{', loop' if server.loop else ''})"
    ]
    for r in server.recordings:
        lines.append(f"  {r.market:4s} {r.path} ({len(r)} frames)")
    for m in markets:
        lines.append(f"  {m:4s} websocket {server.ws_base(m)}   REST {server.rest_base(m)}")
    if server.open_interest:
        series = sorted({f"{p.market} {p.symbol}" for p in server.open_interest})
        lines.append(
            f"  open interest (supplied, not recorded): {len(server.open_interest)} "
            f"points: {', '.join(series)}"
        )
    if server.liquidations:
        lines.append(
            f"  liquidations (supplied, not recorded): {len(server.liquidations)} forceOrder events"
        )
    ids = ["binance"] + [ENDPOINTS[m].ccxt_exchange for m in markets if m != "spot"]
    feeder = []
    for exchange_id in ids:
        over = ccxt_overrides(server, exchange_id, api_key=None)
        feeder.append(
            {
                "id": exchange_id,
                "kind": "spot" if exchange_id == "binance" else "perp",
                "urls": over["urls"],
                "options": over["options"],
            }
        )
    keys = " ".join(f"SQUEEZEFLOW_API_KEY_{i.upper()}=replay-no-key" for i in ids)
    lines += [
        "paste into config.json at squeezeflow.feeder.exchanges (the feeder; every Binance URL "
        f"points here; its trade backfill wants any API key in the environment: {keys}):",
        json.dumps(feeder),
        "paste into config.json at exchange.ccxt_config and exchange.ccxt_async_config "
        "(FreqTrade on this server):",
        json.dumps(ccxt_overrides(server, "binance", api_key=None)),
        "in Python: ccxt.pro.<id>(feeder.replay.binance"
        f".ccxt_overrides('{server.rest_url}', '<id>'))",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    recordings = [parse_recording_arg(v) for v in args.recording]
    open_interest = [p for f in args.open_interest for p in load_open_interest_csv(f)]
    liquidations = [lq for f in args.liquidations for lq in load_liquidations_jsonl(f)]
    server = ReplayServer(
        recordings,
        host=args.host,
        port=args.port,
        speed=args.speed,
        loop=args.loop,
        start_on_subscribe=args.start_on_subscribe,
        markets_dir=args.markets,
        open_interest=open_interest,
        liquidations=liquidations,
    )
    await server.start()
    print(describe(server), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
        if args.exit_at_end:
            waiters.append(asyncio.create_task(server.wait_done()))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    finally:
        print(
            f"replay: {server.frames_sent} frames / {server.trades_sent} trades / "
            f"{server.liquidations_sent} liquidations sent, "
            f"{server.connections_total} connections, {len(server.unserved)} unserved requests",
            flush=True,
        )
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="squeezeflow-feeder replay",
        description="Replay recorded Binance websocket sessions on a loopback server for ccxt pro.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
