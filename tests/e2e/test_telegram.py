"""FreqTrade's real Telegram client in a real dry-run bot, offline: python-telegram-bot over httpx
through the loopback CONNECT proxy to the fake Bot API (tests/clients/telegram.py)."""

from __future__ import annotations

import re

import pytest

from tests.clients.freqtrade_bot import freqtrade_process

pytestmark = [pytest.mark.slow, pytest.mark.shared, pytest.mark.backend]


def test_dry_run_bot_notifies_and_answers_commands_through_telegram(
    e2e, redis_url, telegram, tmp_path
):
    env = {"SQUEEZEFLOW_REDIS_URL": redis_url, **telegram.env()}
    with freqtrade_process(e2e, tmp_path / "bot", env) as bot:
        # FreqTrade's startup notifications, through the real client
        telegram.wait_for(lambda m: "Dry run is enabled" in m.text, 120, what="dry-run warning")
        startup = telegram.wait_for(
            lambda m: "*Strategy:* `SqueezeFlow`" in m.text, 30, what="startup summary"
        )
        assert "*Exchange:* `binance`" in startup.text and "*Timeframe:* `5m`" in startup.text
        # the strategy's own message (dp.send_msg from bot_loop_start): the feed is stale
        stale = telegram.wait_for(
            lambda m: "SqueezeFlow BTC: flow feed stale" in m.text,
            60,
            what="the strategy's stale-feed notice",
        )
        assert "no new entries" in stale.text
        # commands from the configured chat, via getUpdates; the answers are FreqTrade's own
        status = telegram.ask("/status", match="no active trade")
        profit = telegram.ask("/profit", match="No trades yet|ROI")
        balance = telegram.ask("/balance", match="Starting capital")
        # several more bot loops ran (FreqTrade's own /health says so): the notice is not repeated
        bot.wait_loops(3)
    log = bot.text()
    assert status.text == "no active trade", status.text  # RPCException text, as sent
    assert "No trades yet" in profit.text, profit.text
    assert "Simulated balances in Dry Mode" in balance.text, balance.text
    # config.json: dry_run_wallet 10000, tradable_balance_ratio 0.9 -> the bot owns 9000
    assert re.search(r"Starting capital: `9000(\.0+)? USDT`", balance.text), balance.text
    assert re.search(r"Available: 10000(\.0+)?`", balance.text), balance.text
    stale_msgs = [t for t in telegram.texts() if "BTC: flow feed stale" in t]
    assert len(stale_msgs) == 1, (stale_msgs, log[-3000:])
    # nothing lost on the way: no Markdown refusals, no unknown methods, only Telegram tunnelled
    assert telegram.api.rejected == [] and telegram.api.unknown == []
    assert set(telegram.proxy.tunnels) == {"api.telegram.org:443"}
    # FreqTrade's fiat converter tried CoinGecko at start and was refused (counted), nothing else
    assert "CONNECT api.coingecko.com:443" in telegram.proxy.refused
    assert all(r.startswith("CONNECT ") and "telegram" not in r for r in telegram.proxy.refused)
    assert "Telegram NetworkError" not in log and "Telegram init failed" not in log, log[-3000:]
    assert telegram.polls() >= 3
