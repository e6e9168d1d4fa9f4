"""`num_gpus: N` -> N remote learners, one GPU each, same effective batch."""

import pytest

from jobs.common.experiment import parse_experiment
from jobs.common.ppo import build_ppo_config, learner_plan

BASE = {"name": "t", "env": "CartPole-v1", "stop": {"iterations": 1}, "training": {"train_batch_size": 8000}}


def plan_for(gpus: int, **learners):
    experiment = parse_experiment({**BASE, "learners": {"num_gpus": gpus, **learners}}).experiment
    return learner_plan(experiment)


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_gpus_become_learners_with_one_gpu_each(gpus):
    plan = plan_for(gpus)
    assert plan["num_learners"] == gpus
    assert plan["num_gpus_per_learner"] == 1
    assert plan["group"] == "gpu-workers"
    assert plan["train_batch_size_per_learner"] * gpus == 8000


def test_zero_gpus_means_remote_cpu_learners_on_the_cpu_group():
    plan = plan_for(0, num_learners=2)
    assert plan == {
        "num_learners": 2,
        "num_gpus_per_learner": 0,
        "num_cpus_per_learner": 1,
        "group": "cpu-workers",
        "train_batch_size_per_learner": 4000,
    }


def test_batch_that_does_not_split_evenly_is_refused():
    experiment = parse_experiment({**BASE, "learners": {"num_gpus": 3}}).experiment
    with pytest.raises(ValueError, match="divide evenly over 3 learners"):
        learner_plan(experiment)


def test_ray_config_places_components_on_their_groups():
    experiment = parse_experiment({**BASE, "learners": {"num_gpus": 2}}).experiment
    config = build_ppo_config(experiment)
    assert config.num_learners == 2
    assert config.num_gpus_per_learner == 1
    assert config.custom_resources_per_learner == {"gpu_group": 0.001}
    assert config.custom_resources_per_env_runner == {"cpu_group": 0.001}
    assert config.train_batch_size_per_learner == 4000
    assert config.model_config["vf_share_layers"] is False


def test_plain_ray_cluster_gets_no_group_resources():
    experiment = parse_experiment(BASE).experiment
    config = build_ppo_config(experiment, use_groups=False)
    assert config.custom_resources_per_learner == {}
    assert config.custom_resources_per_env_runner == {}
