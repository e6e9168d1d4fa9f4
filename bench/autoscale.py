"""Autoscaling on the Docker Engine: pending demand to a new node in Ray, and an idle node to its container gone.

A docker cluster of tests/e2e/overlays/autoscale (cpu-workers: 0 to 2 nodes, idle timeout
10 s) comes up in a temporary state folder. Each run submits a job whose one task asks for
a CPU of the cpu-workers group, which has no node, and times, from the host:

    demand -> launched     the GCS first shows the task's demand -> the worker container exists
    demand -> registered   ... -> the new node is ALIVE in the GCS (Ray's own registration)
    idle -> gone           the node's last task ends (its idle time starts) -> its container is gone
    beyond idle timeout    idle -> gone, less the group's idleTimeoutSeconds

Prints a table and writes bench/out/autoscale.json. Anchor: KubeRay's performance tests see
pods running about 5 s after creation with pre-pulled images; the target here is a new worker
registered in 10 s or less.

    make bench-autoscale                          # after `make images-local`
    .venv/bin/python -m bench.autoscale --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import write_json
from controlplane.containers import daemon
from controlplane.polling import wait_for
from controlplane.ports import free_port
from controlplane.state import REPO_ROOT
from jobs.common.reports.tables import table

OVERLAY = "tests/e2e/overlays/autoscale"
GROUP = "cpu-workers"
# One task on the CPU group: one CPU and a sliver of the group's resource, as env runners ask.
TASK = (
    "import ray, time; ray.init(); "
    "f = ray.remote(lambda: time.sleep(2)).options(num_cpus=1, resources={'cpu_group': 0.001}); "
    "ray.get(f.remote())"
)


def control(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controlplane", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip


class Probe:
    """The cluster as the host sees it: the GCS (published on 127.0.0.1, with the token) and the engine."""

    def __init__(self, state_root: Path):
        from ray._raylet import GcsClient

        from controlplane.containers.autoscaler import load_cluster

        self.containers = load_cluster(state_root)
        self.gcs_address = f"127.0.0.1:{self.containers.state['gcs_port']}"
        self.gcs = GcsClient(address=self.gcs_address)

    def demand(self) -> bool:
        from controlplane.raystatus import pending_demand

        return any("cpu_group" in bundle for bundle in pending_demand(self.gcs_address).requests)

    def alive_nodes(self) -> dict[str, str]:
        """Instance id (container name) -> node id, of the group's ALIVE nodes."""
        from ray.core.generated import gcs_pb2

        infos = self.gcs.get_all_node_info(timeout=10).values()
        return {i.instance_id: i.node_id.hex() for i in infos
                if i.state == gcs_pb2.GcsNodeInfo.ALIVE and i.node_type_name == GROUP}  # fmt: skip

    def idle_since(self, node_id: str) -> float | None:
        """Unix time at which the node became idle, if it is idle now."""
        from ray.autoscaler.v2.sdk import get_cluster_status

        for node in get_cluster_status(self.gcs_address).idle_nodes:
            if node.node_id == node_id and node.resource_usage is not None:
                return time.time() - node.resource_usage.idle_time_ms / 1000
        return None

    def workers(self) -> list[str]:
        return [c["name"] for c in self.containers.containers() if c["role"] == GROUP]


def one_run(env: dict[str, str], probe: Probe, idle_timeout_s: float) -> dict:
    wait_for("the group to be empty", lambda: not probe.workers() and not probe.alive_nodes(), timeout_s=300)
    before = set(probe.alive_nodes())
    submit = [sys.executable, "-m", "controlplane", "submit", "--", "python", "-c", TASK]
    job = subprocess.Popen(submit, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for("the task's demand in the GCS", probe.demand, every_s=0.02)
    demand_at = time.time()
    wait_for("a worker container", probe.workers, every_s=0.02)
    launched_at = time.time()
    new = wait_for("the new node ALIVE in the GCS",
                   lambda: {k: v for k, v in probe.alive_nodes().items() if k not in before}, every_s=0.02)  # fmt: skip
    registered_at = time.time()
    output = job.communicate(timeout=300)[0]
    if job.returncode != 0:
        raise SystemExit(f"the demand job failed:\n{output[-3000:]}")
    node_id = next(iter(new.values()))
    idle_at = wait_for("the node to be idle", lambda: probe.idle_since(node_id), every_s=0.2)
    wait_for("the worker container to go", lambda: not probe.workers(), timeout_s=idle_timeout_s + 180, every_s=0.1)
    gone_at = time.time()
    return {
        "demand_to_launched_s": round(launched_at - demand_at, 2),
        "demand_to_registered_s": round(registered_at - demand_at, 2),
        "idle_to_gone_s": round(gone_at - idle_at, 2),
        "beyond_idle_timeout_s": round(gone_at - idle_at - idle_timeout_s, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    when = datetime.now(UTC).isoformat(timespec="seconds")
    engine, started_pid = daemon.connect(start=True)
    state_root = Path(tempfile.mkdtemp(prefix="bench-autoscale-")) / ".cluster"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_", "RL_"))}
    env.update({"PROVIDER": "docker", "OVERLAY": OVERLAY, "CLUSTER_STATE_DIR": str(state_root),
                "DASHBOARD_PORT": str(free_port()), "DOCKER_HOST": engine.host})  # fmt: skip
    rows = []
    try:
        up = control(env, "up")
        if up.returncode != 0:
            raise SystemExit(f"cluster-up failed:\n{(up.stdout + up.stderr)[-3000:]}")
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(state_root / "auth_token")})
        probe = Probe(state_root)
        idle_timeout_s = probe.containers.spec.group(GROUP).idle_timeout_s
        for run in range(1, args.runs + 1):
            print(f"run {run}: demand on {GROUP} (0 nodes), then idle", flush=True)
            rows.append({"run": run, **one_run(env, probe, idle_timeout_s)})
    finally:
        control(env, "down")
        daemon.stop_if_idle(engine, started_pid)

    columns = ["run", "demand_to_launched_s", "demand_to_registered_s", "idle_to_gone_s", "beyond_idle_timeout_s"]
    print()
    print(table(columns, [[row[c] for c in columns] for row in rows]))
    medians = {c: statistics.median(row[c] for row in rows) for c in columns[1:]}
    print(f"\nmedian: {json.dumps(medians)}  (idle timeout {idle_timeout_s:g} s; target: registered in 10 s or less)")
    write_json(REPO_ROOT / "bench" / "out" / "autoscale.json", "autoscale", when, rows, medians=medians,
               idle_timeout_s=idle_timeout_s, overlay=OVERLAY, docker_host=engine.host)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
