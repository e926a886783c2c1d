"""The strategy's one data-access object: flow for a coin, history and live.

Backtesting and hyperopt call ``history`` once per coin and range. Live and dry-run call
``catch_up`` once (candles from the store), then ``poll`` every bot loop: new 1-second bars come
from the Redis streams and are folded into the candles after the store's coverage; when Redis is
unreachable the store is polled instead, and the log says so once. ``age`` is the time since
the slowest market's newest final bar (its watermark), for the staleness guard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import redis

from feeder.coverage import covered
from feeder.models import BAR_FIELDS, FLOW_FIELDS
from feeder.settings import Settings
from feeder.sinks.redis_stream import RedisBarStream
from feeder.store import (
    BarStore,
    assemble,
    bucket_bars,
    load_flow,
    open_store,
    timeframe_seconds,
)

log = logging.getLogger(__name__)

FLOW_COLUMNS = tuple(f"{k}_{f}" for k in ("spot", "perp") for f in (*FLOW_FIELDS, "close"))


def coin_of(pair: str) -> str:
    """``"BTC/USDT:USDT" -> "BTC"``."""
    return pair.split("/", 1)[0].upper()


class FlowSource:
    def __init__(
        self,
        settings: Settings,
        timeframe: str,
        store: BarStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.tf = timeframe_seconds(timeframe)
        self.timeframe = timeframe
        self.store = store or open_store(settings)
        self.clock = clock
        self._history: dict[tuple[str, int, int], pd.DataFrame] = {}
        self._candles: dict[str, pd.DataFrame] = {}
        self._boundary: dict[str, int] = {}
        self._seconds: dict[str, pd.DataFrame] = {}
        self._stream_ids: dict[str, str] = {}
        self._watermarks: dict[str, int | None] = {}
        self._redis: RedisBarStream | None = None
        self._redis_up: bool | None = None
        self.source = "store"

    # ----- backtesting / hyperopt -------------------------------------------------------------
    def history(self, coin: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Flow for candles opening in ``[start, end]`` (inclusive), loaded once per range."""
        s = int(pd.Timestamp(start).timestamp())
        e = int(pd.Timestamp(end).timestamp()) + self.tf
        key = (coin, s, e)
        if key not in self._history:
            t0 = time.perf_counter()
            self._history[key] = load_flow(self.store, self.settings, coin, s, e, self.timeframe)
            df = self._history[key]
            log.info(
                "SqueezeFlow: %s flow %s..%s (%d candles, %d incomplete) from %s in %.2fs",
                coin, df.index[0] if len(df) else "-", df.index[-1] if len(df) else "-",
                len(df), int((~df["complete"]).sum()), self.store.name, time.perf_counter() - t0,
            )  # fmt: skip
        return self._history[key]

    # ----- live / dry-run ---------------------------------------------------------------------
    def catch_up(self, coin: str, candles: int) -> pd.DataFrame:
        """Load the last ``candles`` candles from the store; Redis bars continue from there."""
        now = int(self.clock())
        end = now - now % self.tf + self.tf
        start = end - candles * self.tf
        flow = load_flow(self.store, self.settings, coin, start, end, self.timeframe)
        ok = flow["complete"].to_numpy()
        # Candles up to the last complete one come from the store; later ones from Redis.
        last = int(np.flatnonzero(ok)[-1]) + 1 if ok.any() else 0
        self._boundary[coin] = start + last * self.tf
        self._candles[coin] = flow
        for m in self.settings.markets(coin):
            self._seconds.setdefault(m.id, _empty_seconds())
        log.info("SqueezeFlow: %s caught up from %s: %d candles, store complete until %s",
                 coin, self.store.name, len(flow),
                 pd.Timestamp(self._boundary[coin], unit="s", tz="UTC"))  # fmt: skip
        return flow

    def _redis_client(self) -> RedisBarStream:
        if self._redis is None:
            r = self.settings.redis
            self._redis = RedisBarStream(r.url, prefix=r.prefix, maxlen=r.maxlen)
        return self._redis

    def poll(self, coins: list[str]) -> None:
        """Fold new live bars into each coin's candles (Redis, or the store as a fallback)."""
        if not self.settings.redis.enabled:
            self._poll_store(coins)
            return
        markets = [m for c in coins for m in self.settings.markets(c)]
        try:
            client = self._redis_client()
            bars, self._stream_ids = client.read(
                [m.id for m in markets], after=self._stream_ids, block_ms=None
            )
            self._watermarks.update(client.watermarks([m.id for m in markets]))
        except (redis.ConnectionError, redis.TimeoutError) as e:
            if self._redis_up is not False:
                log.warning(
                    "SqueezeFlow: Redis unreachable at %s (%s): polling the %s store instead",
                    self.settings.redis.url, e, self.store.name,
                )  # fmt: skip
            self._redis_up = False
            self._poll_store(coins)
            return
        if self._redis_up is False:
            log.info("SqueezeFlow: Redis is back; live bars from the stream again")
        self._redis_up = True
        self.source = "redis"
        for m in markets:
            new = bars[bars["market"] == m.id]
            if len(new):
                old = self._seconds.get(m.id, _empty_seconds())
                merged = pd.concat([old, new[["time", *BAR_FIELDS]]], ignore_index=True)
                merged = merged.drop_duplicates("time", keep="last").sort_values("time")
                self._seconds[m.id] = merged.reset_index(drop=True)
        for coin in coins:
            self._rebuild(coin)

    def _poll_store(self, coins: list[str]) -> None:
        self.source = "store"
        for coin in coins:
            n = len(self._candles.get(coin, ()))
            self.catch_up(coin, max(n, 1))

    def _rebuild(self, coin: str) -> None:
        """Recompute the candles after the store boundary from the buffered 1-second bars."""
        if coin not in self._candles:
            raise RuntimeError(f"catch_up({coin!r}) must run before poll")
        b = self._boundary[coin]
        now = int(self.clock())
        end = now - now % self.tf + self.tf
        n = max(0, (end - b) // self.tf)
        opens = b + self.tf * np.arange(n, dtype=np.int64)
        markets = self.settings.markets(coin)
        parts = []
        for m in markets:
            secs = self._seconds.get(m.id, _empty_seconds())
            sums = bucket_bars(secs[secs["time"] >= b], b, self.tf, n)
            wm = self._watermarks.get(m.id)
            cov = np.array([[b, wm]], np.int64) if wm else np.empty((0, 2), np.int64)
            parts.append((m, sums, covered(opens, self.tf, cov)))
        live = assemble(opens, parts, require=self.settings.flow.require)  # as load_flow
        hist = self._candles[coin]
        hist = hist[hist.index < pd.Timestamp(b, unit="s", tz="UTC")]
        self._candles[coin] = pd.concat([hist[list(live.columns)], live])
        # Keep the 1-second buffer bounded: seconds before the oldest candle kept are dropped.
        for m in markets:
            s = self._seconds.get(m.id)
            if s is not None and len(s) > 200_000:
                self._seconds[m.id] = s.iloc[-200_000:].reset_index(drop=True)

    def caught_up(self, coin: str) -> bool:
        return coin in self._candles

    def live(self, coin: str) -> pd.DataFrame:
        return self._candles[coin]

    def age(self, coin: str) -> float:
        """Seconds since the slowest market of ``coin`` last had a final bar."""
        now = self.clock()
        marks: list[float] = []
        for m in self.settings.markets(coin):
            wm = self._watermarks.get(m.id) if self.source == "redis" else None
            if wm is None:
                cov = self.store.coverage(m.id)
                wm = int(cov[-1, 1]) if len(cov) else None
            if wm is None:
                return float("inf")
            marks.append(float(wm))
        return now - min(marks)


def _empty_seconds() -> pd.DataFrame:
    cols: dict[str, pd.Series] = {"time": pd.Series(dtype="int64")}
    cols.update({f: pd.Series(dtype="float64") for f in BAR_FIELDS})
    return pd.DataFrame(cols)
