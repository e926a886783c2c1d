"""The embedded default store: Parquet files per market and UTC day, no server to run.

Layout under ``root``::

    bars_1s/<market>/<YYYY-MM-DD>.parquet   1-second bars of one market and day
    bars_1s/<market>/<YYYY-MM-DD>.part-<n>.parquet  live appends, merged in on compaction
    bars_1m/<market>/<YYYY-MM-DD>.parquet   exact 1-minute rollups
    coverage/<market>.parquet               covered [start, end) seconds
    gaps/<market>.parquet                   recorded gaps that could not be filled
    markets.json                            market -> kind
    imports.json                            archive files already imported (resumable imports)

``<market>`` is the market id with ``:`` replaced by ``.`` (``BINANCE_FUTURES.btcusdt``). Every
file is written to a temporary name, fsynced and renamed over the target (then its directory is
fsynced), so a crash never leaves a half-written file. Every writer commits in one order: the bars
first, then the coverage that describes them, then the import ledger entry, each committed before
the next begins; so a crash at any point leaves at worst bars without coverage (a gap, filled by
the re-run), never coverage or a ledger entry for bars that are not on disk
(``tests/unit/test_import_crash_points.py`` stops ``import`` at every write). Rewriting bars
overwrites rows with the same ``time``: writes are idempotent.
One writer process at a time: ``import`` and ``run`` take ``.writer.lock`` (an exclusive
``flock``, released by the kernel when the process ends, even on SIGKILL); a second writer is
refused with a message naming the holder (:class:`StoreLockedError`). The live feeder appends
small part files (``append_bars``) instead of rewriting a day file every second; readers merge
the parts over the day file (a later part wins for the same second) and ``compact`` folds them in.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from feeder.ingest.models import BAR_FIELDS
from feeder.stores.coverage import Intervals, as_intervals, merge_intervals

DAY = 86_400
TIMEFRAME_DIRS = {"1s": "bars_1s", "1m": "bars_1m"}

_BAR_SCHEMA = pa.schema(
    [pa.field("time", pa.int64())] + [pa.field(f, pa.float64()) for f in BAR_FIELDS]
)


def market_dir_name(market: str) -> str:
    return market.replace(":", ".")


def market_from_dir_name(name: str) -> str:
    return name.replace(".", ":", 1)


def day_name(day_start: int) -> str:
    return str(pd.Timestamp(day_start, unit="s", tz="UTC").strftime("%Y-%m-%d"))


def _umask() -> int:
    """The process umask (read without changing it where Linux allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates 0600: give the file the mode any new file gets (0666 less the umask), so
    # a store written by one user can be read by the FreqTrade user the umask lets in
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with tmp_path.open("rb+") as fh:
            os.fsync(fh.fileno())
        tmp_path.replace(path)
        _fsync_dir(path.parent)  # the rename itself is durable before anything written next
    except OSError as e:  # a full disk, a quota, a read-only file system: one clear message
        tmp_path.unlink(missing_ok=True)
        detail = os.strerror(e.errno) if e.errno else str(e)
        raise StoreWriteError(f"cannot write {path}: {detail}") from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_table(path: Path, table: pa.Table) -> None:
    _atomic_write(path, lambda p: pq.write_table(table, p, compression="zstd"))


def _write_json(path: Path, doc: object) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(doc, indent=1, sort_keys=True)))


class StoreWriteError(OSError):
    """A store file could not be written (nothing partial is left behind)."""

    def __str__(self) -> str:
        return str(self.args[0])


class StoreLockedError(RuntimeError):
    """Another process is writing this store, or the store cannot be written at all."""


