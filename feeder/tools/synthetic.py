"""A deterministic, labelled-SYNTHETIC market: spot and perp trades with planted squeezes.

Used by the tests (a scenario with known answers), by the benchmarks, and by the quick start
when neither the public archive nor a local archive is available. Output is a Binance archive
folder (data.binance.vision layout) so it goes through exactly the same import path as real
data; every folder it writes has a ``SYNTHETIC.txt`` saying so.

Markets: spot, USD-M and COIN-M (100-USD contracts) of ``symbol``. Neutral flow: taker buy
probability 0.5 everywhere, price a small random walk shared by all three. A planted *long*
episode: for ``div_len`` seconds spot takers buy (probability 0.5 + imbalance) while perp takers
sell and price drifts slightly down (absorption); then perp flow flips to buying (a type-A
reset) while price stays absorbed, and price rises for ``run_len``. A *short* episode is the
exact mirror. ``mirror=True`` mirrors the whole market.

Optional (off by default, so the quick start's sample is unchanged): ``open_interest`` writes
Binance ``metrics`` archives (5-minute open-interest snapshots of both perps: a slow random walk
that builds up ``oi_build`` over each episode's divergence and reset and unwinds in its run, with
labelled outages ``oi_outages`` where no snapshot exists); ``liquidations`` adds forced fills to
both perps (sparse on both sides everywhere, dense on the squeezed side during each episode's
reset and run: shorts in a long squeeze). Trade archives carry no liquidations, so
``store_liquidations`` writes them into a store through the import pipeline, the bars a live
feeder would have stored. Both come from their own random streams: the trades stay the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from feeder.settings import Settings
    from feeder.stores import BarStore

DAY = 86_400


@dataclass(frozen=True)
class Episode:
    start: int  # epoch seconds: divergence begins
    direction: int  # +1 long setup (spot buys, perps sell), -1 short setup
    div_len: int = 3600
    reset_len: int = 1800
    run_len: int = 4 * 3600
    absorb: float = 0.004  # log-price give while the divergence is absorbed
    turn: float = 0.001  # log-price move while perps turn
    squeeze: float = 0.02  # log-price move of the squeeze


@dataclass
class Scenario:
    start_day: str = "2024-01-01"
    days: int = 6
    symbol: str = "BTCUSDT"
    seed: int = 7
    trades_per_s: float = 1.0  # per market, Poisson
    imbalance: float = 0.35  # extra taker-buy probability during a divergence
    episodes: list[Episode] = field(default_factory=list)
    mirror: bool = False
    volume_scale: float = 1.0
    price: float = 42_000.0  # start price
    contract_usd: float = 100.0  # COIN-M contract size (Binance: BTC 100, others 10)
    open_interest: bool = False  # write metrics archives (5-minute OI snapshots, USD)
    oi_build: float = 0.03  # log OI rise over an episode's divergence and reset
    #: [start, end) seconds after t0 without any OI snapshot (a recorder outage)
    oi_outages: list[tuple[int, int]] = field(default_factory=list)
    liquidations: bool = False  # forced fills on both perps (see store_liquidations)
    liq_rate: float = 0.0002  # background liquidations per second and side, per perp
    squeeze_liq_rate: float = 0.03  # squeezed-side liquidations per second during a squeeze

    @property
    def t0(self) -> int:
        return int(datetime.fromisoformat(self.start_day).replace(tzinfo=UTC).timestamp())

    @classmethod
    def planted(cls, days: int = 10, spacing_h: int = 32, **kw: object) -> Scenario:
        """Episodes every ``spacing_h`` hours after a 3-day warm-up, alternating long and short.

        Each divergence starts one hour before a 4-hour candle closes (spacing is a multiple
        of 4 h), so its higher-timeframe context is visible by its reset, and the spacing keeps
        that context clear of the episode before.
        """
        if spacing_h % 4:
            raise ValueError("spacing_h must be a multiple of 4")
        sc = cls(days=days, **kw)  # type: ignore[arg-type]
        eps = []
        t, direction = sc.t0 + 3 * DAY + 3 * 3600, 1
        while t + 8 * 3600 < sc.t0 + days * DAY:
            eps.append(Episode(start=t, direction=direction))
            t += spacing_h * 3600
            direction = -direction
        sc.episodes = eps
        return sc


def _profiles(sc: Scenario, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-second spot and perp taker-buy probability and log-price drift."""
    spot_p = np.full(n, 0.5)
    perp_p = np.full(n, 0.5)
    drift = np.zeros(n)
    for e in sc.episodes:
        a = e.start - sc.t0
        b = a + e.div_len
        c = b + e.reset_len
        d = c + e.run_len
        s = e.direction
        spot_p[a:b] += s * sc.imbalance
        perp_p[a:b] -= s * sc.imbalance
        drift[a:b] -= s * e.absorb / e.div_len  # price gives a little: buying is absorbed
        spot_p[b:c] += s * sc.imbalance
        perp_p[b:c] += s * sc.imbalance  # perps turn: shorts cover (reset A)
        drift[b:c] += s * e.turn / e.reset_len  # still absorbed while perps turn
        spot_p[c:d] += s * sc.imbalance / 2
        perp_p[c:d] += s * sc.imbalance / 2
        drift[c:d] += s * e.squeeze / e.run_len  # the squeeze
    return spot_p, perp_p, drift


