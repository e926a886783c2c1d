"""The live feeder (real ccxt pro) against Bybit v5, OKX v5 and Coinbase Advanced Trade
protocols on 127.0.0.1.

The websocket and REST protocols are the venues'; the trades are recorded real Binance trades
re-expressed in each venue's format (``feeder.replay.venues``). The import path computes the
reference bars from the same recorded trades (``derived_trades`` CSV), so live bars must equal
them: OKX swap sizes are contracts (x ``ctVal`` 0.01), OKX's websocket aggregates matches of one
taker order (``count``), Bybit linear trade ids are uuids, Coinbase (spot ``BTC-USD`` only)
pushes 250 ms of trades newest first, and the backfill after a disconnect goes by time (Bybit:
recent trades only; OKX: history pages by trade id; Coinbase: pages back by ``until``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import ccxt.pro
import numpy as np
import pandas as pd
import pytest

from feeder.ingest.models import Kind
from feeder.ingest.normalise import MarketSpec
from feeder.ingest.pipeline import DayBarWriter
from feeder.live.backfill import reaches_back
from feeder.live.bars import EventClock
from feeder.live.markets import raw_from_ccxt, split_aggregated, trade_id_int
from feeder.live.runtime import Feeder
from feeder.replay.recording import Recording
from feeder.replay.venues import (
    VenueReplayServer,
    non_loopback_urls,
    venue_ccxt_overrides,
    venue_markets,
)
from feeder.settings import Settings, settings_from_dict
from feeder.stores import BarStore
from feeder.stores.parquet import ParquetStore
from tests.helpers import raw_columns, read_derived_trades

RAW = "hftbacktest/raw"
DERIVED = "hftbacktest/derived_trades"
SOURCES = {  # Binance recording market -> (recording, derived trades of the same session)
    "spot": (f"{RAW}/spot/btcusdt_20240808.gz", "spot_btcusdt_20240808_trades.csv"),
    "usdm": (f"{RAW}/usdm/btcusdt_20240808.gz", "usdm_btcusdt_20240808_trades.csv"),
}
MARKETS = {  # venue -> Binance recording market -> aggr-server market id the feeder derives
    "bybit": {"spot": "BYBIT_SPOT:btcusdt", "usdm": "BYBIT:btcusdt"},
    "okx": {"spot": "OKEX:btc-usdt", "usdm": "OKEX:btc-usdt-swap"},
    "coinbase": {"spot": "COINBASE:btc-usd"},  # spot only, quoted in USD
}
KIND = {"spot": Kind.SPOT, "usdm": Kind.PERP}
SYMBOL = {"spot": "BTC/USDT", "usdm": "BTC/USDT:USDT"}
VENUE_SYMBOL = {"coinbase": {"spot": "BTC/USD"}}


@pytest.fixture(scope="session")
def recordings(market_data: Path) -> dict[str, Recording]:
    return {mt: Recording.load(market_data / raw, mt) for mt, (raw, _csv) in SOURCES.items()}


@pytest.fixture(scope="session")
def imported(market_data: Path, tmp_path_factory: pytest.TempPathFactory) -> ParquetStore:
    """The same recorded trades through the archive import path, under each venue's market id
    (quantities in BTC, as recorded)."""
    store = ParquetStore(tmp_path_factory.mktemp("venues_imported"))
    for venue in MARKETS:
        for mt, market in MARKETS[venue].items():
            csv = SOURCES[mt][1]
            w = DayBarWriter(store, MarketSpec(market, KIND[mt], venue))
            w.add_raw(raw_columns(read_derived_trades(market_data / DERIVED / csv)))
            w.close()
    return store


def _symbol(venue: str, mt: str) -> str:
    return VENUE_SYMBOL.get(venue, SYMBOL)[mt]


def _server(recordings: dict[str, Recording], venue: str, **kw: Any) -> VenueReplayServer:
    """The venue's markets; the clock starts once every one of them has a subscriber."""
    return VenueReplayServer(
        list(recordings.values()), venues=[venue], start_on_subscribe=len(MARKETS[venue]), **kw
    )


