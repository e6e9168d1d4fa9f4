"""A checkpoint on preemption: `ray job stop` (SIGTERM to the driver, as a pod or
node going away sends it) ends a training run after the iteration in flight with
a checkpoint of that iteration, and the resubmitted run resumes there: no
iteration lost, where a periodic checkpoint alone loses up to every_n - 1."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import job_id_of
from tests.e2e.joblog import job_lines, ours

pytestmark = pytest.mark.e2e

ITERATION = re.compile(r"^iter\s+(\d+) \|", re.M)


def test_ray_job_stop_checkpoints_the_iteration_it_was_on_and_the_rerun_resumes_there(cluster):
    name = f"preempt-{uuid.uuid4().hex[:6]}"
    # Checkpoints every 20 iterations: a stop before then would lose everything without the handler.
    args = ["--name", name, "--set", "stop.episode_return_mean=null", "--set", "checkpoint.every_n_iterations=20"]
    config = "jobs/experiments/ppo-cartpole.yaml"
    submitted = cluster.control(
        "submit", "--no-wait", "--", "python", "-m", "jobs.train", "--config", config, *args, "--set",
        "stop.iterations=60",
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

    ray = str(Path(sys.executable).parent / "ray")
    stop = subprocess.run([ray, "job", "stop", job_id], cwd=REPO_ROOT, env=cluster.client_env(),
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert stop.returncode == 0, stop.stdout + stop.stderr
    logs = client.get_job_logs(job_id)
    assert "SIGTERM received: finishing this iteration, then a checkpoint" in logs, logs[-3000:]
    last = max(int(n) for n in ITERATION.findall(logs))
    assert 3 <= last < 20
    assert f"checkpoint: {cluster.client_env()['RL_STORAGE_URI']}/{name}/checkpoint_{last:06d}" in logs, logs[-2000:]

    resumed = cluster.train(*args, "--set", f"stop.iterations={last + 1}", config=config)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    lines = ours(job_lines(resumed.stdout))
    assert re.fullmatch(rf"resumed from s3://\S+/{name}/checkpoint_{last:06d} at iteration {last}", lines[0]), lines[:3]
    assert [m for m in ITERATION.findall("\n".join(lines))] == [str(last + 1)]
