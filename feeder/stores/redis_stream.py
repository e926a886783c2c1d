"""Live bars on Redis: one stream per market (XADD, bounded MAXLEN), a latest-bar hash and the
market's live state (watermark, coverage, lost ranges).

Keys (``prefix`` defaults to ``squeezeflow``)::

    <prefix>:bars:<market>      stream; entry fields: market, kind, time, open ... lsell, and wm
                                (the publisher's watermark when the entry was added)
    <prefix>:latest:<market>    hash; the newest bar of the market (same fields)
    <prefix>:watermark:<market> epoch second up to which the market's bars are final (exclusive)
    <prefix>:state:<market>     hash, written in one HSET after the bars of the same publish:
                                watermark  the same epoch second
                                coverage   JSON [[start, end), ...]: this feeder session's
                                           coverage exactly as written to the store (a gap
                                           the feeder recorded is outside it)
                                lost       JSON [[start, end), ...]: ranges whose bars never
                                           reached the stream (publisher queue overflow,
                                           failed publish): readers treat them as gaps

Readers read the state first, then drain the stream: every bar below the state's watermark is
already in the stream then. A quiet second inside coverage is a real zero. A corrected bar (a late
trade) is appended again with the same ``time``; readers keep the last entry per ``time``.
Streams are trimmed approximately to ``maxlen`` entries: a reader whose last read entry is gone
(``XINFO STREAM`` first-entry) may have missed entries and treats their range as a gap.
Entries that are not bars of the stream's market (foreign or missing fields, non-numeric time,
non-finite values, another market's name) are skipped and counted, never folded in (the
encoding both ways: ``feeder.stores.redis_codec``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import redis
import redis.asyncio as aredis

from feeder.stores.redis_codec import (
    BadEntries,
    LiveState,
    as_str,
    decode_entries,
    decode_state,
    empty_frame,
    encode_bars,
    encode_intervals,
    parse_int,
)

#: Most intervals kept in a published coverage / lost list (older coverage is dropped, older
#: lost ranges are joined: both only ever make less time complete).
MAX_INTERVALS = 256


def stream_key(prefix: str, market: str) -> str:
    return f"{prefix}:bars:{market}"


def latest_key(prefix: str, market: str) -> str:
    return f"{prefix}:latest:{market}"


def watermark_key(prefix: str, market: str) -> str:
    return f"{prefix}:watermark:{market}"


def state_key(prefix: str, market: str) -> str:
    return f"{prefix}:state:{market}"


def stream_id(s: str) -> tuple[int, int]:
    """``"1700000000000-3" -> (1700000000000, 3)``; ``"0"`` is ``(0, 0)``."""
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


class _Publishing:
    """The publish of both clients: one pipeline of commands, built here, executed by each."""

    prefix: str
    maxlen: int

    def _publish_pipeline(
        self,
        pipe: Any,
        market: str,
        kind: str,
        bars: pd.DataFrame,
        watermark: int | None,
        coverage: Any,
        lost: Any,
    ) -> int:
        """Queue on ``pipe``: the bars on the market's stream, then its latest bar, watermark
        and state (one HSET); returns how many bars."""
        entries = encode_bars(market, kind, bars, watermark) if len(bars) else []
        key = stream_key(self.prefix, market)
        for e in entries:
            pipe.xadd(key, e, maxlen=self.maxlen, approximate=True)
        if entries:
            pipe.hset(latest_key(self.prefix, market), mapping=entries[-1])
        if watermark is not None:
            pipe.set(watermark_key(self.prefix, market), int(watermark))
            state = {"watermark": str(int(watermark))}
            if coverage is not None:
                state["coverage"] = encode_intervals(coverage)
            if lost is not None:
                state["lost"] = encode_intervals(lost)
            pipe.hset(state_key(self.prefix, market), mapping=state)
        return len(entries)


class RedisBarStream(_Publishing):
    """Publishes and reads live bars (sync client; ``AsyncRedisBarStream`` for the feeder)."""

    def __init__(self, url: str, prefix: str = "squeezeflow", maxlen: int = 100_000) -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.prefix = prefix
        self.maxlen = maxlen
        self.bad = BadEntries()

    def publish(
        self,
        market: str,
        kind: str,
        bars: pd.DataFrame,
        watermark: int | None = None,
        coverage: Any = None,
        lost: Any = None,
    ) -> int:
        """Append bars to the market's stream; then set its latest bar, watermark and state."""
        pipe = self.r.pipeline(transaction=False)
        n = self._publish_pipeline(pipe, market, kind, bars, watermark, coverage, lost)
        pipe.execute()
        return n

    def watermarks(self, markets: list[str]) -> dict[str, int | None]:
        """Each market's watermark (the state's), one round trip; None when absent or bad."""
        pipe = self.r.pipeline(transaction=False)
        for m in markets:
            pipe.hget(state_key(self.prefix, m), "watermark")
        out: dict[str, int | None] = {}
        for m, v in zip(markets, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(v, redis.ResponseError):  # e.g. the key holds another type
                v = b"?"
            wm = None if v is None else parse_int(as_str(v)) if isinstance(v, bytes | str) else None
            if v is not None and wm is None:
                self.bad.add("state", "a non-integer watermark")
            out[m] = wm
        return out

    def states(self, markets: list[str]) -> dict[str, LiveState | None]:
        pipe = self.r.pipeline(transaction=False)
        for m in markets:
            pipe.hgetall(state_key(self.prefix, m))
        got = pipe.execute(raise_on_error=False)
        out: dict[str, LiveState | None] = {}
        for m, raw in zip(markets, got, strict=True):
            if isinstance(raw, redis.ResponseError):  # e.g. the key holds another type
                self.bad.add("state", f"a live state that is not a hash ({raw})")
                out[m] = None
            else:
                out[m] = decode_state(raw, self.bad)
        return out

    def latest(self, market: str) -> dict[str, str] | None:
        raw = self.r.hgetall(latest_key(self.prefix, market))
        return {as_str(k): as_str(v) for k, v in raw.items()} if raw else None

    def read(
        self,
        markets: list[str],
        after: Mapping[str, str] | None = None,
        block_ms: int | None = None,
        count: int = 10_000,
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        """Every entry newer than ``after`` (stream id per market; default ``0``: all kept).

        Drains the streams completely (pages of ``count``), so nothing published before the call
        is left for later. Returns the valid bars and the new stream ids to pass next time.
        """
        last = {m: (after or {}).get(m, "0") for m in markets}
        frames = []
        pending = list(markets)
        block = block_ms
        while pending:
            ids = {stream_key(self.prefix, m): last[m] for m in pending}
            got: Any = self.r.xread(ids, count=count, block=block)  # type: ignore[arg-type]
            block = None
            full = []
            for key, items in got or []:
                market = as_str(key).split(":bars:", 1)[1]
                if items:
                    last[market] = as_str(items[-1][0])
                    frames.append(decode_entries([f for _, f in items], market, self.bad))
                if len(items) >= count:
                    full.append(market)
            pending = full
        bars = pd.concat(frames, ignore_index=True) if frames else empty_frame()
        bars = bars.drop_duplicates(["market", "time"], keep="last").reset_index(drop=True)
        return bars, last

    def read_from(
        self, market: str, boundary: int, count: int = 10_000
    ) -> tuple[pd.DataFrame, str, int | None]:
        """The entries that can hold bars at or after ``boundary`` (epoch second).

        Stream ids are publish wall time, not bar time: the stream is paged backwards from its
        newest entry until an entry published with ``wm <= boundary`` (it and everything older
        hold only bars before the boundary). Returns the bars (time >= boundary), the newest id
        (the cursor for ``read``) and, when entries that may have held such bars were trimmed
        before this read, the end of the range they may have covered (else None).
        """
        key = stream_key(self.prefix, market)
        frames = []
        newest: str | None = None
        hi = "+"
        reached_start = True
        oldest_wm: int | None = None
        while True:
            items: Any = self.r.xrevrange(key, max=hi, min="-", count=count)
            if not items:
                break
            if newest is None:
                newest = as_str(items[0][0])
            df = decode_entries([f for _, f in reversed(items)], market, self.bad)
            frames.append(df)
            if len(df):
                w = int(df["wm"].min())
                oldest_wm = w if oldest_wm is None else min(oldest_wm, w)
                if w <= boundary:
                    reached_start = False
                    break
            if len(items) < count:
                break
            ms, seq = stream_id(as_str(items[-1][0]))
            hi = f"({ms}-{seq}"
        bars = pd.concat(frames[::-1], ignore_index=True) if frames else empty_frame()
        bars = bars[bars["time"] >= boundary]
        bars = bars.drop_duplicates(["market", "time"], keep="last").reset_index(drop=True)
        trimmed_until = None
        if reached_start and self.first_ids([market])[market][1]:
            # Something was trimmed before the oldest entry left: bars older than that entry's
            # watermark may be gone.
            trimmed_until = oldest_wm
        return bars, newest or "0", trimmed_until

    def first_ids(self, markets: list[str]) -> dict[str, tuple[tuple[int, int], bool]]:
        """Per stream: the oldest entry's id ((0, 0) when empty or absent) and whether any entry
        was ever removed from it (trimmed: ``entries-added`` above ``length``)."""
        pipe = self.r.pipeline(transaction=False)
        for m in markets:
            pipe.execute_command("XINFO", "STREAM", stream_key(self.prefix, m))  # type: ignore[no-untyped-call]
        out = {}
        for m, info in zip(markets, pipe.execute(raise_on_error=False), strict=True):
            if not isinstance(info, dict):  # no such stream (an error reply)
                out[m] = ((0, 0), False)
                continue
            d = {as_str(k): v for k, v in info.items()}
            first = d.get("first-entry")
            fid = stream_id(as_str(first[0])) if first else (0, 0)
            out[m] = (fid, int(d.get("entries-added", 0)) > int(d.get("length", 0)))
        return out

    def close(self) -> None:
        self.r.close()


class AsyncRedisBarStream(_Publishing):
    """The same publishing for asyncio code; reconnects on the next call after an outage."""

    def __init__(self, url: str, prefix: str = "squeezeflow", maxlen: int = 100_000) -> None:
        self.r = aredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.prefix = prefix
        self.maxlen = maxlen

    async def publish(
        self,
        market: str,
        kind: str,
        bars: pd.DataFrame,
        watermark: int | None = None,
        coverage: Any = None,
        lost: Any = None,
    ) -> int:
        pipe = self.r.pipeline(transaction=False)
        n = self._publish_pipeline(pipe, market, kind, bars, watermark, coverage, lost)
        await pipe.execute()
        return n

    async def close(self) -> None:
        await self.r.aclose()