def _settings(tmp: Path, venue: str, server: VenueReplayServer | None = None) -> Settings:
    """Bybit or OKX spot + perp, Coinbase spot. With ``server``, the exchanges' URLs and options
    come from the settings (``exchanges[].urls/options``, as a user would configure them), not a
    factory."""
    common: dict[str, Any] = {"open_interest": False, "liquidations": False, "quiet_s": 20.0}
    if server is not None:
        common.update(venue_ccxt_overrides(server, venue))
    kinds = {"spot": "spot", "usdm": "perp"}
    doc: dict[str, Any] = {
        # a coin needs a spot and a perp market: Coinbase (spot only) borrows one it does not
        # collect (the feeder warns about it)
        "coins": {
            "BTC": {"perp": ["BINANCE_FUTURES:btcusdt"]}
            | {kinds[mt]: [market] for mt, market in MARKETS[venue].items()}
        },
        "store": {"parquet_dir": str(tmp / "store")},
        "redis": {"enabled": False},
        "feeder": {
            "exchanges": [
                {"id": venue, "kind": kinds[mt], "symbols": [_symbol(venue, mt)], **common}
                for mt in MARKETS[venue]
            ],
            "spool_dir": str(tmp / "spool"),
            "http_port": 0,
        },
    }
    return settings_from_dict(doc, env=False)


@dataclass
class Run:
    feeder: Feeder
    server: VenueReplayServer
    store: BarStore
    exchanges: list[Any]
    seconds: float


async def _run(
    server: VenueReplayServer,
    settings: Settings,
    store: BarStore,
    timeout: float = 60.0,  # noqa: ASYNC109
    factory: bool = True,
) -> Run:
    """Run the real feeder until the replay is over and every trade it will get has arrived.

    ``factory``: build the exchanges with :func:`venue_ccxt_overrides`, no rate limit and a
    large ccxt trade cache (a replay at full speed outruns the default); else the feeder builds
    them itself from the settings."""

    def make(entry: Any) -> Any:
        cfg = venue_ccxt_overrides(server, entry.id)
        cfg["enableRateLimit"] = False  # the loopback server needs no throttling
        cfg["options"]["tradesLimit"] = 50_000
        return getattr(ccxt.pro, entry.id)(cfg)

    feeder = Feeder(
        settings,
        store=store,
        exchange_factory=make if factory else None,
        clock=EventClock(),
        tick_s=0.05,
        redis=False,
    )
    stop = asyncio.Event()
    t0 = time.perf_counter()
    task = asyncio.create_task(feeder.run(until=stop, install_signals=False))
    deadline = time.monotonic() + timeout
    expected = server.total_trades
    last, still = -1, 0
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if task.done():
            break
        got = feeder.counters["trades_live"] + feeder.counters["trades_backfilled"]
        held = any(
            c.state(m).hold_ms is not None for c in feeder.collectors for m in c.markets.values()
        )
        still = still + 1 if got == last else 0
        last = got
        # all trades in, or (trades lost to a recorded gap) nothing new for a second
        if server.done and not held and (got >= expected or still >= 5):
            break
    seconds = time.perf_counter() - t0
    stop.set()
    await asyncio.wait_for(task, 60)
    return Run(feeder, server, store, list(feeder._exchanges), seconds)


def _bars(store: BarStore, market: str) -> pd.DataFrame:
    return store.read_bars(market, 1_723_000_000, 1_724_000_000, "1s")


def _trades(bars: pd.DataFrame) -> float:
    return float(bars["cbuy"].sum() + bars["csell"].sum())


def _check_loopback(run: Run) -> None:
    assert run.server.unserved == []
    assert len(run.exchanges) == len(MARKETS[run.server.venues[0]])
    for ex in run.exchanges:
        assert non_loopback_urls(ex, run.server) == []  # ccxt cannot reach the real venue