class ParquetStore:
    """Bars, coverage and gaps in local Parquet files (see the module docstring)."""

    name = "parquet"
    foreign_writers = False  # only SqueezeFlow writes Parquet stores

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._lock_fd: int | None = None

    def lock_writer(self, what: str) -> None:
        """Become the store's only writer (held until the process ends), or raise
        :class:`StoreLockedError` naming the process that is."""
        if self._lock_fd is not None:
            return
        path = self.root / ".writer.lock"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise StoreLockedError(f"cannot write the store {self.root}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 500, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreLockedError(
                f"the store {self.root} is being written by another process ({holder}); one "
                "writer at a time: wait for it to end or stop it, then run this again"
            ) from None
        os.ftruncate(fd, 0)
        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")
        os.pwrite(fd, f"pid {os.getpid()}: {what}, since {stamp}\n".encode(), 0)
        self._lock_fd = fd

    def unlock_writer(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    # ----- writing -----------------------------------------------------------------------------
    @staticmethod
    def _by_day(frame: pd.DataFrame, columns: list[str]) -> Iterator[tuple[str, pd.DataFrame]]:
        """The frame split into UTC days: (``YYYY-MM-DD``, rows of that day)."""
        t = frame["time"].to_numpy(np.int64)
        days = t - t % DAY
        for day in np.unique(days):
            yield day_name(int(day)), frame.loc[days == day, columns]

    def write_bars(self, market: str, kind: str, bars: pd.DataFrame, timeframe: str) -> int:
        """Overwrite-by-time merge of one market's bars into its day files. Returns rows written."""
        if len(bars) == 0:
            return 0
        self._register(market, kind)
        base = self.root / TIMEFRAME_DIRS[timeframe] / market_dir_name(market)
        written = 0
        for name, part in self._by_day(bars, ["time", *BAR_FIELDS]):
            path = base / f"{name}.parquet"
            self.compact(market, timeframe, name)
            if path.exists():
                old = pq.read_table(path).to_pandas()
                old = old[~old["time"].isin(part["time"])]
                part = pd.concat([old, part], ignore_index=True)
            part = part.sort_values("time", ignore_index=True)
            table = pa.Table.from_pandas(part, schema=_BAR_SCHEMA, preserve_index=False)
            _write_table(path, table)
            written += len(part)
        return written

    def append_bars(self, market: str, kind: str, bars: pd.DataFrame, timeframe: str) -> int:
        """Write bars as a new part file (cheap, for the live feeder); compacts every 64 parts."""
        if len(bars) == 0:
            return 0
        self._register(market, kind)
        base = self.root / TIMEFRAME_DIRS[timeframe] / market_dir_name(market)
        for name, part in self._by_day(bars, ["time", *BAR_FIELDS]):
            part = part.sort_values("time")
            path = base / f"{name}.part-{time.time_ns():020d}.parquet"
            table = pa.Table.from_pandas(part, schema=_BAR_SCHEMA, preserve_index=False)
            _write_table(path, table)
            if len(list(base.glob(f"{name}.part-*.parquet"))) >= 64:
                self.compact(market, timeframe, name)
        return len(bars)

    def compact(self, market: str, timeframe: str, day: str) -> None:
        """Fold a day's part files into its day file (atomically), then remove them."""
        base = self.root / TIMEFRAME_DIRS[timeframe] / market_dir_name(market)
        parts = sorted(base.glob(f"{day}.part-*.parquet"))
        if not parts:
            return
        df = self._read_day(base, day)
        table = pa.Table.from_pandas(df, schema=_BAR_SCHEMA, preserve_index=False)
        _write_table(base / f"{day}.parquet", table)
        for p in parts:
            p.unlink(missing_ok=True)

    def _read_day(self, base: Path, day: str) -> pd.DataFrame:
        """The day file with its live parts merged over it (a later write wins per second)."""
        files = ([base / f"{day}.parquet"] if (base / f"{day}.parquet").exists() else []) + sorted(
            base.glob(f"{day}.part-*.parquet")
        )
        if not files:
            return pd.DataFrame(columns=["time", *BAR_FIELDS])
        tables = [pq.read_table(f) for f in files]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        df = pd.DataFrame({n: table.column(n).to_numpy() for n in table.column_names})
        if len(files) > 1:
            df = df.drop_duplicates("time", keep="last").sort_values("time", ignore_index=True)
        return df

    def add_coverage(self, market: str, start: int, end: int) -> None:
        self._write_intervals("coverage", market, [(start, end)], merge=True)

    def record_gap(self, market: str, start: int, end: int, reason: str) -> None:
        path = self.root / "gaps" / f"{market_dir_name(market)}.parquet"
        old = pq.read_table(path).to_pandas() if path.exists() else None
        new = pd.DataFrame({"start": [start], "end": [end], "reason": [reason]})
        df = pd.concat([old, new], ignore_index=True) if old is not None else new
        df = df.drop_duplicates(["start", "end"], keep="last").sort_values("start")
        _write_table(path, pa.Table.from_pandas(df, preserve_index=False))

    def _write_intervals(
        self, folder: str, market: str, pairs: Iterable[tuple[int, int]], merge: bool
    ) -> None:
        path = self.root / folder / f"{market_dir_name(market)}.parquet"
        iv = as_intervals(list(pairs))
        if merge and path.exists():
            iv = np.concatenate([self._read_intervals(path), iv])
        iv = merge_intervals(iv)
        table = pa.table({"start": iv[:, 0], "end": iv[:, 1]})
        _write_table(path, table)

    def _register(self, market: str, kind: str) -> None:
        markets = self.markets()
        if markets.get(market) != kind:
            markets[market] = kind
            _write_json(self.root / "markets.json", markets)

    def write_oi(self, market: str, oi: pd.DataFrame) -> int:
        """Open interest (``time``, ``oi`` in USD) into ``oi/<market>/<day>.parquet``."""
        if len(oi) == 0:
            return 0
        for name, part in self._by_day(oi, ["time", "oi"]):
            path = self.root / "oi" / market_dir_name(market) / f"{name}.parquet"
            if path.exists():
                old = pq.read_table(path).to_pandas()
                part = pd.concat([old[~old["time"].isin(part["time"])], part], ignore_index=True)
            part = part.sort_values("time", ignore_index=True)
            _write_table(
                path,
                pa.Table.from_pandas(
                    part.astype({"time": "int64", "oi": "float64"}), preserve_index=False
                ),
            )
        return len(oi)

    def read_oi(self, market: str, start: int, end: int) -> pd.DataFrame:
        base = self.root / "oi" / market_dir_name(market)
        parts = [
            pq.read_table(p).to_pandas()
            for d in range(start - start % DAY, end, DAY)
            if (p := base / f"{day_name(d)}.parquet").exists()
        ]
        if not parts:
            return pd.DataFrame(
                {"time": pd.Series(dtype="int64"), "oi": pd.Series(dtype="float64")}
            )
        df = pd.concat(parts, ignore_index=True)
        return df[(df["time"] >= start) & (df["time"] < end)].reset_index(drop=True)

    # ----- import ledger -----------------------------------------------------------------------
    def imported(self) -> dict[str, Any]:
        """Archive files already imported (key -> what the import recorded)."""
        path = self.root / "imports.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def mark_imported(self, key: str, info: dict[str, Any]) -> None:
        doc = self.imported()
        doc[key] = info
        _write_json(self.root / "imports.json", doc)

    # ----- reading -----------------------------------------------------------------------------
    def markets(self) -> dict[str, str]:
        path = self.root / "markets.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def read_bars(self, market: str, start: int, end: int, timeframe: str = "1m") -> pd.DataFrame:
        """Bars of one market with ``start <= time < end``, sorted by time."""
        base = self.root / TIMEFRAME_DIRS[timeframe] / market_dir_name(market)
        first_day = start - start % DAY
        tables = []
        for day in range(first_day, end, DAY):
            name = day_name(day)
            path = base / f"{name}.parquet"
            if any(base.glob(f"{name}.part-*.parquet")) if base.exists() else False:
                tables.append(
                    pa.Table.from_pandas(
                        self._read_day(base, name), schema=_BAR_SCHEMA, preserve_index=False
                    )
                )
            elif path.exists():
                tables.append(pq.read_table(path))
        if not tables:
            return pd.DataFrame(
                {
                    c: pd.Series(dtype=t.to_pandas_dtype())
                    for c, t in zip(_BAR_SCHEMA.names, _BAR_SCHEMA.types, strict=True)
                }
            )
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        df = pd.DataFrame({n: table.column(n).to_numpy() for n in table.column_names})
        t = df["time"].to_numpy()
        if t[0] < start or t[-1] >= end:
            df = df[(t >= start) & (t < end)].reset_index(drop=True)
        return df

    def coverage(self, market: str) -> Intervals:
        return self._read_intervals(self.root / "coverage" / f"{market_dir_name(market)}.parquet")

    def gaps(self, market: str) -> pd.DataFrame:
        path = self.root / "gaps" / f"{market_dir_name(market)}.parquet"
        if not path.exists():
            return pd.DataFrame({"start": [], "end": [], "reason": []})
        return pq.read_table(path).to_pandas()

    def bar_days(self, market: str, timeframe: str = "1s") -> list[str]:
        base = self.root / TIMEFRAME_DIRS[timeframe] / market_dir_name(market)
        if not base.exists():
            return []
        return sorted({p.name.split(".")[0] for p in base.glob("*.parquet")})

    @staticmethod
    def _read_intervals(path: Path) -> Intervals:
        if not path.exists():
            return as_intervals([])
        t = pq.read_table(path)
        return np.stack(
            [
                t.column("start").to_numpy().astype(np.int64),
                t.column("end").to_numpy().astype(np.int64),
            ],
            axis=1,
        )
