"""Shared helpers of the benchmark scripts: tables, machine description, a private InfluxDB."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVERS_SH = ROOT / "scripts" / "servers.sh"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (numbers right-aligned)."""

    def cell(v: object) -> str:
        return v if isinstance(v, str) else f"{v}"

    cells = [[cell(v) for v in r] for r in rows]
    numeric = (
        [
            all(c and (c[0].isdigit() or c[0] in "-+<>~") for c in col)
            for col in zip(*cells, strict=True)
        ]
        if cells
        else [False] * len(headers)
    )
    out = ["| " + " | ".join(headers) + " |"]
    out.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    out += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(out)


def best_median(values: Sequence[float], *, higher_is_better: bool) -> tuple[float, float]:
    best = max(values) if higher_is_better else min(values)
    return best, statistics.median(values)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    from importlib.metadata import version  # no import of the packages: keeps this process small

    return (
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"numpy {version('numpy')}, pandas {version('pandas')}, pyarrow {version('pyarrow')}"
    )


def header(title: str) -> None:
    """Print the title, the date, the machine and the machine noise (see ``noise.py``)."""
    import noise

    print(f"# {title}")
    print(time.strftime("date: %Y-%m-%d %H:%M:%S %Z"))
    print(machine_line())
    print(noise.measure().line())
    print()


def footer() -> None:
    """Print the machine noise again at the end (the machine may have changed meanwhile)."""
    import noise

    print()
    print("after the runs, " + noise.measure().line())


@dataclass(frozen=True)
class Servers:
    url: str  # InfluxDB HTTP URL
    influx_pid: int
    dir: Path

    def influx_cpu_s(self) -> float:
        """CPU seconds (user + system) influxd has used so far."""
        fields = Path(f"/proc/{self.influx_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_idle(
        self, threshold: float = 0.05, quiet_s: float = 3.0, limit_s: float = 180.0
    ) -> float:
        """Wait until influxd uses < ``threshold`` of a CPU for ``quiet_s`` (compactions done).

        Returns the seconds waited.
        """
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < limit_s:
            c0 = self.influx_cpu_s()
            time.sleep(quiet_s)
            if (self.influx_cpu_s() - c0) / quiet_s < threshold:
                break
        return time.perf_counter() - t0


@contextmanager
def private_influx(keep_dir: Path | None = None) -> Iterator[Servers]:
    """Start a private InfluxDB (and Redis) with ``scripts/servers.sh``.

    Stops exactly the servers it started (their pids), whatever happens.
    """
    tmp = tempfile.mkdtemp(prefix="sfbench-servers.") if keep_dir is None else str(keep_dir)
    out = Path(tmp) / "start.out"
    script = (
        f"source {shlex.quote(str(SERVERS_SH))}; "
        f"sf_servers_start {shlex.quote(tmp)} || exit 1; "
        'echo "URL=$SQUEEZEFLOW_TEST_INFLUX_URL"; echo "PIDS=$SF_SERVER_PIDS"'
    )
    with out.open("w") as fh:
        rc = subprocess.run(["bash", "-c", script], stdout=fh, stderr=subprocess.STDOUT).returncode
    text = out.read_text()
    vals = dict(line.split("=", 1) for line in text.splitlines() if line[:4] in ("URL=", "PIDS"))
    pids = vals.get("PIDS", "").split()
    try:
        if rc != 0 or "URL" not in vals:
            raise RuntimeError(f"scripts/servers.sh could not start the servers:\n{text}")
        print(f"private InfluxDB at {vals['URL']} (server pids {' '.join(pids)}, dir {tmp})")
        yield Servers(vals["URL"], int(pids[0]), Path(tmp))
    finally:
        if pids:
            stop = (
                f"source {shlex.quote(str(SERVERS_SH))}; "
                f"SF_SERVER_PIDS={shlex.quote(' '.join(pids))}; sf_servers_stop"
            )
            subprocess.run(["bash", "-c", stop], check=False)
            print(f"stopped private servers (pids {' '.join(pids)})")
        if keep_dir is None:
            subprocess.run(["rm", "-rf", tmp], check=False)