def _venue_import(server: VenueReplayServer, venue: str, tmp: Path) -> ParquetStore:
    """The import path over the venue's own trades (its REST rows: venue trade ids, sizes in
    base), as an archive import of that venue would see them."""
    store = ParquetStore(tmp / "venue_import")
    for mt, market in MARKETS[venue].items():
        book = server.book(venue, mt)
        m = book.market
        rows = [json.loads(r) for r in book.rows]
        ct = float(m.contract_value or 1.0)
        if venue == "bybit":
            qty = [float(r["size"]) for r in rows]
            price = [float(r["price"]) for r in rows]
            sell = [r["side"] == "Sell" for r in rows]
        elif venue == "coinbase":
            qty = [float(r["size"]) for r in rows]
            price = [float(r["price"]) for r in rows]
            sell = [r["side"] == "SELL" for r in rows]
        else:
            qty = [float(r["sz"]) * ct for r in rows]
            price = [float(r["px"]) for r in rows]
            sell = [r["side"] == "sell" for r in rows]
        raw = {
            "ts": np.array(book.times, np.int64),
            "price": np.array(price),
            "qty": np.array(qty),
            "is_buyer_maker": np.array(sell, np.bool_),
            "trade_id": np.array([trade_id_int(i) for i in book.ids], np.int64),
        }
        w = DayBarWriter(store, MarketSpec(market, KIND[mt], venue))
        w.add_raw(raw)
        w.close()
    return store


def _ambiguous_seconds(market_data: Path, mt: str) -> tuple[set[int], set[int]]:
    """Seconds whose first (last) millisecond holds trades at different prices: there only the
    trade order inside the millisecond decides the open (close)."""
    df = read_derived_trades(market_data / DERIVED / SOURCES[mt][1])
    df["sec"] = df["trade_time_ms"] // 1000
    first = df[df["trade_time_ms"] == df.groupby("sec")["trade_time_ms"].transform("min")]
    last = df[df["trade_time_ms"] == df.groupby("sec")["trade_time_ms"].transform("max")]
    amb_open = first.groupby("sec")["price"].nunique()
    amb_close = last.groupby("sec")["price"].nunique()
    return set(amb_open[amb_open > 1].index), set(amb_close[amb_close > 1].index)


def _same_bars(run: Run, imported: ParquetStore, venue: str, market_data: Path, tmp: Path) -> None:
    """Live bars equal the import path's bars of the same trades, exactly (rtol 1e-12).

    Two references: the venue's trades (venue ids) through the import path must match in full;
    the recorded Binance trades (Binance ids) too, except the open (close) of seconds whose
    first (last) millisecond has several prices, when the venue's ids do not follow the trade
    order (Bybit linear: uuids). Bars order same-millisecond trades by trade id."""
    venue_store = _venue_import(run.server, venue, tmp)
    for mt, market in MARKETS[venue].items():
        got, want = _bars(run.store, market), _bars(venue_store, market)
        assert len(got) == len(want) > 300, market
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, obj=market)
        n = len(run.server.book(venue, mt).ids)
        assert _trades(got) == _trades(want) == n, market  # none lost, none twice
        # one covered interval (where it starts depends on when the market's first second closed
        # on the shared replay clock) up to what the event clock had closed at the stop: the last
        # grace_s seconds are written but not covered (a stop cannot tell a finished replay from
        # one cut short, and a partial second is never covered)
        cov = run.store.coverage(market)
        last = int(got["time"].max())
        grace = int(run.feeder.settings.grace_s)
        assert len(cov) == 1 and last - grace - 1 <= cov[0, 1] <= last + 1, (market, cov, last)
        # against the recorded Binance trades through the import path
        ref = _bars(imported, market)
        order_free = [c for c in ref.columns if c not in ("open", "close")]
        pd.testing.assert_frame_equal(
            got[order_free], ref[order_free], check_exact=False, rtol=1e-12
        )
        amb_open, amb_close = _ambiguous_seconds(market_data, mt)
        for col, amb in (("open", amb_open), ("close", amb_close)):
            differs = set(got.loc[got[col].to_numpy() != ref[col].to_numpy(), "time"])
            if (venue, mt) == ("bybit", "usdm"):
                assert differs <= amb, (market, col, sorted(differs - amb)[:5])
            else:  # ids in trade order: the same open and close everywhere
                assert not differs, (market, col, sorted(differs)[:5])


