"""Typed, validated SqueezeFlow settings: the ``squeezeflow`` section of the FreqTrade config.

The same section configures the feeder and the strategy. Unknown keys are refused with the key's
dotted path; URLs and secrets can be overridden from the environment (see ``ENV_OVERRIDES``).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from feeder.ingest.models import Kind

#: Environment variable -> dotted settings path it overrides.
ENV_OVERRIDES: dict[str, str] = {
    "SQUEEZEFLOW_BACKEND": "store.backend",
    "SQUEEZEFLOW_PARQUET_DIR": "store.parquet_dir",
    "SQUEEZEFLOW_INFLUX_URL": "store.influx.url",
    "SQUEEZEFLOW_INFLUX_DATABASE": "store.influx.database",
    "SQUEEZEFLOW_INFLUX_USERNAME": "store.influx.username",
    "SQUEEZEFLOW_INFLUX_PASSWORD": "store.influx.password",
    "SQUEEZEFLOW_REDIS_URL": "redis.url",
}

_MARKET_RE = re.compile(r"^[A-Z0-9_]+:[a-z0-9_\-]+$")

#: Contract sizes (USD per contract) of Binance COIN-M perpetuals; others default to 10 USD.
BINANCE_COINM_CONTRACT_USD = {"btc": 100.0}


def check_market_id(v: str) -> str:
    if not _MARKET_RE.match(v):
        raise ValueError(
            f"market id {v!r} is not in aggr-server form EXCHANGE:symbol "
            "(e.g. BINANCE:btcusdt, BINANCE_FUTURES:btcusdt)"
        )
    return v


try:  # under FreqTrade a settings problem is one error line and exit code 2, no traceback
    from freqtrade.exceptions import OperationalException as _FreqtradeConfigError
except ImportError:  # pragma: no cover - freqtrade is a dependency; the feeder works without it
    _FreqtradeConfigError = Exception


class ConfigError(_FreqtradeConfigError, ValueError):
    """A settings problem, with a message that names the offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InfluxSettings(_Strict):
    url: str = "http://127.0.0.1:8086"
    database: str = "significant_trades"
    username: str | None = None
    password: str | None = None
    rp_1s: str = "aggr_1s"
    rp_1m: str = "aggr_1m"
    measurement_1s: str = "trades_1s"
    measurement_1m: str = "trades_1m"
    retention_1s: str = "INF"
    retention_1m: str = "INF"
    batch_size: int = Field(10_000, ge=1, le=100_000)
    timeout_s: float = Field(30.0, gt=0, le=600)
    max_retries: int = Field(5, ge=0, le=100)


class RedisSettings(_Strict):
    enabled: bool = True
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "squeezeflow"
    maxlen: int = Field(100_000, ge=100, le=100_000_000)


class StoreSettings(_Strict):
    backend: Literal["parquet", "influx"] = "parquet"
    parquet_dir: Path = Path("user_data/squeezeflow")
    influx: InfluxSettings = InfluxSettings()


class MarketSettings(_Strict):
    """One market. ``contract_size`` (USD per contract) is set for inverse contracts only."""

    id: str
    kind: Kind
    contract_size: float | None = Field(None, gt=0, le=1e9)

    @field_validator("id")
    @classmethod
    def _market_form(cls, v: str) -> str:
        return check_market_id(v)


