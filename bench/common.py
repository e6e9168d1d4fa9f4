"""What every benchmark script shares: a throw-away local cluster (or the
running one) and the JSON it writes beside its printed table."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.reporting import OUTCOMES_ENV_VAR
from controlplane.ports import free_port
from controlplane.state import REPO_ROOT


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


def write_json(out: Path, benchmark: str, when: str, rows: list[dict], quiet: bool = False, **extra) -> None:
    """The record, written beside `out` and renamed onto it: a run stopped mid-write leaves the last whole one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    record = {"benchmark": benchmark, **extra, "when": when, "machine": machine, "rows": rows}
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(record, indent=2))
    partial.replace(out)
    if not quiet:
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


def read_outcome(kind, env: dict[str, str], run_uri_of) -> object | None:
    """An entrypoint's record (jobs/common/reports/outcome.py) from the benchmark cluster's storage:
    `run_uri_of(storage_uri)` names it (a layout path). None where the run left none."""
    from controlplane.state import StateDir, default_state_dir
    from jobs.common.reports import outcome

    state_dir = StateDir(Path(env["CLUSTER_STATE_DIR"]) if env.get("CLUSTER_STATE_DIR") else default_state_dir())
    client = state_dir.read_env()
    os.environ.update({k: v for k, v in client.items() if k.startswith(("AWS_", "RL_"))})
    return outcome.read(kind, run_uri_of(client["RL_STORAGE_URI"]))
