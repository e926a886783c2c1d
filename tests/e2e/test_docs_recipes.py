"""docs/settings.md's freqtrade-client recipe works as printed against a real FreqTrade API."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, missing
from tests.live.servers import free_port

pytestmark = pytest.mark.slow
DOC = REPO / "docs" / "settings.md"


def recipe(title: str, lang: str = "bash") -> str:
    text = DOC.read_text()
    section = text[text.index(title) :]
    return section.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def webserver(tmp_path):
    """``freqtrade webserver`` (the API without a bot) with its secrets from the environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
    env.update(
        {
            "FREQTRADE__API_SERVER__USERNAME": "sf-user",
            "FREQTRADE__API_SERVER__PASSWORD": "pw-" + os.urandom(8).hex(),
            "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "k-" + os.urandom(20).hex(),
            "FREQTRADE__API_SERVER__WS_TOKEN": "ws-" + os.urandom(8).hex(),
            "FREQTRADE__API_SERVER__LISTEN_PORT": str(port),
            "HOME": str(tmp_path),
        }
    )
    (tmp_path / "user_data").mkdir()
    log = (tmp_path / "webserver.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "freqtrade",
            "webserver",
            "--config",
            "config.json",
            "--userdir",
            str(tmp_path / "user_data"),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(120):
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/ping", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
                time.sleep(0.5)
        else:
            pytest.fail("freqtrade webserver did not answer")
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_freqtrade_client_recipe_reads_credentials_from_the_environment(webserver, tmp_path):
    script = recipe("### freqtrade-client")
    assert "freqtrade-client --config ~/.ft-client.json" in script
    r = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=REPO,
        env=webserver,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert lines[0]["version"]  # version
    assert lines[1]["strategy"] == "SqueezeFlow" and lines[1]["dry_run"] is True  # show_config
    client_cfg = tmp_path / ".ft-client.json"
    assert stat.S_IMODE(client_cfg.stat().st_mode) == 0o600
    assert webserver["FREQTRADE__API_SERVER__PASSWORD"] not in (REPO / "config.json").read_text()

    # The same with a wrong password is refused: the credentials really are the ones used.
    bad = {**webserver, "FREQTRADE__API_SERVER__PASSWORD": "wrong-password"}
    r = subprocess.run(
        ["bash", "-e", "-c", script], cwd=REPO, env=bad, capture_output=True, text=True, timeout=120
    )
    assert '"strategy": "SqueezeFlow"' not in r.stdout
    assert re.search(r"Unauthorized|401|Not authenticated", r.stdout + r.stderr), r.stdout[-2000:]


def test_freqtrade_client_python_recipe(webserver):
    code = recipe("### freqtrade-client", "python")
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            code.replace(":8080", ":" + webserver["FREQTRADE__API_SERVER__LISTEN_PORT"]),
        ],
        cwd=REPO,
        env=webserver,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "'version':" in r.stdout


@pytest.mark.shared
def test_frequi_offline_recipe_installs_a_build_freqtrade_serves(webserver):
    """The recipe with the FreqUI 3.1.1 build in ../shared/frequi (never copied into the repo)."""
    dist = REPO.parent / "shared" / "frequi" / "dist"
    if not (dist / "index.html").is_file():
        missing(f"no FreqUI build at {dist}")
    import freqtrade.rpc.api_server as api

    installed = Path(api.__file__).parent / "ui" / "installed"  # the recipe's .venv is this one
    if installed.exists():
        pytest.skip(f"{installed} already holds a FreqUI: not overwriting it")
    script = recipe("### FreqUI when").replace("FREQUI_DIST", str(dist))
    port = webserver["FREQTRADE__API_SERVER__LISTEN_PORT"]
    try:
        r = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=REPO,
            env=webserver,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/ui_version").json() == {"version": "3.1.1"}
        page = httpx.get(f"http://127.0.0.1:{port}/trade")
        assert page.status_code == 200 and '<div id="app"' in page.text, page.text[:500]
    finally:
        subprocess.run(["rm", "-rf", str(installed)], check=True)
    assert httpx.get(f"http://127.0.0.1:{port}/ui_version").json() == {"version": "not_installed"}
