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
import time

import httpx
import pytest

from tests.clients.freqtrade_bot import API_PASSWORD, API_USER, freqtrade_process
from tests.clients.frequi import ARTIFACTS, CHROMIUM, FREQUI_DIST, FREQUI_VERSION, frequi_overlay
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.shared]

SUBPLOTS = {  # SqueezeFlow.plot_config["subplots"], as the chart must show them
    "CVD": {"spot_cvd": "blue", "perp_cvd": "orange"},
    "Flow": {"spot_flow": "blue", "perp_flow": "orange", "flow_gap": "purple"},
    "gap_z": {"gap_z": "purple", "price_z": "grey"},
    "Score": {"score_long": "green", "score_short": "red"},
}
RGB = {"blue": (0, 0, 255), "orange": (255, 165, 0), "purple": (128, 0, 128),
       "grey": (128, 128, 128), "green": (0, 128, 0), "red": (255, 0, 0)}  # fmt: skip

# The chart's ECharts instance, found through the Vue vnode tree (FreqUI's `Echarts` component
# exposes getOption/chart); per subplot: series, their data column and finite values, and the
# pixels of each series' colour inside that subplot's grid on the canvas.
CHART_JS = """(rgb) => {
  const seen = new Set(); let ec = null;
  function walk(v) {
    if (!v || typeof v !== 'object' || seen.has(v) || ec) return; seen.add(v);
    const c = v.component;
    if (c) {
      if (c.exposed && typeof c.exposed.getOption === 'function') { ec = c.exposed; return; }
      walk(c.subTree);
    }
    if (Array.isArray(v.children)) v.children.forEach(walk);
    if (Array.isArray(v.dynamicChildren)) v.dynamicChildren.forEach(walk);
    if (v.suspense) walk(v.suspense.activeBranch);
  }
  walk(document.querySelector('#app')._vnode);
  if (!ec) return {error: 'no ECharts component in the page'};
  const o = ec.getOption();
  const inst = ec.chart && (ec.chart.value || ec.chart);
  const canvas = ec.getDom().querySelector('canvas');
  const ctx = canvas.getContext('2d');
  const dpr = canvas.width / canvas.clientWidth;
  const rows = o.dataset[0].source;
  const out = {canvas: [canvas.width, canvas.height], rows: rows.length, series: {}};
  for (const s of o.series) {
    if (s.type !== 'line' || !s.encode) continue;
    const col = s.encode.y;
    const finite = rows.filter(r => typeof r[col] === 'number' && isFinite(r[col])).length;
    const axis = o.yAxis[s.yAxisIndex || 0];
    const grid = axis.gridIndex || 0;
    const rect = inst.getModel().getComponent('grid', grid).coordinateSystem.getRect();
    const img = ctx.getImageData(Math.round(rect.x * dpr), Math.round(rect.y * dpr),
                                 Math.round(rect.width * dpr), Math.round(rect.height * dpr)).data;
    const want = rgb[s.lineStyle && s.lineStyle.color || (s.itemStyle || {}).color] || null;
    let px = 0;
    if (want) for (let i = 0; i < img.length; i += 4) {
      if (Math.abs(img[i] - want[0]) + Math.abs(img[i+1] - want[1]) + Math.abs(img[i+2] - want[2]) < 40) px++;
    }
    out.series[s.name] = {subplot: axis.name, grid, finite, color_px: px,
                          color: (s.lineStyle || {}).color || (s.itemStyle || {}).color};
  }
  return out;
}"""  # noqa: E501


def _show_pair(page, pair: str) -> None:
    """Load ``pair``'s chart: "Refresh chart" when the pair is selected, else pick it in the pair
    box (which loads it; FreqUI disables Refresh while no pair is selected)."""
    refresh = page.get_by_title("Refresh chart")
    deadline = time.monotonic() + 10
    while not refresh.is_enabled() and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    if refresh.is_enabled():
        refresh.click()
        return
    refresh.locator("xpath=preceding-sibling::*[1]").click()
    page.get_by_role("option", name=pair, exact=True).click()


def _drawn_chart(page, timeout: float = 60) -> dict:
    """Wait until ECharts drew every configured series (not sleep-and-hope), return the summary."""
    deadline = time.monotonic() + timeout
    while True:
        chart = page.evaluate(CHART_JS, RGB)
        names = {n for series in SUBPLOTS.values() for n in series}
        drawn = names <= set(chart.get("series", {})) and all(
            chart["series"][n]["color_px"] > 0 for n in names
        )
        if drawn or time.monotonic() > deadline:
            return chart
        page.wait_for_timeout(250)


