"""Trade tapes for the paper exchange (:mod:`feeder.replay.paper`): one market's trades from a
recording or the synthetic scenario, moved in time (:func:`shift` to a coming candle boundary,
:func:`next_start_ms`) and turned back into in-memory recordings the replay streams
(:func:`live_recordings`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from feeder.replay.recording import MarketType, Recording
from feeder.replay.server import dumps


def num_text(x: float) -> str:
    """Shortest text that reads back as the same float, never in exponent form."""
    return np.format_float_positional(float(x), trim="-")


@dataclass(frozen=True)
class Tape:
    """One market's trades in time order (Binance's fields; COIN-M quantity in contracts)."""

    market: MarketType
    symbol: str  # as Binance names it: BTCUSDT, BTCUSD_PERP
    ms: np.ndarray  # trade time, epoch ms (int64)
    ids: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    buyer_maker: np.ndarray

    def __len__(self) -> int:
        return len(self.ms)

    def shifted(self, offset_ms: int) -> Tape:
        return replace(self, ms=self.ms + np.int64(offset_ms))

    def split(self, t_ms: int) -> int:
        """Index of the first trade at or after ``t_ms``."""
        return int(np.searchsorted(self.ms, t_ms, side="left"))

    def frame(self, i: int) -> str:
        """The ``<symbol>@trade`` combined-stream line of trade ``i``."""
        t = int(self.ms[i])
        data = {
            "e": "trade",
            "E": t,
            "T": t,
            "s": self.symbol,
            "t": int(self.ids[i]),
            "p": num_text(self.price[i]),
            "q": num_text(self.qty[i]),
            "m": bool(self.buyer_maker[i]),
        }
        if self.market == "spot":
            data["M"] = True
        else:
            data["X"] = "MARKET"
        return dumps({"stream": f"{self.symbol.lower()}@trade", "data": data})


MARKET_OF_ARCHIVE: dict[str, MarketType] = {"spot": "spot", "um": "usdm", "cm": "cm"}


def tapes_from_scenario(sc: Any) -> list[Tape]:
    """The synthetic scenario's trades (``feeder.tools.synthetic.simulate``) as tapes."""
    from feeder.tools.synthetic import simulate

    parts: dict[tuple[str, str], list[Any]] = {}
    for day in simulate(sc):
        parts.setdefault((day.market_type, day.symbol), []).append(day)
    out = []
    for (mt, symbol), days in parts.items():
        cat = {
            k: np.concatenate([getattr(d, k) for d in days])
            for k in ("ms", "ids", "price", "qty", "buyer_maker")
        }
        out.append(
            Tape(
                MARKET_OF_ARCHIVE[mt],
                symbol,
                cat["ms"].astype(np.int64),
                cat["ids"],
                cat["price"],
                cat["qty"],
                cat["buyer_maker"].astype(bool),
            )
        )
    return out


def tapes_from_recordings(recordings: Iterable[Recording]) -> list[Tape]:
    """The plain market trades (``X`` absent or MARKET, quantity > 0) of recorded ``@trade``
    frames, per market and symbol, in exchange-time order."""
    rows: dict[tuple[MarketType, str], list[tuple[int, int, float, float, bool]]] = {}
    for rec in recordings:
        for _ts, text in rec.trade_frames():
            d = json.loads(text)
            if d.get("X", "MARKET") != "MARKET" or float(d["q"]) <= 0:
                continue
            rows.setdefault((rec.market, str(d["s"])), []).append(
                (int(d["T"]), int(d["t"]), float(d["p"]), float(d["q"]), bool(d["m"]))
            )
    out = []
    for (market, symbol), r in rows.items():
        r.sort()
        a = np.array(r, dtype=object)
        out.append(
            Tape(
                market,
                symbol,
                a[:, 0].astype(np.int64),
                a[:, 1].astype(np.int64),
                a[:, 2].astype(float),
                a[:, 3].astype(float),
                a[:, 4].astype(bool),
            )
        )
    return out


def next_start_ms(lead_s: float, step_s: int) -> int:
    """The first multiple of ``step_s`` (a candle boundary) at least ``lead_s`` from now, ms."""
    t = time.time() + lead_s
    return int(-(-t // step_s) * step_s) * 1000


def shift(tapes: list[Tape], from_ms: int, to_ms: int) -> list[Tape]:
    """Move every tape by ``to_ms - from_ms`` (exchange time ``from_ms`` becomes ``to_ms``)."""
    return [t.shifted(to_ms - from_ms) for t in tapes]


def live_recordings(tapes: Iterable[Tape], live_from_ms: int) -> list[Recording]:
    """One in-memory recording per market of the trades from ``live_from_ms`` on; each frame's
    receive time is its trade time (sent at that wall-clock time by a wall-clock replay)."""
    per: dict[MarketType, list[tuple[int, str, int]]] = {}
    for tape in tapes:
        for i in range(tape.split(live_from_ms), len(tape)):
            per.setdefault(tape.market, []).append((int(tape.ms[i]), tape.frame(i), i))
    out = []
    for market, frames in per.items():
        frames.sort(key=lambda f: f[0])
        rec = Recording(Path(f"<paper {market}>"), market)
        for ms, line, _ in frames:
            rec.add(ms * 1_000_000, line)
        out.append(rec)
    return out
