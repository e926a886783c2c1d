"""What a caller adds to a Binance replay: faults in the stream (:class:`Fault`) and in REST
answers (:class:`RestFault`), and the open interest (:class:`OpenInterestPoint`) and
liquidations (:class:`Liquidation`) the recordings do not have, with their file loaders (the
CLI's ``--open-interest FILE.csv`` and ``--liquidations FILE.jsonl``)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, cast

from aiohttp import web

from feeder.replay.binance_api import BinanceError
from feeder.replay.recording import MarketType
from feeder.replay.server import dec_text

FaultKind = Literal["garbage", "truncated", "missing_fields", "duplicate", "swap", "disconnect"]
FAULT_KINDS: tuple[str, ...] = (
    "garbage",
    "truncated",
    "missing_fields",
    "duplicate",
    "swap",
    "disconnect",
)


@dataclass(frozen=True)
class Fault:
    """A fault injected into the live stream (REST answers are never affected).

    ``at`` counts recorded ``@trade`` frames from 0, over all markets in replay order, or only
    those of ``stream`` (e.g. ``"btcusdt@trade"``) when given. The fault happens at that frame:

    * ``garbage``: a non-JSON text frame (``garbage_text``) is sent before it;
    * ``truncated``: the first half of the frame's text (invalid JSON) is sent before it;
    * ``missing_fields``: a copy without ``fields`` (default price, quantity, trade id) first;
    * ``duplicate``: the frame is sent twice;
    * ``swap``: the frame and the next trade frame of the same stream change places;
    * ``disconnect``: every client connection is closed just before the frame is sent (it is
      then sent only to clients that have already reconnected and resubscribed).

    The recorded frame itself is always delivered too (except to clients cut off by a disconnect).
    """

    kind: FaultKind
    at: int
    stream: str | None = None
    fields: tuple[str, ...] = ("t", "p", "q")
    garbage_text: str = "this is not JSON"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}, expected one of {FAULT_KINDS}")
        if self.at < 0:
            raise ValueError("Fault.at must be >= 0")


# --------------------------------------------------------------------------------------------
# caller-supplied open interest and liquidations (nothing of either is recorded)


@dataclass(frozen=True)
class OpenInterestPoint:
    """One open-interest value to serve on ``openInterest`` (USD-M ``/fapi/v1``, COIN-M
    ``/dapi/v1``). Supplied by the caller: the recordings carry no open interest.

    ``time_ms`` is the exchange time of the value (Binance's ``time``); the point is served from
    the moment the replay's exchange clock (:meth:`ReplayServer.server_time_ms`) reaches it until
    the next point of the symbol. ``open_interest`` is the decimal text Binance would send: base
    units for USD-M (``"10659.509"`` BTC), contracts for COIN-M (``"1342"`` x 100 USD).
    """

    market: MarketType
    symbol: str  # exchange id: BTCUSDT, BTCUSD_PERP
    time_ms: int
    open_interest: str

    def __post_init__(self) -> None:
        if self.market not in ("usdm", "cm"):
            raise ValueError(f"{self}: open interest exists for usdm and cm markets only")
        object.__setattr__(self, "open_interest", decimal_text(self.open_interest))


@dataclass(frozen=True)
class Liquidation:
    """One ``forceOrder`` event to inject into the websocket timeline, sent on
    ``<symbol>@forceOrder`` and ``!forceOrder@arr`` of its market. Supplied by the caller: the
    recordings carry no liquidation stream.

    Binance's fields: ``side`` ``S`` (``SELL``: a long position was liquidated, a forced sell;
    ``BUY``: a short), ``qty`` ``q`` (base units for USD-M, contracts for COIN-M), ``price``
    ``p``, ``avg_price`` ``ap`` (default ``price``), ``time_ms`` ``T`` (trade time),
    ``event_ms`` ``E`` (default ``time_ms``), ``status`` ``X``, ``last_qty`` ``l`` and
    ``filled_qty`` ``z`` (default ``qty``). COIN-M events also carry the pair ``ps`` (from
    exchangeInfo unless given).
    """

    market: MarketType
    symbol: str
    side: Literal["BUY", "SELL"]
    qty: str
    price: str
    time_ms: int
    avg_price: str | None = None
    event_ms: int | None = None
    status: str = "FILLED"
    last_qty: str | None = None
    filled_qty: str | None = None
    order_type: str = "LIMIT"
    time_in_force: str = "IOC"
    pair: str | None = None

    def __post_init__(self) -> None:
        if self.market not in ("usdm", "cm"):
            raise ValueError(f"{self}: liquidation streams exist for usdm and cm markets only")
        if self.side not in ("BUY", "SELL"):
            raise ValueError(f"{self}: side must be BUY or SELL")
        for name in ("qty", "price", "avg_price", "last_qty", "filled_qty"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, decimal_text(value))

    @property
    def stream(self) -> str:
        """The stream name as Binance sends it, e.g. ``btcusdt@forceOrder``."""
        return f"{self.symbol.lower()}@forceOrder"

    def event(self, pair: str | None = None) -> dict[str, Any]:
        """The event in Binance's format and key order."""
        o: dict[str, Any] = {"s": self.symbol}
        if self.market == "cm":
            o["ps"] = self.pair or pair or self.symbol.split("_", 1)[0]
        o |= {
            "S": self.side,
            "o": self.order_type,
            "f": self.time_in_force,
            "q": self.qty,
            "p": self.price,
            "ap": self.avg_price if self.avg_price is not None else self.price,
            "X": self.status,
            "l": self.last_qty if self.last_qty is not None else self.qty,
            "z": self.filled_qty if self.filled_qty is not None else self.qty,
            "T": self.time_ms,
        }
        event_ms = self.event_ms if self.event_ms is not None else self.time_ms
        return {"e": "forceOrder", "E": event_ms, "o": o}

    @classmethod
    def from_event(cls, event: dict[str, Any], market: MarketType | None = None) -> Liquidation:
        """A Binance ``forceOrder`` event (or its combined ``{"stream":..,"data":..}`` form).
        The market defaults to ``cm`` when the order has a pair (``ps``), else ``usdm``."""
        data = event.get("data", event) if "stream" in event else event
        if data.get("e") != "forceOrder" or not isinstance(data.get("o"), dict):
            raise ValueError(f"not a Binance forceOrder event: {event!r}")
        o = data["o"]
        return cls(
            market=market or ("cm" if "ps" in o else "usdm"),
            symbol=str(o["s"]),
            side=o["S"],
            qty=str(o["q"]),
            price=str(o["p"]),
            time_ms=int(o["T"]),
            avg_price=str(o["ap"]) if "ap" in o else None,
            event_ms=int(data["E"]) if "E" in data else None,
            status=str(o.get("X", "FILLED")),
            last_qty=str(o["l"]) if "l" in o else None,
            filled_qty=str(o["z"]) if "z" in o else None,
            order_type=str(o.get("o", "LIMIT")),
            time_in_force=str(o.get("f", "IOC")),
            pair=str(o["ps"]) if "ps" in o else None,
        )


