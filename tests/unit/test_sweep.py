"""Sweep files: the shipped ones, the Tune objects they become, and every kind of bad input."""

import copy
import json

import pytest

from jobs.common.cluster.capacity import GroupCapacity
from jobs.common.cluster.fits import check_trial_fits
from jobs.common.errors import UserError
from jobs.common.schema.sweep import load_sweep, parse_sweep
from jobs.common.sweeps.tune import param_space, scheduler, search_algorithm, trial_experiment
from tests.conftest import REPO_ROOT

SWEEPS = REPO_ROOT / "jobs" / "sweeps"
BASE = str(REPO_ROOT / "jobs" / "experiments" / "ppo-cartpole-trial.yaml")

MINIMAL = {
    "name": "s",
    "experiment": BASE,
    "search_space": {"training": {"lr": {"loguniform": [1e-4, 1e-2]}}},
    "num_samples": 3,
}


def sweep_with(**changes):
    raw = copy.deepcopy(MINIMAL)
    raw.update(changes)
    return parse_sweep(raw, source="s.yaml")


def error_of(**changes) -> str:
    with pytest.raises(UserError) as caught:
        sweep_with(**changes)
    return str(caught.value)


# --------------------------------------------------------------------------
# The shipped sweeps
# --------------------------------------------------------------------------


def test_seed_sweep_is_the_tutorials_search():
    sweep = load_sweep(SWEEPS / "cartpole-seed.yaml")
    assert sweep.trial_count() == 20
    assert sweep.base_experiment.env == "CartPole-v0"
    assert sweep.base_experiment.stop.episode_return_mean == 195
    dims = {d.key: d for d in sweep.dimensions}
    assert dims["model.fcnet_hiddens"].args == ([32], [64])
    assert dims["model.fcnet_activation"].args == ("linear", "relu")
    assert (dims["training.lr"].primitive, dims["training.lr"].args) == ("uniform", (1e-7, 1e-2))
    assert (sweep.best_metric, sweep.best_mode) == ("env_steps_to_solve", "min")


def test_asha_sweep_is_large_and_pbt_sweep_mutates():
    asha = load_sweep(SWEEPS / "cartpole-asha.yaml")
    assert asha.trial_count() >= 200
    assert type(scheduler(asha)).__name__ == "AsyncHyperBandScheduler"
    pbt = load_sweep(SWEEPS / "cartpole-pbt.yaml")
    assert type(scheduler(pbt)).__name__ == "PopulationBasedTraining"
    assert {d.key for d in pbt.mutations} == {"training.lr", "training.entropy_coeff"}
    # PBT perturbs each trial's current value: every mutated key starts in the trial's config.
    space = param_space(pbt)
    assert set(space["training"]) == {"lr", "entropy_coeff"}
    assert sorted(space["training"]["entropy_coeff"].categories) == [0.0, 0.001, 0.01]


def test_choice_in_the_search_space_is_one_list_of_values():
    sweep = parse_sweep({**MINIMAL, "search_space": {"training.entropy_coeff": {"choice": [0.0, 0.01, 0.02]}}})
    assert param_space(sweep)["training"]["entropy_coeff"].categories == [0.0, 0.01, 0.02]


def test_nested_and_dotted_keys_mean_the_same():
    nested = sweep_with(search_space={"model": {"fcnet_activation": {"choice": ["relu", "tanh"]}}})
    dotted = sweep_with(search_space={"model.fcnet_activation": {"choice": ["relu", "tanh"]}})
    assert nested.dimensions == dotted.dimensions


def test_tutorial_key_in_the_search_space_maps_to_its_ray_260_place():
    sweep = sweep_with(search_space={"lr": {"uniform": [1e-4, 1e-2]}, "sgd_minibatch_size": {"choice": [125, 250]}})
    assert {d.key for d in sweep.dimensions} == {"training.lr", "training.minibatch_size"}


