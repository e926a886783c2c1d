"""Shared fixtures: the real servers started by scripts/test and the recorded market data."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_MARKET = REPO.parent / "shared" / "data" / "market"

# Arithmetic problems (division by zero, invalid operations) are errors in tests, not warnings.
np.seterr(all="raise")


def missing(msg: str) -> None:
    """Something a test needs is absent: skipped on a user's machine, a failure under CI, where
    ``scripts/test`` installs it and ../shared is beside the checkout."""
    if os.environ.get("CI"):
        pytest.fail(f"{msg} (CI must have it)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def market_data() -> Path:
    """../shared/data/market, read in place (never copied into the repository)."""
    if not SHARED_MARKET.is_dir():
        missing(f"recorded market data not found at {SHARED_MARKET} (../shared is absent)")
    return SHARED_MARKET


def _server_url(var: str) -> str:
    url = os.environ.get(var)
    if url:
        return url
    msg = f"{var} is not set: run the suite through `bash scripts/test`, which starts the servers"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def influx_url() -> str:
    return _server_url("SQUEEZEFLOW_TEST_INFLUX_URL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _server_url("SQUEEZEFLOW_TEST_REDIS_URL")


@pytest.fixture
def influx_db(influx_url: str) -> Iterator[tuple[str, str]]:
    """A fresh database name on the real InfluxDB, dropped afterwards."""
    import httpx

    name = f"sf_test_{uuid.uuid4().hex[:10]}"
    yield influx_url, name
    httpx.post(f"{influx_url}/query", params={"q": f'DROP DATABASE "{name}"'}, timeout=30)


@pytest.fixture
def telegram(tmp_path: Path) -> Iterator[object]:
    """A fake Telegram Bot API behind a loopback TLS CONNECT proxy (tests/clients/telegram.py):
    put ``telegram.env()`` into FreqTrade's environment and its real Telegram client talks to it."""
    from tests.clients.telegram import FakeTelegram

    with FakeTelegram.started(tmp_path / "telegram") as tg:
        yield tg
