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
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

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


def simulate(sc: Scenario) -> Iterator[DayTrades]:
    """The scenario's trades, day by day, spot then USD-M then COIN-M (deterministic)."""
    rng = np.random.default_rng(sc.seed)
    n = sc.days * DAY
    spot_p, perp_p, drift = _profiles(sc, n)
    logp = np.log(sc.price) + np.cumsum(drift + rng.normal(0, 0.00012, n))
    if sc.mirror:
        logp = 2 * logp[0] - logp
        spot_p, perp_p = 1 - spot_p, 1 - perp_p
    next_id = {"spot": 1_000_000, "um": 5_000_000, "cm": 9_000_000}
    inverse = sc.symbol.removesuffix("USDT") + "USD_PERP"
    for day in range(sc.days):
        lo, hi = day * DAY, (day + 1) * DAY
        date = (datetime.fromtimestamp(sc.t0, UTC) + timedelta(days=day)).strftime("%Y-%m-%d")
        for mt, prob, basis in (
            ("spot", spot_p, 0.0),
            ("um", perp_p, 0.0002),
            ("cm", perp_p, 0.0003),
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
