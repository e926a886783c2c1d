"""Recorded Binance sessions: hftbacktest files of ``<local receive ts> <combined-stream JSON>``
lines (gzip), kept as text so every replay sends the recorded frames byte for byte.

Every loopback exchange replays these: Binance's own protocol (:mod:`feeder.replay.binance`), the
same trades in Bybit's, OKX's and Coinbase's (:mod:`feeder.replay.venues`), and the paper exchange
(:mod:`feeder.replay.paper`, whose in-memory recordings are built with :meth:`Recording.add`).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

MarketType = Literal["spot", "usdm", "cm"]
MARKET_TYPES: tuple[MarketType, ...] = ("spot", "usdm", "cm")


def market_from_path(path: Path) -> MarketType | None:
    """``spot``/``usdm``/``cm`` from a hftbacktest path (``raw/usdm/x.gz``, ``usdm_x.gz``)."""
    for part in reversed(path.parts[:-1]):
        if part in MARKET_TYPES:
            return part
    stem = path.name.split("_", 1)[0]
    return stem if stem in MARKET_TYPES else None


def parse_recording_arg(value: str) -> tuple[Path, MarketType]:
    """``PATH[:spot|usdm|cm]`` (the market defaults to the path's ``spot``/``usdm``/``cm`` part)."""
    path_s, sep, suffix = value.rpartition(":")
    market: MarketType | None
    if sep and suffix in MARKET_TYPES:
        path, market = Path(path_s), suffix
    else:
        path = Path(value)
        market = market_from_path(path)
    if market is None:
        raise ValueError(f"{value!r}: say which market it is, PATH:spot, PATH:usdm or PATH:cm")
    return path, market


def _ts_to_ns(ts: int) -> int:
    """Receive timestamps: ns (2024 files), us (2023 ``.dat.gz``) or ms."""
    if ts >= 10**17:
        return ts
    if ts >= 10**14:
        return ts * 1_000
    return ts * 1_000_000


def _stream_end(body: str) -> int:
    """Where the stream name of a ``{"stream":"..","data":..}`` text ends (-1: not one)."""
    if not body.startswith('{"stream":"') or not body.endswith("}"):
        return -1
    end = body.find('"', 11)
    if end < 0 or not body.startswith(',"data":', end + 1):
        return -1
    return end


@dataclass
class Recording:
    """The stream frames of one recording file, in file order."""

    path: Path
    market: MarketType
    ts_ns: list[int] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)  # lower-cased stream names
    lines: list[str] = field(default_factory=list)  # the recorded combined-stream JSON text
    data_offsets: list[int] = field(default_factory=list)  # where the ``data`` value starts
    skipped: int = 0  # lines that are not stream frames (the REST depth snapshot)

    @classmethod
    def load(cls, path: Path | str, market: MarketType | None = None) -> Recording:
        path = Path(path)
        market = market or market_from_path(path)
        if market is None:
            raise ValueError(f"{path}: cannot tell the market type, pass spot, usdm or cm")
        rec = cls(path, market)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for raw in fh:
                line = raw.rstrip("\r\n")
                if not line:
                    continue
                ts_s, _, body = line.partition(" ")
                if _stream_end(body) < 0:
                    rec.skipped += 1
                else:
                    rec.add(_ts_to_ns(int(ts_s)), body)
        return rec

    def add(self, ts_ns: int, body: str) -> None:
        """Append one ``{"stream":"btcusdt@trade","data":{...}}`` frame received at ``ts_ns``
        (the text is kept, the ``data`` value found)."""
        end = _stream_end(body)
        if end < 0:
            raise ValueError(f"not a combined-stream frame: {body[:80]!r}")
        self.ts_ns.append(ts_ns)
        self.streams.append(body[11:end].lower())
        self.lines.append(body)
        self.data_offsets.append(end + 9)

    def trade_frames(self) -> Iterator[tuple[int, str]]:
        """(receive time ns, ``data`` JSON text) of every ``@trade`` frame, in file order."""
        for ts, stream, line, off in zip(
            self.ts_ns, self.streams, self.lines, self.data_offsets, strict=True
        ):
            if stream.endswith("@trade"):
                yield ts, line[off:-1]

    def __len__(self) -> int:
        return len(self.lines)


def load_recordings(
    recordings: Iterable[Recording | Path | str | tuple[Path | str, MarketType | None]], who: str
) -> list[Recording]:
    """Recordings given as loaded ones, paths, or (path, market) pairs; at least one."""
    recs = [
        r
        if isinstance(r, Recording)
        else Recording.load(r[0], r[1])
        if isinstance(r, tuple)
        else Recording.load(r)
        for r in recordings
    ]
    if not recs:
        raise ValueError(f"{who} needs at least one recording")
    return recs