@dataclass(frozen=True)
class RestFault:
    """A REST failure: the next ``times`` requests for ``endpoint`` (e.g. ``"openInterest"``,
    ``"premiumIndex"``) of ``market`` (any when None) get ``status`` and Binance's error JSON
    ``{"code":code,"msg":msg}``, or ``body`` verbatim (as ``text/html``) when given."""

    endpoint: str
    status: int = 500
    code: int = -1001
    msg: str = "Internal error; unable to process your request. Please try again."
    times: int = 1
    market: MarketType | None = None
    body: str | None = None

    def response(self) -> web.Response:
        if self.body is not None:
            return web.Response(status=self.status, text=self.body, content_type="text/html")
        return BinanceError(self.status, self.code, self.msg).response()


def decimal_text(value: str | float | int | Decimal) -> str:
    """Binance's decimal text for a number (``"10659.509"``); text is kept as given."""
    if isinstance(value, str):
        Decimal(value)  # refuse what is not a number
        return value
    return dec_text(Decimal(str(value)))


def load_open_interest_csv(path: Path | str) -> list[OpenInterestPoint]:
    """Open-interest points from a CSV with the header ``market,symbol,time,openInterest``
    (``market`` usdm or cm, ``time`` in ms, ``openInterest`` as Binance sends it)."""
    out = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"market", "symbol", "time", "openInterest"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for row in reader:
            market = row["market"].strip()
            if market not in ("usdm", "cm"):
                raise ValueError(f"{path}: market {market!r}: expected usdm or cm")
            point = OpenInterestPoint(
                cast(MarketType, market),
                row["symbol"].strip(),
                int(row["time"]),
                row["openInterest"].strip(),
            )
            out.append(point)
    return out


def load_liquidations_jsonl(value: Path | str) -> list[Liquidation]:
    """``PATH[:usdm|cm]``: Binance ``forceOrder`` events, one JSON object per line (the event or
    its combined-stream form); without the suffix the market is told by each event's ``ps``."""
    path_s, sep, suffix = str(value).rpartition(":")
    market: MarketType | None = None
    if sep and suffix in ("usdm", "cm"):
        path, market = Path(path_s), cast(MarketType, suffix)
    else:
        path = Path(value)
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(Liquidation.from_event(json.loads(line), market))
    return out
