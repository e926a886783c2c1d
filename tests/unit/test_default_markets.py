"""The default configuration follows the data: ``coins`` lists, for BTC and ETH, exactly the
markets the default live feeder collects (ids as it writes them), and the default ``flow.require``
keeps a store that holds only some of them usable (the quick start's Binance-only store)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from feeder.live.markets import select_markets
from feeder.read.flow import load_flow
from feeder.settings import Settings, settings_from_dict
from feeder.stores.parquet import ParquetStore
from tests.conftest import REPO


def _m(mid: str, base: str, quote: str, kind: str = "spot", **kw: Any) -> dict[str, Any]:
    return {
        "id": mid,
        "base": base,
        "quote": quote,
        "active": True,
        "spot": kind == "spot",
        "swap": kind == "swap",
        "future": kind == "future",
        "contract": kind != "spot",
        **kw,
    }


def venue_markets(b: str) -> dict[str, dict[str, dict[str, Any]]]:
    """ccxt's unified markets of each default exchange for base ``b`` (ccxt ids and symbols),
    with the quotes and contract types the default must leave out beside the ones it keeps."""
    B = b.upper()
    return {
        "binance": {
            f"{B}/USDT": _m(f"{B}USDT", B, "USDT"),
            f"{B}/USDC": _m(f"{B}USDC", B, "USDC"),
            f"{B}/FDUSD": _m(f"{B}FDUSD", B, "FDUSD"),
            f"{B}/EUR": _m(f"{B}EUR", B, "EUR"),
        },
        "binanceusdm": {
            f"{B}/USDT:USDT": _m(f"{B}USDT", B, "USDT", "swap", linear=True, contractSize=1),
            f"{B}/USDC:USDC": _m(f"{B}USDC", B, "USDC", "swap", linear=True, contractSize=1),
            f"{B}/USDT:USDT-260327": _m(
                f"{B}USDT_260327", B, "USDT", "future", expiry=1774598400000
            ),
        },
        "binancecoinm": {
            f"{B}/USD:{B}": _m(f"{B}USD_PERP", B, "USD", "swap", inverse=True, contractSize=10),
            f"{B}/USD:{B}-260327": _m(f"{B}USD_260327", B, "USD", "future", expiry=1774598400000),
        },
        "bybit": {
            f"{B}/USDT": _m(f"{B}USDT", B, "USDT"),
            f"{B}/USDC": _m(f"{B}USDC", B, "USDC"),
            f"{B}/USDT:USDT": _m(f"{B}USDT", B, "USDT", "swap", linear=True, contractSize=1),
            f"{B}/USDC:USDC": _m(f"{B}PERP", B, "USDC", "swap", linear=True, contractSize=1),
            f"{B}/USD:{B}": _m(f"{B}USD", B, "USD", "swap", inverse=True, contractSize=1),
        },
        "okx": {
            f"{B}/USDT": _m(f"{B}-USDT", B, "USDT"),
            f"{B}/USDC": _m(f"{B}-USDC", B, "USDC"),
            f"{B}/USDT:USDT": _m(f"{B}-USDT-SWAP", B, "USDT", "swap", contractSize=0.01),
            f"{B}/USD:{B}": _m(f"{B}-USD-SWAP", B, "USD", "swap", inverse=True, contractSize=100),
        },
        "coinbase": {
            f"{B}/USD": _m(f"{B}-USD", B, "USD"),
            f"{B}/USDC": _m(f"{B}-USDC", B, "USDC"),
            f"{B}/EUR": _m(f"{B}-EUR", B, "EUR"),
        },
    }


def collected(settings: Settings, coin: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"spot": set(), "perp": set()}
    for entry in settings.feeder.exchanges:
        for lm in select_markets(entry.id, venue_markets(coin)[entry.id], entry, [coin]):
            out[lm.kind.value].add(lm.market)
    return out


def test_default_coins_list_every_market_the_default_feeder_collects():
    defaults = Settings()
    cfg = json.loads((REPO / "config.json").read_text())["squeezeflow"]["coins"]
    for coin in ("BTC", "ETH"):
        want = collected(defaults, coin)
        assert len(want["spot"]) == 4 and len(want["perp"]) == 4, want  # every venue, one book
        assert {"spot": set(defaults.coins[coin].spot), "perp": set(defaults.coins[coin].perp)} == (
            want
        )
        assert {k: set(v) for k, v in cfg[coin].items()} == want, coin
        assert f"COINBASE:{coin.lower()}-usd" in want["spot"]
        assert f"OKEX:{coin.lower()}-usdt-swap" in want["perp"]


def _bars(vbuy: float, day: int) -> pd.DataFrame:
    t = day + 60 * np.arange(1440, dtype=np.int64)
    cols = {f: 1.0 for f in ("open", "high", "low", "close", "vsell", "cbuy", "csell")}
    return pd.DataFrame({"time": t, **cols, "vbuy": vbuy, "lbuy": 0.0, "lsell": 0.0})


def test_default_rule_keeps_a_binance_only_store_usable(tmp_path):
    """The quick start imports Binance only: with the all-venue default coins, its candles must
    be complete (each kind covered), not all incomplete for lack of Bybit/OKX/Coinbase history."""
    day = 1735689600
    s = ParquetStore(tmp_path)
    for m, kind in (
        ("BINANCE:btcusdt", "spot"),
        ("BINANCE_FUTURES:btcusdt", "perp"),
        ("BINANCE_FUTURES:btcusd_perp", "perp"),
    ):
        s.write_bars(m, kind, _bars(2.0, day), "1m")
        s.add_coverage(m, day, day + 86_400)
    defaults = Settings()
    assert defaults.flow.require == "each_kind"
    df = load_flow(s, defaults, "BTC", day, day + 86_400, "5m")
    assert len(df) == 288 and df["complete"].all()
    assert (df["perp_vbuy"] == 2 * 2.0 * 5).all()  # both Binance perps, nothing invented
    strict = settings_from_dict({"flow": {"require": "all"}}, env=False)
    assert not load_flow(s, strict, "BTC", day, day + 86_400, "5m")["complete"].any()


def test_synthetic_overlay_names_the_markets_the_sample_holds(tmp_path):
    """The SYNTHETIC sample holds Binance markets only: its overlay makes them BTC's markets, so
    its backtests are not told about venues it never had."""
    from feeder.tools.quickstart import synthetic_section

    s = ParquetStore(tmp_path)
    for m, kind in (("BINANCE:btcusdt", "spot"), ("BINANCE_FUTURES:btcusdt", "perp")):
        s.write_bars(m, kind, _bars(1.0, 1735689600), "1m")
    section = synthetic_section(tmp_path)
    merged = settings_from_dict(section, env=False)
    assert merged.coins["BTC"].spot == ("BINANCE:btcusdt",)
    assert merged.coins["BTC"].perp == ("BINANCE_FUTURES:btcusdt",)
    assert section["store"] == {"parquet_dir": str(tmp_path)}
