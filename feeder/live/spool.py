"""An append-only spool for bar batches the store could not take (InfluxDB down).

One JSON line per batch, fsynced per batch, so nothing acknowledged is lost in a crash. When the
store answers again the spool is replayed in order and removed. A torn last line (a crash in the
middle of a write) is detected, counted and skipped; every complete line before it is replayed.
"""

from __future__ import annotations

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
    """Bars of one market and resolution ("1s", "1m"), open interest ("oi": ``time``, ``oi``),
    or a coverage record (``bars`` None)."""

    market: str
    kind: str
    resolution: str  # "1s", "1m", "oi" or "coverage"
    bars: pd.DataFrame | None = None
    start: int = 0
    end: int = 0

    def to_json(self) -> str:
        """One JSON line: ``t`` the times, then each other column of the frame under its name
        (bar fields, or ``oi``), all as floats."""
        doc: dict[str, Any] = {"m": self.market, "k": self.kind, "r": self.resolution}
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


class Spool:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "spool.jsonl"
        self.torn_lines = 0

    def __len__(self) -> int:
        """Batches waiting (counted from the file: survives restarts)."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as fh:
            return sum(1 for line in fh if line.endswith(b"\n"))

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def append(self, batches: list[Batch]) -> None:
        if not batches:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        data = "".join(b.to_json() + "\n" for b in batches).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> Iterator[Batch]:
        """Every complete batch in order; a torn last line is counted and skipped."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    self.torn_lines += 1
                    log.warning("spool %s: torn last line (%d bytes) skipped", self.path, len(raw))
                    continue
                yield Batch.from_json(raw.decode())

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
