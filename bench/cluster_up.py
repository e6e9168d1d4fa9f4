"""`make cluster-up` to ready: PROVIDER=docker next to PROVIDER=local, in the same run.

Each provider brings a throw-away cluster up in a temporary state folder on a
free dashboard port, `--runs` times, alternating, and takes it down again.
"Ready" is when `python -m controlplane up` returns: every group's Ray node
ALIVE, the bucket answering, `.cluster/env` written. Prints a table and writes
bench/out/cluster_up.json.

    make bench-cluster-up                         # after `make images-local` (or `make images`)
    .venv/bin/python -m bench.cluster_up --runs 3

The Docker Engine is the one PROVIDER=docker would use (DOCKER_HOST, the system
one, or the project's own dockerd, started here if needed and stopped after);
its start-up is timed separately and is not part of a cluster-up.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

from bench.common import write_json
from controlplane.containers import daemon
from controlplane.ports import free_port
from controlplane.state import REPO_ROOT
from jobs.common.reports.tables import table

PROVIDERS = ("local", "docker")


def control(command: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "controlplane", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    return time.monotonic() - started, result


def one_run(provider: str, docker_host: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_", "RL_"))}
    env.update(
        {
            "PROVIDER": provider,
            "CLUSTER_STATE_DIR": tempfile.mkdtemp(prefix=f"bench-{provider}-") + "/.cluster",
            "DASHBOARD_PORT": str(free_port()),
            "DOCKER_HOST": docker_host,
        }
    )
    up_s, up = control("up", env)
    try:
        if up.returncode != 0:
            raise SystemExit(f"{provider}: cluster-up failed:\n{(up.stdout + up.stderr)[-3000:]}")
        own = re.search(r"cluster up in ([\d.]+)s", up.stdout)
    finally:
        down_s, down = control("down", env)
    if down.returncode != 0:
        raise SystemExit(f"{provider}: cluster-down failed:\n{(down.stdout + down.stderr)[-3000:]}")
    return {
        "provider": provider,
        "up_s": round(up_s, 1),
        "start_to_ready_s": float(own.group(1)) if own else None,
        "down_s": round(down_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="cluster-ups per provider (alternating)")
    args = parser.parse_args()
    when = datetime.now(UTC).isoformat(timespec="seconds")

    engine_started = time.monotonic()
    engine, started_pid = daemon.connect(start=True)
    engine_s = time.monotonic() - engine_started
    rows = []
    try:
        for run in range(1, args.runs + 1):
            for provider in PROVIDERS:
                print(f"run {run}: cluster-up PROVIDER={provider}", flush=True)
                rows.append({"run": run, **one_run(provider, engine.host)})
    finally:
        daemon.stop_if_idle(engine, started_pid)

    print()
    print(
        table(
            ["provider", "run", "up_s", "start_to_ready_s", "down_s"],
            [[r["provider"], r["run"], r["up_s"], r["start_to_ready_s"], r["down_s"]] for r in rows],
        )
    )
    medians = {p: statistics.median(r["up_s"] for r in rows if r["provider"] == p) for p in PROVIDERS}
    print("\nmedian cluster-up to ready: " + ", ".join(f"{p} {s:.1f}s" for p, s in medians.items()))
    if started_pid:
        print(f"(the Docker Engine itself took {engine_s:.1f}s to start; not counted above)")
    write_json(
        REPO_ROOT / "bench" / "out" / "cluster_up.json",
        "cluster_up",
        when,
        rows,
        median_up_s=medians,
        docker_engine_start_s=round(engine_s, 1) if started_pid else None,
        docker_host=engine.host,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
