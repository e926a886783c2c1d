"""``status``: what each store holds: markets, time ranges, coverage and gaps."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd
from rich.console import Console
from rich.table import Table

from feeder.read.flow import inferred_coverage, infers_coverage
from feeder.settings import Settings
from feeder.stores import MINUTE_SUFFIX, BarStore
from feeder.stores.coverage import as_intervals, subtract_intervals
from feeder.stores.provenance import provenance

#: where notes for the user go (stdout is for the table)
console = Console(stderr=True)


@dataclass
class MarketStatus:
    market: str
    kind: str
    configured: bool
    first_bar: str | None
    last_bar: str | None
    covered_hours: float
    synthetic: bool = False  # imported from the labelled SYNTHETIC sample
    coverage: list[tuple[str, str]] = field(default_factory=list)
    #: no coverage records (a plain aggr-server database): inferred from the 1-minute bars,
    #: the same rule ``load_flow`` applies
    coverage_inferred: bool = False
    gaps: list[tuple[str, str, str]] = field(default_factory=list)
    #: hours covered only at minute resolution (1m klines, no 1-second bars behind them)
    minute_hours: float = 0.0
    #: "configured, no history" / "stored, used by no coin" / ""
    note: str = ""


def _iso(t: int) -> str:
    return str(pd.Timestamp(int(t), unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S"))


def _bar_range(store: BarStore, market: str) -> tuple[int, int] | None:
    tr = getattr(store, "time_range", None)
    if tr is not None:
        r: tuple[int, int] | None = tr(market, "1m")
        return r
    days = store.bar_days(market, "1m")  # type: ignore[attr-defined]
    if not days:
        return None
    first = pd.Timestamp(days[0], tz="UTC").value // 1_000_000_000
    last = pd.Timestamp(days[-1], tz="UTC").value // 1_000_000_000
    b0 = store.read_bars(market, first, first + 86_400, "1m")
    b1 = store.read_bars(market, last, last + 86_400, "1m")
    return int(b0["time"].iloc[0]), int(b1["time"].iloc[-1]) + 59


def store_status(store: BarStore, settings: Settings) -> list[MarketStatus]:
    stored = store.markets()
    synthetic = provenance(store).synthetic
    configured = {m.id: m.kind.value for m in settings.all_markets()}
    out = []
    for market in sorted(set(stored) | set(configured)):
        cov = store.coverage(market)
        minute_cov = store.coverage(market + MINUTE_SUFFIX)
        rng = _bar_range(store, market)
        # as load_flow: inferred only for a market no SqueezeFlow writer described
        inferred = rng is not None and infers_coverage(store, market, cov, minute_cov)
        if inferred:
            assert rng is not None
            cov = inferred_coverage(store.read_bars(market, rng[0], rng[1] + 60, "1m"))
        gaps: list[tuple[str, str, str]] = []
        if len(cov):
            holes = subtract_intervals(as_intervals([(cov[0, 0], cov[-1, 1])]), cov)
            gaps += [(_iso(s), _iso(e), "not covered") for s, e in holes]
        minutes = subtract_intervals(minute_cov, cov)
        recorded = store.gaps(market)
        gaps += [(_iso(r.start), _iso(r.end), str(r.reason)) for r in recorded.itertuples()]
        out.append(
            MarketStatus(
                market=market,
                kind=stored.get(market) or configured.get(market, "?"),
                configured=market in configured,
                first_bar=_iso(rng[0]) if rng else None,
                last_bar=_iso(rng[1]) if rng else None,
                covered_hours=round(float((cov[:, 1] - cov[:, 0]).sum()) / 3600, 3)
                if len(cov)
                else 0.0,
                synthetic=market in synthetic,
                coverage=[(_iso(s), _iso(e)) for s, e in cov],
                gaps=sorted(set(gaps)),
                minute_hours=round(float((minutes[:, 1] - minutes[:, 0]).sum()) / 3600, 3)
                if len(minutes)
                else 0.0,
                coverage_inferred=inferred,
                note=_note(market in configured, rng is not None or len(cov) > 0),
            )
        )
    return out


def _note(configured: bool, history: bool) -> str:
    if configured and not history:
        return NO_HISTORY
    return "" if configured else UNUSED


NO_HISTORY = "configured, no history"
UNUSED = "stored, used by no coin"


def status_notes(rows: list[MarketStatus]) -> list[str]:
    """Lines under the table: configured markets without history, stored markets no coin uses."""
    out = []
    none = [r.market for r in rows if r.note == NO_HISTORY]
    if none:
        out.append(f"configured markets without history: {', '.join(none)}")
    unused = [r.market for r in rows if r.note == UNUSED]
    if unused:
        out.append(f"stored markets no coin in squeezeflow.coins uses: {', '.join(unused)}")
    return out


def as_dicts(rows: list[MarketStatus]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]


def print_status(store: BarStore, settings: Settings, only: set[str] | None = None) -> None:
    """The status table of ``store`` (only the markets in ``only``, when given) on stdout."""
    from feeder.stores.provenance import LABEL, where

    rows = [r for r in store_status(store, settings) if only is None or r.market in only]
    synthetic = any(r.synthetic for r in rows)
    t = Table(title=f"SqueezeFlow {where(store)}" + (f": {LABEL}" if synthetic else ""))
    for col in ("market", "kind", "first bar (UTC)", "last bar (UTC)", "covered h"):
        t.add_column(col, no_wrap=True)
    t.add_column("gaps")
    for r in rows:
        t.add_row(
            r.market
            + ("" if r.configured else " (not configured)")
            + (" SYNTHETIC" if r.synthetic else ""),
            r.kind,
            r.first_bar or "-",
            r.last_bar or "-",
            f"{r.covered_hours:g}" + (f" (+{r.minute_hours:g} 1m)" if r.minute_hours else ""),
            "; ".join(f"{a}..{b} {why}" for a, b, why in r.gaps[:3])
            + (f" (+{len(r.gaps) - 3} more)" if len(r.gaps) > 3 else "")
            or "none",
        )
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)  # piped or captured: do not squeeze the table to 80 columns
    out.print(t)
    for note in status_notes(rows):  # markets without history, stored markets no coin uses
        console.print(f"[yellow]{note}[/]")
    if synthetic:
        console.print(
            f"[bold yellow]SYNTHETIC:[/] this store holds {LABEL}; real imports into it are refused"
        )
