"""Binance's REST endpoints in the replay (the part of
:class:`~feeder.replay.binance.ReplayServer` that answers HTTP).

* ``ping``, ``time`` (the replay's exchange clock: the trade time of the last trade reached);
* ``trades`` and ``historicalTrades`` answered from the recording, limited to the trades the
  replay has reached so far (:meth:`BinanceRest.released_trades`); futures omit insurance-fund
  and ADL rows as Binance does;
* ``openInterest?symbol=`` from the supplied :class:`~feeder.replay.binance_inputs.
  OpenInterestPoint` series: the last point at or before the exchange clock, never a later one;
* ``premiumIndex[?symbol=]``: the recording's ``@markPrice@1s`` frames where it has them, else
  stand-ins from the last recorded trade price (index and settle price the same, funding 0);
* :class:`~feeder.replay.binance_inputs.RestFault` answers first, when armed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from aiohttp import web

from feeder.replay.binance_api import (
    ENDPOINTS,
    RECENT_DEFAULT_LIMIT,
    RECENT_MAX_LIMIT,
    BinanceError,
    int_query,
    refuse_unread,
    rest_row,
)
from feeder.replay.binance_inputs import OpenInterestPoint, RestFault
from feeder.replay.recording import MarketType
from feeder.replay.server import LoopbackServer, dec_text, dumps, json_text, reached_time_ms

log = logging.getLogger("feeder.replay.binance")


@dataclass
class _SymbolTrades:
    """One symbol's recorded trades as Binance's REST ``trades``/``historicalTrades`` rows."""

    frame_index: list[int] = field(default_factory=list)  # timeline index of each trade frame
    ids: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)  # JSON object text, Binance REST format
    prices: list[str] = field(default_factory=list)  # the trade price text (mark stand-in)
    market_only: list[bool] = field(default_factory=list)  # X absent or MARKET
    ids_sorted: bool = True


class BinanceRest(LoopbackServer):
    """The REST side of the Binance replay over the timeline built by the stream side."""

    open_interest: list[OpenInterestPoint]
    open_interest_served: list[tuple[MarketType, dict[str, Any]]]
    mark_prices_served: list[tuple[MarketType, dict[str, Any]]]
    rest_faults_served: list[str]
    _rest_faults: list[list[Any]]
    _exchange_info: dict[MarketType, bytes]
    _symbols: dict[MarketType, dict[str, dict[str, Any]]]
    # the timeline (BinanceStreams._build_timeline)
    _market: list[MarketType]
    _stream: list[str]
    _line: list[str]
    _data_off: list[int]
    _alt_key: dict[int, tuple[MarketType, str]]
    _is_trade: list[bool]

    def _build_open_interest(self) -> None:
        self._oi: dict[tuple[MarketType, str], tuple[list[int], list[str]]] = {}
        for point in self.open_interest:  # sorted by (market, symbol, time)
            times, values = self._oi.setdefault((point.market, point.symbol), ([], []))
            if times and times[-1] == point.time_ms:
                values[-1] = point.open_interest  # the later one of equal times wins
            else:
                times.append(point.time_ms)
                values.append(point.open_interest)
        # recorded mark prices (``@markPrice@1s``, 2023 USD-M recordings), else trade prices
        self._marks: dict[tuple[MarketType, str], tuple[list[int], list[dict[str, Any]]]] = {}
        for i, stream in enumerate(self._stream):
            if "@markprice" in stream and i not in self._alt_key:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    d = json.loads(self._line[i][self._data_off[i] : -1])
                    frames, data = self._marks.setdefault((self._market[i], str(d["s"])), ([], []))
                    frames.append(i)
                    data.append(d)

    def _build_rest_trades(self) -> None:
        self._trades: dict[tuple[MarketType, str], _SymbolTrades] = {}
        for i, is_trade in enumerate(self._is_trade):
            if not is_trade:
                continue
            market, line = self._market[i], self._line[i]
            d = json.loads(line[self._data_off[i] : -1])
            symbol = str(d["s"])
            info = self._symbols[market].get(symbol, {})
            contract_size = str(info["contractSize"]) if "contractSize" in info else None
            st = self._trades.setdefault((market, symbol), _SymbolTrades())
            tid = int(d["t"])
            if st.ids and tid < st.ids[-1]:
                st.ids_sorted = False
            st.frame_index.append(i)
            st.ids.append(tid)
            st.times.append(int(d["T"]))
            st.rows.append(rest_row(market, d, contract_size))
            st.prices.append(str(d["p"]))
            st.market_only.append(d.get("X", "MARKET") == "MARKET")

    def released_trades(self, market: MarketType, symbol: str) -> int:
        """How many of the symbol's recorded trades REST may return now: those whose frames the
        replay has reached (sent, or dispatched while a client was away)."""
        st = self._trades.get((market, symbol))
        if st is None:
            return 0
        return bisect_left(st.frame_index, self._cursor)

    def recorded_trade_ids(self, market: MarketType, symbol: str) -> list[int]:
        st = self._trades.get((market, symbol))
        return list(st.ids) if st else []

    def add_rest_fault(self, fault: RestFault) -> None:
        """Fail the next ``fault.times`` matching REST requests (see :class:`RestFault`)."""
        self._rest_faults.append([fault, fault.times])

    def _rest_fault(
        self, request: web.Request, market: MarketType, endpoint: str
    ) -> RestFault | None:
        for entry in self._rest_faults:
            fault, left = entry
            if left > 0 and fault.endpoint == endpoint and fault.market in (None, market):
                entry[1] = left - 1
                self.rest_faults_served.append(f"{request.method} {request.path_qs}")
                return cast(RestFault, fault)
        return None

    def _rest(self, request: web.Request, market: MarketType, endpoint: str) -> web.Response:
        q = request.query
        fault = self._rest_fault(request, market, endpoint)
        if fault is not None:
            return fault.response()
        if endpoint == "ping":
            return web.json_response({})
        if endpoint == "time":
            return web.json_response({"serverTime": self.server_time_ms()})
        if endpoint == "exchangeInfo":
            return web.Response(body=self._exchange_info[market], content_type="application/json")
        if endpoint in ("trades", "historicalTrades"):
            allowed = {"symbol", "limit"}
            if endpoint == "historicalTrades":
                allowed.add("fromId")
            return self._rest_trades(market, endpoint, q, allowed)
        if endpoint == "openInterest" and market != "spot":
            return self._rest_open_interest(market, q)
        if endpoint == "premiumIndex" and market != "spot":
            return self._rest_premium_index(market, q)
        if endpoint == "aggTrades":
            raise BinanceError(
                400,
                -1000,
                "replay server: aggTrades are not recorded (raw @trade only); use "
                f"fetchTradesMethod={ENDPOINTS[market].fetch_trades_method}",
            )
        raise BinanceError(404, -1000, f"replay server: {request.path} is not served")

    def _rest_trades(
        self, market: MarketType, endpoint: str, q: Any, allowed: set[str]
    ) -> web.Response:
        refuse_unread(q, allowed)
        symbol = q.get("symbol", "")
        if not symbol:
            raise BinanceError(
                400,
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        if symbol not in self._symbols[market]:
            raise BinanceError(400, -1121, "Invalid symbol.")
        spec = ENDPOINTS[market]
        if endpoint == "historicalTrades":
            default, most = spec.historical_default_limit, spec.historical_max_limit
        else:
            default, most = RECENT_DEFAULT_LIMIT, RECENT_MAX_LIMIT
        limit = int_query(q, "limit", default)
        if limit < 1:
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'limit'.")
        limit = min(limit, most)
        st = self._trades.get((market, symbol))
        if st is None:
            return json_text("[]")
        released = self.released_trades(market, symbol)
        futures = market != "spot"  # futures REST omits insurance-fund/ADL trades
        from_id = int_query(q, "fromId", None) if "fromId" in q else None
        if from_id is not None:
            if st.ids_sorted:
                start = bisect_left(st.ids, from_id, 0, released)
                idx = range(start, released)
            else:
                idx = range(0, released)
            picked: list[int] = []
            for i in idx:
                if st.ids[i] >= from_id and (not futures or st.market_only[i]):
                    picked.append(i)
                    if len(picked) >= limit:
                        break
        else:
            picked = []
            for i in range(released - 1, -1, -1):
                if not futures or st.market_only[i]:
                    picked.append(i)
                    if len(picked) >= limit:
                        break
            picked.reverse()
        body = "[" + ",".join(st.rows[i] for i in picked) + "]"
        return json_text(body)

    def _symbol_param(self, market: MarketType, q: Any, allowed: set[str]) -> str | None:
        refuse_unread(q, allowed)
        symbol = q.get("symbol") or None
        if symbol is not None and symbol not in self._symbols[market]:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return cast(str | None, symbol)

    def open_interest_at(self, market: MarketType, symbol: str) -> tuple[int, str] | None:
        """The supplied point ``openInterest`` serves now: the last one at or before the
        replay's exchange clock (:meth:`server_time_ms`); None before the first one."""
        series = self._oi.get((market, symbol))
        if series is None:
            return None
        times, values = series
        k = bisect_right(times, self.server_time_ms())
        return (times[k - 1], values[k - 1]) if k else None

    def _rest_open_interest(self, market: MarketType, q: Any) -> web.Response:
        """``GET openInterest?symbol=``: USD-M ``{"openInterest","symbol","time"}``, COIN-M
        ``{"symbol","pair","openInterest","contractType","time"}``, from the supplied series."""
        symbol = self._symbol_param(market, q, {"symbol"})
        if symbol is None:
            raise BinanceError(
                400,
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        point = self.open_interest_at(market, symbol)
        if point is None:
            # Binance always has a value; the replay only has what the caller supplied
            what = (
                "no open interest was supplied"
                if (market, symbol) not in self._oi
                else (f"the first supplied open interest is later than {self.server_time_ms()}")
            )
            raise BinanceError(400, -1000, f"replay server: {what} for {symbol}")
        t, value = point
        body: dict[str, Any]
        if market == "usdm":
            body = {"openInterest": value, "symbol": symbol, "time": t}
        else:
            info = self._symbols[market].get(symbol, {})
            body = {
                "symbol": symbol,
                "pair": info.get("pair", symbol.split("_", 1)[0]),
                "openInterest": value,
                "contractType": info.get("contractType", ""),
                "time": t,
            }
        self.open_interest_served.append((market, body))
        return json_text(dumps(body))

    def mark_price_at(self, market: MarketType, symbol: str) -> dict[str, str | int] | None:
        """``premiumIndex`` values now: the last recorded ``@markPrice`` frame the replay reached,
        else stand-ins from the last recorded trade price (the first one before any is reached).
        None for a symbol with neither."""
        cursor = self._cursor
        marks = self._marks.get((market, symbol))
        if marks is not None:
            k = bisect_left(marks[0], cursor)
            d = marks[1][k - 1 if k else 0]
            return {
                "markPrice": str(d["p"]),
                "indexPrice": str(d.get("i", d["p"])),
                "estimatedSettlePrice": str(d.get("P", d["p"])),
                "lastFundingRate": str(d.get("r", "0.00000000")),
                "nextFundingTime": int(d.get("T", 0)),
            }
        st = self._trades.get((market, symbol))
        if st is None or not st.prices:
            return None
        k = bisect_left(st.frame_index, cursor)
        price = dec_text(Decimal(st.prices[k - 1 if k else 0]), 8)
        eight_hours = 8 * 3600 * 1000
        next_funding = (self.server_time_ms() // eight_hours + 1) * eight_hours
        # not recorded: index and settle price are the mark stand-in, the funding rate zero
        return {
            "markPrice": price,
            "indexPrice": price,
            "estimatedSettlePrice": price,
            "lastFundingRate": "0.00000000",
            "nextFundingTime": next_funding,
        }

    def _rest_premium_index(self, market: MarketType, q: Any) -> web.Response:
        """``GET premiumIndex[?symbol=]`` (mark price and funding): USD-M an object for a
        symbol, else a list; COIN-M always a list (``symbol`` or ``pair`` filter)."""
        allowed = {"symbol"} if market == "usdm" else {"symbol", "pair"}
        symbol = self._symbol_param(market, q, allowed)
        pair = q.get("pair") or None
        known = sorted({s for m, s in (*self._trades, *self._marks) if m == market})
        wanted = [symbol] if symbol is not None else known
        now = self.server_time_ms()
        rows = []
        for sym in wanted:
            info = self._symbols[market].get(sym, {})
            if pair is not None and info.get("pair") != pair:
                continue
            mark = self.mark_price_at(market, sym)
            if mark is None:
                if symbol is not None:
                    raise BinanceError(400, -1000, f"replay server: no price recorded for {sym}")
                continue
            row: dict[str, Any] = {"symbol": sym}
            if market == "cm":
                row["pair"] = info.get("pair", sym.split("_", 1)[0])
            row |= {
                k: mark[k]
                for k in ("markPrice", "indexPrice", "estimatedSettlePrice", "lastFundingRate")
            }
            row |= {
                "interestRate": "0.00010000",
                "nextFundingTime": mark["nextFundingTime"],
                "time": now,
            }
            rows.append(row)
            self.mark_prices_served.append((market, row))
        body: Any = rows[0] if market == "usdm" and symbol is not None else rows
        return json_text(dumps(body))

    def server_time_ms(self) -> int:
        """``/time``: the trade time of the last trade the replay reached (recorded clock)."""
        series = [(st.frame_index, st.times) for st in self._trades.values()]
        return reached_time_ms(series, self._cursor)
