"""The durability property: every stored second (and minute) a store claims as covered equals
the reference built from the same recording by the import path; what differs is uncovered."""

from __future__ import annotations

import numpy as np
import pandas as pd

from feeder.ingest.models import BAR_FIELDS
from feeder.read.flow import load_flow
from feeder.stores import BarStore
from tests.live.conftest import RECORDINGS, bars_of, feeder_settings

LO, HI = 1_723_000_000, 1_724_000_000


def _in(t: np.ndarray, cov: np.ndarray, length: int) -> np.ndarray:
    """Is ``[t, t + length)`` inside one covered interval?"""
    if len(cov) == 0:
        return np.zeros(len(t), np.bool_)
    i = np.searchsorted(cov[:, 0], t, side="right") - 1
    ok = i >= 0
    j = np.where(ok, i, 0)
    return ok & (cov[j, 1] >= t + length)


def wrong_and_covered(
    store: BarStore, reference: BarStore, market: str, timeframe: str
) -> pd.DataFrame:
    """Rows (stored or in the reference) of covered seconds/minutes whose bars differ."""
    length = 1 if timeframe == "1s" else 60
    cov = store.coverage(market)
    got = store.read_bars(market, LO, HI, timeframe).set_index("time")
    want = reference.read_bars(market, LO, HI, timeframe).set_index("time")
    times = np.union1d(got.index.to_numpy(np.int64), want.index.to_numpy(np.int64))
    times = times[_in(times, cov, length)]
    g = got.reindex(times)[list(BAR_FIELDS)].to_numpy(np.float64)
    w = want.reindex(times)[list(BAR_FIELDS)].to_numpy(np.float64)
    same = np.isclose(g, w, rtol=1e-12, atol=0, equal_nan=True).all(axis=1)
    got_rows = pd.DataFrame(g[~same], index=times[~same], columns=list(BAR_FIELDS))
    want_rows = pd.DataFrame(w[~same], index=times[~same], columns=list(BAR_FIELDS))
    return pd.concat({"got": got_rows, "want": want_rows}, axis=1)


def assert_never_wrong_and_covered(store: BarStore, reference: BarStore, tmp) -> dict[str, int]:
    """Seconds, minutes and the strategy's complete 1m/1s candles: covered means exact.

    Returns the covered seconds per market (so a caller can check something was covered)."""
    covered = {}
    for market in RECORDINGS:
        for res in ("1s", "1m"):
            bad = wrong_and_covered(store, reference, market, res)
            assert bad.empty, (
                market,
                res,
                store.coverage(market).tolist(),
                bad.head(10).to_string(),
            )
        cov = store.coverage(market)
        covered[market] = int((cov[:, 1] - cov[:, 0]).sum()) if len(cov) else 0
        assert len(bars_of(store, market)), market
    settings = feeder_settings(tmp, None)
    t0 = int(min(bars_of(reference, m)["time"].min() for m in RECORDINGS))
    t1 = int(max(bars_of(reference, m)["time"].max() for m in RECORDINGS)) + 1
    for tf in ("1s", "1m"):
        got = load_flow(store, settings, "BTC", t0, t1, tf)
        want = load_flow(reference, settings, "BTC", t0, t1, tf)
        # (the reference's coverage is its recordings' span, inferred from its 1m bars)
        ok = got["complete"].to_numpy() & want["complete"].to_numpy()
        assert ok.sum() > 0, tf
        cols = [c for c in got.columns if c.endswith(("vbuy", "vsell", "cbuy", "csell"))]
        g, w = got.loc[ok, cols], want.loc[ok, cols]
        pd.testing.assert_frame_equal(g, w, check_exact=False, rtol=1e-12, obj=f"complete {tf}")
    return covered