class CoinSettings(_Strict):
    spot: tuple[str, ...] = ()
    perp: tuple[str, ...] = ()

    @field_validator("spot", "perp")
    @classmethod
    def _market_forms(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for m in v:
            check_market_id(m)
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> CoinSettings:
        if not self.spot or not self.perp:
            raise ValueError("a coin needs at least one spot and one perp market")
        return self


class ExchangeSettings(_Strict):
    """One ccxt exchange the live feeder collects from, for one kind of market.

    Markets are discovered from the exchange's own market list (base coin among the configured
    coins, quote among ``quotes``, spot or perpetual swap) unless ``symbols`` lists them.
    """

    id: str
    kind: Kind
    quotes: tuple[str, ...] = ("USDT", "USD", "USDC", "FDUSD")
    symbols: tuple[str, ...] = ()
    options: dict[str, Any] = Field(default_factory=dict)
    urls: dict[str, Any] = Field(default_factory=dict)
    per_symbol: bool = False
    quiet_s: float = Field(60.0, gt=0, le=86_400)
    liquidations: bool = True
    open_interest: bool = True
    backfill: bool = True


#: One main quote per venue: the books the archives cover and no duplicate book (Coinbase's
#: BTC-USDC is its BTC-USD book). ``Settings().coins`` lists exactly what these collect for BTC
#: and ETH (tests/unit/test_default_markets.py).
DEFAULT_EXCHANGES = (
    ExchangeSettings(id="binance", kind=Kind.SPOT, quotes=("USDT",)),
    ExchangeSettings(id="binanceusdm", kind=Kind.PERP, quotes=("USDT",)),
    ExchangeSettings(id="binancecoinm", kind=Kind.PERP, quotes=("USD",)),
    ExchangeSettings(id="bybit", kind=Kind.SPOT, quotes=("USDT",)),
    ExchangeSettings(id="bybit", kind=Kind.PERP, quotes=("USDT",)),
    ExchangeSettings(id="okx", kind=Kind.SPOT, quotes=("USDT",)),
    ExchangeSettings(id="okx", kind=Kind.PERP, quotes=("USDT",)),
    ExchangeSettings(id="coinbase", kind=Kind.SPOT, quotes=("USD",)),
)


def default_coin(c: str) -> CoinSettings:
    """Every market the default feeder collects for coin ``c`` (lower-case ids as it writes)."""
    return CoinSettings(
        spot=(f"BINANCE:{c}usdt", f"BYBIT_SPOT:{c}usdt", f"OKEX:{c}-usdt", f"COINBASE:{c}-usd"),
        perp=(
            f"BINANCE_FUTURES:{c}usdt",
            f"BINANCE_FUTURES:{c}usd_perp",
            f"BYBIT:{c}usdt",
            f"OKEX:{c}-usdt-swap",
        ),
    )


class FeederSettings(_Strict):
    """The live feeder (``squeezeflow-feeder run``)."""

    exchanges: tuple[ExchangeSettings, ...] = DEFAULT_EXCHANGES
    coins: tuple[str, ...] | None = None  # default: every coin of squeezeflow.coins
    queue_size: int = Field(10_000, ge=10, le=10_000_000)
    retain_s: int = Field(600, ge=60, le=86_400)
    backoff_max_s: float = Field(30.0, gt=0, le=3_600)
    oi_interval_s: float = Field(60.0, gt=0, le=86_400)
    flush_interval_s: float = Field(1.0, gt=0, le=60)
    coverage_interval_s: float = Field(10.0, gt=0, le=3_600)
    spool_dir: Path = Path("user_data/squeezeflow/spool")
    #: the spool's bound: beyond it new batches are dropped (counted, their seconds left out of
    #: coverage: a gap) and /health says failing
    spool_max_mb: float = Field(1024.0, gt=0, le=1_000_000)
    #: the bound of refused.jsonl (batches a store refused): beyond it the file becomes
    #: refused.jsonl.1 (one previous kept); the batches that drops are counted, /health alerts
    refused_max_mb: float = Field(64.0, gt=0, le=1_000_000)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8765, ge=0, le=65535)


class FlowSettings(_Strict):
    """How a candle's flow is made of its coin's markets: one rule for backtest and live.

    ``require``: ``each_kind`` (default) - a candle is complete when at least one spot and one
    perp market cover it, and only the covering markets contribute (a venue without history for
    a range, e.g. Bybit in a Binance-only archive import, leaves the others usable instead of
    making every candle incomplete); ``all`` - complete only when every configured market
    covers it (strict: use it when every market has history for the whole range).
    """

    require: Literal["all", "each_kind"] = "each_kind"