def test_param_space_uses_tunes_primitives_and_trials_get_lists_back():
    from ray.tune.search.sample import Float

    sweep = load_sweep(SWEEPS / "cartpole-seed.yaml")
    space = param_space(sweep)
    assert isinstance(space["training"]["lr"], Float)
    # Layer sizes travel as JSON strings (every searcher takes strings) ...
    assert space["model"]["fcnet_hiddens"] == {"grid_search": ["[32]", "[64]"]}
    # ... and a trial's experiment has the list again.
    config = {"model": {"fcnet_hiddens": "[64]", "fcnet_activation": "relu"}, "training": {"lr": 0.005}}
    experiment = trial_experiment(sweep.base, config, sweep.encoded_keys)
    assert experiment.model.fcnet_hiddens == [64]
    assert experiment.training.lr == 0.005
    assert experiment.name == "cartpole-seed"


def test_optuna_searcher_is_built_with_a_concurrency_cap():
    sweep = sweep_with(search={"algorithm": "optuna", "seed": 1}, max_concurrent_trials=3)
    searcher = search_algorithm(sweep)
    assert type(searcher).__name__ == "ConcurrencyLimiter"
    assert type(searcher.searcher).__name__ == "OptunaSearch"
    assert searcher.max_concurrent == 3


# --------------------------------------------------------------------------
# Bad input: each names the key, the value and what would work
# --------------------------------------------------------------------------


def test_unknown_search_primitive_suggests_the_right_one():
    message = error_of(search_space={"training.lr": {"unifrom": [0.001, 0.01]}})
    assert "unknown search primitive 'unifrom'" in message
    assert "did you mean 'uniform'" in message


def test_a_plain_value_in_the_search_space_points_to_overrides():
    message = error_of(search_space={"training.lr": 0.001})
    assert "expected one search primitive" in message and "overrides" in message


def test_empty_grid():
    message = error_of(search_space={"model.fcnet_activation": {"grid_search": []}})
    assert "search_space.model.fcnet_activation" in message
    assert "non-empty list" in message


@pytest.mark.parametrize("primitive", ["uniform", "loguniform", "randint"])
def test_reversed_bounds(primitive):
    bounds = [16, 4] if primitive == "randint" else [0.01, 0.001]
    key = "training.num_epochs" if primitive == "randint" else "training.lr"
    message = error_of(search_space={key: {primitive: bounds}})
    assert "bounds reversed" in message
    assert f"write [{bounds[1]}, {bounds[0]}]" in message


def test_log_scale_from_zero():
    message = error_of(search_space={"training.entropy_coeff": {"loguniform": [0.0, 0.01]}})
    assert "needs low > 0" in message


def test_a_bound_the_experiment_rejects_is_named_with_its_value():
    message = error_of(search_space={"training.lr": {"uniform": [0.5, 2.0]}})
    assert "training.lr" in message and "value 2.0" in message


def test_unknown_experiment_key_suggests_the_right_one():
    message = error_of(search_space={"training": {"lrr": {"choice": [0.01]}}})
    assert "no key 'training.lrr'" in message
    assert "did you mean 'training.lr'" in message


def test_metric_not_reported_by_trials():
    message = error_of(metric="episode_reward_max")
    assert "is not reported by PPO trials" in message
    assert "episode_return_mean" in message


def test_tutorial_metric_name_maps_with_a_note():
    sweep = sweep_with(metric="episode_reward_mean")
    assert sweep.metric == "episode_return_mean"
    assert any("episode_reward_mean" in note for note in sweep.notes)


def test_mode_that_ranks_the_worst_first():
    message = error_of(metric="episode_return_mean", mode="min")
    assert "use mode: max" in message


def test_steps_to_solve_needs_a_target_return():
    message = error_of(stop={"env_steps": 10000}, metric="env_steps_to_solve", mode="min")
    assert "stop.episode_return_mean" in message


def test_asha_cannot_compare_running_trials_by_steps_to_solve():
    message = error_of(scheduler={"type": "asha"}, metric="env_steps_to_solve", mode="min")
    assert "ASHA" in message and "best: {metric: env_steps_to_solve" in message


def test_asha_grace_period_above_max_t():
    message = error_of(scheduler={"type": "asha", "grace_period": 20, "max_t": 10})
    assert "grace_period (20) is above scheduler.max_t (10)" in message


def test_option_of_another_scheduler_is_an_unknown_key():
    message = error_of(scheduler={"type": "asha", "perturbation_interval": 5})
    assert "unknown key 'scheduler.perturbation_interval'" in message


