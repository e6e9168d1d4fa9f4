"""Every core busy in each phase on a CPU-only cluster, and RLlib's per-item action handling moved into
the env: the learner that shares the env runners' cores, the algorithm held by one actor with the
runners remote, and actions rescaled and clipped inside the env exactly as RLlib's own
normalize_actions did."""

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.utils.spaces.space_utils import unsquash_action

from controlplane.clusterspec import ClusterSpec
from controlplane.local.groups import fixed_nodes
from jobs.common.cluster import capacity
from jobs.common.cluster.capacity import GroupCapacity
from jobs.common.cluster.fits import check_fits, check_placement
from jobs.common.cluster.plans import placement_plan
from jobs.common.errors import UserError
from jobs.common.rllib.envs import make_env
from jobs.common.rllib.learners import TORCH_THREADS
from jobs.common.rllib.ppo import build_ppo_config, resolved_settings
from jobs.common.rllib.trainer import runs_in_one_actor
from jobs.common.schema.experiment import load_experiment, parse_experiment
from tests.conftest import REPO_ROOT
from tests.unit.recorder_env import RECORDER

CPU_CHEETAH = REPO_ROOT / "jobs/experiments/ppo-halfcheetah-cpu.yaml"


def experiment(**learners):
    return parse_experiment(
        {"name": "t", "env": "CartPole-v1", "stop": {"iterations": 1}, "env_runners": {"num_env_runners": 2},
         "learners": {"num_gpus": 0, "num_cpus_per_learner": 2, **learners}}
    ).experiment  # fmt: skip


TWO_CORES = {"cpu-workers": GroupCapacity("cpu-workers", 1, 2, 0), "gpu-workers": GroupCapacity("gpu-workers", 1, 2, 0)}


# ------------------------------------------------------------------ the learner on the runners' cores


def test_a_learner_on_the_env_runners_cores_reserves_none_and_trains_on_their_threads():
    plan = placement_plan(experiment(share_env_runner_cpus=True)).learners
    assert (plan.reserved_cpus_per_learner, plan.torch_threads, plan.shares_env_runner_cpus) == (0, 2, True)
    check_fits(placement_plan(experiment(share_env_runner_cpus=True)), TWO_CORES)
    # Without sharing, 2 runners and a 2-CPU learner need 4 CPUs of a 2-CPU group: refused, named.
    with pytest.raises(UserError, match=r"2 env runners \+ 1 learners need 4 CPUs in cpu-workers"):
        check_fits(placement_plan(experiment()), TWO_CORES)


def test_sharing_learner_still_cannot_have_more_threads_than_a_node_has_cores():
    with pytest.raises(UserError, match=r"learners.num_cpus_per_learner = 4: .* more than a cpu-workers node has"):
        check_fits(placement_plan(experiment(share_env_runner_cpus=True, num_cpus_per_learner=4)), TWO_CORES)


def test_gpu_learners_cannot_share_the_env_runners_cores():
    with pytest.raises(UserError, match="share_env_runner_cpus is for CPU learners"):
        load_experiment(CPU_CHEETAH, ["learners.num_gpus=1"])


def test_one_sharing_cpu_learner_runs_in_one_actor_with_remote_env_runners():
    shared = experiment(share_env_runner_cpus=True)
    assert runs_in_one_actor(shared) and not runs_in_one_actor(experiment())
    config = build_ppo_config(shared, in_process_gpus=0, remote_env_runners=True)
    assert (config.num_env_runners, config.num_learners) == (2, 0)  # runners remote, the learner local
    assert config.learner_config_dict[TORCH_THREADS] == 2


def test_a_driver_side_sharing_learner_reserves_no_cpus_but_keeps_its_threads():
    config = build_ppo_config(experiment(share_env_runner_cpus=True, num_learners=2))
    assert (config.num_learners, config.num_cpus_per_learner) == (2, 0)
    assert config.learner_config_dict[TORCH_THREADS] == 2
    settings = resolved_settings(experiment(share_env_runner_cpus=True, num_learners=2), config)["learners"]
    assert settings["torch_threads_per_learner"] == 2 and settings["shares_env_runner_cpus"] is True


def test_shipped_cpu_experiment_fits_the_local_overlay_and_keeps_every_core_busy():
    loaded = load_experiment(CPU_CHEETAH).experiment
    # What the local provider publishes on a machine without GPUs (RL_WORKER_GROUPS).
    spec = ClusterSpec.from_overlay("local").with_gpus_available(0, "no GPUs")[0]
    groups = capacity.from_env({capacity.CAPACITY_ENV_VAR: capacity.to_env(spec.capacity(fixed_nodes(spec)))})
    check_placement(loaded, groups)
    cpu = groups["cpu-workers"].cpus_per_node
    # Sampling on every core of a cpu-workers node, then learning on every one of them.
    assert loaded.env_runners.num_env_runners * loaded.env_runners.num_cpus_per_env_runner == cpu
    assert loaded.learners.num_cpus_per_learner == cpu and loaded.learners.share_env_runner_cpus
    assert runs_in_one_actor(loaded)


# ------------------------------------------------------------------ actions inside the env


@pytest.mark.parametrize(("low", "high"), [([-1, -1], [1, 1]), ([-2, 0], [2, 10])])
def test_actions_reach_the_env_as_rllibs_normalize_actions_would_send_them(low, high):
    env = make_env(RECORDER, {"low": low, "high": high})
    recorder = env.unwrapped
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    rng = np.random.default_rng(0)
    for action in [*rng.normal(0, 2, size=(50, 2)).astype(np.float32), np.array([5.0, -5.0], dtype=np.float32)]:
        env.reset()
        env.step(action)
        expected = unsquash_action(action, recorder.action_space)
        assert np.allclose(recorder.seen, expected, atol=1e-5), (action, recorder.seen, expected)


def test_discrete_actions_are_left_alone():
    env = make_env("CartPole-v1")
    assert env.action_space == gym.spaces.Discrete(2) and type(env.unwrapped).__name__ == "CartPoleEnv"
    assert env.spec.id == "CartPole-v1"


def test_rllib_normalises_and_clips_nothing_itself():
    config = build_ppo_config(experiment())
    assert (config.normalize_actions, config.clip_actions) == (False, False)
    assert config.env == "ray-rl/CartPole-v1"
