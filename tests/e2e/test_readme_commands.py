"""Every command line the README prints runs, exactly as printed, on the quick-start data.

A copy of the checkout (the files git knows, committed or not) stands in for a fresh clone: its
``.venv`` is this checkout's (a link), and ``PYTHONPATH`` points at the copy so the editable
install's ``feeder`` is the copy's own, as it is in a clone. There, ``bash scripts/quickstart``
runs offline (``SQUEEZEFLOW_OFFLINE=1``: the labelled SYNTHETIC sample), then each README
command in README order, through the shell, from the copy's root. Nothing is added to a command
line but placeholders (``DIR``) and optional ``[...]`` parts, which run both ways.

Commands that cannot run here are listed in ``NOT_RUN`` with the reason and the test that covers
them; a README command in neither list fails ``test_every_readme_command_is_run_or_excused``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTS = (".venv/bin/", "squeezeflow-feeder ", "bash scripts/", "freqtrade ")

#: README command prefix -> why it is not run here (and what covers it).
NOT_RUN = {
    "bash scripts/test": "the test suite itself",
    ".venv/bin/freqtrade trade": "needs the exchange's live markets (tests/e2e/test_dry_run.py)",
    "squeezeflow-feeder import --download": "needs the public archive online "
    "(tests/unit/test_cli.py::test_download_from_an_archive_server_then_import, loopback)",
    "squeezeflow-feeder run": "needs exchanges (tests/live/test_cli_run.py, replay servers)",
    ".venv/bin/squeezeflow-feeder run": "needs exchanges (tests/live/test_cli_run.py)",
    "squeezeflow-feeder replay --recording PATH ...": "a recording to serve "
    "(tests/integration/test_replay.py)",
    "squeezeflow-feeder rehearse": "a real-time rehearsal of ~10 min with Redis "
    "(tests/e2e/test_rehearse.py runs it on Parquet and on InfluxDB)",
    ".venv/bin/squeezeflow-feeder rehearse": "a real-time rehearsal of ~10 min with Redis "
    "(tests/e2e/test_rehearse.py runs it on Parquet and on InfluxDB)",
}
#: Run once, before every other command: it makes the data the others use.
FIRST = "bash scripts/quickstart"
#: Placeholder -> what it stands for here (filled in by the fixture).
PLACEHOLDERS = ("DIR",)


def readme_commands(text: str) -> list[str]:
    """Command lines of the README's shell blocks: continuations joined, comments dropped."""
    out: list[str] = []
    for i, block in enumerate(text.split("```")):
        if i % 2 == 0 or block.startswith(("python", "json", "yaml")):
            continue
        lines = block.split("\n")[1:]
        joined: list[str] = []
        buf = ""
        for line in lines:
            if buf:
                buf += " " + line.strip()
            else:
                buf = line.strip()
            if buf.endswith("\\"):
                buf = buf[:-1].rstrip()
                continue
            joined.append(buf)
            buf = ""
        for cmd in joined:
            cmd = re.sub(r"\s+#\s.*$", "", cmd).strip()
            cmd = re.sub(r"\s+", " ", cmd)
            if cmd.startswith(STARTS):
                out.append(cmd)
    return out


def expand_optional(cmd: str) -> list[str]:
    """``status [--json]`` -> ``status`` and ``status --json``."""
    m = re.search(r"\s\[([^\]|]+)\]", cmd)
    if not m:
        return [cmd]
    without = cmd[: m.start()] + cmd[m.end() :]
    with_ = cmd[: m.start()] + " " + m.group(1) + cmd[m.end() :]
    return [*expand_optional(without), *expand_optional(with_)]


def excused(cmd: str) -> str | None:
    for prefix, why in NOT_RUN.items():
        if cmd == prefix or cmd.startswith(prefix + " "):
            return why
    return None


README_COMMANDS = readme_commands((REPO / "README.md").read_text())
TO_RUN = [
    c for cmd in README_COMMANDS if not excused(cmd) and cmd != FIRST for c in expand_optional(cmd)
]


def test_every_readme_command_is_run_or_excused():
    assert FIRST in README_COMMANDS
    for prefix in NOT_RUN:  # no stale excuse
        assert any(c == prefix or c.startswith(prefix + " ") for c in README_COMMANDS), prefix
    kinds = " ".join(TO_RUN)
    for needed in (
        "--offline backtesting",
        "--offline hyperopt",
        "--offline lookahead-analysis",
        "--offline recursive-analysis",
        "export-candles",
        "status --json",
    ):
        assert needed in kinds, f"README shows no runnable `{needed}` command"
    for cmd in TO_RUN:
        assert "..." not in cmd, f"placeholder arguments in a README command: {cmd}"