@dataclass(frozen=True)
class DayTrades:
    """One market's simulated trades of one day (Binance archive columns)."""

    day: str  # YYYY-MM-DD
    market_type: str  # spot, um, cm
    symbol: str  # archive symbol: BTCUSDT, BTCUSD_PERP
    ids: np.ndarray
    price: np.ndarray
    qty: np.ndarray  # base quantity; COIN-M: contracts of 100 USD
    ms: np.ndarray  # trade time, epoch ms
    buyer_maker: np.ndarray
    quote: np.ndarray | None = None  # COIN-M: base quantity


def _path(sc: Scenario) -> tuple[np.random.Generator, np.ndarray, np.ndarray, np.ndarray]:
    """The trades' random stream, taker-buy probabilities and log price per second."""
    rng = np.random.default_rng(sc.seed)
    n = sc.days * DAY
    spot_p, perp_p, drift = _profiles(sc, n)
    logp = np.log(sc.price) + np.cumsum(drift + rng.normal(0, 0.00012, n))
    if sc.mirror:
        logp = 2 * logp[0] - logp
        spot_p, perp_p = 1 - spot_p, 1 - perp_p
    return rng, spot_p, perp_p, logp


PERP_BASIS = {"um": 0.0002, "cm": 0.0003}  # log-price basis of each perp over spot


def simulate(sc: Scenario) -> Iterator[DayTrades]:
    """The scenario's trades, day by day, spot then USD-M then COIN-M (deterministic)."""
    rng, spot_p, perp_p, logp = _path(sc)
    next_id = {"spot": 1_000_000, "um": 5_000_000, "cm": 9_000_000}
    inverse = sc.symbol.removesuffix("USDT") + "USD_PERP"
    for day in range(sc.days):
        lo, hi = day * DAY, (day + 1) * DAY
        date = (datetime.fromtimestamp(sc.t0, UTC) + timedelta(days=day)).strftime("%Y-%m-%d")
        for mt, prob, basis in (
            ("spot", spot_p, 0.0),
            ("um", perp_p, PERP_BASIS["um"]),
            ("cm", perp_p, PERP_BASIS["cm"]),
        ):
            counts = rng.poisson(sc.trades_per_s, hi - lo)
            sec = np.repeat(np.arange(lo, hi), counts)
            k = len(sec)
            ms = (sc.t0 + sec) * 1000 + np.sort(rng.integers(0, 1000, k))
            ms = np.sort(ms)  # time order within a second
            buy = rng.random(k) < prob[sec]
            price = np.round(np.exp(logp[sec] + basis + rng.normal(0, 0.00003, k)), 1)
            qty = np.round(rng.lognormal(-3.0, 1.0, k) * sc.volume_scale, 6) + 1e-6
            ids = np.arange(next_id[mt], next_id[mt] + k)
            next_id[mt] += k
            if mt == "cm":  # COIN-M: quantity in contracts of contract_usd
                size = sc.contract_usd
                contracts = np.maximum(1.0, np.round(price * qty / size))
                yield DayTrades(
                    date,
                    mt,
                    inverse,
                    ids,
                    price,
                    contracts,
                    ms,
                    ~buy,
                    quote=np.round(contracts * size / price, 8),
                )
            else:
                yield DayTrades(date, mt, sc.symbol, ids, price, qty, ms, ~buy)