def test_unknown_scheduler_type():
    message = error_of(scheduler={"type": "hyperband"})
    assert "fifo, asha, pbt" in message


def test_pbt_perturbation_must_line_up_with_checkpoints():
    message = error_of(
        scheduler={"type": "pbt", "perturbation_interval": 7, "hyperparam_mutations": {"training.lr": [1e-3, 1e-2]}}
    )
    assert "perturbation_interval (7) is not a multiple of checkpoint.every_n_iterations (10)" in message


def test_pbt_with_optuna_is_refused():
    message = error_of(
        search={"algorithm": "optuna"},
        scheduler={"type": "pbt", "perturbation_interval": 10, "hyperparam_mutations": {"training.lr": [1e-3, 1e-2]}},
    )
    assert "cannot be combined with the optuna searcher" in message


def test_optuna_with_grid_search_is_refused():
    message = error_of(
        search={"algorithm": "optuna"}, search_space={"model.fcnet_activation": {"grid_search": ["relu"]}}
    )
    assert "does not take grid_search" in message and "use choice" in message


def test_resources_no_group_can_satisfy():
    sweep = sweep_with(resources_per_trial={"cpus": 1, "gpus": 1})
    no_gpus = {
        "cpu-workers": GroupCapacity("cpu-workers", 1, 2, 0),
        "gpu-workers": GroupCapacity("gpu-workers", 1, 2, 0),
    }
    with pytest.raises(UserError, match="more than one gpu-workers node has"):
        check_trial_fits(sweep, no_gpus)
    big = sweep_with(resources_per_trial={"cpus": 8})
    with pytest.raises(UserError, match=r"8 CPUs, 0 GPUs\) is more than one cpu-workers node has \(2 CPUs"):
        check_trial_fits(big, no_gpus)
    check_trial_fits(sweep_with(), no_gpus)  # 1 CPU fits


def test_missing_base_experiment_file():
    message = error_of(experiment="jobs/experiments/nope.yaml")
    assert "experiment file 'jobs/experiments/nope.yaml' does not exist" in message


# --------------------------------------------------------------------------
# The entrypoint refuses bad input before anything is written
# --------------------------------------------------------------------------


def test_bad_sweep_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    from jobs import sweep as entrypoint

    raw = {**MINIMAL, "search_space": {"training.lr": {"uniform": [0.01, 0.001]}}, "storage": str(tmp_path / "store")}
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(raw))
    status = entrypoint.main(["--config", str(path)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith("error: sweep ") and "bounds reversed" in captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "store").exists()


# Settings the schema accepts and Ray rejects: minibatch_size above Ray's default train batch (4000).
RAY_REJECTS = {"overrides": {"training.train_batch_size": None, "training.minibatch_size": 5000}}


def test_a_sweep_ray_rejects_exits_2_with_rays_reason_and_writes_nothing(tmp_path, capsys):
    from jobs import sweep as entrypoint

    raw = {**MINIMAL, **RAY_REJECTS, "storage": str(tmp_path / "store")}
    path = tmp_path / "rejected.yaml"
    path.write_text(json.dumps(raw))
    status = entrypoint.main(["--config", str(path)])
    error = capsys.readouterr().err
    assert status == 2
    assert f"error: sweep '{path}': Ray rejects the base experiment's settings: `minibatch_size` (5000)" in error
    assert "Traceback" not in error
    assert not (tmp_path / "store").exists()


def test_trial_actors_get_no_s3_keys_in_their_runtime_env(monkeypatch):
    # Ray logs runtime_envs in plain text; Tune would copy the driver's keys into each trial's.
    from ray.tune.execution import class_cache

    from jobs import sweep as entrypoint

    monkeypatch.setattr(class_cache, "ENV_VARS_TO_PROPAGATE", class_cache.ENV_VARS_TO_PROPAGATE)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-to-be-logged")

    class Trainable:
        pass

    entrypoint.keep_s3_keys_out_of_trial_runtime_envs()
    runtime_env = class_cache._ActorClassCache().get(Trainable)._default_options["runtime_env"]
    assert not set(runtime_env["env_vars"]) & entrypoint.S3_KEY_VARS
