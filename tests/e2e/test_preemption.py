"""A checkpoint on preemption: `ray job stop` (SIGTERM to the driver, as a pod or
node going away sends it) ends a training run after the iteration in flight with
a checkpoint of that iteration, and the resubmitted run resumes there: no
iteration lost, where a periodic checkpoint alone loses up to every_n - 1."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from controlplane.local.groups import detect_gpus
from tests.conftest import LOCAL_CLUSTER, REPO_ROOT
from tests.e2e.conftest import job_id_of
from tests.e2e.joblog import job_lines, ours

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(LOCAL_CLUSTER)]

ITERATION = re.compile(r"^iter\s+(\d+) \|", re.M)
DASHBOARD = REPO_ROOT / "k8s" / "monitoring" / "grafana-dashboard-rllib.json"


def exported_metric_names(cluster) -> set[str]:
    """The names every node's metrics endpoint serves, found as Prometheus would (the dashboard's SD)."""
    env = cluster.client_env()
    token = Path(env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    request = urllib.request.Request(
        f"{env['RAY_ADDRESS']}/api/prometheus/sd", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        targets = [target for group in json.load(response) for target in group["targets"]]
    assert len(targets) >= 3, targets  # head, cpu-workers, gpu-workers
    names = set()
    for target in targets:
        # Ray's SD names the machine's own address; its metrics agents listen on every interface,
        # loopback included, and the tests send traffic to 127.0.0.1 only.
        port = target.rsplit(":", 1)[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            for line in response.read().decode().splitlines():
                if line and not line.startswith("#"):
                    names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def check_dashboard_metrics(cluster, timeout_s: float = 90) -> None:
    """Every metric a panel queries is exported (the training gauges show up within Ray's report interval).
    GPU metrics are exported only where there are GPUs: on a machine without, each must at least be
    one Ray 2.60 defines (its reporter agent's source)."""
    wanted = set(re.findall(r"\b(ray_[a-z0-9_]+)\b", DASHBOARD.read_text()))
    assert {"ray_rl_episode_return_mean", "ray_node_gpus_utilization", "ray_object_store_memory"} <= wanted
    deadline = time.monotonic() + timeout_s
    while True:
        missing = wanted - exported_metric_names(cluster)
        if not missing - {n for n in missing if n.startswith("ray_node_gpus")} or time.monotonic() > deadline:
            break
        time.sleep(5)
    import ray.dashboard.modules.reporter as reporter

    defined = (Path(reporter.__file__).parent / "reporter_agent.py").read_text()
    for name in missing:
        gpu_metric = name.startswith("ray_node_gpus") and f'"{name.removeprefix("ray_")}": Gauge(' in defined
        assert gpu_metric and not detect_gpus(), f"the dashboard queries {name}, which this cluster does not export"


def test_ray_job_stop_checkpoints_the_iteration_it_was_on_and_the_rerun_resumes_there(cluster):
    name = f"preempt-{uuid.uuid4().hex[:6]}"
    # Checkpoints every 100 iterations: a stop before then would lose everything without the handler.
    args = ["--name", name, "--set", "stop.episode_return_mean=null", "--set", "checkpoint.every_n_iterations=100"]
    config = "jobs/experiments/ppo-cartpole.yaml"
    submitted = cluster.control(
        "submit", "--no-wait", "--", "python", "-m", "jobs.train", "--config", config, *args, "--set",
        "stop.iterations=400",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = job_id_of(submitted.stdout)
    client = cluster.jobs()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        reached = [int(n) for n in ITERATION.findall(client.get_job_logs(job_id))]
        if reached and max(reached) >= 3:
            break
        assert str(client.get_job_status(job_id)) in ("PENDING", "RUNNING"), client.get_job_logs(job_id)[-3000:]
        time.sleep(0.5)
    else:
        pytest.fail("the run did not reach iteration 3 in 5 minutes")
    # While it trains: every metric the Grafana dashboard queries is exported by this cluster.
    check_dashboard_metrics(cluster)

    ray = str(Path(sys.executable).parent / "ray")
    stop = subprocess.run([ray, "job", "stop", job_id], cwd=REPO_ROOT, env=cluster.client_env(),
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert stop.returncode == 0, stop.stdout + stop.stderr
    logs = client.get_job_logs(job_id)
    assert "SIGTERM received: finishing this iteration, then a checkpoint" in logs, logs[-3000:]
    last = max(int(n) for n in ITERATION.findall(logs))
    assert 3 <= last < 100
    assert (
        cluster.train_outcome(name).checkpoint
        == f"{cluster.client_env()['RL_STORAGE_URI']}/{name}/checkpoint_{last:06d}"
    )

    resumed = cluster.train(*args, "--set", f"stop.iterations={last + 1}", config=config)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    lines = ours(job_lines(resumed.stdout))
    assert re.fullmatch(rf"resumed from s3://\S+/{name}/checkpoint_{last:06d} at iteration {last}", lines[0]), lines[:3]
    assert [m for m in ITERATION.findall("\n".join(lines))] == [str(last + 1)]