# ---------------------------------------------------------------- (a) live bars


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("venue", ["bybit", "okx", "coinbase"])
def test_live_bars_from_venue_protocol_equal_the_import_bars(
    venue, recordings, imported, market_data, tmp_path
):
    store = ParquetStore(tmp_path / "store")

    async def go() -> Run:
        async with _server(recordings, venue, speed=0) as server:
            return await _run(server, _settings(tmp_path, venue), store)

    run = asyncio.run(go())
    _check_loopback(run)
    _same_bars(run, imported, venue, market_data, tmp_path)
    f = run.feeder
    assert not f.gaps
    assert f.counters["trades_backfilled"] == 0
    assert f.rejects.counts.get("duplicate_id", 0) == 0
    # the venue's wire format was exercised: several trades per push (Bybit: one matching
    # event; OKX: the trades channel aggregates one taker order's matches, ``count`` > 1;
    # Coinbase: 250 ms of trades per push)
    assert run.server.pushes_sent < run.server.trades_sent == run.server.total_trades
    subs = [m for m in run.server.client_messages if "subscribe" in m]
    if venue == "coinbase":
        # public channel: no jwt / api_key in the subscribe message (ccxt signs private only)
        assert [json.loads(m) for m in subs] == [
            {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "market_trades"}
        ]
        # load_markets without keys: currencies (v2) and products (v3), all public
        paths = {r.split("?")[0] for r in run.server.requests if r.startswith("GET /api.")}
        assert paths == {
            "GET /api.coinbase.com/v2/currencies",
            "GET /api.coinbase.com/v2/currencies/crypto",
            "GET /api.coinbase.com/v2/exchange-rates",
            "GET /api.coinbase.com/api/v3/brokerage/market/products",
        }
    elif venue == "bybit":
        assert {json.loads(m)["args"][0] for m in subs} == {"publicTrade.BTCUSDT"}
        assert len(subs) == 2  # /v5/public/spot and /v5/public/linear
    else:
        assert sorted(json.loads(m)["args"][0]["instId"] for m in subs) == [
            "BTC-USDT",
            "BTC-USDT-SWAP",
        ]
        # OKX swap sizes are contracts: the feeder converted them with ctVal (0.01 BTC)
        perp = next(c for c in f.collectors if c.entry.kind is Kind.PERP)
        assert next(iter(perp.markets.values())).spec.base_per_contract == 0.01


# ---------------------------------------------------------------- (b) disconnect + backfill


def _gap_intervals(store: BarStore, market: str) -> np.ndarray:
    g = store.gaps(market)
    return np.array(list(zip(g["start"], g["end"], strict=True)), np.int64).reshape(-1, 2)


