"""Experiment files: parsing, the tutorials' keys, and every kind of bad input."""

import pytest
import yaml

from jobs.common.errors import UserError
from jobs.common.schema.experiment import load_experiment, parse_experiment
from tests.conftest import CARTPOLE

MINIMAL = {"name": "t", "env": "CartPole-v1", "stop": {"env_steps": 1000}}


def parse(**changes):
    raw = {**MINIMAL, **changes}
    return parse_experiment(raw, source="t.yaml")


def error_of(**changes) -> str:
    with pytest.raises(UserError) as caught:
        parse(**changes)
    return str(caught.value)


def test_shipped_cartpole_experiment_is_valid():
    loaded = load_experiment(CARTPOLE)
    experiment = loaded.experiment
    assert experiment.name == "ppo-cartpole"
    assert experiment.env == "CartPole-v1"
    assert experiment.stop.episode_return_mean == 450
    assert experiment.model.vf_share_layers is False
    assert loaded.notes == []


def test_tutorial_keys_map_to_ray_260_names_with_a_note():
    loaded = parse_experiment(
        {
            "name": "legacy",
            "env": "CartPole-v0",
            "num_workers": 3,
            "num_gpus": 2,
            "lr": 0.001,
            "gamma": 0.95,
            "train_batch_size": 4000,
            "sgd_minibatch_size": 256,
            "num_sgd_iter": 8,
            "num_envs_per_worker": 4,
            "model": {"fcnet_hiddens": [32], "fcnet_activation": "linear", "vf_share_layers": True},
            "stop": {"episode_reward_mean": 195, "timesteps_total": 100000, "time_total_s": 60},
        }
    )
    experiment = loaded.experiment
    assert experiment.env_runners.num_env_runners == 3
    assert experiment.env_runners.num_envs_per_env_runner == 4
    assert experiment.learners.num_gpus == 2
    assert experiment.training.lr == 0.001
    assert experiment.training.gamma == 0.95
    assert experiment.training.train_batch_size == 4000
    assert experiment.training.minibatch_size == 256
    assert experiment.training.num_epochs == 8
    assert experiment.model.fcnet_hiddens == [32]
    assert experiment.model.fcnet_activation == "linear"
    assert experiment.model.vf_share_layers is True
    assert experiment.stop.episode_return_mean == 195
    assert experiment.stop.env_steps == 100000
    assert experiment.stop.time_s == 60
    notes = "\n".join(loaded.notes)
    assert "'num_workers' is now 'env_runners.num_env_runners'" in notes
    assert "'sgd_minibatch_size' is now 'training.minibatch_size'" in notes
    assert "'stop.episode_reward_mean' is now 'stop.episode_return_mean'" in notes
    assert all(note.count("\n") == 0 for note in loaded.notes)


def test_old_and_new_key_with_different_values_is_an_error():
    message = error_of(num_workers=2, env_runners={"num_env_runners": 4})
    assert "'num_workers' (2)" in message and "'env_runners.num_env_runners' (4)" in message


def test_unknown_key_suggests_the_close_match():
    message = error_of(training={"gama": 0.9})
    assert "unknown key 'training.gama'" in message
    assert "did you mean 'gamma'?" in message
    assert "accepted under 'training'" in message


def test_unknown_top_level_key_suggests_the_close_match():
    message = error_of(enviroment="x")
    assert "unknown key 'enviroment'" in message


def test_unknown_environment_names_the_value_and_suggests():
    message = error_of(env="CartPol-v1")
    assert "'env' = 'CartPol-v1'" in message
    assert "not a registered Gymnasium environment" in message
    assert "CartPole-v1" in message


def test_num_envs_in_env_config_points_to_the_env_runners_key():
    message = error_of(env_config={"num_envs": 8})
    assert "'env_config'" in message and "env_runners.num_envs_per_env_runner" in message


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"training": {"lr": "fast"}}, "'training.lr' = 'fast'"),
        ({"training": {"lr": -0.1}}, "greater than 0"),
        ({"training": {"gamma": 1.5}}, "less than or equal to 1"),
        ({"env_runners": {"num_env_runners": -1}}, "'env_runners.num_env_runners' = -1"),
        ({"learners": {"num_gpus": 1.5}}, "'learners.num_gpus' = 1.5"),
        ({"learners": {"num_gpus": -2}}, "greater than or equal to 0"),
        ({"model": {"fcnet_hiddens": []}}, "'model.fcnet_hiddens'"),
        ({"model": {"fcnet_hiddens": [64, 0]}}, "every layer width"),
        ({"model": {"fcnet_activation": "sigmoidish"}}, "expected one of 'tanh'"),
        ({"model": {"vf_share_layers": "maybe"}}, "'model.vf_share_layers' = 'maybe'"),
        ({"training": {"train_batch_size": 100, "minibatch_size": 200}}, "must not exceed train_batch_size"),
        ({"stop": {}}, "no stop criterion"),
        ({"name": "Bad Name!"}, "'name' = 'Bad Name!'"),
        ({"storage": "gs://bucket/x"}, "scheme 'gs://' is not supported"),
        ({"storage": "s3://B/x"}, "'B' is not a valid S3 bucket name"),
    ],
)
def test_bad_values_name_the_field_and_the_value(changes, expected):
    assert expected in error_of(**changes)


def test_missing_required_fields():
    with pytest.raises(UserError) as caught:
        parse_experiment({"env": "CartPole-v1"}, source="t.yaml")
    assert "'name' is required" in str(caught.value)
    assert "'stop' is required" in str(caught.value)


def test_malformed_yaml_reports_the_line(write_yaml):
    path = write_yaml("name: x\nenv: [CartPole-v1\nstop: {}\n")
    with pytest.raises(UserError) as caught:
        load_experiment(path)
    assert "is not valid YAML at line" in str(caught.value)


def test_yaml_that_is_not_a_mapping(write_yaml):
    with pytest.raises(UserError, match="must be a YAML mapping"):
        load_experiment(write_yaml("- just\n- a list\n"))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_experiment(tmp_path / "nope.yaml")


def test_overrides_use_dotted_paths_and_yaml_values():
    experiment = parse_experiment(
        MINIMAL, overrides=["training.lr=0.01", "model.fcnet_hiddens=[8, 8]", "num_workers=2"]
    ).experiment
    assert experiment.training.lr == 0.01
    assert experiment.model.fcnet_hiddens == [8, 8]
    assert experiment.env_runners.num_env_runners == 2


def test_overrides_are_validated_like_the_file():
    with pytest.raises(UserError, match="did you mean 'lr'"):
        parse_experiment(MINIMAL, overrides=["training.lrr=0.1"])
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_experiment(MINIMAL, overrides=["training.lr"])


def test_resolved_experiment_round_trips_through_yaml():
    experiment = load_experiment(CARTPOLE).experiment
    again = parse_experiment(yaml.safe_load(experiment.to_yaml())).experiment
    assert again == experiment
