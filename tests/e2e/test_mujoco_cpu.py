"""The CPU MuJoCo experiment on the local cluster as a user runs it: two env runners sample on the
cpu-workers node's two cores, then the learner, held with the algorithm by one actor on that node,
learns on the same two cores (learners.share_env_runner_cpus); its checkpoint evaluates through the
same env (actions rescaled and clipped inside it: jobs/common/rllib/envs.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import LOCAL_CLUSTER
from tests.e2e.joblog import job_lines, ours

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(LOCAL_CLUSTER)]

EXPERIMENT = "jobs/experiments/ppo-halfcheetah-cpu.yaml"


def test_halfcheetah_on_cpus_samples_on_both_runners_and_learns_beside_them_then_evaluates(cluster):
    name = f"cheetah-cpu-{uuid.uuid4().hex[:6]}"
    result = cluster.train("--name", name, "--set", "stop.iterations=2", config=EXPERIMENT, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    progress = [line for line in ours(job_lines(result.stdout)) if line.startswith("iter ")]
    # Both remote env runners answered in every iteration: the plan fit the 2-CPU group with the learner
    # reserving none of its own, and nothing waited for CPUs.
    assert len(progress) == 2 and all(line.endswith("env runners 2/2") for line in progress), progress
    record = cluster.train_outcome(name)
    assert (record.iterations, record.env_steps) == (2, 2 * 16384), record

    evaluated = cluster.control("evaluate", "--checkpoint", record.checkpoint, "--episodes", "1", timeout=600)
    assert evaluated.returncode == 0, (evaluated.stdout + evaluated.stderr)[-3000:]
    evaluation = cluster.evaluation_outcome(record.checkpoint)
    assert evaluation.episodes == 1 and evaluation.lengths == [1000], evaluation
    # A node without OpenGL for MuJoCo says why there is no video; one with it has the video.
    if evaluation.video is None:
        assert "MUJOCO_GL" in evaluation.no_video and f"no video: {evaluation.no_video}" in evaluated.stdout
    else:
        assert cluster.read(evaluation.video)[:6] == b"GIF89a"