def generate(sc: Scenario, root: Path) -> dict[str, object]:
    """Write the scenario as a Binance archive under ``root``; returns its manifest."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "SYNTHETIC.txt").write_text(
        "SYNTHETIC data generated by feeder.tools.synthetic (not market data).\n"
        + json.dumps(asdict(sc), indent=1)
        + "\n"
    )
    for t in simulate(sc):
        _write_trades(
            root,
            t.market_type,
            t.symbol,
            t.day,
            t.ids,
            t.price,
            t.qty,
            t.ms,
            t.buyer_maker,
            quote=t.quote,
        )
    _write_funding(root, sc)
    if sc.open_interest:
        _write_metrics(root, sc)
    manifest = {
        "synthetic": True,
        "scenario": asdict(sc),
        "episodes": [asdict(e) for e in sc.episodes],
    }
    (root / "scenario.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _write_trades(
    root: Path,
    mt: str,
    symbol: str,
    date: str,
    ids: np.ndarray,
    price: np.ndarray,
    qty: np.ndarray,
    ms: np.ndarray,
    buyer_maker: np.ndarray,
    quote: np.ndarray | None = None,
) -> None:
    """One day's trades file; the fourth column is quote_qty (base_qty for COIN-M)."""
    sub = "spot" if mt == "spot" else f"futures/{mt}"
    folder = root / sub / "daily" / "trades" / symbol
    folder.mkdir(parents=True, exist_ok=True)
    if quote is None:
        quote = np.round(price * qty, 8)
    bm = np.where(buyer_maker, "true", "false")
    path = folder / f"{symbol}-trades-{date}.csv"
    with path.open("w") as fh:
        if mt != "spot":  # futures archives carry a header, spot archives do not
            fourth = "base_qty" if mt == "cm" else "quote_qty"
            fh.write(f"id,price,qty,{fourth},time,is_buyer_maker\n")
        rows = zip(
            ids.tolist(),
            price.tolist(),
            qty.tolist(),
            quote.tolist(),
            ms.tolist(),
            bm.tolist(),
            strict=True,
        )
        if mt == "spot":
            fh.writelines(f"{a},{b},{c},{d},{e},{f},true\n" for a, b, c, d, e, f in rows)
        else:
            fh.writelines(f"{a},{b},{c},{d},{e},{f}\n" for a, b, c, d, e, f in rows)


def _write_funding(root: Path, sc: Scenario) -> None:
    folder = root / "futures" / "um" / "monthly" / "fundingRate" / sc.symbol
    folder.mkdir(parents=True, exist_ok=True)
    months: dict[str, list[str]] = {}
    for t in range(sc.t0, sc.t0 + sc.days * DAY, 8 * 3600):
        m = datetime.fromtimestamp(t, UTC).strftime("%Y-%m")
        months.setdefault(m, []).append(f"{t * 1000},8,0.00010000\n")
    for m, rows in months.items():
        path = folder / f"{sc.symbol}-fundingRate-{m}.csv"
        path.write_text("calc_time,funding_interval_hours,last_funding_rate\n" + "".join(rows))


