"""A market id is made in one place: ``market_id`` formats it (the import pipeline's venues and
the live feeder alike); ``ccxt_market_id`` only picks the prefix of a ccxt market."""

from __future__ import annotations

import ast
from pathlib import Path

from feeder.ingest.models import market_id

ROOT = Path(__file__).resolve().parents[2]


def _defined(name: str) -> list[str]:
    """The modules of ``feeder/`` that define a top-level function ``name``."""
    out = []
    for path in sorted((ROOT / "feeder").rglob("*.py")):
        tree = ast.parse(path.read_text())
        if any(
            isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
            for n in tree.body
        ):
            out.append(str(path.relative_to(ROOT)))
    return out


def test_one_function_is_named_market_id():
    assert _defined("market_id") == ["feeder/ingest/models.py"]


def test_the_id_of_a_ccxt_market_is_the_formatted_id_of_its_venue_prefix_and_symbol():
    from feeder.live.markets import PREFIX, ccxt_market_id

    for exchange_id, prefix in PREFIX.items():
        for symbol in ("BTCUSDT", "BTC-USDT-SWAP", "BTCUSD_PERP"):
            got = ccxt_market_id(exchange_id, {"id": symbol})
            assert got == market_id(prefix, symbol), (exchange_id, symbol)
    assert ccxt_market_id("bybit", {"id": "BTCUSDT", "spot": True}) == "BYBIT_SPOT:btcusdt"
    assert ccxt_market_id("kraken", {"id": "XBTUSD"}) == market_id("KRAKEN", "XBTUSD")
