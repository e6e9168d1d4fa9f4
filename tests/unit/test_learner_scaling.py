"""The same optimisation at any learner count: train_batch_size and minibatch_size
are totals, split over the learners; learner CPUs (and torch threads) are set in
the experiment and checked against what the cluster can hold."""

import json

import pytest
import torch

from jobs.common.cluster.capacity import GroupCapacity, to_env
from jobs.common.cluster.fits import check_fits
from jobs.common.cluster.plans import in_process_plan, learner_plan, placement_plan
from jobs.common.errors import UserError
from jobs.common.rllib.learners import follow_assigned_cpus
from jobs.common.rllib.ppo import build_ppo_config
from jobs.common.schema.experiment import load_experiment, parse_experiment
from tests.conftest import REPO_ROOT

CHEETAH = REPO_ROOT / "jobs/experiments/ppo-halfcheetah.yaml"
BASE = {
    "name": "t",
    "env": "CartPole-v1",
    "stop": {"iterations": 1},
    "training": {"train_batch_size": 16384, "minibatch_size": 2048},
}


def experiment(training=None, **learners):
    return parse_experiment(
        {**BASE, "training": {**BASE["training"], **(training or {})}, "learners": learners}
    ).experiment


@pytest.mark.parametrize("gpus", [1, 2, 8])
def test_minibatch_is_a_total_split_over_gpu_learners(gpus):
    plan = learner_plan(experiment(num_gpus=gpus))
    assert plan.minibatch_size == 2048
    assert plan.minibatch_size_per_learner * gpus == 2048
    assert plan.train_batch_size_per_learner * gpus == 16384
    assert plan.minibatches_per_epoch == 8  # as on one learner: the same SGD steps per epoch
    config = build_ppo_config(experiment(num_gpus=gpus))
    assert config.minibatch_size == 2048 // gpus  # Ray's minibatch_size is per learner
    assert config.train_batch_size_per_learner // config.minibatch_size == 8


@pytest.mark.parametrize("learners", [1, 2, 8])
def test_minibatch_is_a_total_split_over_cpu_learners(learners):
    plan = learner_plan(experiment(num_learners=learners))
    assert plan.minibatch_size_per_learner == 2048 // learners
    assert plan.minibatches_per_epoch == 8


def test_a_minibatch_that_does_not_split_names_the_key():
    exp = experiment(training={"train_batch_size": 6144}, num_gpus=3)
    with pytest.raises(ValueError, match=r"training.minibatch_size \(2048\) must divide evenly over 3 learners"):
        learner_plan(exp)


def test_minibatch_left_out_keeps_rays_default_per_learner():
    exp = parse_experiment({**BASE, "training": {"train_batch_size": 4000}, "learners": {"num_gpus": 2}}).experiment
    plan = learner_plan(exp)
    assert plan.minibatch_size is None and plan.minibatch_size_per_learner is None
    assert build_ppo_config(exp).minibatch_size == 128  # Ray 2.60's PPO default, per learner


def test_a_sweep_trial_has_one_local_learner_and_keeps_the_total():
    exp = experiment(num_gpus=4)
    plan = in_process_plan(exp)
    assert plan.num_learners == 0 and plan.learners == 1
    assert (plan.train_batch_size_per_learner, plan.minibatch_size_per_learner) == (16384, 2048)
    assert plan.minibatches_per_epoch == 8
    config = build_ppo_config(exp, in_process_gpus=0)
    assert (config.train_batch_size_per_learner, config.minibatch_size) == (16384, 2048)


def _dry_run(capsys, monkeypatch, *args):
    from jobs.train import main

    eight_gpus = {
        "head": {"max_nodes": 1, "cpus": 0, "gpus": 0},
        "cpu-workers": {"max_nodes": 4, "cpus": 16, "gpus": 0},
        "gpu-workers": {"max_nodes": 1, "cpus": 32, "gpus": 8},
    }
    monkeypatch.setenv("RL_WORKER_GROUPS", to_env(eight_gpus))
    status = main(["--config", str(CHEETAH), "--dry-run", *args])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


def test_dry_run_on_8_gpus_keeps_the_minibatches_per_epoch_of_one_learner(capsys, monkeypatch):
    one = _dry_run(capsys, monkeypatch, "--num-gpus", "1")["ray"]
    eight = _dry_run(capsys, monkeypatch, "--num-gpus", "8")["ray"]
    assert eight["learners"]["num_learners"] == 8
    assert eight["training"]["minibatches_per_epoch"] == one["training"]["minibatches_per_epoch"]
    assert eight["training"]["sgd_steps_per_update"] == one["training"]["sgd_steps_per_update"]
    assert eight["training"]["total_minibatch_size"] == one["training"]["total_minibatch_size"]
    assert eight["training"]["total_train_batch_size"] == one["training"]["total_train_batch_size"]
    total = one["training"]["total_minibatch_size"]
    assert one["training"]["minibatch_size_per_learner"] == total
    assert eight["training"]["minibatch_size_per_learner"] * 8 == total


