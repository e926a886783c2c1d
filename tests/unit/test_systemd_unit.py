"""deploy/squeezeflow-feeder.service is a unit systemd accepts, starting a command that works."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest

from tests.conftest import REPO, missing

UNIT = REPO / "deploy" / "squeezeflow-feeder.service"
INSTALL_DIR = "/opt/squeezeflow"  # where the unit expects the checkout


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze missing: scripts/test installs Debian's systemd")
        missing("systemd-analyze (Debian package systemd) is not installed")
    return exe


def _installed(tmp_path):
    """The unit as installed for this checkout: /opt/squeezeflow is this repository."""
    text = UNIT.read_text()
    assert INSTALL_DIR in text
    path = tmp_path / UNIT.name
    path.write_text(text.replace(INSTALL_DIR, str(REPO)))
    return path, text.replace(INSTALL_DIR, str(REPO))


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    exe = _systemd_analyze()
    path, _ = _installed(tmp_path)
    r = subprocess.run([exe, "verify", "--man=no", str(path)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr  # warnings count too


def test_systemd_analyze_verify_fails_on_a_broken_unit(tmp_path):
    """The check above can fail: a typo and a missing program are reported."""
    exe = _systemd_analyze()
    path, text = _installed(tmp_path)
    path.write_text(
        text.replace("ExecStart=" + str(REPO), "ExecStart=/nonexistent").replace(
            "KillSignal=", "KilSignal="
        )
    )
    r = subprocess.run([exe, "verify", "--man=no", str(path)], capture_output=True, text=True)
    assert r.returncode != 0 and "KilSignal" in r.stderr and "not executable" in r.stderr


def test_the_units_command_is_the_feeders_run(tmp_path):
    _, text = _installed(tmp_path)
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0].endswith("/.venv/bin/squeezeflow-feeder") and argv[-1] == "run"
    r = subprocess.run([*argv, "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "--clock" in r.stdout, r.stderr