def open_interest(sc: Scenario) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per perp (``um``, ``cm``): snapshot times (epoch s, every 5 minutes, none inside an
    outage) and open interest in USD. Not directional: the mirrored market has the same."""
    rng = np.random.default_rng([sc.seed, 2])
    t = np.arange(sc.t0, sc.t0 + sc.days * DAY, 300, dtype=np.int64)
    build = np.zeros(len(t))
    for e in sc.episodes:
        a, b = e.start, e.start + e.div_len + e.reset_len
        c = b + e.run_len
        build += sc.oi_build * np.clip((t - a) / (b - a), 0, 1)  # positions opened
        build -= sc.oi_build * np.clip((t - b) / (c - b), 0, 1)  # and closed in the squeeze
    keep = np.ones(len(t), bool)
    for lo, hi in sc.oi_outages:
        keep &= ~((t >= sc.t0 + lo) & (t < sc.t0 + hi))
    out = {}
    for mt, level in (("um", 5e9), ("cm", 2e9)):
        walk = np.cumsum(rng.normal(0, 0.0005, len(t)))
        out[mt] = (t[keep], np.round(level * np.exp(walk + build), 2)[keep])
    return out


def _write_metrics(root: Path, sc: Scenario) -> None:
    """Binance ``metrics`` daily files of both perps (the open-interest columns that matter)."""
    _, _, _, logp = _path(sc)
    inverse = sc.symbol.removesuffix("USDT") + "USD_PERP"
    for mt, (t, usd) in open_interest(sc).items():
        symbol = sc.symbol if mt == "um" else inverse
        price = np.exp(logp[np.minimum(t - sc.t0, len(logp) - 1)] + PERP_BASIS[mt])
        # USD-M: amount in base, value in USD; COIN-M: amount in contracts, value in base.
        amount = usd / price if mt == "um" else usd / sc.contract_usd
        value = usd if mt == "um" else usd / price
        folder = root / "futures" / mt / "daily" / "metrics" / symbol
        folder.mkdir(parents=True, exist_ok=True)
        day = (t - sc.t0) // DAY
        for d in range(sc.days):
            date = (datetime.fromtimestamp(sc.t0, UTC) + timedelta(days=d)).strftime("%Y-%m-%d")
            rows = [
                f"{datetime.fromtimestamp(int(ti), UTC):%Y-%m-%d %H:%M:%S},{symbol},"
                f"{a:.8f},{v:.8f},1,1,1,1\n"
                for ti, a, v in zip(t[day == d], amount[day == d], value[day == d], strict=True)
            ]
            (folder / f"{symbol}-metrics-{date}.csv").write_text(
                "create_time,symbol,sum_open_interest,sum_open_interest_value,"
                "count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,"
                "count_long_short_ratio,sum_taker_long_short_vol_ratio\n" + "".join(rows)
            )


def liquidations(sc: Scenario) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per perp (``um``, ``cm``): forced fills as (time ms, price, qty, taker buy). Qty is base
    (USD-M) or contracts (COIN-M), as in the trade archives. A short being liquidated is a forced
    buy: dense on the squeezed side during each episode's reset and run."""
    if not sc.liquidations:
        return {}
    _, _, _, logp = _path(sc)
    rng = np.random.default_rng([sc.seed, 3])
    n = sc.days * DAY
    rate_buy = np.full(n, sc.liq_rate)
    rate_sell = np.full(n, sc.liq_rate)
    for e in sc.episodes:
        b = e.start - sc.t0 + e.div_len
        d = b + e.reset_len + e.run_len
        (rate_buy if e.direction > 0 else rate_sell)[b:d] += sc.squeeze_liq_rate
    if sc.mirror:
        rate_buy, rate_sell = rate_sell, rate_buy
    out = {}
    for mt in ("um", "cm"):
        nb, ns = rng.poisson(rate_buy), rng.poisson(rate_sell)
        sec = np.concatenate([np.repeat(np.arange(n), nb), np.repeat(np.arange(n), ns)])
        buy = np.concatenate([np.ones(int(nb.sum()), bool), np.zeros(int(ns.sum()), bool)])
        order = np.argsort(sec, kind="stable")
        sec, buy = sec[order], buy[order]
        k = len(sec)
        ms = (sc.t0 + sec) * 1000 + rng.integers(0, 1000, k)
        order = np.argsort(ms, kind="stable")
        sec, buy, ms = sec[order], buy[order], ms[order]
        worse = np.where(buy, 1.0, -1.0) * 0.0005  # filled beyond the market: bankruptcy price
        price = np.round(np.exp(logp[sec] + PERP_BASIS[mt] + worse), 1)
        qty = np.round(rng.lognormal(-1.5, 0.5, k) * sc.volume_scale, 6) + 1e-6
        if mt == "cm":
            qty = np.maximum(1.0, np.round(price * qty / sc.contract_usd))
        out[mt] = (ms, price, qty, buy)
    return out


def store_liquidations(sc: Scenario, store: BarStore, settings: Settings) -> int:
    """Rewrite the perps' bars of an imported scenario with its liquidations among the trades,
    through the import pipeline (trades and forced fills of a second in one bar, as a live feeder
    stores them). Returns the number of liquidations written."""
    from feeder.ingest.models import Kind, market_id
    from feeder.ingest.normalise import MarketSpec
    from feeder.ingest.pipeline import DayBarWriter

    liqs = liquidations(sc)
    if not liqs:
        return 0
    writers = {}
    for mt in ("um", "cm"):
        symbol = sc.symbol if mt == "um" else sc.symbol.removesuffix("USDT") + "USD_PERP"
        market = market_id("BINANCE_FUTURES", symbol)
        size = settings.market(market, Kind.PERP).contract_size if mt == "cm" else None
        spec = MarketSpec(market=market, kind=Kind.PERP, exchange="binance", contract_size=size)
        writers[mt] = DayBarWriter(store, spec)
    for day in simulate(sc):
        if day.market_type not in liqs:
            continue
        ms, price, qty, buy = liqs[day.market_type]
        d0 = int(datetime.fromisoformat(day.day).replace(tzinfo=UTC).timestamp())
        lo, hi = np.searchsorted(ms, [d0 * 1000, (d0 + DAY) * 1000])
        t_ms = np.concatenate([day.ms, ms[lo:hi]])
        order = np.argsort(t_ms, kind="stable")
        flag = np.concatenate([np.zeros(len(day.ms), bool), np.ones(hi - lo, bool)])[order]
        writers[day.market_type].add_raw(
            {
                "ts": t_ms[order],
                "price": np.concatenate([day.price, price[lo:hi]])[order],
                "qty": np.concatenate([day.qty, qty[lo:hi]])[order],
                "is_buyer_maker": np.concatenate([day.buyer_maker, ~buy[lo:hi]])[order],
                "trade_id": np.arange(len(t_ms), dtype=np.int64) + d0 * 10_000,
                "liquidation": flag,
            }
        )
    for w in writers.values():
        w.close()
    return sum(len(v[0]) for v in liqs.values())
