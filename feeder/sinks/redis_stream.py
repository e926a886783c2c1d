"""Live bars on Redis: one stream per market (XADD, bounded MAXLEN) and a latest-bar hash.

Keys (``prefix`` defaults to ``squeezeflow``)::

    <prefix>:bars:<market>     stream; entry fields: market, kind, time, open ... lsell
    <prefix>:latest:<market>   hash; the newest bar of the market (same fields)
    <prefix>:watermark:<market> epoch second up to which the market's bars are final
                               (exclusive): quiet seconds before it are real zeros

A corrected bar (a late trade) is appended again with the same ``time``; readers keep the last
entry per ``time``. Streams are trimmed approximately to ``maxlen`` entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import redis
import redis.asyncio as aredis

from feeder.models import BAR_FIELDS


def stream_key(prefix: str, market: str) -> str:
    return f"{prefix}:bars:{market}"


def latest_key(prefix: str, market: str) -> str:
    return f"{prefix}:latest:{market}"


def watermark_key(prefix: str, market: str) -> str:
    return f"{prefix}:watermark:{market}"


def encode_bars(market: str, kind: str, bars: pd.DataFrame) -> list[dict[str, str]]:
    cols = {f: bars[f].to_numpy(np.float64).tolist() for f in BAR_FIELDS}
    times = bars["time"].to_numpy(np.int64).tolist()
    return [
        {
            "market": market,
            "kind": kind,
            "time": str(t),
            **{f: repr(cols[f][i]) for f in BAR_FIELDS},
        }
        for i, t in enumerate(times)
    ]


def decode_entries(entries: list[Mapping[bytes | str, bytes | str]]) -> pd.DataFrame:
    """Stream entries to a bar frame (market, kind, time, fields); last entry per key wins."""
    if not entries:
        cols = {
            "market": pd.Series(dtype=str),
            "kind": pd.Series(dtype=str),
            "time": pd.Series(dtype="int64"),
        }
        cols.update({f: pd.Series(dtype="float64") for f in BAR_FIELDS})
        return pd.DataFrame(cols)
    rows = [{_s(k): _s(v) for k, v in e.items()} for e in entries]
    df = pd.DataFrame(rows)
    df["time"] = df["time"].astype(np.int64)
    for f in BAR_FIELDS:
        df[f] = df[f].astype(np.float64)
    return df.drop_duplicates(["market", "time"], keep="last").reset_index(drop=True)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


class RedisBarStream:
    """Publishes live bars (sync client; see ``AsyncRedisBarStream`` for the feeder's loop)."""

    def __init__(self, url: str, prefix: str = "squeezeflow", maxlen: int = 100_000) -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.prefix = prefix
        self.maxlen = maxlen

    def publish(
        self, market: str, kind: str, bars: pd.DataFrame, watermark: int | None = None
    ) -> int:
        """Append bars to the market's stream; set its latest bar and watermark."""
        entries = encode_bars(market, kind, bars) if len(bars) else []
        pipe = self.r.pipeline(transaction=False)
        key = stream_key(self.prefix, market)
        for e in entries:
            pipe.xadd(key, e, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        if entries:
            pipe.hset(latest_key(self.prefix, market), mapping=entries[-1])  # type: ignore[arg-type]
        if watermark is not None:
            pipe.set(watermark_key(self.prefix, market), int(watermark))
        pipe.execute()
        return len(entries)

    def watermarks(self, markets: list[str]) -> dict[str, int | None]:
        vals: Any = self.r.mget([watermark_key(self.prefix, m) for m in markets])
        return {m: None if v is None else int(v) for m, v in zip(markets, vals, strict=True)}

    def latest(self, market: str) -> dict[str, str] | None:
        raw = self.r.hgetall(latest_key(self.prefix, market))
        return {_s(k): _s(v) for k, v in raw.items()} if raw else None

    def read(
        self,
        markets: list[str],
        after: Mapping[str, str] | None = None,
        block_ms: int | None = None,
        count: int = 10_000,
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        """Entries newer than ``after`` (stream id per market; default ``0``: everything kept).

        Returns the bars and the new stream ids to pass next time.
        """
        ids = {stream_key(self.prefix, m): (after or {}).get(m, "0") for m in markets}
        got: Any = self.r.xread(ids, count=count, block=block_ms)  # type: ignore[arg-type]
        entries: list[Mapping[bytes | str, bytes | str]] = []
        last = dict(after or {})
        for key, items in got or []:
            market = _s(key).split(":bars:", 1)[1]
            for entry_id, fields in items:
                entries.append(fields)
                last[market] = _s(entry_id)
        return decode_entries(entries), last

    def close(self) -> None:
        self.r.close()


class AsyncRedisBarStream:
    """The same publishing for asyncio code; reconnects on the next call after an outage."""

    def __init__(self, url: str, prefix: str = "squeezeflow", maxlen: int = 100_000) -> None:
        self.r = aredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.prefix = prefix
        self.maxlen = maxlen

    async def publish(
        self, market: str, kind: str, bars: pd.DataFrame, watermark: int | None = None
    ) -> int:
        entries = encode_bars(market, kind, bars) if len(bars) else []
        pipe = self.r.pipeline(transaction=False)
        key = stream_key(self.prefix, market)
        for e in entries:
            pipe.xadd(key, e, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        if entries:
            pipe.hset(latest_key(self.prefix, market), mapping=entries[-1])  # type: ignore[arg-type]
        if watermark is not None:
            pipe.set(watermark_key(self.prefix, market), int(watermark))
        await pipe.execute()
        return len(entries)

    async def close(self) -> None:
        await self.r.aclose()
