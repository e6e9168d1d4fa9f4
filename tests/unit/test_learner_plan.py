"""One knob: `num_gpus: N` -> N remote learners, one GPU each, same effective
batch; placement on the worker groups; the plan checked against capacity."""

import pytest

from jobs.common.cluster.capacity import GroupCapacity, from_env, to_env
from jobs.common.cluster.fits import check_fits
from jobs.common.cluster.plans import learner_plan, placement_plan
from jobs.common.errors import UserError
from jobs.common.rllib.ppo import build_ppo_config
from jobs.common.schema.experiment import parse_experiment

BASE = {"name": "t", "env": "CartPole-v1", "stop": {"iterations": 1}, "training": {"train_batch_size": 8000}}


def experiment(**learners):
    return parse_experiment({**BASE, "learners": learners}).experiment


def cluster(gpus_per_node=0, gpu_nodes=1, cpus=2, gpu_group_cpus=2):
    return {
        "cpu-workers": GroupCapacity("cpu-workers", 1, cpus, 0),
        "gpu-workers": GroupCapacity("gpu-workers", gpu_nodes, gpu_group_cpus, gpus_per_node),
    }


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_gpus_become_learners_with_one_gpu_each_and_the_same_total_batch(gpus):
    plan = learner_plan(experiment(num_gpus=gpus))
    assert plan.num_learners == gpus
    assert plan.num_gpus_per_learner == 1
    assert plan.group == "gpu-workers"
    assert plan.train_batch_size_per_learner * gpus == 8000
    assert plan.cpu_stand_in is False


def test_zero_gpus_means_remote_cpu_learners_on_the_cpu_group():
    plan = learner_plan(experiment(num_gpus=0, num_learners=2))
    assert (plan.num_learners, plan.num_gpus_per_learner, plan.group) == (2, 0, "cpu-workers")
    assert plan.train_batch_size_per_learner == 4000


def test_legacy_num_gpus_key_is_the_same_knob():
    loaded = parse_experiment({**BASE, "num_gpus": 4})
    assert learner_plan(loaded.experiment).num_learners == 4
    assert any("'num_gpus' is now 'learners.num_gpus'" in note for note in loaded.notes)


@pytest.mark.parametrize("value", [-1, 1.5, "two"])
def test_bad_gpu_counts_are_refused(value):
    with pytest.raises(UserError, match="learners.num_gpus"):
        experiment(num_gpus=value)


def test_batch_that_does_not_split_evenly_is_refused():
    with pytest.raises(ValueError, match="divide evenly over 3 learners"):
        learner_plan(experiment(num_gpus=3))


def test_ray_config_places_components_on_their_groups():
    config = build_ppo_config(experiment(num_gpus=2))
    assert config.num_learners == 2
    assert config.num_gpus_per_learner == 1
    assert config.custom_resources_per_learner == {"gpu_group": 0.001}
    assert config.custom_resources_per_env_runner == {"cpu_group": 0.001}
    assert config.train_batch_size_per_learner == 4000
    assert config.model_config["vf_share_layers"] is False


def test_plain_ray_cluster_gets_no_group_resources():
    config = build_ppo_config(experiment(), use_groups=False)
    assert config.custom_resources_per_learner == {}
    assert config.custom_resources_per_env_runner == {}


def test_more_gpus_than_any_group_offers_names_the_groups():
    with pytest.raises(UserError) as caught:
        check_fits(placement_plan(experiment(num_gpus=4), cluster(gpus_per_node=1, gpu_nodes=2)), cluster(1, 2))
    message = str(caught.value)
    assert "learners.num_gpus = 4" in message
    assert "gpu-workers at most 2 GPUs (2 node(s) x 1)" in message
    assert "cpu-workers at most 0 GPUs" in message
    assert "--gpu-fallback" not in message  # the GPU group has real GPUs: no stand-in offered


