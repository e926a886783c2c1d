"""Other venues' trade files (Bybit, OKX, Tardis.dev CSV): what a file is, finding, downloading.

A venue module (``bybit``, ``okx``, ``tardis``) plugs in as an ``Adapter``: it names its files
(``VenueFile``), gives each file's market spec and reads a file into a ``RawDay``. Reading:
``feeder.history.venue_csv``; import: ``feeder.history.venue_import``.
"""

from __future__ import annotations

import calendar
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final

import httpx
import numpy as np

from feeder.history.archive import ArchiveError, fetch
from feeder.ingest.normalise import MarketSpec
from feeder.settings import Settings

log = logging.getLogger(__name__)


DAY: Final = 86_400
FORMATS: Final = ("bybit", "okx", "tardis")


@dataclass(frozen=True)
class VenueFile:
    """One day file of one market of a venue.

    Attributes:
        path: where the file is.
        fmt: ``bybit``, ``okx`` or ``tardis``.
        venue: the venue's own name of the market family (``trading``/``spot`` for Bybit,
            ``trades`` for OKX, the Tardis exchange name such as ``binance-futures``).
        symbol: the venue's symbol as in the file name (``BTCUSDT``, ``BTC-USDT-SWAP``).
        date: ``YYYY-MM-DD``, or None for a Tardis file named without a date (no coverage).
    """

    path: Path
    fmt: str
    venue: str
    symbol: str
    date: str | None

    @property
    def ledger_key(self) -> str:
        return f"{self.fmt}/{self.venue}/{self.symbol}/{self.date or self.path.name}"

    @property
    def day_start(self) -> int | None:
        if self.date is None:
            return None
        return calendar.timegm(date.fromisoformat(self.date).timetuple())


@dataclass
class RawDay:
    """The raw trade columns of one file plus what the reader refused on its own."""

    raw: dict[str, np.ndarray]
    malformed_rows: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    #: [start, end) epoch seconds the file's rows were checked to lie in (None: unchecked).
    window: tuple[int, int] | None = None


@dataclass(frozen=True)
class Adapter:
    """What the generic importer needs from a venue module."""

    fmt: str
    parse_name: Callable[[Path], VenueFile | None]
    spec: Callable[[VenueFile, Settings], MarketSpec]
    read: Callable[[VenueFile], RawDay]


def adapters() -> dict[str, Adapter]:
    from feeder.history import bybit, okx, tardis

    return {"bybit": bybit.ADAPTER, "okx": okx.ADAPTER, "tardis": tardis.ADAPTER}


def discover_venue_files(
    root: Path, fmt: str | None = None, symbols: list[str] | None = None
) -> list[VenueFile]:
    """Venue files below ``root`` (or ``root`` itself), recognised by layout and file name.
    ``fmt`` restricts to one format (and for a single file forces it)."""
    ads = adapters()
    use = [ads[fmt]] if fmt else list(ads.values())
    wanted = {s.upper() for s in symbols} if symbols else None
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    found: dict[str, VenueFile] = {}
    for p in paths:
        if ".CHECKSUM" in p.name or p.name.startswith("."):
            continue
        for ad in use:
            vf = ad.parse_name(p)
            if vf is None:
                continue
            if wanted is None or vf.symbol.upper() in wanted:
                found.setdefault(vf.ledger_key, vf)
            break
    return sorted(found.values(), key=lambda v: (v.fmt, v.venue, v.symbol, v.date or ""))


_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def valid_date(s: str) -> bool:
    if not _DATE_RE.fullmatch(s):
        return False
    try:
        date.fromisoformat(s)
    except ValueError:
        return False
    return True


def download_files(
    fmt: str,
    symbols: list[str],
    days: list[str],
    dest_root: Path,
    client: httpx.Client,
    *,
    base_url: str | None = None,
    spot: bool = False,
    api_key: str | None = None,
) -> tuple[list[VenueFile], list[str]]:
    """Download venue day files into ``dest_root/<fmt>/...`` (the venue's own layout).

    ``symbols``: Bybit symbols (``spot`` picks the spot archive), OKX instruments, or Tardis
    ``<exchange>:<SYMBOL>``. Returns the files and one message per file missing upstream (404)
    or refused by the server: a missing day is reported, not fatal.
    """
    from feeder.history import bybit, okx, tardis

    got: list[VenueFile] = []
    missing: list[str] = []
    for sym in symbols:
        for day in days:
            headers = None
            if fmt == "bybit":
                rel = bybit.relpath(sym, day, spot)
                url = f"{(base_url or bybit.BASE_URL).rstrip('/')}/{rel}"
                dest = dest_root / "bybit" / rel
            elif fmt == "okx":
                rel = okx.relpath(sym, day)
                url = f"{(base_url or okx.BASE_URL).rstrip('/')}/{rel}"
                dest = dest_root / "okx" / rel.split("traderecords/", 1)[1]
            elif fmt == "tardis":
                if ":" not in sym:
                    raise ValueError(f"Tardis symbols are <exchange>:<SYMBOL>, got {sym!r}")
                ex, s = sym.split(":", 1)
                url = f"{(base_url or tardis.BASE_URL).rstrip('/')}/{tardis.relpath(ex, s, day)}"
                dest = dest_root / "tardis" / tardis.local_name(ex, s, day)
                headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
            else:
                raise ValueError(f"unknown format {fmt!r}")
            try:
                path = fetch(client, url, dest, headers)
            except ArchiveError as e:
                missing.append(str(e))
                continue
            except httpx.TransportError as e:
                raise ArchiveError(f"cannot reach {url}: {e!r}") from e
            vf = adapters()[fmt].parse_name(path)
            if vf is None:  # cannot happen for paths built above
                raise ArchiveError(f"{path}: not a {fmt} file name")
            got.append(vf)
    return got, missing
