"""Project-level promises: the compose file, the quick-start command, the CI entry point."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, missing

SECRETS = {
    "FREQTRADE__API_SERVER__USERNAME": "u",
    "FREQTRADE__API_SERVER__PASSWORD": "p",
    "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "k" * 32,
    "FREQTRADE__API_SERVER__WS_TOKEN": "t",
}


def test_docker_compose_file_validates_offline():
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose missing: scripts/test installs it")
        missing("docker-compose (Debian package) is not installed")
    r = subprocess.run(
        [exe, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        env={**os.environ, **SECRETS},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [exe, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        env={k: v for k, v in os.environ.items() if k not in SECRETS},
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "set it in .env" in r.stderr  # no default passwords


def test_every_published_port_is_on_loopback():
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    ports = [p for s in doc["services"].values() for p in s.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


#: What each service's healthcheck must probe.
PROBES = {
    "influxdb": "8086/ping",
    "redis": "ping",
    "feeder": "8765/health",
    "freqtrade": "8080/api/v1/ping",
}


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies():
    services = _compose()["services"]
    assert set(services) == set(PROBES)
    for name, svc in services.items():
        test = svc.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD" and PROBES[name] in " ".join(test), name
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        for dep, cond in deps.items():
            assert cond == {"condition": "service_healthy"}, (name, dep)
    assert set(services["feeder"]["depends_on"]) == {"influxdb", "redis"}
    assert set(services["freqtrade"]["depends_on"]) == {"influxdb", "redis", "feeder"}


def test_influxdb_and_redis_are_on_an_internal_network_only():
    doc = _compose()
    assert doc["networks"]["stores"] == {"internal": True}
    for name in ("influxdb", "redis"):
        svc = doc["services"][name]
        assert svc["networks"] == ["stores"] and "ports" not in svc, name
    for name in ("feeder", "freqtrade"):  # they reach the stores and the exchanges
        assert set(doc["services"][name]["networks"]) == {"stores", "default"}, name


def _docker_context() -> set[str]:
    """The build context docker would send, by docker-py's own .dockerignore matcher."""
    code = (
        "import sys, json\n"
        "from docker.utils.build import exclude_paths\n"
        "root = sys.argv[1]\n"
        "pats = [l.strip() for l in open(root + '/.dockerignore') if l.strip()"
        " and not l.startswith('#')]\n"
        "print(json.dumps(sorted(exclude_paths(root, pats))))\n"
    )
    py = "/usr/bin/python3"
    probe = (
        subprocess.run([py, "-c", "import docker"], capture_output=True)
        if shutil.which(py)
        else None
    )
    if probe is None or probe.returncode:
        if os.environ.get("CI"):
            pytest.fail("docker-py missing: scripts/test installs python3-docker")
        missing("docker-py (Debian's python3-docker, with docker-compose) is not installed")
    r = subprocess.run([py, "-c", code, str(REPO)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    return set(json.loads(r.stdout))


def test_the_docker_build_context_is_only_what_the_images_copy():
    ctx = _docker_context()
    copied = set()
    for dockerfile in ("Dockerfile", "docker/freqtrade.Dockerfile"):
        for line in (REPO / dockerfile).read_text().splitlines():
            if line.startswith("COPY"):
                copied |= {w for w in line.split()[1:-1] if not w.startswith("--")}
    assert copied == {"pyproject.toml", "README.md", "feeder"}
    assert {"pyproject.toml", "README.md", "feeder/tools/cli.py", "feeder/live/runtime.py"} <= ctx
    always = {"Dockerfile", ".dockerignore"}  # docker sends these whatever the patterns say
    stray = sorted(p for p in ctx if p.split("/")[0] not in copied | always)
    assert stray == [], stray[:20]  # no .venv, .git, user_data, tests, data
    assert not [p for p in ctx if "__pycache__" in p]
    assert not [p for p in ctx if p.endswith(".so")]  # a local build of the C scanner


def test_env_example_lists_every_variable_compose_requires_and_env_is_ignored():

    required = set(re.findall(r"\$\{(\w+):\?", (REPO / "docker-compose.yml").read_text()))
    example = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^(\w+)=", example, flags=re.M))
    assert required and required <= listed, required - listed
    r = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert r.returncode == 0, ".env is not in .gitignore"


def test_the_readme_points_only_inside_the_repository():
    readme = (REPO / "README.md").read_text()
    assert "../shared/docs" not in readme  # the method and the docs are in the repository
    docs = set(re.findall(r"\b((?:docs|deploy)/[\w.-]+\.(?:md|service))", readme))
    assert {"docs/method.md", "docs/settings.md"} <= docs
    assert [d for d in docs if not (REPO / d).is_file()] == []


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci/run").read_text()
    assert "bash scripts/test" in readme.split("```")[1]
    assert "exec bash scripts/test" in ci


def _quickstart(tmp_path, *args, offline=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
    env.update({"SQUEEZEFLOW_PARQUET_DIR": str(tmp_path / "store"), "COLUMNS": "200"})
    if offline:
        env["SQUEEZEFLOW_OFFLINE"] = "1"
    return subprocess.run(
        [
            "bash",
            "scripts/quickstart",
            *args,
            "--datadir",
            str(tmp_path / "data"),
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_quickstart_offline_uses_the_labelled_synthetic_sample_and_backtests(tmp_path):
    r = _quickstart(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "using the labelled SYNTHETIC sample" in out
    assert "BINANCE_FUTURES:btcusd_perp" in out  # the store status
    summary = out[out.index("STRATEGY SUMMARY") :]
    trades = int(summary.split("SqueezeFlow")[1].split("│")[1])
    assert trades >= 4
    assert "Those results are on SYNTHETIC data" in out
    # A store of its own: the default (real) store is never written.
    syn = tmp_path / "synthetic"
    assert (syn / "store" / "bars_1s" / "BINANCE_FUTURES.btcusdt").is_dir()
    assert not (tmp_path / "store").exists()
    assert (syn / "archive" / "SYNTHETIC.txt").exists()
    # It says where things are and what to do next, and the backtest can be opened again.
    flat = " ".join(out.split())
    for part in ("SYNTHETIC store:", "SYNTHETIC candles:", "what to do next", "backtesting-show"):
        assert part in flat, part
    results = tmp_path / "backtest_results"
    assert list(results.glob("backtest-result-*.zip")), list(results.iterdir())
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
    show = subprocess.run(
        [
            sys.executable,
            "-m",
            "feeder.tools.offline",
            "--offline",
            "backtesting-show",
            "--config",
            "config.json",
            "--backtest-directory",
            str(results),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert show.returncode == 0, (show.stdout + show.stderr)[-3000:]
    assert "SqueezeFlow" in show.stdout and "STRATEGY SUMMARY" in show.stdout
    # The backtest command it prints works as printed (on the SYNTHETIC store, and says so).
    line = next(
        x.strip() for x in out.splitlines() if "squeezeflow-freqtrade" in x and " backtesting " in x
    )
    env.pop("SQUEEZEFLOW_PARQUET_DIR", None)
    again = subprocess.run(
        [*line.split(), "--export", "none"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-3000:]
    assert "flow is SYNTHETIC" in log and "0 incomplete" in log
    summary = log[log.index("STRATEGY SUMMARY") :]
    assert int(summary.split("SqueezeFlow")[1].split("│")[1]) == trades


def test_generated_and_downloaded_archives_are_ignored_by_git():
    r = subprocess.run(
        [
            "git",
            "check-ignore",
            "user_data/synthetic/archive/SYNTHETIC.txt",
            "user_data/synthetic/store/imports.json",
            "user_data/archive/spot/x.zip",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert len(r.stdout.split()) == 3, r.stdout


@pytest.mark.slow
def test_quickstart_imports_a_given_archive_folder(tmp_path):
    from feeder.tools.synthetic import Scenario, generate

    generate(Scenario.planted(), tmp_path / "given")
    r = _quickstart(tmp_path, str(tmp_path / "given"))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "importing the archive files under" in out
    assert "SYNTHETIC sample" not in out.split("importing")[0]
    assert "BACKTESTING REPORT" in out
    assert (tmp_path / "store" / "bars_1s" / "BINANCE_FUTURES.btcusd_perp").is_dir()


@pytest.mark.slow
def test_offline_freqtrade_refuses_every_exchange_call_but_markets(tmp_path):
    """With --offline, ccxt parses built-in exchangeInfo; anything else fails loudly."""
    code = (
        "import ccxt, sys\n"
        "from feeder.tools.offline import install\n"
        "install(None)\n"
        "ex = ccxt.binance({'options': {'defaultType': 'swap'}})\n"
        "m = ex.load_markets()\n"
        "assert m['BTC/USDT:USDT']['linear'] and m['ETH/USDT:USDT']['contract'], list(m)\n"
        "try:\n"
        "    ex.fetch_ticker('BTC/USDT:USDT')\n"
        "except ccxt.ExchangeNotAvailable as e:\n"
        "    print('refused:', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "refused: offline mode: refused GET https://fapi.binance.com" in r.stdout


@pytest.mark.slow
def test_building_the_package_emits_no_setuptools_deprecation_warning(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "SetuptoolsDeprecationWarning" not in out, out[-3000:]
    assert "project.license" not in out


def test_freqtrade_is_required_with_the_plot_extra():
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    ft = next(d for d in deps if d.startswith("freqtrade["))
    assert "plot" in ft[ft.index("[") + 1 : ft.index("]")].split(",")
    import plotly  # noqa: F401 - installed with it
