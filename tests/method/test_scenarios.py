"""The planted scenario (labelled SYNTHETIC): entries where squeezes were planted, nowhere else."""

from __future__ import annotations

from squeezeflow import MethodParams, compute

from tests.scenario import entries, near_planted

P = MethodParams()


def test_enters_at_every_planted_episode_in_its_direction(planted):
    df = planted.frame("5m")
    out = compute(df, P, 300)
    longs, shorts = entries(out, df["date"], "long"), entries(out, df["date"], "short")
    for e in planted.episodes:
        side = longs if e["direction"] == 1 else shorts
        assert any(0 <= t.timestamp() - e["start"] <= 3 * 3600 for t in side), e
    assert all(near_planted(t, planted.episodes, 1) for t in longs)
    assert all(near_planted(t, planted.episodes, -1) for t in shorts)


def test_no_entries_on_neutral_flow(neutral):
    df = neutral.frame("5m")
    out = compute(df, P, 300)
    assert df["cvd_ok"].all()  # every candle's flow is complete: no entry is blocked by a gap
    assert not out["sf_enter_long"].any()
    assert not out["sf_enter_short"].any()
    assert out["div_long"].any() and out["div_short"].any()  # noise diverges, but never scores


def test_mirrored_market_enters_the_other_way_at_the_same_episodes(planted_mirrored):
    df = planted_mirrored.frame("5m")
    out = compute(df, P, 300)
    longs, shorts = entries(out, df["date"], "long"), entries(out, df["date"], "short")
    flipped = [{**e, "direction": -e["direction"]} for e in planted_mirrored.episodes]
    assert longs and shorts
    assert all(near_planted(t, flipped, 1) for t in longs)
    assert all(near_planted(t, flipped, -1) for t in shorts)
    assert not any(near_planted(t, planted_mirrored.episodes, 1) for t in longs)


def test_the_same_bars_agree_at_every_timeframe(planted):
    """1m, 5m, 15m and 1h candles all come from the same 1-second bars: sums agree exactly."""
    sums = {}
    for tf in ("1m", "5m", "15m", "1h"):
        df = planted.frame(tf)
        sums[tf] = df[["spot_vbuy", "perp_vsell"]].sum()
    for tf in ("5m", "15m", "1h"):
        assert abs(sums[tf] - sums["1m"]).max() < 1e-6 * sums["1m"].max()


def test_the_method_runs_at_1m_to_1h(planted):
    for tf, secs in (("1m", 60), ("15m", 900), ("1h", 3600)):
        df = planted.frame(tf)
        p = MethodParams(n=6, m=48, reset_window=6) if secs >= 900 else P
        out = compute(df, p, secs)
        assert len(out) == len(df)
        assert out.index.equals(df.index)