def _in(iv: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.array([bool(((iv[:, 0] <= x) & (x < iv[:, 1])).any()) for x in t], np.bool_)


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("venue", ["bybit", "okx", "coinbase"])
def test_forced_disconnect_then_backfill_by_time_loses_nothing_silently(
    venue, recordings, imported, market_data, tmp_path
):
    """A forced disconnect of every client in the middle of the session, at 25x the recorded
    pace (Coinbase 40x): the feeder reconnects and backfills the outage over REST by time.

    OKX pages back through ``history-trades`` by trade id: nothing lost, nothing twice, no gap.
    Coinbase's public ticker endpoint answers the newest <= 1000 trades in [start, end] (whole
    seconds) and reaches back by time: the collector pages back by ``until`` (the outage and
    the trades after it up to "now" are more than one page): nothing lost, nothing twice, no
    gap. Bybit's public REST has only the most recent trades (spot 60, linear 1000): what it cannot
    return must be recorded as a gap with bounds (and left out of coverage); every second
    outside the gaps equals the import, and no second anywhere has a trade twice."""
    store = ParquetStore(tmp_path / "store")
    served = [recordings[mt] for mt in MARKETS[venue]]
    middle = sum(s.endswith("@trade") for r in served for s in r.streams) // 2

    # Coinbase: 40x, so that [outage, reconnect] surely holds more than one REST page (1000
    # trades: >= 0.75 s of wall-clock outage; backoff + settle take >= 1.25 s)
    speed = 40 if venue == "coinbase" else 25

    async def go() -> Run:
        async with _server(recordings, venue, speed=speed, disconnect_at=[middle]) as server:
            # Bybit, Coinbase: the feeder builds its exchanges itself from the settings'
            # urls/options (ccxt's rate limit on); OKX: the test factory (its many history pages
            # at 25x would take ~10 s of rate limit)
            own = venue != "okx"
            settings = _settings(tmp_path, venue, server if own else None)
            return await _run(server, settings, store, factory=not own)

    run = asyncio.run(go())
    _check_loopback(run)
    f, server = run.feeder, run.server
    assert server.disconnects == 1
    assert all(c.stats.reconnects >= 1 for c in f.collectors)
    # the disconnect: the last trade each market got before it (all pushes before it were sent)
    slot = min(server.disconnect_slots)
    if venue == "okx":
        assert f.counters["trades_backfilled"] > 0
        assert not f.gaps
        _same_bars(run, imported, venue, market_data, tmp_path)
        pages = [r for r in server.requests if "/market/history-trades" in r]
        assert any("after=" in r for r in pages)  # paged back by trade id
        return
    if venue == "coinbase":
        assert f.counters["trades_backfilled"] > 0
        assert not f.gaps
        _same_bars(run, imported, venue, market_data, tmp_path)
        pages = [
            parse_qs(urlsplit(r.split(" ", 1)[1]).query)
            for r in server.requests
            if r.split("?")[0].endswith("/market/products/BTC-USD/ticker")
        ]
        # one backfill, paged back: same start (the outage's second), ``end`` moving back
        assert len(pages) >= 2, pages
        assert {p["start"][0] for p in pages} == {
            str(
                server.book(venue, "spot").times[server.book(venue, "spot").released(slot) - 1]
                // 1000
            )
        }
        ends = [int(p["end"][0]) for p in pages]
        assert ends == sorted(ends, reverse=True) and len(set(ends)) == len(ends), ends
        assert all(p["limit"] == ["1000"] for p in pages)
        # the resubscription got a snapshot of the most recent trades (the first subscription
        # none: nothing was released yet)
        assert server.snapshots_sent == 1
        return
    # Bybit: recent trades only. Reference: the import path over the venue's trades (Bybit
    # linear ids are uuids: same-millisecond order follows them, see ``_same_bars``)
    assert any("/v5/market/recent-trade" in r for r in server.requests)
    reference = _venue_import(server, venue, tmp_path)
    for mt, market in MARKETS[venue].items():
        got, want = _bars(store, market), _bars(reference, market)
        gaps = _gap_intervals(store, market)
        book = server.book(venue, mt)
        before = book.released(slot)
        lost_from = book.times[before - 1] // 1000
        merged = want.merge(got, on="time", how="left", suffixes=("", "_live")).fillna(0.0)
        missing = (merged["cbuy"] + merged["csell"]) - (merged["cbuy_live"] + merged["csell_live"])
        # nothing twice, anywhere: no live second has more trades or volume than the import
        assert set(got["time"]) <= set(want["time"]), market
        assert (missing >= 0).all(), market
        assert (merged["vbuy_live"] <= merged["vbuy"] * (1 + 1e-12) + 1e-9).all(), market
        assert (merged["vsell_live"] <= merged["vsell"] * (1 + 1e-12) + 1e-9).all(), market
        # nothing lost silently: every second short of trades is inside a recorded gap
        short = merged.loc[missing > 0, "time"].to_numpy(np.int64)
        assert _in(gaps, short).all(), (market, short[~_in(gaps, short)][:5], gaps)
        # outside the gaps the live bars equal the import exactly
        outside = ~_in(gaps, got["time"].to_numpy(np.int64))
        w = want[~_in(gaps, want["time"].to_numpy(np.int64))].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            got[outside].reset_index(drop=True), w, check_exact=False, rtol=1e-12
        )
        if len(gaps):
            # the gap starts at the second of the last trade before the outage and is not
            # covered; coverage resumes after it
            assert gaps[0, 0] == lost_from, (market, gaps, lost_from)
            cov = store.coverage(market)
            for s, e in gaps:
                assert not ((cov[:, 0] < e) & (cov[:, 1] > s)).any(), (market, cov, gaps)
    # Bybit spot's REST has the last 60 trades: an outage of >= 1.25 s (backoff + settle) at
    # 25x, 30+ recorded seconds at ~28 trades/s, cannot be filled from it: a gap must be
    # recorded, and trades are missing
    spot = MARKETS[venue]["spot"]
    assert len(_gap_intervals(store, spot)) >= 1
    assert _trades(_bars(store, spot)) < _trades(_bars(reference, spot))
    assert sum(c.stats.unfilled_gaps for c in f.collectors) == len(f.gaps) >= 1


# ---------------------------------------------------------------- protocol details


