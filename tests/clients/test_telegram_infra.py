"""The Telegram test infrastructure itself, with the real python-telegram-bot client (no FreqTrade
process): TLS through the CONNECT proxy, refusals, the Bot API methods, legacy Markdown checks,
and the trade-notification parser against FreqTrade's own formatter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest

from tests.clients.telegram import FakeTelegram, markdown_error, parse_trade_notice


@pytest.fixture
def tg(tmp_path):
    with FakeTelegram.started(tmp_path / "tg") as t:
        yield t


def _bot(tg: FakeTelegram, monkeypatch):
    import telegram

    for k, v in tg.env().items():
        monkeypatch.setenv(k, v)
    return telegram.Bot(tg.token)


def test_real_client_reaches_the_fake_bot_api_through_tls_and_proxy(tg, monkeypatch):
    import telegram
    from telegram.error import BadRequest

    bot = _bot(tg, monkeypatch)

    async def talk():
        async with bot:  # initialize(): getMe
            me = await bot.get_me()
            sent = await bot.send_message(tg.chat_id, "*bold* and `code`", parse_mode="Markdown")
            with pytest.raises(BadRequest, match="(?i)can't parse entities"):
                await bot.send_message(tg.chat_id, "spot_cvd is up", parse_mode="Markdown")
            await bot.delete_webhook(drop_pending_updates=False)
            await tg._enqueue("/status")
            updates = await bot.get_updates(timeout=5)
            return me, sent, updates

    me, sent, updates = asyncio.run(talk())
    assert me.username == "squeezeflow_test_bot" and isinstance(sent, telegram.Message)
    assert tg.texts() == ["*bold* and `code`"]
    assert [(m.text, e) for m, e in tg.api.rejected][0][0] == "spot_cvd is up"
    assert [u.message.text for u in updates] == ["/status"]
    assert updates[0].message.entities[0].type == "bot_command"
    assert tg.proxy.tunnels and set(tg.proxy.tunnels) == {"api.telegram.org:443"}
    assert tg.proxy.refused == [] and tg.api.unknown == [] and tg.api.bad_token == 0


def test_proxy_refuses_every_other_host_and_counts(tg):
    proxy = f"http://127.0.0.1:{tg.proxy.port}"
    with httpx.Client(proxy=proxy, verify=tg.ca.client_context()) as c:
        with pytest.raises(httpx.ProxyError, match="403"):
            c.get("https://api.coingecko.com/api/v3/ping")
        with pytest.raises(httpx.ProxyError, match="403"):
            c.get("https://api.telegram.org:8443/botX/getMe")  # the host, but not its port
    assert tg.proxy.refused == ["CONNECT api.coingecko.com:443", "CONNECT api.telegram.org:8443"]
    assert tg.proxy.tunnels == []


def test_tls_is_real_a_client_without_the_test_ca_refuses_the_certificate(tg):
    proxy = f"http://127.0.0.1:{tg.proxy.port}"
    with httpx.Client(proxy=proxy) as c, pytest.raises(httpx.ConnectError, match="CERTIFICATE"):
        c.get(f"https://api.telegram.org/bot{tg.token}/getMe")
    with httpx.Client(proxy=proxy, verify=tg.ca.client_context()) as c:
        r = c.get(f"https://api.telegram.org/bot{tg.token}/getMe")
        bad = c.get("https://api.telegram.org/bot1:wrong/getMe")
    assert r.json()["ok"] is True and bad.status_code == 401 and tg.api.bad_token == 1


def test_drop_pending_updates_drops_what_was_queued_before(tg, monkeypatch):
    bot = _bot(tg, monkeypatch)

    async def talk():
        async with bot:
            await tg._enqueue("/profit")
            await bot.delete_webhook(drop_pending_updates=True)
            return await bot.get_updates(timeout=0)

    assert asyncio.run(talk()) == ()


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("*a* _b_ `c_d`", True),
        ("```x_y*z```", True),
        (r"a\_b", True),
        ("a_b", False),
        ("*open", False),
        ("`x", False),
        ("plain: 1.5 (x) [y]", True),
    ],
)
def test_markdown_check(text, ok):
    assert (markdown_error(text) is None) is ok


def _freqtrade_formatter():
    from freqtrade.rpc.telegram import Telegram

    t = Telegram.__new__(Telegram)  # only the formatting methods are used
    t._config = {"dry_run": True, "telegram": {}}
    t._rpc = SimpleNamespace(_fiat_converter=None)
    return t


def test_trade_notice_parser_reads_freqtrade_own_messages():
    from freqtrade.enums import RPCMessageType

    t = _freqtrade_formatter()
    now = datetime.now(UTC)
    base = {
        "trade_id": 7,
        "exchange": "Binance",
        "pair": "BTC/USDT:USDT",
        "leverage": 2.0,
        "direction": "Short",
        "enter_tag": "squeeze_short",
        "amount": 0.1,
        "open_rate": 60000.0,
        "current_rate": 60010.0,
        "quote_currency": "USDT",
        "stake_currency": "USDT",
        "stake_amount": 3000.0,
        "sub_trade": False,
        "order_type": "limit",
        "base_currency": "BTC",
        "fiat_currency": None,
        "open_date": now - timedelta(minutes=25),
    }
    entry = {**base, "type": RPCMessageType.ENTRY}
    fill = {**base, "type": RPCMessageType.ENTRY_FILL}
    exit_ = {
        **base,
        "type": RPCMessageType.EXIT_FILL,
        "close_date": now,
        "profit_amount": -3.0,
        "profit_ratio": -0.001,
        "gain": "loss",
        "close_rate": 60030.0,
        "order_rate": 60030.0,
        "exit_reason": "gap_resolved",
        "cumulative_profit": -3.0,
        "final_profit_ratio": None,
        "is_final_exit": False,
    }
    exiting = {**exit_, "type": RPCMessageType.EXIT}
    texts = [t.compose_message(m) for m in (entry, fill, exit_, exiting)]
    notes = [parse_trade_notice(x) for x in texts]
    assert all(markdown_error(x) is None for x in texts), texts
    assert [n.kind for n in notes] == ["entry", "entry_fill", "exit_fill", "exit"], texts
    assert {(n.trade_id, n.pair, n.direction, n.enter_tag) for n in notes} == {
        (7, "BTC/USDT:USDT", "Short", "squeeze_short")
    }
    assert notes[2].exit_reason == "gap_resolved"
    assert parse_trade_notice("SqueezeFlow BTC: flow feed stale") is None


def test_check_trade_notifications_matches_trades_to_freqtrade_messages(tg, monkeypatch):
    from freqtrade.enums import RPCMessageType

    from tests.clients.telegram import check_trade_notifications

    t = _freqtrade_formatter()
    now = datetime.now(UTC)
    common = {
        "exchange": "Binance",
        "pair": "BTC/USDT:USDT",
        "leverage": 1.0,
        "amount": 0.1,
        "open_rate": 60000.0,
        "current_rate": 60000.0,
        "quote_currency": "USDT",
        "stake_currency": "USDT",
        "stake_amount": 3000.0,
        "sub_trade": False,
        "fiat_currency": None,
        "open_date": now - timedelta(minutes=5),
        "close_date": now,
        "profit_amount": 1.0,
        "profit_ratio": 0.001,
        "gain": "profit",
        "close_rate": 60060.0,
        "order_rate": 60060.0,
        "cumulative_profit": 1.0,
        "final_profit_ratio": None,
        "is_final_exit": False,
    }
    long_ = {
        **common,
        "trade_id": 1,
        "direction": "Long",
        "enter_tag": "squeeze_long",
        "exit_reason": "exit_signal",
    }
    short = {**common, "trade_id": 2, "direction": "Short", "enter_tag": "squeeze_short"}
    kinds = [
        (long_, RPCMessageType.ENTRY),
        (short, RPCMessageType.ENTRY),
        (long_, RPCMessageType.EXIT),
        (long_, RPCMessageType.EXIT_FILL),
    ]
    msgs = [{**trade, "type": kind} for trade, kind in kinds]
    bot = _bot(tg, monkeypatch)

    async def send():
        async with bot:
            for m in msgs:
                await bot.send_message(tg.chat_id, t.compose_message(m), parse_mode="Markdown")

    asyncio.run(send())
    trades = [
        {
            "pair": "BTC/USDT:USDT",
            "direction": "long",
            "entry_tag": "squeeze_long",
            "exit_reason": "exit_signal",
        },
        {
            "pair": "BTC/USDT:USDT",
            "direction": "short",
            "entry_tag": "squeeze_short",
            "entry_candle": "2026-11-29T09:00:00Z",
            "exit_candle": None,
            "exit_reason": "open_at_end",
        },  # still open (rehearse's report row)
    ]
    check_trade_notifications(tg, trades, timeout=5)
    with pytest.raises(AssertionError, match="exit_fill notifications"):
        closed = {**trades[1], "exit_reason": "time_stop", "exit_candle": "2026-11-29T09:30:00Z"}
        check_trade_notifications(tg, [trades[0], closed], 1)
    with pytest.raises(AssertionError, match="entry notifications"):
        check_trade_notifications(tg, trades[:1], timeout=1)  # a notification without a trade
