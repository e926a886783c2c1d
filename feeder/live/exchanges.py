"""The ccxt pro exchange of each configured entry, and its markets loaded at start."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import ccxt

from feeder.live.backoff import Backoff
from feeder.settings import ExchangeSettings

log = logging.getLogger(__name__)

#: parsed trades ccxt keeps per symbol between watch calls
TRADES_LIMIT = 2_000
#: attempts at loading an exchange's markets at start (backoff up to 1, 2, 4, 8 s) before giving up
STARTUP_ATTEMPTS = 5


class FeederStartError(RuntimeError):
    """The feeder cannot start (an exchange's markets cannot be loaded)."""


def make_exchange(entry: ExchangeSettings) -> Any:
    """The entry's ccxt pro exchange (its options and URLs; an API key from the environment)."""
    import ccxt.pro as ccxtpro

    cls = getattr(ccxtpro, entry.id)
    config: dict[str, Any] = {
        "enableRateLimit": True,
        # ccxt keeps this many parsed trades per symbol between watch calls: enough for a
        # burst (a loop that still falls behind leaves an id hole, which is backfilled),
        # small enough that 150 markets stay light.
        "options": {"tradesLimit": TRADES_LIMIT, "fetchCurrencies": False, **entry.options},
    }
    key = os.environ.get(f"SQUEEZEFLOW_API_KEY_{entry.id.upper()}")
    if key:  # read-only key: Binance's historical-trades backfill needs one
        config["apiKey"] = key
    ex = cls(config)
    for key, val in entry.urls.items():
        ex.urls[key] = val
    return ex


async def load_markets(ex: Any, entry: ExchangeSettings, backoff_max_s: float) -> dict[str, Any]:
    """The exchange's markets; a network failure is retried with backoff a few times, then
    the feeder refuses to start with an error naming the exchange and the URL."""
    backoff = Backoff(base=1.0, cap=backoff_max_s)
    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        try:
            return dict(await ex.load_markets())
        except ccxt.NetworkError as e:
            error = e
        if attempt < STARTUP_ATTEMPTS:
            delay = backoff.next()
            log.warning(
                "%s %s: markets not loaded (%s); retrying in %.1f s",
                entry.id,
                entry.kind.value,
                type(error).__name__,
                delay,
            )
            await asyncio.sleep(delay)
    raise FeederStartError(
        f"{entry.id} ({entry.kind.value}): cannot load its markets after {STARTUP_ATTEMPTS} "
        f"attempts: {type(error).__name__}: {str(error)[:300]}. Check the network, or "
        "squeezeflow.feeder.exchanges[].urls"
    ) from error
