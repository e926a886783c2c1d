"""docs/method.md follows the code: its parameter table and the tests it cites."""

from __future__ import annotations

import dataclasses
import re

from SqueezeFlow import SqueezeFlow, startup_candles
from squeezeflow import MethodParams

from tests.conftest import REPO

DOC = REPO / "docs" / "method.md"


def param_rows() -> dict[str, tuple[str, str]]:
    text = DOC.read_text()
    section = text[text.index("## Parameters") : text.index("## Invariants")]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    return rows


def strategy_params() -> dict[str, object]:
    return {k: v for k, v in vars(SqueezeFlow).items() if hasattr(v, "space") and hasattr(v, "low")}


def test_every_hyperopt_parameter_is_documented_with_its_range_and_default():
    rows = param_rows()
    params = strategy_params()
    assert len(params) == 11
    for name, p in params.items():
        assert name in rows, f"{name} missing from docs/method.md"
        default, hyperopt = rows[name]
        assert float(default) == float(p.value), name
        kind = "int " if type(p).__name__ == "IntParameter" else ""
        low, high = p.low, p.high
        assert hyperopt.startswith(f"{p.space}, {kind}{low}..{high}"), (name, hyperopt)
        decimals = getattr(p, "decimals", None)
        if decimals is not None:
            word = "decimal" if decimals == 1 else "decimals"
            assert f"({decimals} {word})" in hyperopt, (name, hyperopt)


def test_fixed_parameters_are_the_method_defaults_and_every_method_parameter_is_documented():
    rows = param_rows()
    params = strategy_params()
    fields = {f.name: f.default for f in dataclasses.fields(MethodParams)}
    for name, default in fields.items():
        assert name in rows, f"MethodParams.{name} missing from docs/method.md"
        assert float(rows[name][0]) == float(default), name
        if name not in params:
            assert rows[name][1] == "fixed", name
    assert set(rows) == set(fields) | set(params)


def test_the_documented_warm_up_is_the_strategys():
    text = " ".join(DOC.read_text().split())
    assert f"{startup_candles('5m')} at 5m, 15m and 1h, {startup_candles('1m')} at 1m" in text
    assert startup_candles("15m") == startup_candles("1h") == startup_candles("5m")


def test_every_cited_test_exists():
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", DOC.read_text())
    assert len(cited) >= 10
    for path, name in cited:
        src = (REPO / path).read_text()
        assert re.search(rf"^def {name}\(", src, flags=re.M), f"{path}::{name} does not exist"
