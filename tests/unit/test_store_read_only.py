"""A store directory the feeder cannot write (a read-only mount, or no permission): `import` and
`run` stop at start with one clear line naming the directory and a non-zero exit, and write
nothing (the store is byte for byte as it was; no spool is created)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from feeder.stores.parquet import ParquetStore
from tests.conftest import REPO

pytestmark = pytest.mark.shared


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(root.rglob("*"))
    }


def _read_only(store: Path, argv: list[str]) -> list[str]:
    """``argv`` run where ``store`` cannot be written: as root (who ignores permissions) in a
    private mount namespace where the directory is bind-mounted read-only; otherwise the
    directory tree loses its write bits."""
    if os.geteuid() == 0:
        assert shutil.which("unshare"), "unshare (util-linux) is needed to test as root"
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(store), *argv]
    for p in [store, *store.rglob("*")]:
        p.chmod(stat.S_IMODE(p.stat().st_mode) & ~0o222)
    return argv


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "feeder.tools.cli", *args]


def _config(tmp: Path, store: Path) -> Path:
    cfg = tmp / "config.json"
    entries = [  # nothing listens there: the store is refused before any exchange is asked
        {"id": i, "kind": k, "symbols": [s], "urls": {"api": {"public": "http://127.0.0.1:9/"}}}
        for i, k, s in (("binance", "spot", "BTC/USDT"), ("binanceusdm", "perp", "BTC/USDT:USDT"))
    ]
    doc = {
        "squeezeflow": {
            "coins": {"BTC": {"spot": ["BINANCE:btcusdt"], "perp": ["BINANCE_FUTURES:btcusdt"]}},
            "store": {"parquet_dir": str(store)},
            "redis": {"enabled": False},
            "feeder": {"spool_dir": str(tmp / "spool"), "exchanges": entries},
        }
    }
    cfg.write_text(json.dumps(doc))
    return cfg


@pytest.mark.parametrize("holds_data", [False, True], ids=["empty", "with-data"])
def test_import_and_run_on_a_read_only_store_fail_at_start_writing_nothing(
    market_data, tmp_path, holds_data
):
    archive = market_data / "binance_datatool/tommy-ca/data"
    store = tmp_path / "store"
    store.mkdir()
    cfg = _config(tmp_path, store)
    if holds_data:
        done = subprocess.run(
            _cli("--config", str(cfg), "import", "--from", str(archive), "--no-progress"),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert ParquetStore(store).imported()
    before = _snapshot(store)
    for argv in (
        ["import", "--from", str(archive), "--no-progress", "--force"],
        ["run", "--http-port", "0"],
    ):
        out = subprocess.run(
            _read_only(store, _cli("--config", str(cfg), *argv)),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        text = out.stdout + out.stderr
        assert out.returncode == 2, (argv, text)
        assert "Traceback" not in text, text
        errors = [line for line in text.splitlines() if line.strip()]
        assert len(errors) == 1, (argv, text)
        assert errors[0].startswith(f"error: cannot write the store {store}: "), errors
        assert errors[0].endswith(("Read-only file system", "Permission denied")), errors
        assert _snapshot(store) == before, argv  # nothing half written
        assert not (tmp_path / "spool").exists()
