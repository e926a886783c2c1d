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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import REPO

FREQUI_DIST = REPO.parent / "shared" / "frequi" / "dist"
FREQUI_VERSION = "3.1.1"
CHROMIUM = Path(os.environ.get("SQUEEZEFLOW_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
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