@pytest.mark.shared
def test_venue_protocol_replies_and_unserved_paths(recordings):
    """Ping/pong and subscribe replies in each venue's format; unknown topics and paths get a
    clear error naming them."""

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with VenueReplayServer(list(recordings.values()), start_on_subscribe=None) as s:
            async with aiohttp.ClientSession() as http:
                ws_url = "ws" + s.url[4:]
                async with http.ws_connect(f"{ws_url}/stream.bybit.com/v5/public/linear") as ws:
                    await ws.send_str('{"req_id":"7","op":"ping"}')
                    out["bybit_pong"] = json.loads(await ws.receive_str())
                    for rid, topic in (("8", "publicTrade.BTCUSDT"), ("9", "orderbook.1.BTCUSDT")):
                        sub = {"req_id": rid, "op": "subscribe", "args": [topic]}
                        await ws.send_str(json.dumps(sub))
                        out[f"bybit_{rid}"] = json.loads(await ws.receive_str())
                async with http.ws_connect(f"{ws_url}/ws.okx.com/ws/v5/public") as ws:
                    await ws.send_str("ping")
                    out["okx_pong"] = await ws.receive_str()
                    args = [
                        {"channel": "trades", "instId": "BTC-USDT-SWAP"},
                        {"channel": "books", "instId": "BTC-USDT"},
                    ]
                    await ws.send_str(json.dumps({"id": "1", "op": "subscribe", "args": args}))
                    out["okx_sub"] = [json.loads(await ws.receive_str()) for _ in range(2)]
                books = f"{s.url}/www.okx.com/api/v5/market/books?instId=BTC-USDT"
                async with http.get(books) as r:
                    out["okx_404"] = (r.status, await r.json())
            ex = ccxt.pro.bybit({**venue_ccxt_overrides(s, "bybit"), "enableRateLimit": False})
            try:
                await ex.load_markets()
                with pytest.raises(ccxt.BaseError) as err:
                    await ex.fetch_order_book("BTC/USDT")
                out["ccxt_error"] = str(err.value)
                # before the replay starts REST has no trades yet
                out["rest_empty"] = await ex.fetch_trades("BTC/USDT:USDT")
            finally:
                await ex.close()
            out["unserved"] = list(s.unserved)
        return out

    out = asyncio.run(go())
    pong = out["bybit_pong"]
    assert pong["success"] is True and pong["ret_msg"] == "pong" and pong["op"] == "ping"
    assert pong["req_id"] == "7" and pong["conn_id"]
    sub, bad = out["bybit_8"], out["bybit_9"]
    assert (sub["success"], sub["ret_msg"], sub["op"], sub["req_id"]) == (
        True,
        "",
        "subscribe",
        "8",
    )
    assert bad["success"] is False and "orderbook.1.BTCUSDT" in bad["ret_msg"]
    assert out["okx_pong"] == "pong"
    ok, bad = out["okx_sub"]
    assert ok["event"] == "subscribe"
    assert ok["arg"] == {"channel": "trades", "instId": "BTC-USDT-SWAP"}
    assert ok["id"] == "1" and ok["connId"]
    assert bad["event"] == "error" and bad["code"] == "60018" and "books" in bad["msg"]
    status, body = out["okx_404"]
    assert status == 404 and "/www.okx.com/api/v5/market/books" in body["msg"]
    assert "v5/market/orderbook" in out["ccxt_error"] and "is not served" in out["ccxt_error"]
    assert out["rest_empty"] == []
    assert any("/v5/market/orderbook" in u for u in out["unserved"])


