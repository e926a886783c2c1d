"""Run FreqTrade without reaching an exchange: markets from saved exchangeInfo responses.

FreqTrade always calls ccxt ``load_markets(reload=True)`` at start, so offline it stops with
"Could not load markets". Here the ccxt binance classes (sync, async and pro) get their
exchangeInfo endpoints (spot ``/api/v3``, USD-M ``/fapi/v1``, COIN-M ``/dapi/v1``) answered from
saved JSON files, so ccxt's own ``fetch_markets``/``parse_market`` still build the markets. Every
other HTTP call fails loudly (``ExchangeNotAvailable`` naming the URL): nothing silently goes
online, and a backtest can never fetch live data.

    squeezeflow-freqtrade --markets DIR backtesting --config config.json ...
    squeezeflow-freqtrade --offline backtesting ...     (built-in minimal markets)
    squeezeflow-freqtrade backtesting ...               (online: plain FreqTrade)

For every command but ``trade`` and ``webserver`` (they start the API server) missing
``FREQTRADE__API_SERVER__*`` secrets are filled with random throwaway values; those two need
the real ones in the environment. ``--offline trade`` is refused: trading needs the exchange
(``--markets DIR trade`` runs, as a rehearsal of the live data path with a warning).

``DIR`` holds ``BINANCE.exchangeInfo.json``, ``BINANCE_FUTURES.exchangeInfo.json`` and
``BINANCE_DELIVERY.exchangeInfo.json`` (any may be absent: that market type is then empty);
``SQUEEZEFLOW_OFFLINE_MARKETS=DIR`` does the same. ``--offline`` uses a built-in minimal USD-M
exchangeInfo with the BTCUSDT and ETHUSDT perpetuals, labelled as such in the log.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILES = {
    "publicGetExchangeInfo": "BINANCE.exchangeInfo.json",
    "fapiPublicGetExchangeInfo": "BINANCE_FUTURES.exchangeInfo.json",
    "dapiPublicGetExchangeInfo": "BINANCE_DELIVERY.exchangeInfo.json",
}


def builtin_usdm_exchange_info() -> dict[str, Any]:
    """A minimal USD-M exchangeInfo (BTCUSDT, ETHUSDT perpetuals) in Binance's format."""

    def perp(base: str, tick: str, step: str, min_price: str) -> dict[str, Any]:
        return {
            "symbol": f"{base}USDT",
            "pair": f"{base}USDT",
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": base,
            "quoteAsset": "USDT",
            "marginAsset": "USDT",
            "pricePrecision": 2,
            "quantityPrecision": 3,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012000",
            "marketTakeBound": "0.30",
            "filters": [
                {
                    "minPrice": min_price,
                    "maxPrice": "1000000",
                    "filterType": "PRICE_FILTER",
                    "tickSize": tick,
                },
                {"stepSize": step, "filterType": "LOT_SIZE", "maxQty": "1000", "minQty": step},
                {
                    "stepSize": step,
                    "filterType": "MARKET_LOT_SIZE",
                    "maxQty": "1000",
                    "minQty": step,
                },
                {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
                {"notional": "5", "filterType": "MIN_NOTIONAL"},
                {
                    "multiplierDown": "0.8500",
                    "multiplierUp": "1.1500",
                    "multiplierDecimal": "4",
                    "filterType": "PERCENT_PRICE",
                },
            ],
            "orderTypes": [
                "LIMIT",
                "MARKET",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }

    return {
        "timezone": "UTC",
        "serverTime": 1700000000000,
        "futuresType": "U_MARGINED",
        "rateLimits": [],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [perp("BTC", "0.10", "0.001", "556.80"), perp("ETH", "0.01", "0.001", "39.86")],
    }


def _empty_info() -> dict[str, Any]:
    return {"timezone": "UTC", "serverTime": 0, "rateLimits": [], "symbols": []}


def load_responses(markets_dir: Path | None) -> dict[str, dict[str, Any]]:
    if markets_dir is None:
        log.warning("offline markets: built-in minimal USD-M exchangeInfo (BTCUSDT, ETHUSDT)")
        return {
            "publicGetExchangeInfo": _empty_info(),
            "fapiPublicGetExchangeInfo": builtin_usdm_exchange_info(),
            "dapiPublicGetExchangeInfo": _empty_info(),
        }
    out = {}
    for method, name in FILES.items():
        path = markets_dir / name
        out[method] = json.loads(path.read_text()) if path.exists() else _empty_info()
        if path.exists():
            log.info("offline markets: %s (%d symbols)", path, len(out[method]["symbols"]))
    return out


def install(markets_dir: Path | None) -> None:
    """Patch ccxt so binance markets come from saved responses and nothing goes online."""
    import ccxt
    import ccxt.async_support as accxt
    import ccxt.pro as pccxt
    from ccxt.async_support.base.exchange import Exchange as AsyncExchange
    from ccxt.base.exchange import Exchange as SyncExchange

    responses = load_responses(markets_dir)

    def sync_endpoint(name: str) -> Any:
        def call(self: Any, params: dict[str, Any] | None = None) -> Any:
            return json.loads(json.dumps(responses[name]))

        return call

    def async_endpoint(name: str) -> Any:
        async def call(self: Any, params: dict[str, Any] | None = None) -> Any:
            return json.loads(json.dumps(responses[name]))

        return call

    def refuse(self: Any, url: str, method: str = "GET", *args: Any, **kw: Any) -> Any:
        raise ccxt.ExchangeNotAvailable(f"offline mode: refused {method} {url}")

    async def arefuse(self: Any, url: str, method: str = "GET", *args: Any, **kw: Any) -> Any:
        raise ccxt.ExchangeNotAvailable(f"offline mode: refused {method} {url}")

    def no_currencies(self: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}

    async def ano_currencies(self: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}

    SyncExchange.fetch = refuse
    AsyncExchange.fetch = arefuse
    for mod, is_async in ((ccxt, False), (accxt, True), (pccxt, True)):
        for cls_name in ("binance", "binanceusdm", "binancecoinm"):
            cls = getattr(mod, cls_name)
            for name in FILES:
                setattr(cls, name, async_endpoint(name) if is_async else sync_endpoint(name))
            cls.fetch_currencies = ano_currencies if is_async else no_currencies


#: FreqTrade subcommands that start the API server: they need the real secrets. Every other
#: command (backtesting, hyperopt, list-*, show-trades, plot-*, ...) never starts it.
API_SERVER_COMMANDS = {"trade", "webserver"}


def throwaway_api_secrets(command: str) -> None:
    """FreqTrade validates ``api_server`` secrets in every mode; config.json holds none.

    For commands that never start the API server, missing secrets are set to random throwaway
    values for this process only. ``trade`` and ``webserver`` never get them: they refuse to
    start until the real ``FREQTRADE__API_SERVER__*`` variables are set.
    """
    import secrets

    if command in API_SERVER_COMMANDS:
        return
    os.environ.setdefault("FREQTRADE__API_SERVER__ENABLED", "false")
    for var in ("USERNAME", "PASSWORD", "JWT_SECRET_KEY", "WS_TOKEN"):
        os.environ.setdefault(f"FREQTRADE__API_SERVER__{var}", secrets.token_hex(24))


def main(argv: list[str] | None = None) -> int:
    """``squeezeflow-freqtrade [--markets DIR | --offline] <freqtrade arguments>``."""
    args = list(sys.argv[1:] if argv is None else argv)
    markets: str | None = os.environ.get("SQUEEZEFLOW_OFFLINE_MARKETS")
    offline = bool(markets)
    if args[:1] == ["--markets"]:
        if len(args) < 2:
            print("--markets needs a directory", file=sys.stderr)
            return 2
        markets, offline, args = args[1], True, args[2:]
    elif args[:1] == ["--offline"]:
        offline, args = True, args[1:]
    if args[:1] in (["-h"], ["--help"]) or not args:
        print(__doc__)
        return 0
    if offline and not markets and args[0] == "trade":
        print(
            "squeezeflow-freqtrade: --offline cannot run `trade` (dry-run or live): it needs "
            "the exchange for candles and orders every loop, and --offline refuses every call "
            "but the built-in markets. Run `trade` without --offline.",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO)
    if offline and args[0] == "trade":
        log.warning(
            "--markets with trade: a rehearsal only; the exchange is unreachable, so no "
            "candle is fetched and no order is placed"
        )
    throwaway_api_secrets(args[0])
    if offline:
        install(Path(markets) if markets else None)
    from freqtrade.main import main as ft_main

    try:
        ft_main(args)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
