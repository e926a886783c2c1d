"""Where a store's data comes from: real market data or the labelled SYNTHETIC sample.

A store never mixes the two. ``feeder.tools.synthetic`` writes ``SYNTHETIC.txt``
at the root of every
archive it generates; the import records each file's provenance in the store's own import ledger
(``"synthetic": true``), so the mark lives with the data in every backend (``imports.json`` in
Parquet, ``sf_imports`` in InfluxDB). From the ledger:

- ``import`` refuses synthetic files into a store holding real data and real files into a store
  holding synthetic data, before anything is written;
- ``status``, ``export-candles`` and every backtest (``FlowSource.history``) say SYNTHETIC.

Bars with no ledger entry (the live feeder's) are real.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from feeder.stores import BarStore

MARK = "SYNTHETIC.txt"
LABEL = "SYNTHETIC data (planted squeezes, not market data)"


class MixedProvenanceError(ValueError):
    """Synthetic and real data would end up in one store."""


def archive_is_synthetic(path: Path) -> bool:
    """Whether an archive file lies below a folder that ``feeder.tools.synthetic`` generated."""
    return any((d / MARK).is_file() for d in Path(path).resolve().parents)


@dataclass
class Provenance:
    synthetic: set[str] = field(default_factory=set)  # markets imported from SYNTHETIC archives
    real: set[str] = field(default_factory=set)  # markets with real data

    @property
    def is_synthetic(self) -> bool:
        return bool(self.synthetic)


def provenance(store: BarStore) -> Provenance:
    """The store's provenance from its import ledger and its markets."""
    p = Provenance()
    for info in store.imported().values():
        market = str(info.get("market", ""))
        (p.synthetic if info.get("synthetic") else p.real).add(market)
    p.real |= set(store.markets()) - p.synthetic
    return p


def where(store: BarStore) -> str:
    root = getattr(store, "root", None)
    return f"{store.name} store {root}" if root is not None else f"{store.name} store"


def check_import(store: BarStore, synthetic_files: int, real_files: int) -> None:
    """Refuse an import that would mix synthetic and real data in ``store``."""
    if synthetic_files and real_files:
        raise MixedProvenanceError(
            f"the files given mix {synthetic_files} SYNTHETIC file(s) (below a {MARK}) and "
            f"{real_files} real one(s): import them into separate stores (--store-dir DIR)"
        )
    p = provenance(store)
    if synthetic_files and p.real:
        raise MixedProvenanceError(
            f"refusing to import SYNTHETIC files into the {where(store)}, which holds real "
            f"market data ({', '.join(sorted(p.real)[:3])}): use a store of their own "
            "(--store-dir DIR)"
        )
    if real_files and p.is_synthetic:
        raise MixedProvenanceError(
            f"refusing to import real archive files into the {where(store)}, which holds "
            f"{LABEL}: use another store (--store-dir DIR, or store.parquet_dir in the config), "
            "or delete this one"
        )
