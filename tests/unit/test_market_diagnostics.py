"""What the strategy and ``status`` say about the markets behind the flow (issue 9 §4): markets
stored but used by no coin, configured markets without history for the range, and which markets
made up each candle's flow (said once per backtest range; live at start and when the set
changes, never every loop)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from feeder.read.flow_source import FlowSource
from feeder.settings import settings_from_dict
from feeder.stores.parquet import ParquetStore
from feeder.tools.status import status_notes, store_status

DAY = 1735689600
COINS = {
    "BTC": {
        "spot": ["BINANCE:btcusdt", "BYBIT_SPOT:btcusdt", "COINBASE:btc-usd"],
        "perp": ["BINANCE_FUTURES:btcusdt", "OKEX:btc-usdt-swap"],
    }
}


def _bars(start: int, minutes: int) -> pd.DataFrame:
    t = start + 60 * np.arange(minutes, dtype=np.int64)
    cols = {f: 1.0 for f in ("open", "high", "low", "close", "vbuy", "vsell", "cbuy", "csell")}
    return pd.DataFrame({"time": t, **cols, "lbuy": 0.0, "lsell": 0.0})


def _store(path) -> ParquetStore:
    """Binance spot+perp all day; Bybit spot from noon; OKX and Coinbase never; SOL unused."""
    s = ParquetStore(path)
    for m, kind, start, minutes in (
        ("BINANCE:btcusdt", "spot", DAY, 1440),
        ("BINANCE_FUTURES:btcusdt", "perp", DAY, 1440),
        ("BYBIT_SPOT:btcusdt", "spot", DAY + 43_200, 720),
        ("BINANCE:solusdt", "spot", DAY, 1440),
    ):
        s.write_bars(m, kind, _bars(start, minutes), "1m")
        s.add_coverage(m, start, start + 60 * minutes)
    return s


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("SqueezeFlow")]


def test_backtest_names_unused_and_historyless_markets_and_the_flow_s_markets_once(
    tmp_path, caplog
):
    store = _store(tmp_path)
    settings = settings_from_dict({"coins": COINS}, env=False)
    src = FlowSource(settings, "5m", store=store)
    start, end = (
        pd.Timestamp(DAY, unit="s", tz="UTC"),
        pd.Timestamp(DAY + 86_100, unit="s", tz="UTC"),
    )
    with caplog.at_level(logging.INFO):
        df = src.history("BTC", start, end)
        src.history("BTC", start, end)  # the same range again: nothing said twice
    assert df["complete"].all()  # each_kind: Binance covers both kinds all day
    lines = _lines(caplog)
    none = [x for x in lines if "without history" in x]
    assert len(none) == 1, lines
    assert "COINBASE:btc-usd, OKEX:btc-usdt-swap" in none[0] and "BYBIT" not in none[0]
    unused = [x for x in lines if "no coin in squeezeflow.coins uses" in x]
    assert len(unused) == 1 and unused[0].endswith(": BINANCE:solusdt"), lines
    made = [x for x in lines if " made of " in x]
    assert made == [
        "SqueezeFlow: BTC flow 2025-01-01 00:00..2025-01-01 12:00 UTC (144 candles) made of "
        "spot BINANCE:btcusdt; perp BINANCE_FUTURES:btcusdt",
        "SqueezeFlow: BTC flow 2025-01-01 12:00..2025-01-02 00:00 UTC (144 candles) made of "
        "spot BINANCE:btcusdt, BYBIT_SPOT:btcusdt; perp BINANCE_FUTURES:btcusdt",
    ], lines


def test_live_says_the_flow_s_markets_at_start_and_only_when_they_change(tmp_path, caplog):
    store = _store(tmp_path)
    settings = settings_from_dict({"coins": COINS, "redis": {"enabled": False}}, env=False)
    now = [DAY + 6 * 3600 + 30.0]
    src = FlowSource(settings, "5m", store=store, clock=lambda: now[0])
    with caplog.at_level(logging.INFO):
        src.catch_up("BTC", 50)
        for _ in range(3):  # bot loops on the store (Redis off): nothing new to say
            now[0] += 5
            src.poll(["BTC"])
        now[0] = DAY + 13 * 3600 + 30.0  # Bybit spot has joined since noon
        src.poll(["BTC"])
        src.poll(["BTC"])
    lines = _lines(caplog)
    made = [x for x in lines if " made of " in x]
    assert len(made) == 2, lines
    assert made[0].endswith("made of spot BINANCE:btcusdt; perp BINANCE_FUTURES:btcusdt")
    assert "spot BINANCE:btcusdt, BYBIT_SPOT:btcusdt;" in made[1]
    none = [x for x in lines if "without history" in x]
    assert len(none) == 1 and "BYBIT_SPOT:btcusdt" in none[0], lines  # at start: none yet


def test_status_names_unused_stored_and_historyless_configured_markets(tmp_path):
    store = _store(tmp_path)
    settings = settings_from_dict({"coins": COINS}, env=False)
    rows = {r.market: r for r in store_status(store, settings)}
    assert rows["BINANCE:solusdt"].note == "stored, used by no coin"
    assert rows["OKEX:btc-usdt-swap"].note == "configured, no history"
    assert rows["BYBIT_SPOT:btcusdt"].note == ""
    notes = status_notes(list(rows.values()))
    assert notes == [
        "configured markets without history: COINBASE:btc-usd, OKEX:btc-usdt-swap",
        "stored markets no coin in squeezeflow.coins uses: BINANCE:solusdt",
    ]


def test_missing_flow_names_only_the_markets_the_rule_lacks(tmp_path, caplog):
    """each_kind: when no spot market covers the range, the warning names the spot markets, not
    the perps without history that the covered Binance perp stands in for."""
    store = _store(tmp_path)
    coins = {"BTC": {"spot": ["COINBASE:btc-usd"], "perp": COINS["BTC"]["perp"]}}
    settings = settings_from_dict({"coins": coins}, env=False)
    src = FlowSource(settings, "5m", store=store)
    with caplog.at_level(logging.INFO):
        df = src.history(
            "BTC",
            pd.Timestamp(DAY, unit="s", tz="UTC"),
            pd.Timestamp(DAY + 3600, unit="s", tz="UTC"),
        )
    assert not df["complete"].any()
    missing = [x for x in _lines(caplog) if "flow is missing for" in x]
    assert len(missing) == 1, _lines(caplog)
    assert "Not covered: COINBASE:btc-usd;" in missing[0], missing[0]
