"""An append-only spool for bar batches the store could not take (InfluxDB down).

One JSON line per batch, fsynced per batch, so nothing acknowledged is lost in a crash. When the
store answers again the spool is replayed in order and removed.

Damage is contained, never fatal: at open the spool is cut back to its last whole record (a
crash in the middle of a write leaves half a line, which later appends would otherwise merge
with); the cut bytes, and any line that does not parse when read, go to ``spool.quarantine``
(kept for inspection, counted in ``quarantined``). Every write is checked: a short write (a full
disk) is retried for the rest, a failing one is undone (the file cut back to its last whole
record) and raised as :class:`SpoolError`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """Bars of one market and timeframe ("1s", "1m"), open interest ("oi": ``time``, ``oi``),
    or a coverage record (``bars`` None)."""

    market: str
    kind: str
    series: str  # "1s", "1m", "oi" or "coverage"
    bars: pd.DataFrame | None = None
    start: int = 0
    end: int = 0

    def to_json(self) -> str:
        """One JSON line: ``t`` the times, then each other column of the frame under its name
        (bar fields, or ``oi``), all as floats."""
        doc: dict[str, Any] = {"m": self.market, "k": self.kind, "r": self.series}
        if self.bars is not None:
            doc["t"] = self.bars["time"].astype(np.int64).tolist()
            for c in self.bars.columns.drop("time"):
                doc[c] = self.bars[c].astype(np.float64).tolist()
        else:
            doc["s"], doc["e"] = self.start, self.end
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Batch:
        d = json.loads(line)
        if d["r"] == "coverage":
            return cls(d["m"], d["k"], "coverage", None, int(d["s"]), int(d["e"]))
        bars = pd.DataFrame({"time": np.asarray(d.pop("t"), np.int64)})
        for c, values in d.items():
            if c not in _HEADER:
                bars[c] = np.asarray(values, np.float64)
        return cls(d["m"], d["k"], d["r"], bars)


_HEADER = frozenset({"m", "k", "r"})


Raw = bytes  # (inside ``Spool``, ``bytes`` is its size property)


class SpoolError(OSError):
    """A batch could not be made durable in the spool (a full disk, an unwritable directory)."""


class Spool:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "spool.jsonl"
        self.quarantine = self.dir / "spool.quarantine"
        self.quarantined = 0  # records (lines or a torn tail) moved to the quarantine file
        self._recover()

    def __len__(self) -> int:
        """Batches waiting (counted from the file: survives restarts)."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as fh:
            return sum(1 for line in fh if line.endswith(b"\n"))

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def _recover(self) -> None:
        """Cut the spool back to its last whole record; the torn rest goes to quarantine."""
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        with self.path.open("rb") as fh:
            end = size
            while end > 0:  # find the last newline, reading backwards
                start = max(0, end - 65_536)
                fh.seek(start)
                chunk = fh.read(end - start)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    end = start + nl + 1
                    break
                end = start
            fh.seek(end)
            tail = fh.read()
        if tail:
            self._quarantine([tail], f"torn last record ({len(tail)} bytes, a crash mid-write)")
            os.truncate(self.path, end)

    def _quarantine(self, records: list[Raw], why: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = b"".join(r if r.endswith(b"\n") else r + b"\n" for r in records)
        self._write_all(self.quarantine, data)
        self.quarantined += len(records)
        log.error(
            "spool %s: %d record(s) quarantined to %s: %s",
            self.path,
            len(records),
            self.quarantine,
            why,
        )

    @staticmethod
    def _write_all(path: Path, data: Raw) -> None:
        """Append ``data`` whole and fsync it, or undo the partial append and raise."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)  # may write less than asked (a full disk)
                    if n <= 0:
                        raise OSError(errno.ENOSPC, "no bytes written")
                    view = view[n:]
                os.fsync(fd)
            except OSError as e:
                try:
                    os.ftruncate(fd, start)  # no torn record left behind
                except OSError:
                    log.exception("spool %s: could not undo a partial write", path)
                raise SpoolError(f"cannot write the spool {path}: {e.strerror or e}") from e
        finally:
            os.close(fd)

    def append(self, batches: list[Batch]) -> None:
        if not batches:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SpoolError(
                f"cannot create the spool directory {self.dir}: {e.strerror or e}"
            ) from e
        data = "".join(b.to_json() + "\n" for b in batches).encode()
        self._write_all(self.path, data)

    def read(self) -> Iterator[Batch]:
        """Every whole batch in order; a line that does not parse is quarantined (and removed
        from the spool) and counted."""
        if not self.path.exists():
            return
        bad: list[tuple[int, Raw]] = []
        with self.path.open("rb") as fh:
            offset = 0
            for raw in fh:
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("torn record")
                    batch = Batch.from_json(raw.decode())
                except (ValueError, KeyError, TypeError) as e:
                    bad.append((offset, raw))
                    log.debug("spool line at byte %d unreadable: %s", offset, e)
                else:
                    yield batch
                offset += len(raw)
        if bad:
            self._quarantine([raw for _, raw in bad], "unreadable line(s)")
            self._drop({off for off, _ in bad})

    def _drop(self, offsets: set[int]) -> None:
        """Rewrite the spool without the lines starting at ``offsets`` (atomically)."""
        tmp = self.path.with_suffix(".tmp")
        with self.path.open("rb") as src, tmp.open("wb") as dst:
            offset = 0
            for raw in src:
                if offset not in offsets:
                    dst.write(raw)
                offset += len(raw)
            dst.flush()
            os.fsync(dst.fileno())
        tmp.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
