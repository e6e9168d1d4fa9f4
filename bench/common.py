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


def write_json(out: Path, benchmark: str, when: str, rows: list[dict], **extra) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    record = {"benchmark": benchmark, **extra, "when": when, "machine": machine, "rows": rows}
    out.write_text(json.dumps(record, indent=2))
    print(f"\nwrote {os.path.relpath(out)}")


def run_tests_reporting(pytest_args: list[str], report_var: str) -> tuple[list[dict], int]:
    """Run pytest with `report_var` naming a file each test appends one JSON row to."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as handle:
        report = Path(handle.name)
    try:
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", *pytest_args, "-q", "-p", "no:cacheprovider"],
            cwd=REPO_ROOT,
            env={**os.environ, report_var: str(report)},
        )
        rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    finally:
        report.unlink()
    return rows, tests.returncode