@pytest.fixture(scope="module")
def frequi_site(tmp_path_factory):
    if not (FREQUI_DIST / "index.html").is_file():
        pytest.skip(f"no FreqUI build at {FREQUI_DIST} (../shared/frequi is absent)")
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: bash scripts/test installs Debian's chromium")
    pytest.importorskip("playwright", reason="playwright is in the dev extra")
    return frequi_overlay(tmp_path_factory.mktemp("frequi"))


def test_frequi_draws_the_strategy_subplots_with_data(e2e, frequi_site, tmp_path):
    from playwright.sync_api import expect

    from tests.clients.frequi import browser

    env = {"PYTHONPATH": f"{frequi_site}:{REPO}"}  # FreqTrade imported from the overlay
    with freqtrade_process(e2e, tmp_path / "web", env, command="webserver") as web:
        web.wait_log("Uvicorn running on", timeout=120)
        assert httpx.get(f"{web.url}/ui_version").json() == {"version": FREQUI_VERSION}
        rest = web.rest()  # freqtrade-client
        assert rest.strategies() == {"strategies": ["SqueezeFlow"]}
        with browser() as b:
            ctx = b.new_context(viewport={"width": 1600, "height": 1400})
            outside: list[str] = []

            def only_loopback(route):  # FreqUI fetches icons from a CDN: nothing leaves the host
                if route.request.url.startswith(web.url):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            ctx.route("**/*", only_loopback)
            page = ctx.new_page()
            page.goto(f"{web.url}/login")
            page.get_by_label("Username").fill(API_USER)
            page.get_by_label("Password").fill(API_PASSWORD)
            page.get_by_role("button", name="Submit").click()
            page.wait_for_url(f"{web.url}/")
            page.goto(f"{web.url}/graph")
            page.locator("#strategy-select").click()
            with page.expect_response(lambda r: "/api/v1/strategy/SqueezeFlow" in r.url):
                page.get_by_role("option", name="SqueezeFlow").click()
            page.get_by_role("combobox").filter(has_text="1h").click()
            page.get_by_role("option", name="5m", exact=True).click()
            page.locator("#dateFrom").fill("2024-01-03")
            page.locator("#dateFrom").press("Enter")
            page.locator("#dateTo").fill("2024-01-10")
            page.locator("#dateTo").press("Enter")
            expect(page.get_by_text("20240103-20240110")).to_be_visible()
            # the strategy's plot_config, the way a user loads it: Plot configurator ->
            # From strategy -> Save
            page.get_by_title("Plot configurator").click()
            with page.expect_response(lambda r: "/plot_config?strategy=SqueezeFlow" in r.url):
                page.get_by_role("button", name="From strategy").click()
            page.get_by_title("Save configuration").click()
            page.get_by_title("Plot configurator").click()  # closes it again
            with page.expect_response(
                lambda r: (
                    "/api/v1/pair_history" in r.url and "spot_cvd" in (r.request.post_data or "")
                ),
                timeout=120_000,
            ) as resp:
                _show_pair(page, "BTC/USDT:USDT")
            loaded = resp.value.json()
            asked = json.loads(resp.value.request.post_data or "{}")
            chart = _drawn_chart(page)
            shot = tmp_path / "frequi-chart.png"
            page.screenshot(path=str(shot))
        direct = rest.pair_history("BTC/USDT:USDT", "5m", "SqueezeFlow", "20240103-20240110")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "frequi-chart.png")

    assert outside, "FreqUI asked for nothing outside: the loopback guard was not exercised"
    assert all(not u.startswith("http://127.0.0.1") for u in outside)
    # what the page loaded: the strategy's analysis of the stored candles with the flow merged
    assert asked["strategy"] == "SqueezeFlow" and asked["timerange"] == "20240103-20240110"
    cols = loaded["columns"]
    for name in ("spot_cvd", "perp_cvd", "flow_gap", "gap_z", "score_long", "score_short"):
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
    for subplot, series in SUBPLOTS.items():
        for name, colour in series.items():
            s = chart["series"].get(name)
            assert s is not None, (name, chart)
            assert s["subplot"] == subplot and s["color"] == colour, (name, s)
            assert s["finite"] > 0.9 * chart["rows"], (name, s, chart["rows"])
            assert s["color_px"] > 20, (name, s)  # its line is on the canvas, in its grid
    grids = {s["grid"] for n, s in chart["series"].items() if n in SUBPLOTS["CVD"]}
    assert len(grids) == 1 and 0 not in grids  # a subplot of its own, not the price chart
