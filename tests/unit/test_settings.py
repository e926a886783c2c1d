from __future__ import annotations

import json

import pytest

from feeder.ingest.models import Kind
from feeder.settings import ConfigError, load_settings, settings_from_dict


def test_defaults_configure_btc_and_eth_spot_and_perps():
    s = settings_from_dict(None, env=False)
    kinds = {m.id: m.kind for m in s.markets("BTC")}
    assert kinds == {  # every venue the default feeder collects (test_default_markets.py)
        "BINANCE:btcusdt": Kind.SPOT,
        "BYBIT_SPOT:btcusdt": Kind.SPOT,
        "OKEX:btc-usdt": Kind.SPOT,
        "COINBASE:btc-usd": Kind.SPOT,
        "BINANCE_FUTURES:btcusdt": Kind.PERP,
        "BINANCE_FUTURES:btcusd_perp": Kind.PERP,
        "BYBIT:btcusdt": Kind.PERP,
        "OKEX:btc-usdt-swap": Kind.PERP,
    }


def test_coin_m_markets_get_their_contract_size():
    s = settings_from_dict(None, env=False)
    sizes = {m.id: m.contract_size for m in s.markets("BTC")}
    assert sizes["BINANCE_FUTURES:btcusd_perp"] == 100.0
    assert sizes["BINANCE_FUTURES:btcusdt"] is None
    assert s.market("BINANCE_FUTURES:ethusd_perp").contract_size == 10.0


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"stor": {}}, "squeezeflow.stor: unknown key"),
        ({"store": {"influx": {"urll": "x"}}}, "squeezeflow.store.influx.urll: unknown key"),
        ({"store": {"backend": "sqlite"}}, "squeezeflow.store.backend"),
        ({"coins": {"BTC": {"spot": ["BINANCE:btcusdt"]}}}, "squeezeflow.coins.BTC"),
        ({"staleness_limit_s": -1}, "squeezeflow.staleness_limit_s"),
    ],
)
def test_bad_keys_are_refused_naming_the_key(section, named):
    with pytest.raises(ConfigError) as e:
        settings_from_dict(section, env=False)
    assert named in str(e.value)


def test_environment_overrides_urls_and_secrets(monkeypatch):
    monkeypatch.setenv("SQUEEZEFLOW_INFLUX_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("SQUEEZEFLOW_INFLUX_PASSWORD", "s3cret")
    monkeypatch.setenv("SQUEEZEFLOW_BACKEND", "influx")
    s = settings_from_dict({"store": {"influx": {"url": "http://elsewhere:8086"}}})
    assert s.store.backend == "influx"
    assert s.store.influx.url == "http://127.0.0.1:9999"
    assert s.store.influx.password == "s3cret"


def test_the_squeezeflow_section_is_read_from_a_freqtrade_config(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"stake_currency": "USDT", "squeezeflow": {"staleness_limit_s": 12}}))
    assert load_settings(cfg, env=False).staleness_limit_s == 12


def test_a_missing_or_broken_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings(bad)


def test_market_ids_must_be_in_aggr_server_form():
    with pytest.raises(ConfigError, match="aggr-server form"):
        settings_from_dict(
            {"coins": {"X": {"spot": ["binance btcusdt"], "perp": ["A:b"]}}}, env=False
        )
