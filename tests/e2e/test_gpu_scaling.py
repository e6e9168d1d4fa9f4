"""GPU-scaled training on the local cluster. Without GPUs: the capacity check
refuses GPU learners before submission, and the explicit CPU stand-in runs
the same placement (learners on the GPU group, env runners on the CPU group).
On a machine with GPUs the stand-in is never used: those tests are skipped,
saying so, and the plan is checked to use the real GPUs instead."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest

from controlplane.local.groups import detect_gpus
from tests.conftest import LOCAL_CLUSTER, REPO_ROOT
from tests.e2e.conftest import job_id_of
from tests.e2e.joblog import job_lines, ours

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(LOCAL_CLUSTER)]

RUN = uuid.uuid4().hex[:6]
GPUS = detect_gpus()
needs_no_gpus = pytest.mark.skipif(GPUS > 0, reason=f"{GPUS} real GPUs here: the CPU stand-in is never used")


@needs_no_gpus
def test_gpus_without_gpus_fail_before_submission_with_the_capacity_message(cluster):
    before = len(cluster.jobs().list_jobs())
    result = cluster.train("--num-gpus", "1")
    assert result.returncode != 0
    assert "learners.num_gpus = 1 asks for 1 GPU learners" in result.stderr
    assert "gpu-workers at most 0 GPUs (1 node(s) x 0)" in result.stderr
    assert "--gpu-fallback cpu" in result.stderr
    assert "nothing was submitted" in result.stderr
    assert len(cluster.jobs().list_jobs()) == before


def test_dry_run_checks_against_the_cluster_capacity(cluster):
    env = cluster.client_env()
    dry = subprocess.run(
        [sys.executable, "-m", "jobs.train", "--config", "jobs/experiments/ppo-cartpole-gpu.yaml", "--dry-run",
         "--gpu-fallback", "cpu"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if GPUS == 1:
        assert dry.returncode != 0 and "can offer at most 1 GPUs" in dry.stderr, dry.stderr
        return
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["ray"]["learners"]["num_learners"] == 2
    # The stand-in only where the GPU group has no GPUs; real GPU learners where it has them.
    assert plan["ray"]["learners"]["cpu_stand_in_for_gpus"] is (GPUS == 0)
    assert plan["ray"]["learners"]["num_gpus_per_learner"] == (0 if GPUS == 0 else 1)
    assert plan["ray"]["learners"]["custom_resources_per_learner"] == {"gpu_group": 0.001}
    assert plan["ray"]["training"]["train_batch_size_per_learner"] == 1000
    assert plan["cluster_capacity"]["gpu-workers"]["gpus_per_node"] == GPUS


@needs_no_gpus
def test_cpu_stand_in_with_two_learners_learns_cartpole_with_the_gpu_placement(cluster):
    name = f"stand-in-{RUN}"
    # The point is where the learners run, and that two of them learn together: to a return of 100
    # (random play scores about 20), not the experiment's 450.
    result = cluster.train("--gpu-fallback", "cpu", "--name", name, "--set", "stop.episode_return_mean=100",
                           config="jobs/experiments/ppo-cartpole-gpu.yaml")  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    lines = ours(job_lines(result.stdout))
    progress = [line for line in lines if line.startswith("iter ")]
    assert progress and all(line.endswith("| cpu stand-in for 2 GPU learners") for line in progress)
    assert float(re.search(r"return\s+([\d.]+)", progress[-1]).group(1)) >= 100

    # Where did Ray run them? The state API keeps the job's (now dead) actors. Asked from a fresh
    # process: Ray fixes its auth mode when first imported, and this one may have imported it without.
    job_id = cluster.jobs().get_job_info(job_id_of(result.stdout)).job_id
    query = (
        "import json, sys; from ray.util.state import list_actors, list_nodes; a = sys.argv[1]; "
        "print(json.dumps({'nodes': [[n.node_id, n.resources_total] for n in list_nodes(address=a, detail=True)], "
        "'actors': [[x.class_name, x.node_id, x.job_id] for x in list_actors(address=a, detail=True, limit=10000)]}))"
    )
    address = cluster.client_env()["RAY_ADDRESS"]
    answer = subprocess.run([sys.executable, "-c", query, address], cwd=REPO_ROOT, env=cluster.client_env(),
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-2000:]
    state = json.loads(answer.stdout.strip().splitlines()[-1])
    group_of_node = {
        node_id: ("gpu-workers" if "gpu_group" in resources else "cpu-workers" if "cpu_group" in resources else "head")
        for node_id, resources in state["nodes"]
    }
    actors = [(name, node) for name, node, job in state["actors"] if job == job_id]
    # The project's env runner class (jobs/common/rllib/env_runner.py); named, not imported: importing it
    # would import Ray into this process (see above).
    runners = [node for name, node in actors if name == "BatchedEnvRunner"]
    # RLlib's learners run inside Ray Train's worker wrapper.
    learners = [node for name, node in actors if name.endswith("_WrappedExecutable")]
    assert runners and {group_of_node[node] for node in runners} == {"cpu-workers"}
    assert len(learners) == 2, [name for name, _ in actors]
    assert {group_of_node[node] for node in learners} == {"gpu-workers"}