@pytest.mark.shared
def test_venue_trades_are_the_recorded_binance_trades(recordings, market_data):
    """Every served trade is one recorded Binance trade: same time, price, taker side and
    quantity (OKX swap: contracts x 0.01; Coinbase: spot only, RFC 3339 times, BUY/SELL)."""
    server = VenueReplayServer(list(recordings.values()))
    for mt, (_raw, csv) in SOURCES.items():
        df = read_derived_trades(market_data / DERIVED / csv)
        for venue in [v for v in MARKETS if mt in MARKETS[v]]:
            book = server.book(venue, mt)
            assert book.binance_ids == df["trade_id"].tolist()
            rows = [json.loads(r) for r in book.rows]
            m = venue_markets(venue, "BTCUSDT")[mt]
            if venue == "bybit":
                qty = np.array([float(r["size"]) for r in rows])
                price = np.array([float(r["price"]) for r in rows])
                sell = np.array([r["side"] == "Sell" for r in rows])
                ts = np.array([int(r["time"]) for r in rows])
            elif venue == "coinbase":
                qty = np.array([float(r["size"]) for r in rows])
                price = np.array([float(r["price"]) for r in rows])
                sell = np.array([r["side"] == "SELL" for r in rows])
                ts = np.array([pd.Timestamp(r["time"]).value // 10**6 for r in rows])
                ids = np.array([int(r["trade_id"]) for r in rows])
                assert (np.diff(ids) == 1).all()  # consecutive per product, in trade order
                assert [json.loads(w) for w in book.ws_rows] == [
                    {k: r[k] for k in ("trade_id", "product_id", "price", "size", "side", "time")}
                    for r in rows
                ]
            else:
                ct = float(m.contract_value or 1.0)
                qty = np.array([float(r["sz"]) for r in rows]) * ct
                price = np.array([float(r["px"]) for r in rows])
                sell = np.array([r["side"] == "sell" for r in rows])
                ts = np.array([int(r["ts"]) for r in rows])
                ids = np.array([int(r["tradeId"]) for r in rows])
                assert (np.diff(ids) == 1).all()  # OKX ids: consecutive per instrument
            np.testing.assert_allclose(qty, df["qty"].to_numpy(), rtol=1e-12)
            np.testing.assert_array_equal(price, df["price"].to_numpy())
            np.testing.assert_array_equal(sell, (df["is_buyer_maker"].str.lower() == "true"))
            np.testing.assert_array_equal(ts, df["trade_time_ms"].to_numpy())


@pytest.mark.shared
def test_coinbase_protocol_replies_and_rest_window(recordings):
    """Coinbase Advanced Trade as ccxt uses it without keys: ``subscriptions`` replies,
    ``market_trades`` pushes (250 ms, newest first, ``sequence_num`` per connection), errors
    naming what is not served; the public ticker endpoint answers the newest ``limit`` (<= 1000)
    trades in [start, end] (UNIX seconds), newest first; ccxt parses BUY/SELL as the taker's
    side."""
    sub = {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "market_trades"}

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with VenueReplayServer(
            [recordings["spot"]], venues=["coinbase"], start_on_subscribe=None
        ) as s:
            book = s.book("coinbase", "spot")
            async with aiohttp.ClientSession() as http:
                ws_url = "ws" + s.url[4:] + "/advanced-trade-ws.coinbase.com"
                async with http.ws_connect(ws_url) as ws:
                    await ws.send_str(json.dumps({**sub, "channel": "level2"}))
                    out["bad"] = json.loads(await ws.receive_str())
                    await ws.send_str(json.dumps(sub))
                    out["sub"] = json.loads(await ws.receive_str())  # nothing released: no snapshot
                    s.start_replay()
                    out["pushes"] = [json.loads(await ws.receive_str()) for _ in range(3)]
                    await ws.send_str(json.dumps({**sub, "type": "unsubscribe"}))
                    while (msg := json.loads(await ws.receive_str()))["channel"] != "subscriptions":
                        pass
                    out["unsub"] = msg
                await s.wait_done()
                rest = f"{s.url}/api.coinbase.com/api/v3/brokerage/market/products/BTC-USD/ticker"
                t = book.times
                mid_s = t[len(t) // 2] // 1000
                for name, q in (
                    ("window", f"start={mid_s}&end={mid_s + 1}&limit=1000"),
                    ("newest", "limit=5000"),
                    ("no_limit", f"start={mid_s}"),
                ):
                    async with http.get(f"{rest}?{q}") as r:
                        out[name] = (r.status, await r.json())
            ex = ccxt.pro.coinbase(
                {**venue_ccxt_overrides(s, "coinbase"), "enableRateLimit": False}
            )
            try:
                out["ccxt"] = await ex.fetch_trades(
                    "BTC/USD", since=mid_s * 1000, limit=1000, params={"until": (mid_s + 1) * 1000}
                )
                with pytest.raises(ccxt.BaseError) as err:
                    await ex.fetch_order_book("BTC/USD")
                out["ccxt_error"] = str(err.value)
            finally:
                await ex.close()
            out["mid_s"], out["times"], out["ids"] = mid_s, list(t), list(book.ids)
        return out

    out = asyncio.run(go())
    assert out["bad"]["type"] == "error" and "level2" in out["bad"]["message"]
    assert out["sub"]["channel"] == "subscriptions" and out["sub"]["sequence_num"] == 0
    assert out["sub"]["events"] == [{"subscriptions": {"market_trades": ["BTC-USD"]}}]
    assert [p["sequence_num"] for p in out["pushes"]] == [1, 2, 3]
    assert sum(len(p["events"][0]["trades"]) for p in out["pushes"]) > 3  # 250 ms per push
    for p in out["pushes"]:
        assert p["channel"] == "market_trades" and p["events"][0]["type"] == "update"
        trades = p["events"][0]["trades"]
        times = [pd.Timestamp(x["time"]) for x in trades]
        assert times == sorted(times, reverse=True)  # newest first
    assert out["unsub"]["events"] == [{"subscriptions": {}}]
    # [start, end]: both ends inclusive, whole seconds; newest first
    lo_ms, hi_ms = out["mid_s"] * 1000, (out["mid_s"] + 1) * 1000
    want = [i for i, x in zip(out["ids"], out["times"], strict=True) if lo_ms <= x <= hi_ms]
    status, body = out["window"]
    assert status == 200 and [x["trade_id"] for x in body["trades"]] == want[::-1]
    assert set(body) == {"trades", "best_bid", "best_ask"}
    status, body = out["newest"]  # limit clamped to 1000: the newest 1000
    assert status == 200 and [x["trade_id"] for x in body["trades"]] == out["ids"][::-1][:1000]
    status, body = out["no_limit"]  # ``limit`` is required (Coinbase's API reference)
    assert status == 400 and body["error"] == "INVALID_ARGUMENT"
    # ccxt: ascending, taker side from BUY/SELL as is, since-filtered
    got = out["ccxt"]
    assert [x["id"] for x in got] == want
    assert {x["side"] for x in got} <= {"buy", "sell"}
    assert all(x["side"] == x["info"]["side"].lower() for x in got)
    assert "product_book" in out["ccxt_error"] and "is not served" in out["ccxt_error"]


# ---------------------------------------------------------------- unit: aggregated OKX rows


def test_okx_aggregated_trades_are_split_back_into_their_matches():
    info = {
        "instId": "BTC-USDT-SWAP",
        "tradeId": "130639474",
        "px": "42219.9",
        "sz": "0.3",
        "side": "buy",
        "ts": "1630048897897",
        "count": "3",
    }
    agg = {
        "id": "130639474",
        "timestamp": 1630048897897,
        "symbol": "BTC/USDT:USDT",
        "side": "buy",
        "price": 42219.9,
        "amount": 0.3,
        "info": info,
    }
    single = {**agg, "id": "130639475", "amount": 0.1, "info": {**info, "count": "1"}}
    binance = {
        "id": "5",
        "timestamp": 1,
        "side": "sell",
        "price": 1.0,
        "amount": 2.0,
        "info": {"t": 5, "count": "3"},
    }
    out = split_aggregated([agg, single])
    assert [t["id"] for t in out] == ["130639472", "130639473", "130639474", "130639475"]
    assert sum(t["amount"] for t in out[:3]) == pytest.approx(0.3, rel=1e-15)
    assert split_aggregated([binance]) == [binance]  # not OKX's row format: untouched
    raw = raw_from_ccxt([agg])
    assert raw["trade_id"].tolist() == [130639472, 130639473, 130639474]
    assert not raw["is_buyer_maker"].any()


def test_reaches_needs_an_anchor_trade_or_an_older_one():
    # the page starts at the outage's time but without the trades seen there: not proven
    assert not reaches_back([{"id": "a", "timestamp": 10}], 10, frozenset())
    anchors = frozenset({trade_id_int("a")})
    assert reaches_back([{"id": "a", "timestamp": 10}, {"id": "b", "timestamp": 11}], 10, anchors)
    assert reaches_back([{"id": "z", "timestamp": 9}], 10, frozenset())
    assert not reaches_back([], 10, anchors)
