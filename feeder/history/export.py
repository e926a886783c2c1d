"""``export-candles``: FreqTrade candle files built from our own 1-second bars.

Writes, in FreqTrade's feather layout under ``<datadir>`` (``user_data/data/binance``):

- ``futures/<PAIR>-<tf>-futures.feather`` (or ``<PAIR>-<tf>.feather`` for spot): OHLCV of the
  pair's own market. Volume is base volume, estimated per minute as notional / close (the
  aggr-server schema stores USD notional, not base quantity).
- ``futures/<PAIR>-1h-mark.feather``: mark-price candles. We have trade prices, not the
  exchange's mark price: the file is built from trade prices and a warning says so.
- ``futures/<PAIR>-1h-funding_rate.feather``: funding from Binance ``fundingRate`` archive files
  when found; otherwise no file is written and a loud warning names what is missing.

Candles with no trades are left out (FreqTrade fills such holes itself); nothing is zero-filled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from feeder.history.binance_mark import read_funding
from feeder.ingest.aggregate import rollup
from feeder.read.flow import timeframe_seconds
from feeder.stores import BarStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    base: str
    quote: str
    settle: str | None

    @classmethod
    def parse(cls, pair: str) -> Pair:
        try:
            base, rest = pair.upper().split("/", 1)
            quote, _, settle = rest.partition(":")
        except ValueError:
            raise ValueError(f"pair {pair!r} is not BASE/QUOTE or BASE/QUOTE:SETTLE") from None
        return cls(base, quote, settle or None)

    @property
    def futures(self) -> bool:
        return self.settle is not None

    @property
    def file_stem(self) -> str:
        return f"{self.base}_{self.quote}" + (f"_{self.settle}" if self.settle else "")

    @property
    def market(self) -> str:
        """The Binance market whose trades make this pair's candles."""
        if not self.futures:
            return f"BINANCE:{self.base.lower()}{self.quote.lower()}"
        if self.settle == self.base:  # inverse: BTC/USD:BTC
            return f"BINANCE_FUTURES:{self.base.lower()}usd_perp"
        return f"BINANCE_FUTURES:{self.base.lower()}{self.quote.lower()}"

    @property
    def archive_symbol(self) -> str:
        return f"{self.base}{self.quote}" if self.settle != self.base else f"{self.base}USD_PERP"


@dataclass
class ExportResult:
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    candles: int = 0


def candles(store: BarStore, market: str, start: int, end: int, timeframe: str) -> pd.DataFrame:
    """FreqTrade OHLCV (``date, open, high, low, close, volume``) from a market's bars."""
    tf = timeframe_seconds(timeframe)
    res = "1m" if tf % 60 == 0 else "1s"
    bars = store.read_bars(market, start, end, res)
    if len(bars) == 0:
        return pd.DataFrame(columns=["date", "open", "high", "low", "close", "volume"])
    bars = bars.assign(volume=(bars["vbuy"] + bars["vsell"]) / bars["close"])
    out = rollup(bars, tf)
    vol = bars.groupby(bars["time"] - bars["time"] % tf)["volume"].sum()
    out["volume"] = vol.to_numpy()
    out["date"] = pd.to_datetime(out["time"], unit="s", utc=True).astype("datetime64[ms, UTC]")
    return out[["date", "open", "high", "low", "close", "volume"]]


#: Timeframes FreqTrade can backtest on Binance futures (the exchange's candle intervals).
FREQTRADE_TIMEFRAMES = (
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
)


def check_timeframe(tf: str) -> str:
    """A timeframe FreqTrade can use, else ValueError naming the valid ones."""
    if tf not in FREQTRADE_TIMEFRAMES:
        raise ValueError(
            f"timeframe {tf!r} is not one FreqTrade can use on Binance; choose from "
            + " ".join(FREQTRADE_TIMEFRAMES)
        )
    return tf


def funding_folder(pair: Pair) -> str:
    """The archive folder (below the archive root) of a pair's fundingRate files."""
    mt = "cm" if pair.settle == pair.base else "um"
    return f"futures/{mt}/monthly/fundingRate/{pair.archive_symbol}"


def find_funding_files(archive_dir: Path | None, pair: Pair) -> list[Path]:
    if archive_dir is None or not pair.futures:
        return []
    sym = pair.archive_symbol
    base = archive_dir / funding_folder(pair)
    files = sorted(base.glob(f"{sym}-fundingRate-*.zip")) + sorted(
        base.glob(f"{sym}-fundingRate-*.csv")
    )
    return files


def export_candles(
    store: BarStore,
    pair_name: str,
    timeframes: list[str],
    datadir: Path,
    start: int,
    end: int,
    archive_dir: Path | None = None,
    market: str | None = None,
) -> ExportResult:
    pair = Pair.parse(pair_name)
    mk = market or pair.market
    res = ExportResult()
    folder = datadir / "futures" if pair.futures else datadir
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "-futures" if pair.futures else ""
    for tf in timeframes:
        df = candles(store, mk, start, end, tf)
        if len(df) == 0:
            raise ValueError(f"no bars stored for {mk} in the requested range: import data first")
        path = folder / f"{pair.file_stem}-{tf}{suffix}.feather"
        df.reset_index(drop=True).to_feather(path, compression="lz4")
        res.files.append(path)
        res.candles += len(df)
    if not pair.futures:
        return res

    from feeder.history import binance_mark  # markPriceKlines, or the approximation

    path = folder / f"{pair.file_stem}-1h-mark.feather"
    mt = "cm" if pair.settle == pair.base else "um"
    real = binance_mark.find_mark_files(archive_dir, mt, pair.archive_symbol)
    approx = candles(store, mk, start, end, "1h")
    written, warning = binance_mark.write_mark(path, real, approx, start, end, mk)
    res.files += [path] if written else []
    res.warnings += [warning] if warning else []

    funding_files = find_funding_files(archive_dir, pair)
    if funding_files:
        fr = pd.concat([read_funding(p) for p in funding_files], ignore_index=True)
        lo = pd.Timestamp(start, unit="s", tz="UTC")
        hi = pd.Timestamp(end, unit="s", tz="UTC")
        fr = fr[(fr["date"] >= lo) & (fr["date"] < hi)].drop_duplicates("date")
        out = pd.DataFrame(
            {
                "date": fr["date"].dt.floor("h").astype("datetime64[ms, UTC]"),
                "open": fr["funding_rate"].to_numpy(np.float64),
                "high": 0.0,
                "low": 0.0,
                "close": 0.0,
                "volume": 0.0,
            }
        ).sort_values("date", ignore_index=True)
        path = folder / f"{pair.file_stem}-1h-funding_rate.feather"
        out.to_feather(path, compression="lz4")
        res.files.append(path)
        if len(out) == 0:
            res.warnings.append(f"{path.name}: fundingRate files found but none inside the range")
    else:
        folder_rel = funding_folder(pair)
        where = archive_dir / folder_rel if archive_dir else "no --archive-dir given"
        stale = folder / f"{pair.file_stem}-1h-funding_rate.feather"
        removed = ""
        if stale.exists():  # from an earlier export: it would not match these candles
            stale.unlink()
            removed = f" The earlier {stale.name} was removed (it belonged to another export)."
        res.warnings.append(
            f"MISSING FUNDING: no fundingRate archive for {pair.archive_symbol} ({where}); no "
            f"{pair.file_stem}-1h-funding_rate.feather written.{removed} FreqTrade will warn "
            "and the backtest will ignore funding fees: results will differ from live trading. "
            f"Download {folder_rel} from the public archive into --archive-dir to fix this."
        )
    return res
