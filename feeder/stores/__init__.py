"""The stores: the ``BarStore`` protocol and ``open_store``; Parquet (embedded), InfluxDB, Redis.

Every store is read as much as written: the live feeder's ``writers`` write into them, the read
API (``feeder.read``) reads from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from feeder.stores.coverage import Intervals

if TYPE_CHECKING:
    from feeder.settings import Settings

#: Suffix of a market's minute-resolution coverage key (1-minute klines, no 1-second bars).
MINUTE_SUFFIX = "@1m"


class BarStore(Protocol):
    """What every backend offers (ParquetStore, InfluxStore)."""

    name: str
    #: Whether programs other than SqueezeFlow write bars here (aggr-server into InfluxDB), so a
    #: market may hold bars without SqueezeFlow's coverage records (``read.flow.infers_coverage``).
    foreign_writers: bool

    def write_bars(self, market: str, kind: str, bars: pd.DataFrame, timeframe: str) -> int: ...
    def append_bars(self, market: str, kind: str, bars: pd.DataFrame, timeframe: str) -> int: ...
    def read_bars(
        self, market: str, start: int, end: int, timeframe: str = "1m"
    ) -> pd.DataFrame: ...
    def add_coverage(self, market: str, start: int, end: int) -> None: ...
    def record_gap(self, market: str, start: int, end: int, reason: str) -> None: ...
    def coverage(self, market: str) -> Intervals: ...
    def gaps(self, market: str) -> pd.DataFrame: ...
    def markets(self) -> dict[str, str]: ...
    def write_oi(self, market: str, oi: pd.DataFrame) -> int: ...
    def read_oi(self, market: str, start: int, end: int) -> pd.DataFrame: ...
    def imported(self) -> dict[str, Any]: ...
    def mark_imported(self, key: str, info: dict[str, Any]) -> None: ...


def open_store(settings: Settings) -> BarStore:
    """The configured backend."""
    if settings.store.backend == "influx":
        from feeder.stores.influx import InfluxStore

        return InfluxStore(settings.store.influx)
    from feeder.stores.parquet import ParquetStore

    return ParquetStore(settings.store.parquet_dir)
