"""The replay server's open interest, mark price and liquidation stream, on Binance's wire.

NOT RECORDED DATA: ../shared has no open interest and no ``forceOrder`` stream, so the values
here are made up; what is checked is that the server serves what it is given in Binance's exact
formats, on its clock, and that unmodified ccxt (pro) reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import ccxt.pro
import pytest

from feeder.replay.binance import ReplayServer, ccxt_overrides
from feeder.replay.binance_inputs import (
    Fault,
    Liquidation,
    OpenInterestPoint,
    RestFault,
    load_liquidations_jsonl,
    load_open_interest_csv,
)
from feeder.replay.cli import add_arguments, run
from feeder.replay.recording import MarketType
from tests.replay_helpers import RAW_USDM_2023, RAW_USDM_2024, TRADES_USDM_2024

pytestmark = pytest.mark.shared

RAW_CM_2024 = "hftbacktest/raw/cm/btcusd_perp_20240808.gz"
T_2355 = 1_723_161_300_000  # 2024-08-08 23:55:00 UTC, inside both 2024 recordings
FIRST_USDM_TRADE = (1_723_161_256_322, "61800.30")  # the 2024 USD-M recording's first trade
LAST_USDM_TRADE = (1_723_161_599_643, "61659.80")  # ... and its last

OI = [
    OpenInterestPoint("usdm", "BTCUSDT", 1_723_161_240_000, "77312.504"),
    OpenInterestPoint("usdm", "BTCUSDT", T_2355, "77330.117"),
    OpenInterestPoint("usdm", "BTCUSDT", 1_723_162_200_000, "99999.999"),  # never reached
    OpenInterestPoint("usdm", "ETHUSDT", T_2355, "1200000.5"),  # first point after the start
    OpenInterestPoint("cm", "BTCUSD_PERP", 1_723_161_240_000, "6471234"),
]
LIQS = [
    Liquidation(
        "usdm",
        "BTCUSDT",
        "SELL",
        "0.014",
        "61690",
        T_2355 + 250,
        avg_price="61702.4",
        event_ms=T_2355 + 251,
    ),
    Liquidation("usdm", "BTCUSDT", "BUY", "1.250", "61800.0", T_2355 + 90_000),
    Liquidation("cm", "BTCUSD_PERP", "SELL", "25", "61650.0", T_2355 + 1_400),
]
# the same events as Binance sends them (written out by hand, not by the code under test)
LIQ_DATA = [
    '{"e":"forceOrder","E":1723161300251,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC",'
    '"q":"0.014","p":"61690","ap":"61702.4","X":"FILLED","l":"0.014","z":"0.014",'
    '"T":1723161300250}}',
    '{"e":"forceOrder","E":1723161390000,"o":{"s":"BTCUSDT","S":"BUY","o":"LIMIT","f":"IOC",'
    '"q":"1.250","p":"61800.0","ap":"61800.0","X":"FILLED","l":"1.250","z":"1.250",'
    '"T":1723161390000}}',
    '{"e":"forceOrder","E":1723161301400,"o":{"s":"BTCUSD_PERP","ps":"BTCUSD","S":"SELL",'
    '"o":"LIMIT","f":"IOC","q":"25","p":"61650.0","ap":"61650.0","X":"FILLED","l":"25",'
    '"z":"25","T":1723161301400}}',
]


def _server(market_data: Path, **kw: Any) -> ReplayServer:
    recs: list[tuple[Path | str, MarketType]] = [
        (market_data / RAW_USDM_2024, "usdm"),
        (market_data / RAW_CM_2024, "cm"),
    ]
    kw.setdefault("open_interest", OI)
    kw.setdefault("liquidations", LIQS)
    return ReplayServer(recs, speed=0, start_on_subscribe=None, **kw)


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as r:
        return r.status, await r.text()


def test_open_interest_formats_and_the_replay_clock(market_data: Path) -> None:
    async def scenario() -> dict[str, Any]:
        server = _server(market_data)
        await server.start()
        out: dict[str, Any] = {}
        fapi = f"{server.rest_base('usdm')}/openInterest"
        dapi = f"{server.rest_base('cm')}/openInterest"
        try:
            async with aiohttp.ClientSession() as s:
                out["clock0"] = server.server_time_ms()
                out["usdm0"] = await _get(s, f"{fapi}?symbol=BTCUSDT")
                out["cm0"] = await _get(s, f"{dapi}?symbol=BTCUSD_PERP")
                out["eth0"] = await _get(s, f"{fapi}?symbol=ETHUSDT")
                out["none"] = await _get(s, f"{fapi}?symbol=BNBUSDT")  # nothing supplied
                out["bad"] = await _get(s, f"{fapi}?symbol=NOPE")
                out["missing"] = await _get(s, fapi)
                out["extra"] = await _get(s, f"{fapi}?symbol=BTCUSDT&period=5m")
                out["spot"] = await _get(s, f"{server.rest_base('spot')}/openInterest?symbol=X")
                ex = ccxt.pro.binanceusdm(ccxt_overrides(server, "binanceusdm"))
                cm = ccxt.pro.binancecoinm(ccxt_overrides(server, "binancecoinm"))
                try:
                    out["ccxt_usdm0"] = await ex.fetch_open_interest("BTC/USDT:USDT")
                    server.start_replay()
                    await server.wait_done()
                    out["clock1"] = server.server_time_ms()
                    out["usdm1"] = await _get(s, f"{fapi}?symbol=BTCUSDT")
                    out["eth1"] = await _get(s, f"{fapi}?symbol=ETHUSDT")
                    out["ccxt_usdm1"] = await ex.fetch_open_interest("BTC/USDT:USDT")
                    out["ccxt_cm1"] = await cm.fetch_open_interest("BTC/USD:BTC")
                finally:
                    await ex.close()
                    await cm.close()
        finally:
            await server.stop()
        out["served"] = server.open_interest_served
        return out

    r = asyncio.run(scenario())
    assert r["clock0"] == FIRST_USDM_TRADE[0] - 1  # before the first trade
    assert r["usdm0"] == (
        200,
        '{"openInterest":"77312.504","symbol":"BTCUSDT","time":1723161240000}',
    )
    assert r["cm0"] == (
        200,
        '{"symbol":"BTCUSD_PERP","pair":"BTCUSD","openInterest":"6471234",'
        '"contractType":"PERPETUAL","time":1723161240000}',
    )
    # ETHUSDT's first point (23:55) is later than the clock: an error, never the future value
    assert r["eth0"][0] == 400 and json.loads(r["eth0"][1])["code"] == -1000
    assert "later than" in json.loads(r["eth0"][1])["msg"]
    assert r["none"][0] == 400 and "no open interest was supplied" in r["none"][1]
    assert r["bad"] == (400, '{"code":-1121,"msg":"Invalid symbol."}')
    assert r["missing"][0] == 400 and json.loads(r["missing"][1])["code"] == -1102
    assert r["extra"][0] == 400 and json.loads(r["extra"][1])["code"] == -1104
    assert r["spot"][0] == 404  # spot has no open interest
    # at the end (last trade 00:00:00.719 COIN-M): the 23:55 point, not the 00:10 one
    assert r["clock1"] == 1_723_161_600_719
    assert json.loads(r["usdm1"][1]) == {
        "openInterest": "77330.117",
        "symbol": "BTCUSDT",
        "time": T_2355,
    }
    assert json.loads(r["eth1"][1])["openInterest"] == "1200000.5"
    # what ccxt makes of it: the amount (BTC, contracts for COIN-M) and the time, no USD value
    u0, u1, c1 = r["ccxt_usdm0"], r["ccxt_usdm1"], r["ccxt_cm1"]
    assert (u0["openInterestAmount"], u0["timestamp"]) == (77312.504, 1_723_161_240_000)
    assert (u1["openInterestAmount"], u1["timestamp"]) == (77330.117, T_2355)
    assert u1["openInterestValue"] is None and "markPrice" not in u1["info"]
    assert (c1["openInterestAmount"], c1["symbol"]) == (6471234.0, "BTC/USD:BTC")
    assert [b["time"] for _m, b in r["served"]].count(1_723_162_200_000) == 0


def test_premium_index_stands_in_trade_prices_or_replays_mark_frames(market_data: Path) -> None:
    async def scenario(recs: list[tuple[Path | str, MarketType]]) -> dict[str, Any]:
        server = ReplayServer(recs, speed=0, start_on_subscribe=None)
        await server.start()
        out: dict[str, Any] = {}
        fapi = f"{server.rest_base('usdm')}/premiumIndex"
        try:
            async with aiohttp.ClientSession() as s:
                out["one0"] = await _get(s, f"{fapi}?symbol=BTCUSDT")
                server.start_replay()
                await server.wait_done()
                out["one1"] = await _get(s, f"{fapi}?symbol=BTCUSDT")
                out["all1"] = await _get(s, fapi)
                if any(m == "cm" for _p, m in recs):
                    dapi = f"{server.rest_base('cm')}/premiumIndex"
                    out["cm"] = await _get(s, f"{dapi}?symbol=BTCUSD_PERP")
                    out["cm_pair"] = await _get(s, f"{dapi}?pair=BTCUSD")
            ex = ccxt.pro.binanceusdm(ccxt_overrides(server, "binanceusdm"))
            try:
                out["ccxt"] = await ex.fetch_mark_price("BTC/USDT:USDT")
            finally:
                await ex.close()
            out["clock"] = server.server_time_ms()
        finally:
            await server.stop()
        return out

    r = asyncio.run(
        scenario([(market_data / RAW_USDM_2024, "usdm"), (market_data / RAW_CM_2024, "cm")])
    )
    before, after = json.loads(r["one0"][1]), json.loads(r["one1"][1])
    keys = [
        "symbol",
        "markPrice",
        "indexPrice",
        "estimatedSettlePrice",
        "lastFundingRate",
        "interestRate",
        "nextFundingTime",
        "time",
    ]
    assert list(after) == keys
    # stand-in: the last trade price reached (the first one before any), 8 decimals
    assert before["markPrice"] == FIRST_USDM_TRADE[1] + "000000"
    assert after["markPrice"] == LAST_USDM_TRADE[1] + "000000" == after["indexPrice"]
    assert after["time"] == r["clock"] and after["nextFundingTime"] == 1_723_190_400_000
    assert json.loads(r["all1"][1]) == [after]  # no symbol: a list of every known symbol
    cm = json.loads(r["cm"][1])
    assert isinstance(cm, list) and list(cm[0])[:2] == ["symbol", "pair"]
    assert cm[0]["pair"] == "BTCUSD" and json.loads(r["cm_pair"][1]) == cm
    assert r["ccxt"]["markPrice"] == float(LAST_USDM_TRADE[1])

    # a recording with Binance's @markPrice@1s stream: its values, not stand-ins
    with gzip.open(market_data / RAW_USDM_2023, "rt") as fh:
        marks = [json.loads(line.split(" ", 1)[1])["data"] for line in fh if "@markPrice" in line]
    r = asyncio.run(scenario([(market_data / RAW_USDM_2023, "usdm")]))
    first, last = json.loads(r["one0"][1]), json.loads(r["one1"][1])
    assert first["markPrice"] == marks[0]["p"]
    assert (
        last["markPrice"],
        last["indexPrice"],
        last["estimatedSettlePrice"],
        last["lastFundingRate"],
        last["nextFundingTime"],
    ) == (marks[-1]["p"], marks[-1]["i"], marks[-1]["P"], marks[-1]["r"], marks[-1]["T"])


def test_force_order_frames_byte_exact_and_in_time_order(market_data: Path) -> None:
    async def scenario() -> dict[str, Any]:
        # a duplicate fault on recorded trade #40 still hits trade #40 with liquidations added
        server = _server(market_data, faults=[Fault("duplicate", at=40, stream="btcusdt@trade")])
        await server.start()
        out: dict[str, Any] = {}
        try:
            async with aiohttp.ClientSession() as s:
                ws_u = f"{server.ws_url}/fstream.binance.com"
                combined = await s.ws_connect(f"{ws_u}/stream")
                sub = ["btcusdt@trade", "btcusdt@forceOrder"]
                await combined.send_str(json.dumps({"method": "SUBSCRIBE", "params": sub, "id": 1}))
                raw_arr = await s.ws_connect(f"{ws_u}/market/ws/1")  # ccxt's USD-M URL
                await raw_arr.send_str('{"method":"SUBSCRIBE","params":["!forceOrder@arr"],"id":2}')
                comb_arr = await s.ws_connect(f"{ws_u}/stream?streams=!forceOrder@arr")
                cm = await s.ws_connect(
                    f"{server.ws_url}/dstream.binance.com/ws/btcusd_perp@forceOrder"
                )
                out["replies"] = [await combined.receive_str(), await raw_arr.receive_str()]
                server.start_replay()
                await server.wait_done()
                for name, ws in (
                    ("combined", combined),
                    ("raw_arr", raw_arr),
                    ("comb_arr", comb_arr),
                    ("cm", cm),
                ):
                    frames = []
                    while True:
                        try:
                            frames.append(await ws.receive_str(timeout=0.5))
                        except TimeoutError:
                            break
                    out[name] = frames
                    await ws.close()
        finally:
            await server.stop()
        out["sent"] = server.liquidations_sent
        out["trade_frames"] = server.trade_frames
        return out

    r = asyncio.run(scenario())
    assert r["replies"] == ['{"result":null,"id":1}', '{"result":null,"id":2}']
    u1, u2, c1 = LIQ_DATA
    assert r["raw_arr"] == [u1, u2]  # /ws: the event alone
    assert r["comb_arr"] == [f'{{"stream":"!forceOrder@arr","data":{d}}}' for d in (u1, u2)]
    assert r["cm"] == [c1]  # COIN-M events carry the pair
    assert r["sent"] == 3
    frames = [json.loads(f) for f in r["combined"]]
    liq_at = [i for i, f in enumerate(frames) if f["stream"] == "btcusdt@forceOrder"]
    assert [r["combined"][i] for i in liq_at] == [
        f'{{"stream":"btcusdt@forceOrder","data":{d}}}' for d in (u1, u2)
    ]
    # among the trades of the same exchange time (receive clock offset: ~ms of jitter)
    for i in liq_at:
        e = frames[i]["data"]["E"]
        before = [f["data"]["E"] for f in frames[:i] if f["stream"] == "btcusdt@trade"]
        after = [f["data"]["E"] for f in frames[i + 1 :] if f["stream"] == "btcusdt@trade"]
        assert before and after
        assert max(before) <= e + 250 and min(after) >= e - 250
    # faults count recorded trade frames only: trade #40 is the one sent twice
    trades = [f["data"]["t"] for f in frames if f["stream"] == "btcusdt@trade"]
    assert trades[40] == trades[41] and len(trades) == len(set(trades)) + 1
    assert r["trade_frames"] == 21_313 + 2_286


def test_ccxt_pro_watches_the_liquidations(market_data: Path) -> None:
    async def scenario() -> dict[str, Any]:
        server = _server(market_data)
        await server.start()
        ex = ccxt.pro.binanceusdm(ccxt_overrides(server, "binanceusdm"))
        cm = ccxt.pro.binancecoinm(ccxt_overrides(server, "binancecoinm"))
        out: dict[str, Any] = {"usdm": [], "cm": []}

        async def watch(name: str, exchange: Any, symbol: str, n: int) -> None:
            while len(out[name]) < n:
                out[name] += await exchange.watch_liquidations_for_symbols([symbol])

        try:
            tasks = [
                asyncio.create_task(watch("usdm", ex, "BTC/USDT:USDT", 2)),
                asyncio.create_task(watch("cm", cm, "BTC/USD:BTC", 1)),
            ]
            streams = ("btcusdt@forceOrder", "btcusd_perp@forceOrder")
            while not all(server.subscriber_count(x) for x in streams):  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # polling the server's state
            server.start_replay()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        finally:
            await ex.close()
            await cm.close()
            await server.stop()
        out["requests"] = [q for q in server.requests if "stream.binance.com/" in q]
        return out

    r = asyncio.run(scenario())
    got = [
        (lq["symbol"], lq["side"], lq["contracts"], lq["price"], lq["timestamp"])
        for lq in r["usdm"] + r["cm"]
    ]
    # ccxt reads ap (average price), l (last filled quantity) and T
    assert got == [
        ("BTC/USDT:USDT", "sell", 0.014, 61702.4, T_2355 + 250),
        ("BTC/USDT:USDT", "buy", 1.25, 61800.0, T_2355 + 90_000),
        ("BTC/USD:BTC", "sell", 25.0, 61650.0, T_2355 + 1_400),
    ]
    assert any("/fstream.binance.com/market/ws/" in q for q in r["requests"])
    assert any("/dstream.binance.com/ws/" in q for q in r["requests"])


def test_rest_faults_fail_the_next_requests_then_serve_again(market_data: Path) -> None:
    async def scenario() -> dict[str, Any]:
        faults = [
            RestFault("openInterest", market="usdm", times=2),
            RestFault("openInterest", market="cm", status=502, body="<html>502 Bad Gateway</html>"),
            RestFault("premiumIndex", status=429, code=-1003, msg="Too many requests."),
        ]
        server = _server(market_data, rest_faults=faults)
        await server.start()
        out: dict[str, Any] = {}
        fapi, dapi = server.rest_base("usdm"), server.rest_base("cm")
        try:
            async with aiohttp.ClientSession() as s:
                out["u"] = [await _get(s, f"{fapi}/openInterest?symbol=BTCUSDT") for _ in range(3)]
                out["c"] = [
                    await _get(s, f"{dapi}/openInterest?symbol=BTCUSD_PERP") for _ in range(2)
                ]
                out["time"] = await _get(s, f"{fapi}/time")  # other endpoints untouched
            ex = ccxt.pro.binanceusdm(ccxt_overrides(server, "binanceusdm"))
            try:
                with pytest.raises(ccxt.BaseError) as err:
                    await ex.fetch_mark_price("BTC/USDT:USDT")
                out["ccxt_error"] = err.value
                out["ccxt_ok"] = await ex.fetch_mark_price("BTC/USDT:USDT")
            finally:
                await ex.close()
        finally:
            await server.stop()
        out["served"] = server.rest_faults_served
        return out

    r = asyncio.run(scenario())
    internal = (
        '{"code":-1001,"msg":"Internal error; unable to process your request. Please try again."}'
    )
    assert r["u"][:2] == [(500, internal)] * 2
    assert r["u"][2][0] == 200 and json.loads(r["u"][2][1])["openInterest"] == "77312.504"
    assert r["c"][0] == (502, "<html>502 Bad Gateway</html>") and r["c"][1][0] == 200
    assert r["time"][0] == 200
    assert isinstance(r["ccxt_error"], ccxt.RateLimitExceeded | ccxt.DDoSProtection)
    assert r["ccxt_ok"]["markPrice"] == float(FIRST_USDM_TRADE[1])
    assert len(r["served"]) == 4


def test_supplied_data_is_checked_and_loaded_from_files(market_data: Path, tmp_path: Path) -> None:
    recs: list[tuple[Path | str, MarketType]] = [(market_data / RAW_USDM_2024, "usdm")]
    with pytest.raises(ValueError, match="not a usdm symbol"):
        ReplayServer(recs, open_interest=[OpenInterestPoint("usdm", "BTCUSD_PERP", 1, "1")])
    with pytest.raises(ValueError, match="usdm and cm"):
        OpenInterestPoint("spot", "BTCUSDT", 1, "1")
    with pytest.raises(ValueError, match="BUY or SELL"):
        Liquidation("usdm", "BTCUSDT", "sell", "1", "1", 1)  # type: ignore[arg-type]
    assert OpenInterestPoint("usdm", "BTCUSDT", 1, 10659.509).open_interest == "10659.509"  # type: ignore[arg-type]
    # a forceOrder event read back is the same event
    for text in LIQ_DATA:
        lq = Liquidation.from_event(json.loads(text))
        assert json.dumps(lq.event(), separators=(",", ":")) == text
    assert Liquidation.from_event(json.loads(LIQ_DATA[2])).market == "cm"

    csv_path = tmp_path / "oi.csv"
    csv_path.write_text(
        "market,symbol,time,openInterest\nusdm,BTCUSDT,1723161240000,77312.504\n"
        "cm,BTCUSD_PERP,1723161240000,6471234\n"
    )
    assert load_open_interest_csv(csv_path) == [OI[0], OI[-1]]
    jsonl = tmp_path / "liq.jsonl"
    jsonl.write_text(f'{{"stream":"btcusdt@forceOrder","data":{LIQ_DATA[0]}}}\n\n{LIQ_DATA[1]}\n')
    loaded = load_liquidations_jsonl(jsonl)
    assert [lq.event() for lq in loaded] == [lq.event() for lq in LIQS[:2]]
    assert {lq.market for lq in load_liquidations_jsonl(f"{jsonl}:cm")} == {"cm"}

    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,time\nBTCUSDT,1\n")
    with pytest.raises(ValueError, match="missing column"):
        load_open_interest_csv(bad)


def test_cli_serves_supplied_open_interest_and_liquidations(
    market_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    oi = tmp_path / "oi.csv"
    oi.write_text("market,symbol,time,openInterest\nusdm,BTCUSDT,1723161240000,77312.504\n")
    liq = tmp_path / "liq.jsonl"
    liq.write_text(LIQ_DATA[0] + "\n" + LIQ_DATA[1] + "\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--recording",
            str(market_data / RAW_USDM_2024),
            "--speed",
            "0",
            "--start-on-subscribe",
            "0",
            "--exit-at-end",
            "--open-interest",
            str(oi),
            "--liquidations",
            f"{liq}:usdm",
        ]
    )
    assert asyncio.run(run(args)) == 0
    out = capsys.readouterr().out
    assert "open interest (supplied, not recorded): 1 points: usdm BTCUSDT" in out
    assert "liquidations (supplied, not recorded): 2 forceOrder events" in out


def test_recorded_trades_file_matches_the_constants(market_data: Path) -> None:
    """Guards the constants above against the recording they describe."""
    lines = (market_data / TRADES_USDM_2024).read_text().splitlines()
    header = lines[0].split(",")
    first, last = (dict(zip(header, lines[i].split(","), strict=True)) for i in (1, -1))
    assert (int(first["trade_time_ms"]), first["price"]) == FIRST_USDM_TRADE
    assert (int(last["trade_time_ms"]), last["price"]) == LAST_USDM_TRADE
