"""The 1h mark-price candles and the funding rates of a futures pair for ``export-candles``.

From Binance's ``markPriceKlines`` archives when the archive holds them
(``futures/{um,cm}/{monthly,daily}/markPriceKlines/<SYMBOL>/1h/<SYMBOL>-1h-<DATE>.zip``; kline
columns, the documented layout: ``open_time,open,high,low,close,volume,close_time,...`` with
volume 0), else from trade prices, an approximation that is said so. A mark file that exists
and was not written as our approximation (the archive's, or FreqTrade's ``download-data``) is
never overwritten by the approximation; ours is marked by a ``.squeezeflow-approx`` sidecar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from feeder.history.archive import ArchiveError
from feeder.history.binance_archive import first_line, open_data, split_header

APPROX_SUFFIX = ".squeezeflow-approx"


def find_mark_files(archive_dir: Path | None, market_type: str, symbol: str) -> list[Path]:
    if archive_dir is None:
        return []
    out: list[Path] = []
    for period in ("monthly", "daily"):
        base = archive_dir / "futures" / market_type / period / "markPriceKlines" / symbol / "1h"
        out += sorted(base.glob(f"{symbol}-1h-*.zip")) + sorted(base.glob(f"{symbol}-1h-*.csv"))
    return out


def read_mark(path: Path) -> pd.DataFrame:
    """FreqTrade mark candles (``date, open, high, low, close, volume``) of one archive file."""
    with open_data(path) as fh:
        first = fh.read(1 << 12).split(b"\n", 1)[0].rstrip(b"\r")
    _, has_header = split_header(first) if first.strip() else ([], False)
    with open_data(path) as fh:
        raw = pd.read_csv(fh, header=None, skiprows=1 if has_header else 0, usecols=range(5))
    t = raw[0].to_numpy(np.int64)
    t = np.where(t > 10**14, t // 1000, t)  # us -> ms
    return pd.DataFrame(
        {
            "date": pd.to_datetime(t, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
            "open": raw[1].to_numpy(np.float64),
            "high": raw[2].to_numpy(np.float64),
            "low": raw[3].to_numpy(np.float64),
            "close": raw[4].to_numpy(np.float64),
            "volume": 0.0,
        }
    )


def write_mark(
    path: Path,
    archive_files: list[Path],
    approximation: pd.DataFrame,
    start: int,
    end: int,
    source: str,
) -> tuple[bool, str | None]:
    """Write the mark file; returns (written, warning)."""
    marker = path.with_name(path.name + APPROX_SUFFIX)
    if archive_files:
        df = pd.concat([read_mark(p) for p in archive_files], ignore_index=True)
        lo = pd.Timestamp(start, unit="s", tz="UTC")
        hi = pd.Timestamp(end, unit="s", tz="UTC")
        df = df[(df["date"] >= lo) & (df["date"] < hi)]
        df = df.drop_duplicates("date").sort_values("date", ignore_index=True)
        df.to_feather(path, compression="lz4")
        marker.unlink(missing_ok=True)
        return True, None
    if path.exists() and not marker.exists():
        return False, (
            f"{path.name}: kept the existing mark-price file (not ours): no trade-price "
            "approximation is written over a real mark file"
        )
    approximation.reset_index(drop=True).to_feather(path, compression="lz4")
    marker.write_text("mark candles built from trade prices by squeezeflow-feeder export-candles\n")
    return True, (
        f"{path.name}: built from trade prices of {source}; the exchange's mark price is not in "
        "the trade archives (put markPriceKlines/<SYMBOL>/1h archives under --archive-dir), so "
        "liquidation checks in the backtest use last-trade prices"
    )


def read_funding(path: Path) -> pd.DataFrame:
    """Funding rates from a ``fundingRate`` archive (zip or csv).

    The file holds ``calc_time`` (ms), ``funding_interval_hours``, ``last_funding_rate`` (with a
    header line in the files published so far; headerless files are accepted too).

    Returns:
        Columns ``date`` (datetime64[ms, UTC], the funding time) and ``funding_rate`` (float64),
        sorted by date.
    """
    path = Path(path)
    line = first_line(path)
    if not line.strip():
        return pd.DataFrame(
            {
                "date": pd.Series([], dtype="datetime64[ms, UTC]"),
                "funding_rate": pd.Series([], dtype="float64"),
            }
        )
    fields, has_header = split_header(line)
    if has_header and [f.lower() for f in fields[:3]] != [
        "calc_time",
        "funding_interval_hours",
        "last_funding_rate",
    ]:
        raise ArchiveError(f"{path}: unexpected fundingRate header {fields!r}")
    with open_data(path) as fh:
        raw = pd.read_csv(
            fh,
            header=None,
            skiprows=1 if has_header else 0,
            usecols=[0, 2],
            dtype={0: "int64", 2: "float64"},
        )
    out = pd.DataFrame(
        {
            "date": pd.to_datetime(raw[0].to_numpy(), unit="ms", utc=True).astype(
                "datetime64[ms, UTC]"
            ),
            "funding_rate": raw[2].to_numpy(dtype=np.float64),
        }
    )
    return out.sort_values("date", kind="stable").reset_index(drop=True)