class Clone:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.ran: list[str] = []

    def sh(self, cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            ["bash", "-c", cmd],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=1800,
        )
        r.out = ANSI.sub("", r.stdout + "\n" + r.stderr)  # type: ignore[attr-defined]
        self.ran.append(cmd)
        return r


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    from feeder.tools.synthetic import Scenario, generate

    root = tmp_path_factory.mktemp("clone") / "squeezeflow"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for rel in filter(None, files.split("\0")):
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)  # keeps mtimes: scripts/env.sh sees the venv current
    venv = REPO / ".venv"
    assert (venv / "bin/python").exists(), "run through bash scripts/test (it builds .venv)"
    assert (venv / ".installed").stat().st_mtime >= (root / "pyproject.toml").stat().st_mtime
    (root / ".venv").symlink_to(venv)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FREQTRADE__", "SQUEEZEFLOW_"))}
    path = f"{root / '.venv/bin'}:{env.get('PATH', '')}"  # an activated venv
    env.update(
        {
            "PYTHONPATH": str(root),
            "SQUEEZEFLOW_OFFLINE": "1",
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "PATH": path,
        }
    )
    c = Clone(root, env)
    r = c.sh(FIRST)
    assert r.returncode == 0, r.out[-4000:]
    assert "SYNTHETIC" in r.out and "BACKTESTING REPORT" in r.out, r.out[-4000:]
    generate(Scenario(days=1), root / "given-archive")  # what `import --from DIR` imports
    return c


def _check(cmd: str, out: str, stdout: str) -> None:
    """What each kind of command must have produced (FreqTrade exits 0 on some errors)."""
    assert "Traceback" not in out, out[-4000:]
    if " backtesting " in cmd:
        assert "BACKTESTING REPORT" in out and "SqueezeFlow" in out, out[-4000:]
        assert "No trades made" not in out, out[-4000:]
    elif " hyperopt " in cmd:
        assert "Best result:" in out, out[-4000:]
    elif " lookahead-analysis " in cmd:
        assert "no bias detected" in out.lower() or "No bias" in out, out[-4000:]
        assert "too few trades" not in out.lower(), out[-4000:]
    elif " recursive-analysis " in cmd:
        assert "No lookahead bias on indicators found" in out, out[-4000:]
    elif " export-candles " in cmd:
        assert "BTC_USDT_USDT-5m-futures.feather" in out, out[-4000:]
    elif cmd.endswith("status --json"):
        doc = json.loads(stdout)
        assert "BINANCE_FUTURES:btcusdt" in json.dumps(doc)
    elif cmd.endswith(" status"):
        assert "BINANCE_FUTURES:btcusdt" in out, out[-4000:]
    elif " import --from " in cmd:
        assert re.search(r"imported \d+ file|already imported|skipped", out), out[-4000:]
    elif cmd.endswith("setup-influx"):
        assert "aggr_1s" in out, out[-4000:]


def _marks(cmd: str) -> list[pytest.MarkDecorator]:
    return [pytest.mark.backend] if cmd.endswith("setup-influx") else []


@pytest.mark.slow
@pytest.mark.parametrize(
    "cmd", [pytest.param(c, marks=_marks(c), id=c.split(" ", 1)[1][:60]) for c in TO_RUN]
)
def test_readme_command_runs_as_printed(clone, cmd, request):
    extra: dict[str, str] = {}
    if cmd.endswith("setup-influx"):
        url = request.getfixturevalue("influx_url")
        db = f"sf_readme_{uuid.uuid4().hex[:8]}"
        extra = {"SQUEEZEFLOW_INFLUX_URL": url, "SQUEEZEFLOW_INFLUX_DATABASE": db}
        request.addfinalizer(
            lambda: subprocess.run(
                [
                    "curl",
                    "-s",
                    "-XPOST",
                    f"{url}/query",
                    "--data-urlencode",
                    f"q=DROP DATABASE {db}",
                ],
                capture_output=True,
            )
        )
    line = cmd.replace(" DIR", f" {clone.root / 'given-archive'}")
    r = clone.sh(line, extra)
    assert r.returncode == 0, f"$ {cmd}\n{r.out[-4000:]}"
    _check(cmd, r.out, r.stdout)