def test_gpus_on_a_cluster_without_gpus_fail_unless_the_cpu_stand_in_is_asked_for():
    groups = cluster(gpus_per_node=0)
    with pytest.raises(UserError, match="--gpu-fallback cpu"):
        check_fits(placement_plan(experiment(num_gpus=1), groups), groups)
    plan = placement_plan(experiment(num_gpus=2, gpu_fallback="cpu"), groups)
    assert plan.learners.cpu_stand_in is True
    assert plan.learners.num_gpus_per_learner == 0
    assert plan.learners.group == "gpu-workers"  # same placement as real GPU learners
    check_fits(plan, groups)
    config = build_ppo_config(experiment(num_gpus=2, gpu_fallback="cpu"), groups=groups)
    assert config.num_gpus_per_learner == 0 and config.custom_resources_per_learner == {"gpu_group": 0.001}


def test_cpu_stand_in_is_not_used_where_real_gpus_exist():
    groups = cluster(gpus_per_node=8)
    assert learner_plan(experiment(num_gpus=2, gpu_fallback="cpu"), groups).num_gpus_per_learner == 1


def test_too_many_env_runners_for_the_cpu_group():
    exp = parse_experiment({**BASE, "env_runners": {"num_env_runners": 32}}).experiment
    with pytest.raises(UserError, match=r"32 env runners \+ 1 learners need 33 CPUs in cpu-workers"):
        check_fits(placement_plan(exp, cluster(cpus=2)), cluster(cpus=2))


def test_capacity_round_trips_through_the_environment():
    text = to_env({"cpu-workers": {"max_nodes": 4, "cpus": 8, "gpus": 0}})
    groups = from_env({"RL_WORKER_GROUPS": text})
    assert groups["cpu-workers"].cpus == 32
    assert from_env({}) is None
    with pytest.raises(UserError, match="malformed"):
        from_env({"RL_WORKER_GROUPS": "{nope"})


def test_speed_options_are_off_by_default_and_reach_ray_when_set():
    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

    default = build_ppo_config(experiment())
    assert default.torch_compile_learner is False
    # PPO's own learner, whose torch threads follow its CPUs (jobs/common/rllib/learners.py).
    assert default.learner_class.__name__ == "ThreadedPPOTorchLearner"
    assert issubclass(default.learner_class, PPOTorchLearner)
    fast = build_ppo_config(experiment(num_gpus=1, torch_compile=True, mixed_precision=True))
    assert fast.torch_compile_learner is True
    assert fast.learner_class.__name__ == "MixedPrecisionPPOTorchLearner"


def test_shipped_gpu_experiments_resolve():
    from jobs.common.schema.experiment import load_experiment
    from tests.conftest import REPO_ROOT

    cheetah = load_experiment(REPO_ROOT / "jobs/experiments/ppo-halfcheetah.yaml", ["learners.num_gpus=4"]).experiment
    plan = learner_plan(cheetah)
    assert plan.num_learners == 4 and plan.train_batch_size_per_learner == 65536 // 4
    assert plan.minibatch_size_per_learner == 16384 // 4
    gpu_cartpole = load_experiment(REPO_ROOT / "jobs/experiments/ppo-cartpole-gpu.yaml").experiment
    gpu_plan = learner_plan(gpu_cartpole)
    assert gpu_plan.num_learners == 2
    # The same effective minibatch and SGD steps as ppo-cartpole.yaml's one learner.
    cartpole = learner_plan(load_experiment(REPO_ROOT / "jobs/experiments/ppo-cartpole.yaml").experiment)
    assert gpu_plan.minibatch_size == cartpole.minibatch_size
    assert gpu_plan.minibatches_per_epoch == cartpole.minibatches_per_epoch == 4


@pytest.mark.parametrize("in_process_gpus", [None, 0])
def test_no_usage_monitor_thread_that_stopping_an_algorithm_would_wait_for(in_process_gpus):
    # Tune's UtilMonitor samples every 0.7 s and Algorithm.stop() joins it: a sweep
    # trial's CPU would sit idle for up to that long before the next trial starts.
    assert build_ppo_config(experiment(), in_process_gpus=in_process_gpus).log_sys_usage is False