def test_dry_run_names_the_minibatch_that_does_not_split(capsys, monkeypatch):
    from jobs.train import main

    monkeypatch.delenv("RL_WORKER_GROUPS", raising=False)
    args = ["--dry-run", "--num-gpus", "3", "--set", "training.train_batch_size=6144"]
    status = main(["--config", str(CHEETAH), *args, "--set", "training.minibatch_size=2048"])
    captured = capsys.readouterr()
    assert status == 2
    assert "training.minibatch_size (2048) must divide evenly over 3 learners" in captured.err
    assert captured.out == ""


def test_shipped_gpu_experiment_takes_4_minibatches_per_epoch_at_any_gpu_count():
    for gpus in (1, 2, 4, 8):
        cheetah = load_experiment(CHEETAH, [f"learners.num_gpus={gpus}"]).experiment
        plan = learner_plan(cheetah)
        assert plan.minibatches_per_epoch == 4
        assert plan.num_cpus_per_learner == 2
        assert plan.mixed_precision is True


# --- learner CPUs ---------------------------------------------------------------------------


def test_cpus_per_learner_default_to_one_and_reach_ray():
    assert learner_plan(experiment()).num_cpus_per_learner == 1
    plan = learner_plan(experiment(num_learners=2, num_cpus_per_learner=4))
    assert plan.num_cpus_per_learner == 4
    assert build_ppo_config(experiment(num_cpus_per_learner=4)).num_cpus_per_learner == 4


def test_legacy_cpus_per_learner_key_is_mapped():
    loaded = parse_experiment({**BASE, "num_cpus_per_learner_worker": 3})
    assert loaded.experiment.learners.num_cpus_per_learner == 3


def groups(cpu_cpus=16, gpu_nodes=1, gpu_cpus=8, gpus=1):
    return {
        "cpu-workers": GroupCapacity("cpu-workers", 1, cpu_cpus, 0),
        "gpu-workers": GroupCapacity("gpu-workers", gpu_nodes, gpu_cpus, gpus),
    }


def test_capacity_counts_every_learners_cpus():
    exp = experiment(num_learners=2, num_cpus_per_learner=8)
    with pytest.raises(UserError, match=r"1 env runners \+ 2 learners need 17 CPUs in cpu-workers"):
        check_fits(placement_plan(exp), groups(cpu_cpus=16))
    check_fits(placement_plan(exp), groups(cpu_cpus=17))


def test_a_learner_larger_than_a_node_is_named():
    exp = experiment(num_gpus=1, num_cpus_per_learner=16)
    with pytest.raises(
        UserError, match=r"learners.num_cpus_per_learner = 16: .* more than a gpu-workers node has \(8\)"
    ):
        check_fits(placement_plan(exp), groups(gpu_nodes=4))


def test_gpu_learners_cpus_do_not_count_against_the_cpu_group_nodes():
    # 4 CPUs per GPU learner on 8-CPU GPU nodes; the CPU group's nodes have 2 CPUs each.
    exp = experiment(num_gpus=2, num_cpus_per_learner=4)
    check_fits(placement_plan(exp), groups(cpu_cpus=2, gpu_nodes=2, gpu_cpus=8, gpus=1))


def test_learners_must_fit_node_by_node_not_only_in_total():
    # 3 nodes x (2 GPUs, 3 CPUs): 9 CPUs and 6 GPUs in all, but a node holds one 2-CPU learner.
    exp = experiment(num_gpus=4, num_cpus_per_learner=2)
    with pytest.raises(UserError) as caught:
        check_fits(placement_plan(exp), groups(gpu_nodes=3, gpu_cpus=3, gpus=2))
    assert (
        "4 learners with learners.num_cpus_per_learner = 2 fit 1 to a gpu-workers node (3 CPUs, 2 GPUs), "
        "at most 3 on its 3 node(s)" in str(caught.value)
    )
    check_fits(placement_plan(experiment(num_gpus=4, num_cpus_per_learner=1)), groups(gpu_nodes=3, gpu_cpus=3, gpus=2))


def test_torch_threads_are_left_alone_outside_a_ray_actor():
    before = torch.get_num_threads()
    assert follow_assigned_cpus() == before


# --- bf16 where it pays ---------------------------------------------------------------------


def test_mixed_precision_only_on_gpu_learners():
    assert learner_plan(experiment(num_gpus=1, mixed_precision=True)).mixed_precision is True
    assert learner_plan(experiment(num_learners=1, mixed_precision=True)).mixed_precision is False
    no_gpus = groups(gpus=0)
    stand_in = learner_plan(experiment(num_gpus=1, mixed_precision=True, gpu_fallback="cpu"), no_gpus)
    assert stand_in.cpu_stand_in and stand_in.mixed_precision is False
    assert build_ppo_config(experiment(num_learners=1, mixed_precision=True)).learner_class.__name__ == (
        "ThreadedPPOTorchLearner"
    )
    assert in_process_plan(experiment(mixed_precision=True), gpus=0).mixed_precision is False
    assert in_process_plan(experiment(mixed_precision=True), gpus=1).mixed_precision is True
