"""What every benchmark script shares: a throw-away local cluster (or the
running one) and the JSON it writes beside its printed table."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.reporting import OUTCOMES_ENV_VAR
from controlplane.ports import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def bench_cluster(use_running: bool) -> Iterator[dict[str, str]]:
    """The environment for `python -m controlplane ...`: a new local cluster in a
    temporary state folder, stopped afterwards, or (use_running) .cluster/env's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_", "RL_"))}
    if use_running:
        yield env
        return
    env["CLUSTER_STATE_DIR"] = tempfile.mkdtemp(prefix="bench-cluster-")
    env["DASHBOARD_PORT"] = str(free_port())
    print("starting a local cluster for the benchmark", flush=True)
    subprocess.run(
        [sys.executable, "-m", "controlplane", "up"], cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )
    try:
        yield env
    finally:
        subprocess.run(
            [sys.executable, "-m", "controlplane", "down"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL
        )


def submitting(entrypoint: list[str], env: dict[str, str], tree: Path = REPO_ROOT) -> subprocess.Popen:
    """`python -m controlplane submit -- <entrypoint>` (what `make train`/`make sweep` run) from the
    checkout `tree` (its code, this venv), its output (stdout and stderr together) streamed line by
    line from `.stdout`."""
    return subprocess.Popen(
        [sys.executable, "-m", "controlplane", "submit", "--", *entrypoint],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )


def write_json(out: Path, benchmark: str, when: str, rows: list[dict], **extra) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    record = {"benchmark": benchmark, **extra, "when": when, "machine": machine, "rows": rows}
    out.write_text(json.dumps(record, indent=2))
    print(f"\nwrote {os.path.relpath(out)}")


def run_tests_reporting(pytest_args: list[str], report_var: str) -> tuple[list[dict], int]:
    """Run pytest with `report_var` naming a file each test appends one JSON row to."""
    rows, _, status = run_tests_with_outcomes(pytest_args, report_var)
    return rows, status


def run_tests_with_outcomes(pytest_args: list[str], report_var: str) -> tuple[list[dict], list[dict], int]:
    """Run pytest with `report_var` naming a file each test appends one JSON row to,
    and with bench.reporting's plugin writing each test's own result: (rows, outcomes,
    exit status). `bench.reporting.merge` puts them together."""
    files = {}
    for what in ("rows", "outcomes"):
        with tempfile.NamedTemporaryFile(suffix=f".{what}.jsonl", delete=False) as handle:
            files[what] = Path(handle.name)
    try:
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", *pytest_args, "-q", "-p", "no:cacheprovider", "-p", "bench.reporting"],
            cwd=REPO_ROOT,
            env={**os.environ, report_var: str(files["rows"]), OUTCOMES_ENV_VAR: str(files["outcomes"])},
        )
        rows, outcomes = (
            [json.loads(line) for line in files[w].read_text().splitlines() if line.strip()] for w in files
        )
    finally:
        for path in files.values():
            path.unlink()
    return rows, outcomes, tests.returncode


# `sweep <name>: <n> of <total> trials <count> finished, <count> stopped early, ...`:
# the first line of a sweep's report (jobs/common/reports/sweep.py).
SWEEP_SUMMARY = re.compile(r"^sweep (\S+): (\d+) of (\d+) trials ?(.*)$")


@dataclass(frozen=True)
class SweepSummary:
    name: str
    trials: int  # trials Tune knows of
    planned: int  # trials the sweep file asks for
    counts: dict[str, int]  # outcome -> trials: finished, stopped early, error, running, pending

    def count(self, outcome: str) -> int:
        return self.counts.get(outcome, 0)


def sweep_summary(lines: list[str], name: str | None = None) -> SweepSummary | None:
    """The last summary line of a sweep (of the sweep `name`, if given) in a job's output, parsed."""
    found = None
    for line in lines:
        match = SWEEP_SUMMARY.match(line.strip())
        if match and (name is None or match.group(1) == name):
            counts = {}
            for part in filter(None, (p.strip() for p in match.group(4).split(","))):
                number, _, outcome = part.partition(" ")
                if number.isdigit():
                    counts[outcome] = counts.get(outcome, 0) + int(number)
            found = SweepSummary(match.group(1), int(match.group(2)), int(match.group(3)), counts)
    return found
