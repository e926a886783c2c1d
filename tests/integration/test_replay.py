"""The replay server (feeder.replay.binance) with REAL ccxt pro pointed at it.

Recorded Binance sessions from ../shared/data/market are replayed on loopback; ccxt pro
(``binance`` for spot, ``binanceusdm`` for USD-M) is configured only through its URLs and options
(``ccxt_overrides``) and must collect the recorded trades exactly. pytest has no asyncio plugin
here: every test runs its scenario with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import ccxt.pro
import pytest

from feeder.replay.binance import ReplayServer, ccxt_overrides, minimal_overrides
from feeder.replay.binance_inputs import Fault
from feeder.replay.cli import add_arguments, describe, run
from feeder.replay.recording import Recording, parse_recording_arg
from tests.replay_helpers import (
    RAW_SPOT_2024,
    RAW_USDM_2023,
    RAW_USDM_2024,
    TRADES_SPOT_2024,
    TRADES_USDM_2023,
    TRADES_USDM_2024,
    backfill,
    id_gaps,
    read_recorded_trades,
    recorded_key,
    trade_key,
    watch_until,
)

pytestmark = pytest.mark.shared


def _urls(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [u for v in value.values() for u in _urls(v)]
    return [value] if isinstance(value, str) else []


async def _until(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------------------
# (1) every recorded trade, in order, through ccxt's real parsing


@pytest.mark.parametrize(
    ("raw", "csv", "exchange_id", "symbol"),
    [
        (RAW_SPOT_2024, TRADES_SPOT_2024, "binance", "BTC/USDT"),
        (RAW_USDM_2024, TRADES_USDM_2024, "binanceusdm", "BTC/USDT:USDT"),
    ],
    ids=["spot", "usdm"],
)
def test_ccxt_receives_every_recorded_trade(
    market_data: Path, raw: str, csv: str, exchange_id: str, symbol: str
) -> None:
    recorded = read_recorded_trades(market_data / csv)

    async def scenario() -> tuple[list[dict[str, Any]], float, ReplayServer, list[str]]:
        server = ReplayServer([market_data / raw], speed=0)
        await server.start()
        exchange = getattr(ccxt.pro, exchange_id)(ccxt_overrides(server, exchange_id))
        try:
            urls = _urls(exchange.urls["api"])
            got: list[dict[str, Any]] = []
            t0 = time.perf_counter()
            async with asyncio.timeout(60):
                while len(got) < len(recorded):
                    got.extend(await exchange.watch_trades_for_symbols([symbol]))
            rate = len(got) / (time.perf_counter() - t0)
            return got, rate, server, urls
        finally:
            await exchange.close()
            await server.stop()

    got, rate, server, urls = asyncio.run(scenario())
    print(f"\n{exchange_id}: {len(got)} trades at {rate:,.0f}/s (incl. connect)")
    assert [trade_key(t) for t in got] == [recorded_key(r) for r in recorded]
    assert {t["symbol"] for t in got} == {symbol}
    # only the subscribed stream was sent, and nothing was asked that the server does not serve
    assert server.trades_sent == server.frames_sent == len(recorded)
    assert server.unserved == []
    assert all(u.startswith((server.rest_url + "/", server.ws_url + "/")) for u in urls), urls
    assert server.client_messages == ['{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}']


# ------------------------------------------------------------------------------------------
# (2) forced disconnect: ccxt raises NetworkError, reconnects on the next watch, REST backfills


@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "tcp-abort"])
def test_disconnect_then_backfill_missed_trades(market_data: Path, abrupt: bool) -> None:
    recorded = read_recorded_trades(market_data / TRADES_SPOT_2024)
    by_id = {r.trade_id: r for r in recorded}

    async def scenario() -> dict[str, Any]:
        server = ReplayServer([market_data / RAW_SPOT_2024], speed=100)
        await server.start()
        exchange = ccxt.pro.binance(ccxt_overrides(server, "binance"))
        received: list[dict[str, Any]] = []
        errors: list[Exception] = []

        async def watcher() -> None:
            while True:
                try:
                    received.extend(await exchange.watch_trades("BTC/USDT"))
                except ccxt.NetworkError as exc:
                    errors.append(exc)
                    await asyncio.sleep(0.3)  # a slow reconnect: the stream goes on meanwhile

        task = asyncio.create_task(watcher())
        try:
            await _until(lambda: len(received) >= 1000, 20, "1000 trades")
            server.pause()  # let the client drain, so it is waiting inside watch_trades
            await asyncio.sleep(0.2)
            before = len(received)
            assert await server.disconnect_all(abrupt=abrupt) == 1
            server.resume()
            await _until(
                lambda: server.connections_total == 2 and len(received) >= before + 500,
                20,
                "a reconnect and 500 more trades",
            )
            ids = [int(t["id"]) for t in received]
            gaps = id_gaps(ids)
            assert len(gaps) == 1, gaps
            last_before, first_after = gaps[0]
            assert last_before == ids[before - 1]
            missed = await backfill(exchange, "BTC/USDT", last_before + 1, first_after, 1000)
            return {
                "errors": errors,
                "received": received,
                "before": before,
                "missed": missed,
                "gap": (last_before, first_after),
                "requests": list(server.requests),
                "unserved": list(server.unserved),
            }
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await exchange.close()
            await server.stop()

    r = asyncio.run(scenario())
    # watch_trades raised exactly once, then the next call reconnected and resubscribed
    assert len(r["errors"]) == 1
    assert isinstance(r["errors"][0], ccxt.NetworkError)
    code = 1006 if abrupt else 1001
    assert f"Connection closed by remote server, closing code {code}" in str(r["errors"][0])
    # the REST backfill (historicalTrades + fromId) returns exactly the missed trades
    lo, hi = r["gap"]
    assert hi - lo - 1 > 0
    assert [int(t["id"]) for t in r["missed"]] == list(range(lo + 1, hi))
    assert [trade_key(t) for t in r["missed"]] == [
        recorded_key(by_id[i]) for i in range(lo + 1, hi)
    ]
    merged = r["received"][: r["before"]] + r["missed"] + r["received"][r["before"] :]
    first = recorded.index(by_id[int(merged[0]["id"])])
    assert [trade_key(t) for t in merged] == [
        recorded_key(x) for x in recorded[first : first + len(merged)]
    ]
    assert any(
        f"/api/v3/historicalTrades?symbol=BTCUSDT&limit=1000&fromId={lo + 1}" in q
        for q in r["requests"]
    )
    assert r["unserved"] == []


# ------------------------------------------------------------------------------------------
# (3) injected bad frames


def test_garbage_fieldless_duplicate_and_swapped_frames(market_data: Path) -> None:
    """ccxt ignores non-JSON text, turns a field-less trade into a trade of None values, and
    passes duplicates and out-of-order trades through unchanged; the stream goes on."""
    recorded = read_recorded_trades(market_data / TRADES_SPOT_2024)
    faults = [
        Fault("garbage", 100),
        Fault("missing_fields", 200),  # no t, p, q
        Fault("duplicate", 300),
        Fault("swap", 400),
        Fault("garbage", 500, stream="btcusdt@trade", garbage_text="<html>502</html>"),
    ]

    async def scenario() -> list[dict[str, Any]]:
        server = ReplayServer([market_data / RAW_SPOT_2024], speed=0, faults=faults)
        await server.start()
        exchange = ccxt.pro.binance(ccxt_overrides(server, "binance"))
        try:
            return await watch_until(exchange, "BTC/USDT", len(recorded) + 2, 60)
        finally:
            await exchange.close()
            await server.stop()

    got = asyncio.run(scenario())
    assert len(got) == len(recorded) + 2
    blank = [i for i, t in enumerate(got) if t["id"] is None]
    assert blank == [200]
    assert got[200]["price"] is None and got[200]["amount"] is None
    assert got[200]["symbol"] == "BTC/USDT" and got[200]["timestamp"] == recorded[200].trade_time_ms
    rest = [t for t in got if t["id"] is not None]
    ids = [int(t["id"]) for t in rest]
    assert ids[300] == ids[301] == recorded[300].trade_id  # the duplicate, as is
    del rest[301]
    assert [int(t["id"]) for t in rest[400:402]] == [recorded[401].trade_id, recorded[400].trade_id]
    rest[400], rest[401] = rest[401], rest[400]
    assert [trade_key(t) for t in rest] == [recorded_key(r) for r in recorded]


def test_unparseable_frame_stalls_ccxt_until_the_client_is_closed(market_data: Path) -> None:
    """A text frame that starts like JSON but does not parse (or a trade without ``s``) raises
    inside ccxt's receive callback: watch_trades never returns nor raises (until the 2 x 180 s
    keep-alive times out). The server keeps serving; after ``close_ws_clients()`` the next watch
    reconnects."""
    faults = [Fault("truncated", 50)]

    async def scenario() -> dict[str, Any]:
        server = ReplayServer(
            [market_data / RAW_SPOT_2024], speed=20, faults=faults, start_on_subscribe=None
        )
        await server.start()
        exchange = ccxt.pro.binance(ccxt_overrides(server, "binance"))
        plain: list[str] = []
        try:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(server.ws_base("spot"))
                await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')

                async def read_plain() -> None:
                    async for msg in ws:
                        plain.append(msg.data)

                reader = asyncio.create_task(read_plain())
                watching = asyncio.create_task(watch_until(exchange, "BTC/USDT", 50, 20))
                await _until(lambda: server.subscriber_count("btcusdt@trade") == 2, 10, "subs")
                server.start_replay()
                got = await watching
                stalled = False
                try:
                    async with asyncio.timeout(1.5):
                        await exchange.watch_trades("BTC/USDT")
                except TimeoutError:
                    stalled = True
                sent_during_stall = server.trades_sent
                await exchange.close_ws_clients()
                after = await asyncio.wait_for(exchange.watch_trades("BTC/USDT"), 10)
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await ws.close()
            return {
                "got": got,
                "stalled": stalled,
                "sent": sent_during_stall,
                "after": after,
                "plain": plain,
                "connections": server.connections_total,
            }
        finally:
            await exchange.close()
            await server.stop()

    r = asyncio.run(scenario())
    assert len(r["got"]) == 50
    assert r["stalled"]
    assert r["sent"] > 60  # the server went on while ccxt was stuck
    assert len(r["after"]) >= 1 and int(r["after"][-1]["id"]) > int(r["got"][-1]["id"])
    assert r["connections"] == 3  # ccxt, the plain client, ccxt again
    # the plain client saw the truncated text once, before the 51st trade, then the stream
    assert r["plain"][0] == '{"result":null,"id":1}'
    truncated = r["plain"][1 + 50]
    assert truncated.startswith('{"e":"trade"') and not truncated.endswith("}")
    assert json.loads(r["plain"][1 + 51])["t"] == int(r["got"][0]["id"]) + 50


# ------------------------------------------------------------------------------------------
# (4) timing


def test_speed_one_keeps_the_recorded_pace(market_data: Path) -> None:
    async def scenario() -> tuple[float, list[dict[str, Any]]]:
        server = ReplayServer([market_data / RAW_SPOT_2024], speed=1.0)
        await server.start()
        exchange = ccxt.pro.binance(ccxt_overrides(server, "binance"))
        try:
            await exchange.load_markets()
            got: list[dict[str, Any]] = []
            t0 = time.perf_counter()
            async with asyncio.timeout(15):
                while not got or got[-1]["timestamp"] - got[0]["timestamp"] < 2000:
                    got.extend(await exchange.watch_trades("BTC/USDT"))
            return time.perf_counter() - t0, got
        finally:
            await exchange.close()
            await server.stop()

    elapsed, got = asyncio.run(scenario())
    span_s = (got[-1]["timestamp"] - got[0]["timestamp"]) / 1000
    assert span_s >= 2
    # Never ahead of the recording: the first frame received was sent after the subscription
    # (after t0), the last one no earlier than the recorded span after it, however loaded the
    # machine (a load only delays). Pacing follows receive times, the span is exchange time:
    # their recorded difference is well under 0.25 s. No upper bound: a slow machine is slow.
    assert elapsed >= span_s - 0.25, (elapsed, span_s)


# ------------------------------------------------------------------------------------------
# websocket protocol and REST details (plain aiohttp client)


def test_websocket_protocol_and_recorded_frames_byte_exact(market_data: Path) -> None:
    path = market_data / RAW_SPOT_2024
    with gzip.open(path, "rt") as fh:
        bodies = [line.rstrip("\n").split(" ", 1)[1] for line in fh]
    wanted = ("btcusdt@trade", "btcusdt@bookTicker")
    expected = [b for b in bodies if b.startswith(tuple(f'{{"stream":"{s}"' for s in wanted))]

    async def scenario() -> dict[str, Any]:
        server = ReplayServer([path], speed=0)
        await server.start()
        out: dict[str, Any] = {}
        try:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"{server.ws_url}/stream.binance.com/stream")
                await ws.send_str("{not json")
                out["bad"] = json.loads(await ws.receive_str())
                await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": wanted, "id": 7}))
                out["reply"] = await ws.receive_str()
                frames = [await ws.receive_str() for _ in range(300)]
                server.pause()  # what was sent so far comes first, then the replies
                await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":8}')
                await ws.send_str('{"method":"SET_PROPERTY","params":["combined",false],"id":9}')
                unsub = {"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 10}
                await ws.send_str(json.dumps(unsub))
                replies: list[str] = []
                while len(replies) < 3:
                    text = await ws.receive_str()
                    if text.startswith('{"result"'):
                        replies.append(text)
                    else:
                        frames.append(text)
                server.disconnect_after(5)
                server.resume()
                raw: list[Any] = [msg.data async for msg in ws]
                out.update(frames=frames, replies=replies, raw=raw, close_code=ws.close_code)
        finally:
            await server.stop()
        return out

    r = asyncio.run(scenario())
    assert r["bad"]["error"]["code"] == 3
    assert r["reply"] == '{"result":null,"id":7}'
    n = len(r["frames"])
    assert r["frames"] == expected[:n]  # combined framing: the recorded line, byte for byte
    assert r["replies"] == [
        '{"result":["btcusdt@trade","btcusdt@bookTicker"],"id":8}',
        '{"result":null,"id":9}',
        '{"result":null,"id":10}',
    ]
    # after SET_PROPERTY combined=false: the recorded data text alone; after UNSUBSCRIBE:
    # trades only; disconnect_after(5): five frames, then a close frame with code 1001
    trades_after = [b for b in expected[n:] if b.startswith('{"stream":"btcusdt@trade"')]
    assert r["raw"] == [b[len('{"stream":"btcusdt@trade","data":') : -1] for b in trades_after[:5]]
    assert r["close_code"] == 1001


def test_rest_endpoints(market_data: Path) -> None:
    """2023 USD-M recording (us timestamps, one INSURANCE_FUND trade): REST trades follow the
    replay position, omit non-MARKET trades like Binance futures, and refuse what Binance
    refuses."""
    recorded = read_recorded_trades(market_data / TRADES_USDM_2023)
    insurance = [r for r in recorded if r.x_type == "INSURANCE_FUND"]
    assert len(insurance) == 1
    k = recorded.index(insurance[0])
    market_rows = [r for r in recorded if r.x_type == "MARKET"]
    info_file = market_data / "cryptofeed" / "BINANCE_FUTURES.exchangeInfo.json"
    rec = Recording.load(market_data / RAW_USDM_2023)
    assert rec.market == "usdm" and rec.skipped == 0
    assert 1680652800 * 10**9 <= rec.ts_ns[0] < 1680652801 * 10**9  # us -> ns

    async def scenario() -> dict[str, Any]:
        server = ReplayServer([rec], speed=0, start_on_subscribe=None)
        await server.start()
        base = server.rest_base("usdm")
        out: dict[str, Any] = {}

        async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
            async with session.get(url) as resp:
                return resp.status, await resp.read()

        try:
            async with aiohttp.ClientSession() as s:
                out["before"] = await get(s, f"{base}/trades?symbol=BTCUSDT")
                server.start_replay()
                await asyncio.wait_for(server.wait_done(), 30)
                q = f"{base}/historicalTrades?symbol=BTCUSDT"
                out["around"] = await get(s, f"{q}&fromId={insurance[0].trade_id - 2}&limit=4")
                out["default"] = await get(s, f"{q}&fromId={recorded[0].trade_id}")
                out["big"] = await get(s, f"{q}&fromId={recorded[0].trade_id}&limit=5000")
                out["recent"] = await get(s, f"{base}/trades?symbol=BTCUSDT&limit=3")
                out["since"] = await get(s, f"{q}&startTime=1&endTime=2")
                out["from_on_recent"] = await get(s, f"{base}/trades?symbol=BTCUSDT&fromId=1")
                out["nosym"] = await get(s, f"{base}/trades")
                out["badsym"] = await get(s, f"{base}/trades?symbol=NOPE")
                out["agg"] = await get(s, f"{base}/aggTrades?symbol=BTCUSDT")
                out["ping"] = await get(s, f"{base}/ping")
                out["time"] = await get(s, f"{base}/time")
                out["info"] = await get(s, f"{base}/exchangeInfo")
                out["sapi"] = await get(s, f"{server.rest_url}/api.binance.com/sapi/v1/x")
            out["unserved"] = list(server.unserved)
        finally:
            await server.stop()
        return out

    r = asyncio.run(scenario())
    assert r["before"] == (200, b"[]")  # nothing replayed yet, nothing to return
    status, body = r["around"]
    rows = json.loads(body)
    assert status == 200
    ids = [x["id"] for x in rows]
    assert ids == [
        recorded[k - 2].trade_id,
        recorded[k - 1].trade_id,
        recorded[k + 1].trade_id,
        recorded[k + 2].trade_id,
    ]
    assert list(rows[0]) == ["id", "price", "qty", "quoteQty", "time", "isBuyerMaker"]
    first = recorded[k - 2]
    assert (rows[0]["price"], rows[0]["qty"], rows[0]["time"], rows[0]["isBuyerMaker"]) == (
        first.price,
        first.qty,
        first.trade_time_ms,
        first.is_buyer_maker,
    )
    assert len(json.loads(r["default"][1])) == 100  # futures historicalTrades default
    assert len(json.loads(r["big"][1])) == 500  # and maximum
    assert [x["id"] for x in json.loads(r["recent"][1])] == [x.trade_id for x in market_rows[-3:]]
    for key, code in (
        ("since", -1104),
        ("from_on_recent", -1104),
        ("nosym", -1102),
        ("badsym", -1121),
        ("agg", -1000),
        ("sapi", -1000),
    ):
        status, body = r[key]
        assert status in (400, 404) and json.loads(body)["code"] == code, (key, body)
    assert r["ping"] == (200, b"{}")
    assert json.loads(r["time"][1]) == {"serverTime": market_rows[-1].trade_time_ms}
    assert r["info"] == (200, info_file.read_bytes())
    assert r["unserved"] == ["GET /api.binance.com/sapi/v1/x"]


def test_two_markets_on_one_clock_and_ccxt_overrides(market_data: Path) -> None:
    """Spot and USD-M recordings served together; ccxt.pro.binance watches both (the spot
    frame goes to a /stream.binance.com/ URL, the perp to /fstream..., so ccxt tells them
    apart) and fetches perp trades with the per-call fetchTradesMethod."""
    spot = read_recorded_trades(market_data / TRADES_SPOT_2024)
    perp = read_recorded_trades(market_data / TRADES_USDM_2024)

    async def scenario() -> dict[str, Any]:
        server = ReplayServer(
            [market_data / RAW_SPOT_2024, market_data / RAW_USDM_2024],
            speed=0,
            start_on_subscribe=2,
        )
        await server.start()
        config = minimal_overrides(server, "binance")  # what the CLI prints as the minimum
        config["options"]["tradesLimit"] = 50_000
        exchange = ccxt.pro.binance(config)
        try:
            await exchange.load_markets()
            a, b = await asyncio.gather(
                watch_until(exchange, "BTC/USDT", len(spot), 60),
                watch_until(exchange, "BTC/USDT:USDT", len(perp), 60),
            )
            page = await exchange.fetch_trades(
                "BTC/USDT:USDT",
                limit=3,
                params={
                    "fetchTradesMethod": "fapiPublicGetHistoricalTrades",
                    "fromId": perp[0].trade_id,
                },
            )
            return {"spot": a, "perp": b, "page": page, "unserved": list(server.unserved)}
        finally:
            await exchange.close()
            await server.stop()

    r = asyncio.run(scenario())
    assert [trade_key(t) for t in r["spot"]] == [recorded_key(x) for x in spot]
    assert [trade_key(t) for t in r["perp"]] == [recorded_key(x) for x in perp]
    assert {t["symbol"] for t in r["perp"]} == {"BTC/USDT:USDT"}
    assert [trade_key(t) for t in r["page"]] == [recorded_key(x) for x in perp[:3]]
    assert r["unserved"] == []


# ------------------------------------------------------------------------------------------
# CLI


def test_parse_recording_arg() -> None:
    assert parse_recording_arg("/x/raw/usdm/a.gz") == (Path("/x/raw/usdm/a.gz"), "usdm")
    assert parse_recording_arg("/x/a.gz:cm") == (Path("/x/a.gz"), "cm")
    with pytest.raises(ValueError, match="PATH:spot"):
        parse_recording_arg("/x/a.gz")


def test_cli_prints_urls_and_ccxt_config(
    market_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--recording",
            str(market_data / RAW_SPOT_2024),
            "--speed",
            "0",
            "--start-on-subscribe",
            "0",
            "--exit-at-end",
        ]
    )
    assert asyncio.run(run(args)) == 0
    out = capsys.readouterr().out
    assert "ws://127.0.0.1:" in out and "/stream.binance.com/ws" in out
    assert "/api.binance.com/api/v3" in out
    assert '"fetchTradesMethod": "publicGetHistoricalTrades"' in out


def _pasted_blocks(out: str) -> dict[str, Any]:
    """The JSON blocks `replay` prints, by the config key each header names."""
    blocks: dict[str, Any] = {}
    decoder = json.JSONDecoder()
    for key in ("squeezeflow.feeder.exchanges", "exchange.ccxt_config"):
        head = out.index(f"paste into config.json at {key}")
        start = out.index("\n", head) + 1
        blocks[key] = decoder.raw_decode(out[start:].lstrip())[0]
    return blocks


def test_printed_overrides_paste_into_the_config_as_they_are(market_data: Path) -> None:
    """What `replay` prints is valid JSON for squeezeflow.feeder.exchanges (the feeder's own
    settings accept it and its exchanges load markets from the server) and for FreqTrade's
    exchange.ccxt_config (ccxt loads the markets from the server with it)."""
    from feeder.live.exchanges import make_exchange
    from feeder.settings import settings_from_dict

    async def scenario() -> tuple[dict[str, Any], list[int]]:
        server = ReplayServer(
            [market_data / RAW_SPOT_2024, market_data / RAW_USDM_2024],
            speed=0,
            start_on_subscribe=2,
        )
        await server.start()
        try:
            blocks = _pasted_blocks(describe(server))
            exchanges = blocks["squeezeflow.feeder.exchanges"]
            s = settings_from_dict({"feeder": {"exchanges": exchanges}}, env=False)
            counts = []
            for entry in s.feeder.exchanges:
                ex = make_exchange(entry)
                try:
                    counts.append(len(await ex.load_markets()))
                finally:
                    await ex.close()
            ft = ccxt.pro.binance(blocks["exchange.ccxt_config"])
            try:
                counts.append(len(await ft.load_markets()))
            finally:
                await ft.close()
            return blocks, counts
        finally:
            await server.stop()

    blocks, counts = asyncio.run(scenario())
    assert [e["id"] for e in blocks["squeezeflow.feeder.exchanges"]] == ["binance", "binanceusdm"]
    assert all(n > 0 for n in counts), counts
    assert "apiKey" not in json.dumps(blocks)  # a key goes in the environment, never the config
