"""Against the real InfluxDB 1.x started by scripts/test (v1 HTTP API only)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pandas as pd
import pytest

from feeder.settings import InfluxSettings
from feeder.stores.influx import InfluxStore
from feeder.stores.influx_client import InfluxError
from tests import store_cases as cases

pytestmark = pytest.mark.backend


@pytest.fixture
def store(influx_db):
    url, db = influx_db
    s = InfluxStore(InfluxSettings(url=url, database=db, max_retries=1))
    s.setup()
    yield s
    s.close()


def test_setup_creates_the_aggr_server_database_and_policies_idempotently(store):
    store.setup()
    rps = store.show(f'SHOW RETENTION POLICIES ON "{store.s.database}"')
    assert {"aggr_1s", "aggr_1m"} <= {r[0] for r in rps}


def test_round_trip_and_idempotent_rewrite(store):
    cases.check_round_trip_and_idempotent_rewrite(store)


def test_flow_sums_the_markets_of_each_kind_at_any_timeframe(store):
    cases.check_flow_sums_markets_of_each_kind(store)


def test_gaps_are_flagged_and_never_zero(store):
    cases.check_gaps_are_flagged_not_zero(store)


def test_the_schema_reads_with_plain_influxql_the_way_aggr_server_queries_it(store):
    bars = cases.make_bars(cases.DAY0, 600, 1)
    store.write_bars("BINANCE:btcusdt", "spot", bars, "1s")
    # The first SqueezeFlow system's query shape against aggr-server's database.
    q = (
        "SELECT sum(vbuy) AS vbuy, sum(vsell) AS vsell, last(close) AS close "
        f'FROM "{store.s.database}"."aggr_1s"."trades_1s" '
        f"WHERE market = 'BINANCE:btcusdt' "
        f"AND time >= {cases.DAY0}s AND time < {cases.DAY0 + 600}s "
        "GROUP BY time(5m) fill(none)"
    )
    resp = httpx.get(f"{store.s.url}/query", params={"db": store.s.database, "q": q, "epoch": "s"})
    series = resp.json()["results"][0]["series"][0]
    assert series["name"] == "trades_1s"
    assert series["columns"] == ["time", "vbuy", "vsell", "close"]
    got = pd.DataFrame(series["values"], columns=series["columns"])
    assert got["vbuy"].sum() == pytest.approx(bars["vbuy"].sum())
    tags = httpx.get(
        f"{store.s.url}/query",
        params={"db": store.s.database, "q": 'SHOW TAG KEYS FROM "aggr_1s"."trades_1s"'},
    ).json()
    assert sorted(v[0] for v in tags["results"][0]["series"][0]["values"]) == ["kind", "market"]
    fields = httpx.get(
        f"{store.s.url}/query",
        params={"db": store.s.database, "q": 'SHOW FIELD KEYS FROM "aggr_1s"."trades_1s"'},
    ).json()
    types = dict(fields["results"][0]["series"][0]["values"])
    assert set(types) == {
        "open",
        "high",
        "low",
        "close",
        "vbuy",
        "vsell",
        "cbuy",
        "csell",
        "lbuy",
        "lsell",
    }
    assert set(types.values()) == {"float"}


def test_a_4xx_names_the_servers_message(store):
    with pytest.raises(InfluxError, match="unable to parse"):
        store.write_lines(["this is not line protocol"], rp="aggr_1s")
    with pytest.raises(InfluxError, match="error parsing query"):
        store.query("SELEC nothing")


class FlakyProxy:
    """A loopback HTTP proxy in front of the real InfluxDB that counts every request it gets and
    fails the first ones as told: ``"503"`` answers 503 with an InfluxDB-style error, ``"drop"``
    closes the connection without an answer; later requests are forwarded."""

    def __init__(self, upstream: str, failures: list[str]) -> None:
        self.upstream, self.failures, self.requests = upstream, list(failures), []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.command, self.path.split("?")[0]))
                fail = proxy.failures.pop(0) if proxy.failures else None
                if fail == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fail == "503":
                    resp = httpx.Response(503, json={"error": "flaky proxy: try again"})
                else:
                    resp = httpx.request(
                        self.command, proxy.upstream + self.path, content=body, timeout=10
                    )
                self.send_response(resp.status_code)
                self.send_header("Content-Type", resp.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_5xx_and_a_dropped_connection_are_retried_and_the_write_lands(influx_db):
    url, db = influx_db
    proxy = FlakyProxy(url, ["503", "drop"])
    try:
        s = InfluxStore(InfluxSettings(url=proxy.url, database=db, max_retries=2))
        InfluxStore(InfluxSettings(url=url, database=db)).execute(f'CREATE DATABASE "{db}"')
        s.write_lines(["retried f=1 1704067200"], rp=None)
        assert proxy.requests == [("POST", "/write")] * 3  # 503, dropped, then forwarded
    finally:
        proxy.close()
    direct = InfluxStore(InfluxSettings(url=url, database=db))
    got = direct.query('SELECT "f" FROM "retried"')
    assert got["time"].tolist() == [1_704_067_200] and got["f"].tolist() == [1]


def test_a_server_failing_every_attempt_is_tried_max_retries_plus_one_times_then_reported(
    influx_db,
):
    url, db = influx_db
    proxy = FlakyProxy(url, ["503"] * 10)
    try:
        s = InfluxStore(InfluxSettings(url=proxy.url, database=db, max_retries=2))
        with pytest.raises(InfluxError, match="503.*flaky proxy: try again"):
            s.write_lines(["m f=1 1"], rp=None)
        assert len(proxy.requests) == 3
    finally:
        proxy.close()


def test_an_unreachable_server_is_retried_then_reported():
    proxy = FlakyProxy("http://127.0.0.1:9", ["drop"] * 10)  # accepts, never answers
    try:
        s = InfluxStore(InfluxSettings(url=proxy.url, max_retries=2, timeout_s=1))
        with pytest.raises(InfluxError, match="unreachable"):
            s.write_lines(["m f=1 1"], rp=None)
        assert len(proxy.requests) == 3  # every attempt reached the server: 1 + max_retries
    finally:
        proxy.close()


def test_markets_status_lists_what_is_stored(store):
    bars = cases.fill(store, seconds=600)["BINANCE:btcusdt"]
    assert store.markets() == {m.id: m.kind.value for m in cases.SETTINGS.markets("BTC")}
    assert store.time_range("BINANCE:btcusdt", "1s") == (bars["time"].min(), bars["time"].max())


@pytest.mark.shared
def test_archive_import_into_influx_resumes_and_reads_like_parquet(store, market_data, tmp_path):
    from feeder.history.binance_archive import discover
    from feeder.history.importer import import_files
    from feeder.read.flow import load_flow
    from feeder.settings import settings_from_dict
    from feeder.stores.parquet import ParquetStore

    root = market_data / "binance_datatool/tommy-ca/data"
    coins = {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": ["BINANCE_FUTURES:btcusd_perp"]}}
    settings = settings_from_dict({"coins": coins}, env=False)
    files = discover(root, None)
    first = import_files(files, store, settings, progress=False)
    again = import_files(files, store, settings, progress=False)
    assert (first.files_done, again.files_done, again.files_skipped) == (1, 0, 1)
    pq = ParquetStore(tmp_path)
    import_files(files, pq, settings, progress=False)
    for tf in ("1h", "5m", "1m", "30s"):
        a = load_flow(store, settings, "BTC", "2026-05-08", "2026-05-09", tf, per_market=True)
        b = load_flow(pq, settings, "BTC", "2026-05-08", "2026-05-09", tf, per_market=True)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
        assert a["BINANCE_FUTURES:btcusd_perp|complete"].all()


def test_open_interest_sums_the_last_value_of_every_perp(store):
    cases.check_open_interest_is_the_last_value_in_each_candle_summed_over_perps(store)
