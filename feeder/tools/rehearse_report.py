"""``rehearse``'s comparison: the live and the backtest trades as candle-level rows, the report.

A candle is the open time of the candle whose close decided the action (see
``feeder.tools.rehearse``).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TradeRow:
    pair: str
    direction: str
    entry_candle: str
    entry_tag: str | None
    exit_candle: str | None
    exit_reason: str


def _decided(t: pd.Timestamp, timeframe_s: int) -> pd.Timestamp:
    """The open time of the candle whose close decided an action at ``t``."""
    return t.floor(f"{timeframe_s}s") - pd.Timedelta(seconds=timeframe_s)


def iso(t: pd.Timestamp) -> str:
    return str(t.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _ts(v: Any) -> pd.Timestamp:
    t = pd.Timestamp(v)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def live_trades(db: Path, timeframe_s: int) -> tuple[list[TradeRow], list[float]]:
    """The dry-run bot's trades (its sqlite database) and each entry's signal latency: the
    entry order's time minus the close of the candle that decided it."""
    con = sqlite3.connect(db)
    try:
        trades = con.execute(
            "SELECT id, pair, is_short, open_date, close_date, exit_reason, "
            "enter_tag, is_open FROM trades ORDER BY id"
        ).fetchall()
        orders = con.execute(
            "SELECT ft_trade_id, ft_order_side, order_date FROM orders ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    entry_side = {int(t[0]): "sell" if t[2] else "buy" for t in trades}
    first_order: dict[int, pd.Timestamp] = {}
    for tid, side, when in orders:
        if side == entry_side.get(int(tid)):
            first_order.setdefault(int(tid), _ts(when))
    rows, latency = [], []
    for tid, pair, is_short, open_date, close_date, reason, tag, is_open in trades:
        entered = first_order.get(int(tid), _ts(open_date))
        candle = _decided(entered, timeframe_s)
        latency.append(round((entered - candle).total_seconds() - timeframe_s, 3))
        if is_open:
            exit_candle, exit_reason = None, "open_at_end"
        else:
            exit_candle, exit_reason = iso(_decided(_ts(close_date), timeframe_s)), str(reason)
        rows.append(
            TradeRow(
                pair,
                "short" if is_short else "long",
                iso(candle),
                tag,
                exit_candle,
                exit_reason,
            )
        )
    return rows, latency


def backtest_trades(results_dir: Path, timeframe_s: int) -> list[TradeRow]:
    from freqtrade.data.btanalysis import load_backtest_data

    df = load_backtest_data(results_dir)
    rows = []
    for r in df.itertuples():
        if r.exit_reason == "force_exit":
            exit_candle, exit_reason = None, "open_at_end"
        else:
            exit_candle, exit_reason = (
                iso(_decided(_ts(r.close_date), timeframe_s)),
                str(r.exit_reason),
            )
        tag = r.enter_tag if isinstance(r.enter_tag, str) else None
        rows.append(
            TradeRow(
                r.pair,
                "short" if r.is_short else "long",
                iso(_decided(_ts(r.open_date), timeframe_s)),
                tag,
                exit_candle,
                exit_reason,
            )
        )
    return rows


def in_order(rows: list[TradeRow]) -> list[TradeRow]:
    return sorted(rows, key=lambda r: (r.entry_candle, r.pair, r.direction))


# ------------------------------------------------------------------------------ the run


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    if not out.is_terminal:
        out = Console(width=160)
    t = Table(
        title=f"rehearsal {report['run_id']} ({report['timeframe']}, {report['store']}): "
        f"live {report['window']['live_from']} .. {report['window']['live_end']}"
    )
    for col in (
        "run",
        "pair",
        "dir",
        "entry candle",
        "entry tag",
        "exit candle",
        "exit reason",
        "latency s",
    ):
        t.add_column(col, no_wrap=True)
    lat = list(report["signal_latency_s"])
    for side in ("live", "backtest"):
        for i, r in enumerate(report[f"{side}_trades"]):
            t.add_row(
                side,
                r["pair"],
                r["direction"],
                r["entry_candle"],
                r["entry_tag"] or "-",
                r["exit_candle"] or "-",
                r["exit_reason"],
                f"{lat[i]:.2f}" if side == "live" and i < len(lat) else "",
            )
    out.print(t)
    if lat:
        a = np.array(lat)
        out.print(
            f"signal latency: p50 {np.percentile(a, 50):.2f} s, max {a.max():.2f} s "
            f"over {len(a)} entries"
        )
    if report["paper_exchange"]["unserved"]:
        out.print(
            f"[yellow]paper exchange: unserved requests: "
            f"{report['paper_exchange']['unserved'][:5]}[/]"
        )
    verdict = "[bold green]MATCHED[/]" if report["matched"] else "[bold red]DIFFERENT[/]"
    out.print(
        f"{verdict}: {len(report['live_trades'])} live, {len(report['backtest_trades'])} "
        f"backtest trades ({report['seconds']:.0f} s); files in {report['workdir']}"
    )