class Settings(_Strict):
    store: StoreSettings = StoreSettings()
    redis: RedisSettings = RedisSettings()
    coins: dict[str, CoinSettings] = Field(
        default_factory=lambda: {"BTC": default_coin("btc"), "ETH": default_coin("eth")}
    )
    contract_sizes: dict[str, float] = Field(default_factory=dict)
    feeder: FeederSettings = FeederSettings()
    staleness_limit_s: float = Field(30.0, gt=0, le=86_400)
    max_leverage: float = Field(3.0, ge=1.0, le=125.0)
    max_stake_fraction: float = Field(1.0, gt=0, le=1.0)
    grace_s: float = Field(0.5, ge=0, le=60)  # every numeric setting has bounds
    #: live: how long bot_loop_start waits for every market's watermark to pass the newest
    #: closed candle before that candle is decided incomplete (no entry; logged and counted)
    decide_wait_s: float = Field(5.0, ge=0, le=60)
    #: score liquidations (s_liq): only when the history you backtest carries them as live
    #: does (recorded by the feeder); trade archives carry none, so the default is off
    score_liquidations: bool = False
    flow: FlowSettings = FlowSettings()

    def coin(self, coin: str) -> CoinSettings:
        key = coin.upper()
        if key not in self.coins:
            raise ConfigError(
                f"coin {coin!r} is not configured in squeezeflow.coins (have: {sorted(self.coins)})"
            )
        return self.coins[key]

    def markets(self, coin: str) -> list[MarketSettings]:
        c = self.coin(coin)
        return [self.market(m, Kind.SPOT) for m in c.spot] + [
            self.market(m, Kind.PERP) for m in c.perp
        ]

    def market(self, market: str, kind: Kind | None = None) -> MarketSettings:
        """Market settings with the contract size resolved for inverse (``*_perp``) markets."""
        if kind is None:
            kind = self._configured_kind(market) or guess_kind(market)
        size = self.contract_sizes.get(market)
        if size is None and kind is Kind.PERP:
            size = default_contract_size(market)
        return MarketSettings(id=market, kind=kind, contract_size=size)

    def _configured_kind(self, market: str) -> Kind | None:
        for c in self.coins.values():
            if market in c.spot:
                return Kind.SPOT
            if market in c.perp:
                return Kind.PERP
        return None

    def all_markets(self) -> list[MarketSettings]:
        seen: dict[str, MarketSettings] = {}
        for coin in self.coins:
            for m in self.markets(coin):
                seen.setdefault(m.id, m)
        return list(seen.values())


def guess_kind(market: str) -> Kind:
    """Kind from an aggr-server market id: futures/swap/perp exchanges are perps."""
    exchange = market.split(":", 1)[0]
    perp_words = ("FUTURES", "DELIVERY", "SWAP", "PERP", "LINEAR", "INVERSE")
    return Kind.PERP if any(w in exchange for w in perp_words) else Kind.SPOT


def default_contract_size(market: str) -> float | None:
    """USD per contract of a Binance COIN-M perpetual (``..._perp``), else None."""
    exchange, symbol = market.split(":", 1)
    if exchange.startswith("BINANCE") and symbol.endswith("usd_perp"):
        return BINANCE_COINM_CONTRACT_USD.get(symbol.removesuffix("usd_perp"), 10.0)
    return None


def _model_of(tp: Any) -> tuple[type[BaseModel] | None, int]:
    """The settings model inside an annotation, and how many path parts (dict keys, tuple
    indexes) lie between the field and that model."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp, 0
    for arg in get_args(tp):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, 1
    return None, 0


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed beside ``loc[-1]`` (``loc`` as pydantic reports it, from Settings)."""
    model: type[BaseModel] | None = Settings
    i = 0
    while model is not None and i < len(loc) - 1:
        field = model.model_fields.get(str(loc[i]))
        if field is None:
            return []
        model, skip = _model_of(field.annotation)
        i += 1 + skip
    return list(model.model_fields) if model is not None and i == len(loc) - 1 else []


def _format_errors(err: ValidationError, root: str) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in (root, *e["loc"]))
        if e["type"] == "extra_forbidden":
            near = difflib.get_close_matches(str(e["loc"][-1]), _known_keys(e["loc"]), n=1)
            lines.append(f"{path}: unknown key" + (f" (did you mean {near[0]!r}?)" if near else ""))
        else:
            lines.append(f"{path}: {e['msg']}")
    if len(lines) == 1:
        return f"invalid SqueezeFlow settings: {lines[0]}"
    return "invalid SqueezeFlow settings:\n  " + "\n  ".join(lines)


def _set_dotted(d: dict[str, Any], dotted: str, value: str) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def settings_from_dict(section: dict[str, Any] | None, *, env: bool = True) -> Settings:
    """Validate a ``squeezeflow`` section (None: defaults), applying environment overrides."""
    raw: dict[str, Any] = json.loads(json.dumps(section or {}))
    if env:
        for var, dotted in ENV_OVERRIDES.items():
            if os.environ.get(var):
                _set_dotted(raw, dotted, os.environ[var])
    try:
        return Settings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, "squeezeflow")) from None


def load_settings(path: Path | str | None, *, env: bool = True) -> Settings:
    """Read the ``squeezeflow`` section of a FreqTrade config file (or a file holding only it)."""
    if path is None:
        return settings_from_dict(None, env=env)
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: expected a JSON object")
    section = doc.get("squeezeflow", doc if "store" in doc or "coins" in doc else {})
    return settings_from_dict(section, env=env)
