"""The layout a newcomer reads (README "What is here"): each part where its name says, the read
side light enough for a strategy, and no module or class too long to read."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PRODUCT = [REPO / "feeder", REPO / "user_data" / "strategies"]
MODULE_MAX_LINES = 420  # "no module over ~400 lines"
CLASS_MAX_LINES = 330  # "no class over ~300"


def _modules() -> list[Path]:
    return sorted(p for root in PRODUCT for p in root.rglob("*.py"))


def test_importing_the_read_api_pulls_in_neither_ccxt_nor_aiohttp():
    """The strategy imports only `feeder.read` (and settings): a FreqTrade process must not load
    the feeder's exchange or HTTP-server stacks."""
    code = (
        "import sys\n"
        "import feeder.read.flow, feeder.read.flow_source, feeder.read.diagnostics\n"
        "import feeder.read.decisions, feeder.settings\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ccxt', 'aiohttp')))\n"
        "print(sorted(m for m in sys.modules if m.startswith('feeder.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "[]", out[0]
    loaded = eval(out[1])  # noqa: S307 - our own subprocess's repr of a list of names
    assert "feeder.read.flow_source" in loaded  # the import did happen
    assert not [m for m in loaded if m.startswith(("feeder.live", "feeder.replay", "feeder.tools"))]


def test_the_strategy_imports_only_the_read_api_and_settings_from_the_feeder():
    src = (REPO / "user_data" / "strategies" / "SqueezeFlow.py").read_text()
    imported = set(re.findall(r"^\s*(?:from|import) (feeder[\w.]*)", src, re.M))
    assert imported, "the strategy reads its flow through feeder.read"
    assert all(m.startswith("feeder.read") or m == "feeder.settings" for m in imported), imported


def test_no_module_or_class_is_too_long_to_read():
    long_modules, long_classes = [], []
    for path in _modules():
        text = path.read_text()
        if len(text.splitlines()) > MODULE_MAX_LINES:
            long_modules.append(f"{path.relative_to(REPO)}: {len(text.splitlines())}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                n = node.end_lineno - node.lineno + 1
                if n > CLASS_MAX_LINES:
                    long_classes.append(f"{path.relative_to(REPO)}:{node.name}: {n}")
    assert len(_modules()) > 50  # the walk found the product
    assert not long_modules, long_modules
    assert not long_classes, long_classes


def test_the_readme_tree_lists_every_feeder_module_and_nothing_else():
    readme = (REPO / "README.md").read_text()
    tree = readme[readme.index("feeder/  ") : readme.index("\ntests/  ")]
    listed: set[str] = set()
    package = ""
    for line in tree.splitlines()[1:]:
        indent = len(line) - len(line.lstrip())
        if indent not in (2, 4):  # a description's continuation line
            continue
        names = re.split(r"\s{2,}", line.strip())[0].split()
        if indent == 2 and names[0].endswith("/"):
            package = names[0]
            continue
        listed |= {(package if indent == 4 else "") + n for n in names if n.endswith(".py")}
    actual = {
        str(p.relative_to(REPO / "feeder"))
        for p in (REPO / "feeder").rglob("*.py")
        if p.name != "__init__.py"
    }
    assert not actual - listed, f"modules missing from the README tree: {sorted(actual - listed)}"
    assert not listed - actual, f"README lists modules that do not exist: {sorted(listed - actual)}"
