"""InfluxDB through its v1 HTTP API only: line protocol to ``/write``, InfluxQL on ``/query``.

The schema is aggr-server's, so existing aggr-server databases can be read and the first
SqueezeFlow system can run on our data: database ``significant_trades``, retention policy
``aggr_1s`` measurement ``trades_1s`` (1-second bars) and ``aggr_1m``/``trades_1m`` (rollups),
tag ``market`` (``BINANCE:btcusdt``) plus tag ``kind`` (spot/perp), every field a float; a
measurement aggr-server already holds is written its way (no ``kind`` tag when its series have
none, integer counts when it holds them), so a rewrite overwrites its points.
Coverage and recorded gaps live in ``sf_coverage`` and ``sf_gaps`` in the default policy.
InfluxDB 2.x and 3.x serve the same v1 endpoints (DBRP mapping); see the README.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from feeder.ingest.models import BAR_FIELDS, FLOW_FIELDS
from feeder.settings import InfluxSettings
from feeder.stores.coverage import Intervals, as_intervals, merge_intervals
from feeder.stores.influx_client import (
    InfluxClient,
    escape_measurement,
    escape_tag,
    quote_ident,
    quote_str,
)

log = logging.getLogger(__name__)

COVERAGE_MEASUREMENT = "sf_coverage"
GAPS_MEASUREMENT = "sf_gaps"
IMPORTS_MEASUREMENT = "sf_imports"
OI_MEASUREMENT = "open_interest"
#: A field set on rows whose per-side trade counts are unknown (Binance klines carry the total
#: only). aggr-server leaves a zero field out, so a missing count is otherwise read as 0.
COUNTS_UNKNOWN = "counts_unknown"


def bar_body(
    measurement: str,
    market: str,
    kind: str | None,
    bars: pd.DataFrame,
    int_fields: frozenset[str] = frozenset(),
) -> bytes:
    """Line protocol (precision s) for one market's bars, built with Arrow's vectorised string
    kernels: about 4x less client CPU than formatting row by row.

    Fields are floats: Arrow prints the shortest exact round-trip form ("3" or "1.5e-07"), and
    line protocol reads a number without an ``i`` suffix as a float; ``int_fields`` (counts in
    a measurement that holds them as integers) are written as integers (``3i``). ``kind`` None:
    no ``kind`` tag (an existing aggr-server measurement, whose series have only ``market``).
    """
    tags = f",kind={escape_tag(kind)}" if kind is not None else ""
    prefix = f"{escape_measurement(measurement)}{tags},market={escape_tag(market)} "
    parts = []
    for i, f in enumerate(BAR_FIELDS):
        v = bars[f].to_numpy(np.float64)
        if f in int_fields:
            ints = pc.cast(pa.array(np.rint(v).astype(np.int64)), pa.string())
            col = pc.binary_join_element_wise(ints, "i", "")
        else:
            col = pc.cast(pa.array(v), pa.string())
        parts.append(pc.binary_join_element_wise(("," if i else prefix) + f + "=", col, ""))
    t = pc.cast(pa.array(bars["time"].to_numpy(np.int64)), pa.string())
    parts.append(pc.binary_join_element_wise(" ", t, "\n", ""))
    joined = pc.binary_join_element_wise(*parts, "")
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)
    lo, hi = int(offsets[joined.offset]), int(offsets[joined.offset + len(joined)])
    data: bytes = joined.buffers()[2].to_pybytes()
    return data[lo:hi]


class InfluxStore(InfluxClient):
    """Bars, coverage and gaps in InfluxDB 1.x (or 2.x/3.x through their v1 API)."""

    name = "influx"
    foreign_writers = True  # aggr-server writes the same schema

    def __init__(self, settings: InfluxSettings, client: httpx.Client | None = None) -> None:
        super().__init__(settings, client)
        self._layouts: dict[tuple[str, str], tuple[bool, frozenset[str]]] = {}

    def setup(self, *, alter: bool = False) -> list[str]:
        """Create the database and the retention policies it lacks (InfluxDB 1.x; idempotent).

        An existing policy (aggr-server's, with its own duration) is left as it is unless
        ``alter``; returns one line per policy saying what exists and what was done."""
        db = quote_ident(self.s.database)
        self.execute(f"CREATE DATABASE {db}")
        report = []
        for rp, duration in (
            (self.s.rp_1s, self.s.retention_1s),
            (self.s.rp_1m, self.s.retention_1m),
        ):
            existing = {
                str(row[0]): str(row[1]) for row in self.show(f"SHOW RETENTION POLICIES ON {db}")
            }
            if rp in existing and not alter:
                report.append(
                    f"retention policy {rp!r} exists (duration {existing[rp]}): left "
                    f"as it is (--alter-retention sets it to {duration})"
                )
                continue
            verb = "ALTER" if rp in existing else "CREATE"
            self.execute(
                f"{verb} RETENTION POLICY {quote_ident(rp)} ON {db} "
                f"DURATION {duration} REPLICATION 1"
            )
            was = f" (was {existing[rp]})" if rp in existing else ""
            report.append(f"retention policy {rp!r} {verb.lower()}ed with duration {duration}{was}")
        return report

    def _rp_measurement(self, timeframe: str) -> tuple[str, str]:
        if timeframe == "1s":
            return self.s.rp_1s, self.s.measurement_1s
        if timeframe == "1m":
            return self.s.rp_1m, self.s.measurement_1m
        raise ValueError(f"unknown timeframe {timeframe!r} (1s or 1m)")

    # ----- writing -----------------------------------------------------------------------------
    def write_bars(self, market: str, kind: str, bars: pd.DataFrame, timeframe: str) -> int:
        """Write bars in batches of ``batch_size`` points, two requests in flight.

        Points are keyed by (measurement, tags, time), so a rewrite overwrites: idempotent.
        """
        rp, meas = self._rp_measurement(timeframe)
        kind_tag, int_fields = self._layout(rp, meas)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="influx-write")
        pending: list[Future[None]] = []
        for chunk in _chunks(bars, self.s.batch_size):
            body = bar_body(meas, market, kind if kind_tag else None, chunk, int_fields)
            pending.append(self._pool.submit(self.write_body, body, rp))
            if len(pending) >= 2:
                pending.pop(0).result()
        for f in pending:
            f.result()
        return len(bars)

    def _layout(self, rp: str, meas: str) -> tuple[bool, frozenset[str]]:
        """How an existing measurement is written (asked once per store object): with our
        ``kind`` tag unless it already holds series without one (aggr-server's: writing with
        ``kind`` would make a second series and double every sum), and which fields it holds
        as integers."""
        if (rp, meas) not in self._layouts:
            src = self._src(rp, meas)
            tags = {str(r[0]) for r in self.show(f"SHOW TAG KEYS FROM {src}")}
            types = {str(r[0]): str(r[1]) for r in self.show(f"SHOW FIELD KEYS FROM {src}")}
            kind_tag = not tags or "kind" in tags
            ints = frozenset(f for f, t in types.items() if t == "integer" and f in BAR_FIELDS)
            if not kind_tag or ints:
                log.info(
                    "InfluxDB %s: existing layout kept (kind tag: %s, integer fields: %s)",
                    src,
                    kind_tag,
                    ", ".join(sorted(ints)) or "none",
                )
            self._layouts[(rp, meas)] = (kind_tag, ints)
        return self._layouts[(rp, meas)]

    def append_bars(self, market: str, kind: str, bars: pd.DataFrame, timeframe: str) -> int:
        """Live appends are ordinary writes here (points overwrite by key)."""
        return self.write_bars(market, kind, bars, timeframe)

    def add_coverage(self, market: str, start: int, end: int) -> None:
        line = f"{COVERAGE_MEASUREMENT},market={escape_tag(market)} end={int(end)}i {int(start)}"
        self.write_lines([line], rp=None)

    def record_gap(self, market: str, start: int, end: int, reason: str) -> None:
        r = reason.replace("\\", "\\\\").replace('"', '\\"')
        tags = f"{GAPS_MEASUREMENT},market={escape_tag(market)}"
        line = f'{tags} end={int(end)}i,reason="{r}" {int(start)}'
        self.write_lines([line], rp=None)

    def write_oi(self, market: str, oi: pd.DataFrame) -> int:
        """Open interest in USD: measurement ``open_interest``, tag ``market``, field ``oi``."""
        tag = f"{OI_MEASUREMENT},market={escape_tag(market)}"
        lines = [
            f"{tag} oi={float(v)!r} {int(t)}"
            for t, v in zip(oi["time"].tolist(), oi["oi"].tolist(), strict=True)
        ]
        self.write_lines(lines, rp=None)
        return len(lines)

    def read_oi(self, market: str, start: int, end: int) -> pd.DataFrame:
        df = self.query(
            f"SELECT oi FROM {quote_ident(OI_MEASUREMENT)} WHERE market = {quote_str(market)} "
            f"AND time >= {int(start)}s AND time < {int(end)}s"
        )
        if not len(df):
            return pd.DataFrame(
                {"time": pd.Series(dtype="int64"), "oi": pd.Series(dtype="float64")}
            )
        return pd.DataFrame({"time": df["time"].to_numpy(np.int64), "oi": df["oi"].to_numpy(float)})

    # ----- import ledger -----------------------------------------------------------------------
    def imported(self) -> dict[str, Any]:
        """Archive files already imported into this database (key -> recorded details)."""
        df = self.query(f"SELECT info FROM {quote_ident(IMPORTS_MEASUREMENT)} GROUP BY file")
        if not len(df):
            return {}
        return {
            t.split("=", 1)[1]: json.loads(i) for t, i in zip(df["tags"], df["info"], strict=True)
        }

    def mark_imported(self, key: str, info: dict[str, Any]) -> None:
        doc = json.dumps(info, sort_keys=True).replace("\\", "\\\\").replace('"', '\\"')
        self.write_lines([f'{IMPORTS_MEASUREMENT},file={escape_tag(key)} info="{doc}" 0'], rp=None)

    # ----- reading -----------------------------------------------------------------------------

    def read_bars(self, market: str, start: int, end: int, timeframe: str = "1m") -> pd.DataFrame:
        rp, meas = self._rp_measurement(timeframe)
        fields = ",".join(quote_ident(f) for f in (*BAR_FIELDS, COUNTS_UNKNOWN))
        q = (
            f"SELECT {fields} FROM {self._src(rp, meas)}"
            f" WHERE market = {quote_str(market)} AND time >= {int(start)}s AND time < {int(end)}s"
        )
        df = self.query(q)
        return _bars_frame(df)

    def read_grouped(
        self, markets: list[str], start: int, end: int, timeframe_s: int
    ) -> dict[str, pd.DataFrame]:
        """What ``load_flow`` reads of each market for ``timeframe_s`` candles: the last close and
        the flow sums (``open``/``high``/``low`` come back NaN: the flow never uses them).

        Whole minutes are read as stored (1-minute rollups, with the klines' ``counts_unknown``);
        longer whole-minute candles are summed server-side (GROUP BY time); any other timeframe
        reads the 1-second bars. One query per market, all markets in flight together (the server
        answers each on its own core; read one after another they add up).
        """
        if timeframe_s % 60 == 0 and timeframe_s != 60:
            rp, meas = self._rp_measurement("1m")
            sel = "last(close) AS close, " + ", ".join(
                f"sum({quote_ident(f)}) AS {quote_ident(f)}" for f in FLOW_FIELDS
            )
            # one kline minute in a candle makes its counts unknown (as NaN sums do on Parquet)
            sel += f", max({quote_ident(COUNTS_UNKNOWN)}) AS {quote_ident(COUNTS_UNKNOWN)}"
            group = f" GROUP BY time({int(timeframe_s)}s) fill(none)"
            extra: tuple[str, ...] = ()
        else:
            rp, meas = self._rp_measurement("1m" if timeframe_s == 60 else "1s")
            extra = (COUNTS_UNKNOWN,) if timeframe_s == 60 else ()
            sel = ",".join(quote_ident(f) for f in ("close", *FLOW_FIELDS, *extra))
            group = ""

        def one(market: str) -> pd.DataFrame:
            where = (
                f" FROM {self._src(rp, meas)} WHERE market = {quote_str(market)} "
                f"AND time >= {int(start)}s AND time < {int(end)}s"
            )
            bars = _bars_frame(self._numeric(f"SELECT {sel}{where}{group}"))
            if group and len(bars):
                # as rollup and bucket_bars: the last minute with taker trades (or unknown
                # counts: klines) sets the close; a minute of liquidations only does not
                taker = " OR ".join(
                    f"{quote_ident(f)} > 0" for f in ("cbuy", "csell", COUNTS_UNKNOWN)
                )
                closes = self._numeric(f"SELECT last(close) AS close{where} AND ({taker}){group}")
                if len(closes):
                    by_time = pd.Series(closes["close"].to_numpy(np.float64), closes["time"])
                    taker_close = bars["time"].map(by_time)
                    bars["close"] = taker_close.fillna(bars["close"]).to_numpy(np.float64)
            return bars

        if self._read_pool is None:
            self._read_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="influx-read")
        futures = {m: self._read_pool.submit(one, m) for m in dict.fromkeys(markets)}
        return {m: f.result() for m, f in futures.items()}

    def markets(self) -> dict[str, str]:
        """Markets (with kind where tagged) present in the 1-second or 1-minute bars."""
        out: dict[str, str] = {}
        for res in ("1s", "1m"):
            rp, meas = self._rp_measurement(res)
            df = self.query(
                f"SELECT last(close) AS close FROM {self._src(rp, meas)} GROUP BY market, kind",
                chunked=False,
            )
            for tags in df.get("tags", pd.Series(dtype=str)).dropna():
                kv = dict(p.split("=", 1) for p in tags.split(",") if "=" in p)
                out.setdefault(kv.get("market", ""), kv.get("kind", ""))
        return {m: k for m, k in out.items() if m}

    def time_range(self, market: str, timeframe: str = "1m") -> tuple[int, int] | None:
        rp, meas = self._rp_measurement(timeframe)
        src = self._src(rp, meas)
        where = f"WHERE market = {quote_str(market)}"
        first = self.query(f"SELECT first(close) FROM {src} {where}", chunked=False)
        last = self.query(f"SELECT last(close) FROM {src} {where}", chunked=False)
        if not len(first) or not len(last):
            return None
        return int(first["time"].iloc[0]), int(last["time"].iloc[0])

    def coverage(self, market: str) -> Intervals:
        df = self.query(
            f'SELECT "end" FROM {quote_ident(COVERAGE_MEASUREMENT)} '
            f"WHERE market = {quote_str(market)}"
        )
        if not len(df):
            return as_intervals([])
        return merge_intervals(
            np.stack([df["time"].to_numpy(np.int64), df["end"].to_numpy(np.int64)], axis=1)
        )

    def gaps(self, market: str) -> pd.DataFrame:
        df = self.query(
            f'SELECT "end", reason FROM {quote_ident(GAPS_MEASUREMENT)} '
            f"WHERE market = {quote_str(market)}"
        )
        if not len(df):
            return pd.DataFrame({"start": [], "end": [], "reason": []})
        return pd.DataFrame({"start": df["time"], "end": df["end"], "reason": df["reason"]})


def _chunks(df: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for i in range(0, len(df), size):
        yield df.iloc[i : i + size]


def _bars_frame(df: pd.DataFrame, extra: Iterable[str] = ()) -> pd.DataFrame:
    cols = ["time", *BAR_FIELDS, *extra]
    if not len(df):
        return pd.DataFrame(
            {c: pd.Series(dtype="int64" if c == "time" else "float64") for c in cols}
        )
    out = pd.DataFrame({"time": df["time"].to_numpy(np.int64)})
    for c in cols[1:]:
        # integer or float counts alike; aggr-server leaves a flow field out when it is zero:
        # in a stored row a missing flow is a zero (a missing price stays NaN: no trade price)
        v = df[c].to_numpy(np.float64) if c in df else np.full(len(df), np.nan)
        out[c] = np.nan_to_num(v, nan=0.0) if c in FLOW_FIELDS else v
    if COUNTS_UNKNOWN in df:  # counts never written (klines): unknown, not zero
        unknown = df[COUNTS_UNKNOWN].to_numpy(np.float64) > 0
        out.loc[unknown, ["cbuy", "csell"]] = np.nan
    return out.sort_values("time", ignore_index=True)
