"""Importing ccxt with only the configured exchanges (feeder.live.ccxt_slim), in fresh interpreters:
the hook only acts before ccxt's first import, and this test process has usually imported it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_only_kept_exchanges_are_imported_and_the_others_load_on_use():
    got = _run("""
        import json, sys
        from feeder.live import ccxt_slim
        finder = ccxt_slim.install(["binance", "binanceusdm"])
        import ccxt.pro
        def stub(name):
            return bool(getattr(sys.modules.get(name), "__squeezeflow_stub__", False))
        r = {"skipped": len(finder.skipped),
             "okx_stub_before": stub("ccxt.pro.okx") and stub("ccxt.async_support.okx")
                                and stub("ccxt.okx"),
             "binance_real": not stub("ccxt.pro.binance")
                             and not stub("ccxt.async_support.binance"),
             "exchanges_listed": "okx" in ccxt.pro.exchanges and "bybit" in ccxt.exchanges}
        # a kept exchange is the real class
        ex = ccxt.pro.binanceusdm({})
        r["usdm_mro"] = [c.__module__ for c in type(ex).__mro__[:3]]
        # a left-out one: calling the name the package bound gives a real pro instance
        b = ccxt.pro.bybit({})
        r["bybit"] = [type(b).__module__, b.id, bool(b.has.get("watchTradesForSymbols")),
                      isinstance(b, ccxt.pro.bybit), ccxt.pro.bybit is type(b)]
        # a left-out one whose base class was left out too (binancecoinm -> binance is kept;
        # myokx -> okx is not): subclassing resolves to the real base
        m = ccxt.pro.myokx({})
        r["myokx_mro"] = [c.__module__ for c in type(m).__mro__[:3]]
        # importing a left-out module directly gives the real one
        from ccxt.async_support.gate import gate
        from ccxt.kraken import kraken
        r["direct"] = [gate.__module__, gate({}).id, kraken().id]
        r["errors"] = ccxt.pro.NetworkError.__module__
        print(json.dumps(r))
    """)
    assert got["skipped"] > 200  # ~330 exchange modules exist over the three packages
    assert got["okx_stub_before"] and got["binance_real"] and got["exchanges_listed"]
    assert got["usdm_mro"] == [
        "ccxt.pro.binanceusdm",
        "ccxt.pro.binance",
        "ccxt.async_support.binance",
    ]
    assert got["bybit"] == ["ccxt.pro.bybit", "bybit", True, True, True]
    assert got["myokx_mro"] == ["ccxt.pro.myokx", "ccxt.pro.okx", "ccxt.async_support.okx"]
    assert got["direct"] == ["ccxt.async_support.gate", "gate", "kraken"]
    assert got["errors"] == "ccxt.base.errors"


def test_install_after_ccxt_is_imported_does_nothing():
    got = _run("""
        import json, sys
        import ccxt
        from feeder.live import ccxt_slim
        r = {"finder": ccxt_slim.install(["binance"]) is None}
        import ccxt.pro
        r["stubs"] = sum(bool(getattr(m, "__squeezeflow_stub__", False))
                         for m in list(sys.modules.values()))
        print(json.dumps(r))
    """)
    assert got == {"finder": True, "stubs": 0}


@pytest.mark.parametrize("ids", [["binance"], ["bybit", "okx", "coinbase"]])
def test_the_feeder_imports_with_a_slim_ccxt(ids):
    got = _run(f"""
        import json, sys
        from feeder.live import ccxt_slim
        ccxt_slim.install({ids!r})
        import feeder.live.runtime, feeder.live.collector
        import ccxt.pro
        exs = [getattr(ccxt.pro, i)({{}}) for i in {ids!r}]
        real = [k for k, m in sys.modules.items() if k.startswith("ccxt.pro.")
                and not getattr(m, "__squeezeflow_stub__", False)]
        print(json.dumps({{"ids": [e.id for e in exs], "real_pro": len(real)}}))
    """)
    assert got["ids"] == ids
    assert got["real_pro"] < 10  # the wanted exchanges and their bases, not all ~100
