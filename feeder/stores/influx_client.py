"""InfluxDB's v1 HTTP API: requests with bounded retries, statements, ``SHOW``, line-protocol
writes and CSV query responses, and the quoting and escaping they need. ``InfluxStore`` (the
``BarStore`` on top, ``feeder.stores.influx``) extends this client."""

from __future__ import annotations

import io
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Self

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from feeder.redact import redact, redact_url
from feeder.settings import InfluxSettings

log = logging.getLogger(__name__)


class InfluxError(RuntimeError):
    """InfluxDB refused a request; the message carries the server's own words.

    ``permanent``: the server refused this request itself (a 4xx such as a field type conflict
    or a malformed point); sending it again can never succeed. Otherwise (5xx, unreachable,
    timeouts, 408/429) it is an outage and a retry later may succeed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def permanent(self) -> bool:
        return (
            self.status is not None and 400 <= self.status < 500 and self.status not in (408, 429)
        )


def escape_tag(value: str) -> str:
    """Escape a tag key or value for line protocol (commas, equals signs, spaces)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_measurement(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxClient:
    """One InfluxDB database through the v1 HTTP API."""

    def __init__(self, settings: InfluxSettings, client: httpx.Client | None = None) -> None:
        self.s = settings
        auth = (settings.username, settings.password or "") if settings.username else None
        self.http = client or httpx.Client(
            base_url=settings.url.rstrip("/"), timeout=settings.timeout_s, auth=auth
        )
        self._pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        for pool in (self._pool, self._read_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: object) -> httpx.Response:
        """One request with capped exponential backoff and jitter on 5xx and connection errors.

        4xx is not retried: it raises ``InfluxError`` naming the server's message.
        """
        delay = 0.2
        for attempt in range(self.s.max_retries + 1):
            try:
                resp = self.http.request(method, path, **kw)  # type: ignore[arg-type]
            except httpx.TransportError as e:
                if attempt == self.s.max_retries:
                    raise InfluxError(
                        f"InfluxDB at {redact_url(self.s.url)} unreachable: {redact(repr(e))}"
                    ) from e
                log.warning("InfluxDB %s %s failed (%r); retry in %.1fs", method, path, e, delay)
            else:
                if resp.status_code < 400:
                    return resp
                message = _server_message(resp)
                if resp.status_code < 500 and resp.status_code not in (408, 429):
                    raise InfluxError(
                        f"InfluxDB refused {method} {path}: {resp.status_code} {message}",
                        resp.status_code,
                    )
                if attempt == self.s.max_retries:
                    raise InfluxError(
                        f"InfluxDB error {resp.status_code} on {path}: {message}", resp.status_code
                    )
                log.warning("InfluxDB %s %s: %s %s; retry", method, path, resp.status_code, message)
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        try:
            return self.http.get("/ping").status_code == 204
        except httpx.TransportError:
            return False

    def execute(self, q: str) -> None:
        """Run a statement (CREATE/DROP/...) and raise on an InfluxQL error."""
        resp = self._request("POST", "/query", params={"q": q, "db": self.s.database})
        for r in resp.json().get("results", []):
            if "error" in r:
                raise InfluxError(f"InfluxQL error in {q!r}: {r['error']}")

    def show(self, q: str) -> list[list[object]]:
        """Rows of a SHOW statement (JSON response; CSV repeats the ``name`` column)."""
        resp = self._request("POST", "/query", data={"q": q, "db": self.s.database})
        out: list[list[object]] = []
        for r in resp.json().get("results", []):
            if "error" in r:
                raise InfluxError(f"InfluxQL error in {q!r}: {r['error']}")
            for series in r.get("series", []):
                out.extend(series.get("values", []))
        return out

    def write_lines(self, lines: list[str], rp: str | None, precision: str = "s") -> None:
        if lines:
            self.write_body("\n".join(lines).encode(), rp, precision)

    def write_body(self, body: bytes, rp: str | None, precision: str = "s") -> None:
        params = {"db": self.s.database, "precision": precision}
        if rp:
            params["rp"] = rp
        self._request("POST", "/write", params=params, content=body)

    def _src(self, rp: str, measurement: str) -> str:
        """Fully qualified ``"db"."rp"."measurement"`` (identifiers quoted and escaped)."""
        return f"{quote_ident(self.s.database)}.{quote_ident(rp)}.{quote_ident(measurement)}"

    def query(self, q: str, *, chunked: bool = True) -> pd.DataFrame:
        """Run an InfluxQL query; the CSV response (chunked) is parsed by pandas.

        Times come back as epoch seconds in column ``time``; tags in column ``tags``.
        """
        body = self._csv(q, chunked)
        if not body:
            return pd.DataFrame()
        return pd.read_csv(io.BytesIO(body), dtype={"tags": str})

    def _csv(self, q: str, chunked: bool = True) -> bytes:
        """The CSV response of a query (times as epoch seconds), one header line; b"" if empty."""
        params = {"q": q, "db": self.s.database, "epoch": "s"}
        if chunked:
            params["chunked"] = "true"
            params["chunk_size"] = "50000"
        resp = self._request("POST", "/query", data=params, headers={"Accept": "application/csv"})
        body = resp.content
        if not body.strip():
            return b""
        if body.startswith(b"error\n"):
            raise InfluxError(f"InfluxQL error in {q!r}: {body[6:].decode().strip()}")
        # A chunked response repeats its header line before every series: drop the repeats.
        header, _, rest = body.partition(b"\n")
        rest = rest.replace(b"\n" + header + b"\n", b"\n")
        if rest.startswith(header + b"\n"):
            rest = rest[len(header) + 1 :]
        return header + b"\n" + rest

    def _numeric(self, q: str) -> pd.DataFrame:
        """A bar query's numeric columns (``time`` and fields; no name/tags), parsed by Arrow's
        CSV reader (about 3x faster than pandas' here); empty cells are NaN."""
        body = self._csv(q)
        if not body:
            return pd.DataFrame()
        header = body[: body.index(b"\n")].decode().split(",")
        types = {c: (pa.int64() if c == "time" else pa.float64()) for c in header[2:]}
        table = pa_csv.read_csv(
            io.BytesIO(body),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, include_columns=list(types), strings_can_be_null=True
            ),
        )
        return table.to_pandas()


def _server_message(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
    except ValueError:
        pass
    return resp.text.strip()[:500]
