"""FreqUI 3.1.1 in a real browser (Debian's chromium, driven by Playwright) against a real
``freqtrade webserver``, offline: log in, open BTC/USDT:USDT's chart with SqueezeFlow's own
plot_config and check every subplot is drawn with data. A screenshot is kept (test-artifacts/).

Webserver mode analyses the stored candles with the strategy (``/api/v1/pair_history``; the flow
comes from the store): a dry-run bot offline has no exchange candles to chart, so the live-mode
chart (``pair_candles``) needs the paper exchange (``squeezeflow-feeder rehearse``)."""

from __future__ import annotations

import json
import math
import shutil

import httpx
import pytest

from tests.clients.freqtrade_bot import API_PASSWORD, API_USER, freqtrade_process
from tests.clients.frequi import (
    ARTIFACTS,
    CHROMIUM,
    FREQUI_DIST,
    FREQUI_VERSION,
    RGB,
    browser,
    chart_request,
    drawn_chart,
    frequi_overlay,
    login,
    only_loopback,
    open_chart_page,
    use_strategy_plot_config,
)
from tests.conftest import REPO, missing

pytestmark = [pytest.mark.slow, pytest.mark.shared]


@pytest.fixture(scope="module")
def frequi_site(tmp_path_factory):
    if not (FREQUI_DIST / "index.html").is_file():
        missing(f"no FreqUI build at {FREQUI_DIST} (../shared/frequi is absent)")
    if not CHROMIUM.exists():
        missing(f"no chromium at {CHROMIUM}: bash scripts/test installs Debian's chromium")
    pytest.importorskip("playwright", reason="playwright is in the dev extra")
    return frequi_overlay(tmp_path_factory.mktemp("frequi"))


def test_frequi_draws_the_strategy_subplots_with_data(e2e, frequi_site, tmp_path):
    from SqueezeFlow import SqueezeFlow

    subplots = {
        name: {col: spec["color"] for col, spec in cols.items()}
        for name, cols in SqueezeFlow.plot_config["subplots"].items()
    }
    assert set(subplots) == {"CVD", "Flow", "gap_z", "Score"}
    assert {c for cols in subplots.values() for c in cols.values()} <= set(RGB)
    series = {col for cols in subplots.values() for col in cols}

    env = {"PYTHONPATH": f"{frequi_site}:{REPO}"}  # FreqTrade imported from the overlay
    with freqtrade_process(e2e, tmp_path / "web", env, command="webserver") as web:
        web.wait_log("Uvicorn running on", timeout=120)
        assert httpx.get(f"{web.url}/ui_version").json() == {"version": FREQUI_VERSION}
        rest = web.rest()  # freqtrade-client
        assert rest.strategies() == {"strategies": ["SqueezeFlow"]}
        with browser() as b:
            ctx = b.new_context(viewport={"width": 1600, "height": 1400})
            outside = only_loopback(ctx, web.url)
            page = ctx.new_page()
            login(page, web.url, API_USER, API_PASSWORD)
            open_chart_page(page, web.url)
            page.locator("#strategy-select").click()
            with page.expect_response(lambda r: "/api/v1/strategy/SqueezeFlow" in r.url):
                page.get_by_role("option", name="SqueezeFlow").click()
            page.get_by_role("combobox").filter(has_text="1h").click()
            page.get_by_role("option", name="5m", exact=True).click()
            use_strategy_plot_config(page, "SqueezeFlow")
            resp = chart_request(page, "2024-01-03", "2024-01-10")
            loaded = resp.json()
            asked = json.loads(resp.request.post_data or "{}")
            chart = drawn_chart(page, series)
            shot = tmp_path / "frequi-chart.png"
            page.screenshot(path=str(shot))
        direct = rest.pair_history("BTC/USDT:USDT", "5m", "SqueezeFlow", "20240103-20240110")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "frequi-chart.png")

    assert outside, "FreqUI asked for nothing outside: the loopback guard was not exercised"
    assert all(not u.startswith(web.url) for u in outside)
    # what the page loaded: the strategy's analysis of the stored candles with the flow merged
    assert asked["strategy"] == "SqueezeFlow" and asked["timerange"] == "20240103-20240110"
    cols = loaded["columns"]
    for name in sorted(series):
        assert name in asked["columns"] and name in cols, (name, cols)
        values = [row[cols.index(name)] for row in loaded["data"]]
        finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
        assert len(finite) > 0.9 * len(values), (name, len(finite), len(values))
    assert len({row[cols.index("spot_cvd")] for row in loaded["data"]}) > 100  # not constant
    # the same data freqtrade-client got from the same server
    assert direct["length"] == loaded["length"], (direct["length"], loaded["length"])
    for name in ("spot_cvd", "perp_cvd", "flow_gap"):
        mine = [r[direct["columns"].index(name)] for r in direct["data"]]
        assert mine == [r[cols.index(name)] for r in loaded["data"]], name
    # every subplot of the strategy's plot_config is on the chart, with data, drawn in its colour
    assert "error" not in chart, chart
    for subplot, cols_colours in subplots.items():
        for name, colour in cols_colours.items():
            s = chart["series"].get(name)
            assert s is not None, (name, chart)
            assert s["subplot"] == subplot and s["color"] == colour, (name, s)
            assert s["finite"] > 0.9 * chart["rows"], (name, s, chart["rows"])
            assert s["color_px"] > 20, (name, s)  # its line is on the canvas, in its grid
    grids = {chart["series"][n]["grid"] for cols_ in subplots.values() for n in cols_}
    assert len(grids) == len(subplots) and 0 not in grids  # one grid each, not the price chart


@pytest.mark.backend
def test_frequi_shows_the_dry_run_bot(e2e, frequi_site, redis_url, tmp_path):
    """FreqUI against a trading bot (``trade --dry-run``): its Trade page shows the bot's
    whitelist and trades from the live REST API. Offline the bot has no exchange candles, so its
    live chart (``pair_candles``) stays empty; with the paper exchange (``rehearse``) the same
    helpers check it: ``open_chart_page(page, url, webserver=False)`` then ``drawn_chart``."""
    env = {"PYTHONPATH": f"{frequi_site}:{REPO}", "SQUEEZEFLOW_REDIS_URL": redis_url}
    with freqtrade_process(e2e, tmp_path / "bot", env) as bot:
        bot.wait_loops(2, timeout=120)
        rest = bot.rest()  # freqtrade-client: what FreqUI must show
        whitelist = rest.whitelist()["whitelist"]
        assert rest.status() == [] and whitelist == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
        with browser() as b:
            ctx = b.new_context(viewport={"width": 1600, "height": 1000})
            only_loopback(ctx, bot.url)
            page = ctx.new_page()
            login(page, bot.url, API_USER, API_PASSWORD)
            with page.expect_response(lambda r: "/api/v1/status" in r.url and r.ok):
                page.goto(f"{bot.url}/trade")
            page.get_by_text("Currently no open trades.").wait_for()
            page.get_by_text("No closed trades so far.").wait_for()
            for pair in whitelist:
                page.get_by_text(pair, exact=True).first.wait_for()
            page.screenshot(path=str(tmp_path / "frequi-trade.png"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "frequi-trade.png", ARTIFACTS / "frequi-trade.png")
