"""FreqUI in a real browser, offline.

FreqTrade serves FreqUI from ``freqtrade/rpc/api_server/ui/installed/`` inside its own package
(``freqtrade install-ui`` downloads it there from GitHub). For a test we never touch the shared
``.venv``: :func:`frequi_overlay` builds a private overlay of the installed ``freqtrade`` package
(a folder of symlinks to it, with real folders only along ``rpc/api_server/ui``) whose
``ui/installed`` holds a copy of the FreqUI build in ``../shared/frequi/dist`` plus the
``.uiversion`` file ``install-ui`` writes. Putting the overlay first on the bot's ``PYTHONPATH``
makes that one FreqTrade process serve FreqUI; every other process sees the package unchanged.

:func:`browser` drives Debian's ``/usr/bin/chromium`` headless with Playwright
(``playwright install`` cannot download here; ``executable_path`` uses the system browser).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import REPO

FREQUI_DIST = REPO.parent / "shared" / "frequi" / "dist"
FREQUI_VERSION = "3.1.1"
CHROMIUM = Path(os.environ.get("SQUEEZEFLOW_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where screenshots are kept (gitignored); SQUEEZEFLOW_TEST_ARTIFACTS overrides.
ARTIFACTS = Path(os.environ.get("SQUEEZEFLOW_TEST_ARTIFACTS", REPO / "test-artifacts"))


def frequi_overlay(folder: Path) -> Path:
    """A ``freqtrade`` package overlay serving FreqUI; returns the folder for ``PYTHONPATH``."""
    import freqtrade

    real = Path(freqtrade.__file__).resolve().parent
    site = folder / "site"
    dst = site / "freqtrade"
    chain = ["rpc", "api_server", "ui"]
    src = real
    while True:
        dst.mkdir(parents=True, exist_ok=True)
        keep = chain[0] if chain else "installed"
        for child in src.iterdir():
            if child.name not in (keep, "__pycache__"):
                (dst / child.name).symlink_to(child)
        if not chain:
            break
        src, dst = src / keep, dst / keep
        chain.pop(0)
    installed = dst / "installed"
    shutil.copytree(FREQUI_DIST, installed)  # a copy: FreqTrade refuses files outside the folder
    (installed / ".uiversion").write_text(FREQUI_VERSION)
    return site


#: CSS colour names used in SqueezeFlow's plot_config, as ECharts paints them on the canvas.
RGB = {
    "blue": (0, 0, 255),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "grey": (128, 128, 128),
    "green": (0, 128, 0),
    "red": (255, 0, 0),
}

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


def show_pair(page: Any, pair: str) -> None:
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


def drawn_chart(page: Any, series: set[str], timeout: float = 60) -> dict[str, Any]:
    """Wait until ECharts drew every configured series (not sleep-and-hope), return the summary."""
    deadline = time.monotonic() + timeout
    while True:
        chart = page.evaluate(CHART_JS, RGB)
        drawn = series <= set(chart.get("series", {})) and all(
            chart["series"][n]["color_px"] > 0 for n in series
        )
        if drawn or time.monotonic() > deadline:
            return chart
        page.wait_for_timeout(250)


def only_loopback(context: Any, base_url: str) -> list[str]:
    """Abort every browser request that does not go to ``base_url`` (FreqUI fetches its icons
    from a CDN); returns the list the refused URLs are appended to."""
    refused: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(base_url):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return refused


def login(page: Any, base_url: str, user: str, password: str) -> None:
    """FreqUI's login form (fields Username/Password, button Submit)."""
    page.goto(f"{base_url}/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(f"{base_url}/")


def open_chart_page(page: Any, base_url: str, webserver: bool = True, attempts: int = 5) -> int:
    """Open FreqUI's chart page once it has asked for its pair list; returns the attempts used.

    FreqUI 3.1.1 picks the pair source once, when the chart view mounts (webserver mode:
    ``/available_pairs``; a trading bot: ``/whitelist``). On a fresh page load the view can mount
    before ``/show_config`` told it the run mode, and a webserver then gets an empty pair list
    for good; a user reloads the page, and so do we."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    if not webserver:  # a trading bot: the chart charts the whitelist (pair_candles)
        page.goto(f"{base_url}/graph")
        return 1
    for attempt in range(1, attempts + 1):
        try:
            with page.expect_response(
                lambda r: "/api/v1/available_pairs" in r.url and r.ok, timeout=8000
            ):
                if attempt == 1:
                    page.goto(f"{base_url}/graph")
                else:
                    page.reload()
            return attempt
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"FreqUI's chart page never asked for its pairs in {attempts} loads")


def set_timerange(page: Any, start: str, end: str, attempts: int = 3) -> None:
    """Fill the chart page's Start/End dates (yyyy-mm-dd) until FreqUI shows that timerange
    (loading the strategy can reset the dates just after they were typed)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    shown = f"{start.replace('-', '')}-{end.replace('-', '')}"
    for attempt in range(1, attempts + 1):
        for field, value in (("#dateFrom", start), ("#dateTo", end)):
            page.locator(field).fill(value)
            page.locator(field).press("Enter")
        try:
            page.get_by_text(shown).wait_for(timeout=10_000)
            return
        except PlaywrightTimeout:
            if attempt == attempts:
                raise


def chart_request(page: Any, start: str, end: str, attempts: int = 3) -> Any:
    """Set the timerange, load BTC/USDT:USDT's chart and return FreqUI's ``pair_history``
    response for that timerange with the strategy's columns. FreqUI can send the chart request
    with its default timerange when the dates were reset just after they were typed (loading the
    strategy or the plot config does that): such a request is not the one asked for, so the
    dates are set again and the chart reloaded."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    timerange = f"{start.replace('-', '')}-{end.replace('-', '')}"

    def wanted(r: Any) -> bool:
        body = r.request.post_data or ""
        return "/api/v1/pair_history" in r.url and "spot_cvd" in body and timerange in body

    for attempt in range(1, attempts + 1):
        set_timerange(page, start, end)
        try:
            with page.expect_response(wanted, timeout=60_000) as resp:
                show_pair(page, "BTC/USDT:USDT")
            return resp.value
        except PlaywrightTimeout:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def use_strategy_plot_config(page: Any, strategy: str) -> None:
    """What a user does on the chart page: Plot configurator -> From strategy -> Save."""
    page.get_by_title("Plot configurator").click()
    with page.expect_response(lambda r: f"/plot_config?strategy={strategy}" in r.url):
        page.get_by_role("button", name="From strategy").click()
    page.get_by_title("Save configuration").click()
    page.get_by_title("Plot configurator").click()  # closes it again


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium (the system one) driven by Playwright, with a throwaway profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
