"""docs/settings.md cannot drift from feeder/settings.py: every key, default and bound."""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterator

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from feeder.settings import DEFAULT_EXCHANGES, ENV_OVERRIDES, CoinSettings, Settings
from tests.conftest import REPO

DOC = REPO / "docs" / "settings.md"
#: Defaults too large for a table cell: the doc describes them in prose (checked below).
PROSE_DEFAULTS = {"coins", "feeder.exchanges"}


def model_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every settings key as the doc writes it: nested models dotted, list items ``[]``,
    coins ``<COIN>``."""
    for name, f in model.model_fields.items():
        path = prefix + name
        ann = f.annotation
        args = typing.get_args(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from model_keys(ann, path + ".")
            continue
        yield path, f
        if (
            typing.get_origin(ann) is tuple
            and args
            and isinstance(args[0], type)
            and issubclass(args[0], BaseModel)
        ):
            yield from model_keys(args[0], path + "[].")
        elif typing.get_origin(ann) is dict and args[1] is CoinSettings:
            yield from model_keys(CoinSettings, path + ".<COIN>.")


def doc_rows() -> dict[str, list[str]]:
    text = DOC.read_text()
    section = text[text.index("## Every key") : text.index("### Environment overrides")]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([^`]+)` \|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def bounds(f: FieldInfo) -> list[str]:
    out = []
    for meta in f.metadata:
        for cls, sym in ((Ge, ">="), (Gt, ">"), (Le, "<="), (Lt, "<")):
            if isinstance(meta, cls):
                out.append(f"{sym} {getattr(meta, cls.__name__.lower())}")
    return out


def test_every_settings_key_is_documented_and_nothing_else():
    keys = {k for k, _ in model_keys(Settings)}
    rows = doc_rows()
    assert "redis.enabled" in keys and "feeder.exchanges[].quiet_s" in keys  # the walk is deep
    assert keys - set(rows) == set(), "settings keys missing from docs/settings.md"
    assert set(rows) - keys == set(), "docs/settings.md documents keys the code does not have"


def test_documented_defaults_and_bounds_are_the_codes():
    rows = doc_rows()
    for key, f in model_keys(Settings):
        default_cell, bounds_cell = rows[key][0], rows[key][1]
        if f.is_required():
            assert default_cell == "required", key
        elif key not in PROSE_DEFAULTS:
            default = f.get_default(call_default_factory=True)
            want = json.loads(json.dumps(default, default=str))
            m = re.fullmatch(r"`(.+)`", default_cell)
            assert m, f"{key}: default cell {default_cell!r} is not a `json` literal"
            assert json.loads(m.group(1)) == want, key
        for b in bounds(f):
            assert b in bounds_cell, f"{key}: bound {b} missing ({bounds_cell!r})"


def test_prose_defaults_name_every_default_exchange_and_market():
    text = DOC.read_text()
    para = " ".join(text[text.index("Default `feeder.exchanges`") :].split("\n\n")[0].split())
    for e in DEFAULT_EXCHANGES:
        assert f"`{e.id}` {e.kind.value}" in para, (e.id, e.kind)
        if e.quotes != DEFAULT_EXCHANGES[0].quotes:
            assert all(f"`{q}`" in para for q in e.quotes), e
    defaults = Settings()
    for coin in defaults.coins.values():
        for m in (*coin.spot, *coin.perp):
            market = m.replace("eth", "btc")  # the doc says "ETH the same with eth"
            assert f"`{market}`" in para, m
    assert "ETH" in para


def test_every_environment_override_is_documented():
    text = DOC.read_text()
    for var, key in ENV_OVERRIDES.items():
        assert f"| `{var}` | `{key}` |" in text, var


def test_the_market_id_table_follows_the_code():
    from feeder.live.markets import ccxt_market_id

    text = DOC.read_text()
    cases = [
        ("binance", {"id": "BTCUSDT", "spot": True}),
        ("binanceusdm", {"id": "BTCUSDT", "swap": True}),
        ("binancecoinm", {"id": "BTCUSD_PERP", "swap": True}),
        ("bybit", {"id": "BTCUSDT", "spot": True}),
        ("bybit", {"id": "BTCUSDT", "swap": True}),
        ("okx", {"id": "BTC-USDT", "spot": True}),
        ("okx", {"id": "BTC-USDT-SWAP", "swap": True}),
        ("coinbase", {"id": "BTC-USD", "spot": True}),
    ]
    for ex, m in cases:
        assert f"`{m['id']}` -> `{ccxt_market_id(ex, m)}`" in text, (ex, m)


def test_the_recipes_settings_snippets_are_valid_settings():
    from feeder.settings import settings_from_dict

    text = DOC.read_text()
    coin = re.search(r'`("SOL": \{.*?\]\})`', text)
    exchange = re.search(r'`(\{"id": "kraken".*?\})`', text)
    assert coin and exchange
    s = settings_from_dict(json.loads("{" + f'"coins": {{{coin.group(1)}}}' + "}"), env=False)
    assert [m.id for m in s.markets("SOL")] == ["BINANCE:solusdt", "BINANCE_FUTURES:solusdt"]
    s = settings_from_dict({"feeder": {"exchanges": [json.loads(exchange.group(1))]}}, env=False)
    assert [e.id for e in s.feeder.exchanges] == ["kraken"]  # the list replaces the default
