"""The strategy's one data-access object: flow for a coin, history and live.

Backtesting and hyperopt call ``history`` once per coin and range. Live and dry-run call
``catch_up`` once (candles from the store), then ``poll`` every bot loop: new 1-second bars come
from the Redis streams and are folded into the candles after the boundary (at catch-up the end of
the store's last complete candle less ``retain_s``; it then moves past every candle whose flow is
final, see ``_advance``, so a poll's work does not grow with uptime); when Redis is unreachable
the store is polled instead, and the log says so once. ``age`` is the time since the slowest
market's newest final bar (its watermark), for the staleness guard.

Completeness means the same live as in the store (``load_flow``): a candle is complete when every
market's coverage holds all of it. Live coverage after the boundary is the store's coverage seen
at catch-up plus the feeder session's coverage published with the watermark (exactly what it
writes to the store), minus every range whose bars did not reach the stream (the publisher's
``lost`` ranges, entries trimmed before they were read). A live outage is therefore a gap, never
zero flow. Each poll reads the live state first, then drains the streams completely.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import redis

from feeder.ingest.models import BAR_FIELDS, FLOW_FIELDS, Kind
from feeder.read.diagnostics import (
    catch_up_message,
    complete_until,
    live_markets_line,
    log_history,
    market_lines,
    newest_markets,
)
from feeder.read.flow import (
    assemble,
    bucket_bars,
    final_candles,
    flow_age,
    load_flow,
    open_interest,
    timeframe_seconds,
)
from feeder.redact import redact, redact_url
from feeder.settings import Settings
from feeder.stores import BarStore, open_store
from feeder.stores.coverage import (
    Intervals,
    as_intervals,
    covered,
    in_intervals,
    merge_intervals,
    subtract_intervals,
)
from feeder.stores.redis_codec import LiveState
from feeder.stores.redis_stream import RedisBarStream, stream_id

log = logging.getLogger(__name__)

FLOW_COLUMNS = tuple(f"{k}_{f}" for k in ("spot", "perp") for f in (*FLOW_FIELDS, "close"))


def coin_of(pair: str) -> str:
    """``"BTC/USDT:USDT" -> "BTC"``."""
    return pair.split("/", 1)[0].upper()


class FlowSource:
    def __init__(
        self,
        settings: Settings,
        timeframe: str,
        store: BarStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.tf = timeframe_seconds(timeframe)
        self.timeframe = timeframe
        self.store = store or open_store(settings)
        self.clock = clock
        self._history: dict[tuple[str, int, int], pd.DataFrame] = {}
        self._candles: dict[str, pd.DataFrame] = {}
        self._boundary: dict[str, int] = {}
        self._keep: dict[str, int] = {}
        self._logged_until: dict[str, int | None] = {}
        self._markets_said: dict[str, tuple[str, ...]] = {}
        self._seconds: dict[str, pd.DataFrame] = {}
        self._stream_ids: dict[str, str] = {}
        self._states: dict[str, LiveState | None] = {}
        self._store_cov: dict[str, Intervals] = {}
        self._lost: dict[str, list[tuple[int, int]]] = {}
        self._read_wm: dict[str, int] = {}
        self._redis: RedisBarStream | None = None
        self._redis_up: bool | None = None
        self.trimmed = 0  # times the stream was trimmed past what this reader had read
        self.source = "store"

    # ----- backtesting / hyperopt -------------------------------------------------------------
    def history(self, coin: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Flow for candles opening in ``[start, end]`` (inclusive), loaded once per range."""
        s = int(pd.Timestamp(start).timestamp())
        e = int(pd.Timestamp(end).timestamp()) + self.tf
        key = (coin, s, e)
        if key not in self._history:
            t0 = time.perf_counter()
            self._history[key] = load_flow(self.store, self.settings, coin, s, e, self.timeframe)
            log_history(log, self.store, self.settings, coin, self._history[key], self.tf, t0)
        return self._history[key]

    # ----- live / dry-run ---------------------------------------------------------------------
    def catch_up(self, coin: str, candles: int) -> pd.DataFrame:
        """Load the last ``candles`` candles from the store; Redis bars continue from there."""
        now = int(self.clock())
        end = now - now % self.tf + self.tf
        start = end - candles * self.tf
        flow = load_flow(self.store, self.settings, coin, start, end, self.timeframe)
        ok = flow["complete"].to_numpy()
        # Candles up to the last complete one come from the store; later ones are rebuilt from
        # 1-second bars (the store's, then Redis'), from retain_s before it: a late trade can
        # still correct a second that far back, and the store will hold the correction.
        last = int(np.flatnonzero(ok)[-1]) + 1 if ok.any() else 0
        back = -(-self.settings.feeder.retain_s // self.tf)
        b = start + max(0, last - back) * self.tf
        self._boundary[coin] = b
        self._candles[coin] = flow
        # candles kept live (older ones drop out): twice the catch-up, at least a day's
        self._keep.setdefault(coin, max(2 * candles, 86_400 // self.tf))
        for m in self.settings.markets(coin):
            # What the store already holds after the boundary stays (coverage first, then bars:
            # the writer stores bars before the coverage that vouches for them).
            cov = self.store.coverage(m.id)
            cov = cov[cov[:, 1] > b].copy()
            cov[:, 0] = np.maximum(cov[:, 0], b)
            self._store_cov[m.id] = cov
            secs = self.store.read_bars(m.id, b, end + self.tf, "1s")
            self._seconds[m.id] = secs[["time", *BAR_FIELDS]].reset_index(drop=True)
            self._stream_ids.pop(m.id, None)  # the next poll reads the stream from the boundary
            self._lost[m.id] = []
        until = complete_until(
            self.store,
            self.settings.markets(coin),
            start + last * self.tf if ok.any() else None,
            require=self.settings.flow.require,
        )
        if self._logged_until.get(coin, -1) != until:  # said once, again only when it changes
            if coin not in self._logged_until:  # at start: markets without history, unused
                for line in market_lines(self.store, self.settings, coin, flow, typos=set()):
                    log.warning(line)
            self._logged_until[coin] = until
            log.info(catch_up_message(coin, self.store.name, len(flow), until, now, self.tf))
        self._say_markets(coin, flow)
        return flow

    def _say_markets(self, coin: str, flow: pd.DataFrame) -> None:
        """Log which markets make the newest complete candle's flow: at start, then only when
        that set changes (never every loop)."""
        newest = newest_markets(flow)
        if newest is not None and self._markets_said.get(coin) != newest[1]:
            self._markets_said[coin] = newest[1]
            log.info(live_markets_line(self.settings, coin, *newest))

    def _redis_client(self) -> RedisBarStream:
        if self._redis is None:
            r = self.settings.redis
            self._redis = RedisBarStream(r.url, prefix=r.prefix, maxlen=r.maxlen)
        return self._redis

    @property
    def bad_entries(self) -> dict[str, int]:
        """Stream entries and states skipped as invalid, by reason."""
        return dict(self._redis.bad.counts) if self._redis is not None else {}

    def poll(self, coins: list[str]) -> None:
        """Fold new live bars into each coin's candles (Redis, or the store as a fallback)."""
        if not self.settings.redis.enabled:
            self._poll_store(coins)
            return
        boundary = {m.id: self._boundary[c] for c in coins for m in self.settings.markets(c)}
        ids = list(boundary)
        try:
            client = self._redis_client()
            states = client.states(ids)  # first: every bar below these watermarks is published
            frames = [self._read_new(client, [m for m in ids if m in self._stream_ids])]
            for m in (m for m in ids if m not in self._stream_ids):
                bars, self._stream_ids[m], trimmed_until = client.read_from(m, boundary[m])
                if trimmed_until is not None and trimmed_until > boundary[m]:
                    self._trimmed(m, boundary[m], trimmed_until)
                frames.append(bars)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            if self._redis_up is not False:
                log.warning(
                    "SqueezeFlow: Redis unreachable at %s (%s): polling the %s store instead",
                    redact_url(self.settings.redis.url),
                    redact(str(e)),
                    self.store.name,
                )
            self._redis_up = False
            self._poll_store(coins)
            return
        if self._redis_up is False:
            log.info("SqueezeFlow: Redis is back; live bars from the stream again")
        self._redis_up = True
        self.source = "redis"
        self._states.update(states)
        bars = pd.concat(frames, ignore_index=True)
        for m in ids:
            self._reread_lost(m, boundary[m])
        for m, new in bars.groupby("market", sort=False):
            self._read_wm[str(m)] = max(self._read_wm.get(str(m), 0), int(new["wm"].max()))
            old = self._seconds.get(str(m))
            merged = pd.concat([old, new[["time", *BAR_FIELDS]]], ignore_index=True)
            merged = merged.drop_duplicates("time", keep="last").sort_values("time")
            self._seconds[str(m)] = merged.reset_index(drop=True)
        for coin in coins:
            self._rebuild(coin)

    def _read_new(self, client: RedisBarStream, markets: list[str]) -> pd.DataFrame:
        """Drain the streams after each market's cursor; detect entries trimmed unread."""
        if not markets:
            return client.read([], after={})[0]
        prev = {m: self._stream_ids[m] for m in markets}
        bars, ids = client.read(markets, after=self._stream_ids)
        self._stream_ids.update(ids)
        for m, (first, _) in client.first_ids(markets).items():
            if prev[m] != "0" and first > stream_id(prev[m]):
                # The last entry this reader saw is gone: entries after it may be too. They held
                # bars below the watermark of the first entry left, and at most retain_s older
                # (corrections) than what was read before.
                got = bars.loc[bars["market"] == m, "wm"]
                st = client.states([m])[m]
                wm_now = st.watermark if st else self._read_wm.get(m, 0)
                hi = int(got.min()) if len(got) else wm_now
                lo = self._read_wm.get(m, hi) - self.settings.feeder.retain_s
                self._trimmed(m, lo, hi)
        return bars

    def _reread_lost(self, market: str, b: int) -> None:
        """Bars that never reached the stream (lost, trimmed) are read from the store, the
        record, as soon as its coverage holds them; until then they are a gap."""
        st = self._states.get(market)
        lost = as_intervals(self._lost.get(market, []))
        if st is not None:
            lost = np.concatenate([st.lost, lost])
        lost = lost[lost[:, 1] > b]
        if not len(lost):
            return
        lost[:, 0] = np.maximum(lost[:, 0], b)
        have = self._store_cov.get(market, as_intervals([]))
        need = subtract_intervals(lost, have)
        if not len(need):
            return
        got = subtract_intervals(need, subtract_intervals(need, self.store.coverage(market)))
        if not len(got):
            return
        secs = self.store.read_bars(market, int(got[0, 0]), int(got[-1, 1]), "1s")
        self._seconds[market] = _replace_seconds(self._seconds.get(market), secs, got)
        self._store_cov[market] = merge_intervals(np.concatenate([have, got]))
        log.info(
            "SqueezeFlow: %s: %d s missing from the stream read from the %s store",
            market,
            int((got[:, 1] - got[:, 0]).sum()),
            self.store.name,
        )

    def _trimmed(self, market: str, start: int, end: int) -> None:
        self.trimmed += 1
        self._lost.setdefault(market, []).append((start, end))
        log.warning(
            "SqueezeFlow: %s: Redis stream trimmed before it was read: %s..%s is a gap",
            market,
            pd.Timestamp(start, unit="s", tz="UTC"),
            pd.Timestamp(end, unit="s", tz="UTC"),
        )

    def wait_final(self, coins: list[str], until: int, timeout: float, every: float = 0.05) -> bool:
        """Wait up to ``timeout`` seconds for every market's watermark to reach ``until``.

        Polls only the watermarks (one round trip for all markets), every ``every`` seconds.
        True when they all got there; False at the bound, when Redis is off or unreachable.
        """
        if not self.settings.redis.enabled:
            return False
        ids = [m.id for c in coins for m in self.settings.markets(c)]
        deadline = time.monotonic() + timeout
        while True:
            try:
                marks = self._redis_client().watermarks(ids)
            except (redis.ConnectionError, redis.TimeoutError):
                return False
            if self.settings.flow.require == "each_kind":  # never published: not waited for
                marks = {m: w for m, w in marks.items() if w is not None}
            if all(w is not None and w >= until for w in marks.values()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(every, max(0.0, deadline - time.monotonic())))

    def _poll_store(self, coins: list[str]) -> None:
        self.source = "store"
        for coin in coins:
            n = len(self._candles.get(coin, ()))
            self.catch_up(coin, max(n, 1))

    def coverage(self, market: str) -> Intervals:
        """Live coverage after the boundary: the store's at catch-up, plus the feeder session's
        published coverage below its watermark minus every range lost on the way."""
        live = as_intervals([])
        st = self._states.get(market)
        if st is not None and self.source == "redis":
            live = st.coverage[st.coverage[:, 0] < st.watermark].copy()
            live[:, 1] = np.minimum(live[:, 1], st.watermark)
            lost = np.concatenate([st.lost, as_intervals(self._lost.get(market, []))])
            live = subtract_intervals(live, lost) if len(lost) else live
        store = self._store_cov.get(market, as_intervals([]))
        return merge_intervals(np.concatenate([store, live]))

    def _rebuild(self, coin: str) -> None:
        """Recompute the candles after the store boundary from the buffered 1-second bars."""
        if coin not in self._candles:
            raise RuntimeError(f"catch_up({coin!r}) must run before poll")
        b = self._boundary[coin]
        now = int(self.clock())
        end = now - now % self.tf + self.tf
        n = max(0, (end - b) // self.tf)
        opens = b + self.tf * np.arange(n, dtype=np.int64)
        markets = self.settings.markets(coin)
        parts = []
        for m in markets:
            secs = self._seconds.get(m.id)
            if secs is None:  # (not as .get's default: building it costs ms on every poll)
                secs = _empty_seconds()
            sums = bucket_bars(secs[secs["time"] >= b], b, self.tf, n)
            parts.append((m, sums, covered(opens, self.tf, self.coverage(m.id))))
        live = assemble(opens, parts, require=self.settings.flow.require)  # as load_flow
        self._say_markets(coin, live)
        hist = self._candles[coin]
        hist = hist[hist.index < pd.Timestamp(b, unit="s", tz="UTC")]
        df = pd.concat([hist[list(live.columns)], live])
        # Open interest of every candle kept, from the store each poll: a poll that lands late
        # still reaches the candle it was observed in (as the backtest sees it).
        s0 = int(df.index[0].timestamp()) if len(df) else b
        perps = [m.id for m in markets if m.kind is Kind.PERP]
        df["oi"] = open_interest(
            self.store,
            perps,
            s0,
            s0 + len(df) * self.tf,
            self.tf,
            len(df),
            require=self.settings.flow.require,
        )
        self._candles[coin] = df.iloc[-self._keep.get(coin, len(df)) :]
        self._advance(coin, live)

    def _advance(self, coin: str, live: pd.DataFrame) -> None:
        """Move the boundary past the candles whose flow is final (:func:`final_candles`): they
        stay as built and their 1-second bars are dropped, so each poll rebuilds only the
        newest candles (the read does not grow with the bot's uptime)."""
        markets = self.settings.markets(coin)
        states = (self._states.get(m.id) for m in markets)
        marks = [st.watermark for st in states if st is not None and st.watermark is not None]
        b = self._boundary[coin]
        k = final_candles(live["complete"], b, self.tf, marks, self.settings.feeder.retain_s)
        if k:
            self._boundary[coin] = b = b + k * self.tf
            for m in (m for m in markets if m.id in self._seconds):
                s = self._seconds[m.id]
                self._seconds[m.id] = s[s["time"].to_numpy(np.int64) >= b].reset_index(drop=True)

    def caught_up(self, coin: str) -> bool:
        return coin in self._candles

    def live(self, coin: str) -> pd.DataFrame:
        return self._candles[coin]

    def age(self, coin: str) -> float:
        """Seconds since ``coin``'s flow was last final, by the ``flow.require`` rule
        (:func:`flow_age`)."""
        markets = [(m.kind, self._watermark(m.id)) for m in self.settings.markets(coin)]
        return flow_age(markets, self.settings.flow.require, self.clock())

    def _watermark(self, market: str) -> int | None:
        """The newest final second: the live state's watermark, else the store's coverage end."""
        st = self._states.get(market) if self.source == "redis" else None
        if st is not None and st.watermark is not None:
            return int(st.watermark)
        cov = self.store.coverage(market)
        return int(cov[-1, 1]) if len(cov) else None


def _replace_seconds(old: pd.DataFrame | None, secs: pd.DataFrame, got: Intervals) -> pd.DataFrame:
    """The 1-second buffer ``old`` with its seconds inside ``got`` replaced by ``secs``'."""
    old = _empty_seconds() if old is None else old
    keep = old[~in_intervals(old["time"].to_numpy(np.int64), got)]
    inside = in_intervals(secs["time"].to_numpy(np.int64), got)
    merged = pd.concat([keep, secs.loc[inside, ["time", *BAR_FIELDS]]], ignore_index=True)
    return merged.sort_values("time").reset_index(drop=True)


def _empty_seconds() -> pd.DataFrame:
    cols: dict[str, pd.Series] = {"time": pd.Series(dtype="int64")}
    cols.update({f: pd.Series(dtype="float64") for f in BAR_FIELDS})
    return pd.DataFrame(cols)
