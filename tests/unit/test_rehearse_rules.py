"""How `rehearse` names the candle that decided an action, the same for live and backtest."""

from __future__ import annotations

import pandas as pd

from feeder.tools.rehearse_report import _decided


def test_live_order_and_backtest_fill_name_the_same_deciding_candle():
    t = pd.Timestamp
    # live: the bot orders just after the candle 09:36 closes (09:37:00 + latency)
    assert _decided(t("2026-11-29 09:37:03.079", tz="UTC"), 60) == t("2026-11-29 09:36", tz="UTC")
    # backtest: the signal of candle 09:36 fills at the next candle's open, 09:37:00
    assert _decided(t("2026-11-29 09:37:00", tz="UTC"), 60) == t("2026-11-29 09:36", tz="UTC")
    # 5m: an order 4.9 s after 10:05 was decided by the candle 10:00
    assert _decided(t("2026-11-29 10:05:04.9", tz="UTC"), 300) == t("2026-11-29 10:00", tz="UTC")
