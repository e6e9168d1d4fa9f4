"""`python -m jobs.train` as a user runs it: --dry-run, and clean failures."""

import json
import subprocess
import sys

import pytest

from tests.conftest import CARTPOLE, REPO_ROOT


def run_train(*args: str, env=None):
    return subprocess.run(
        [sys.executable, "-m", "jobs.train", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env
    )


def test_dry_run_prints_the_resolved_ray_settings_as_json():
    result = run_train("--config", str(CARTPOLE), "--dry-run", "--num-workers", "2", "--set", "training.lr=0.0005")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    ray = plan["ray"]
    assert plan["experiment"] == "ppo-cartpole"
    assert ray["env_runners"]["num_env_runners"] == 2
    assert ray["training"]["lr"] == 0.0005
    assert ray["training"]["train_batch_size_per_learner"] == 2000
    assert ray["learners"]["num_learners"] == 1
    assert ray["rl_module"]["model_config"]["vf_share_layers"] is False
    assert ray["placement"] == {"env_runners": "cpu-workers", "learners": "cpu-workers", "driver": "head"}


def test_dry_run_shows_ray_defaults_for_keys_left_out(write_yaml):
    path = write_yaml("name: d\nenv: CartPole-v1\nstop: {iterations: 1}\n")
    result = run_train("--config", str(path), "--dry-run")
    assert result.returncode == 0, result.stderr
    training = json.loads(result.stdout)["ray"]["training"]
    assert training["lr"] == 5e-05 and training["num_epochs"] > 0  # Ray 2.60's PPO defaults


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "env=NoSuchEnv-v9"], "not a registered Gymnasium environment"),
        (["--set", "training.gama=0.9"], "did you mean 'gamma'?"),
        (["--set", "training.lr=-1"], "'training.lr' = -1"),
        (["--storage", "ftp://host/x"], "scheme 'ftp://' is not supported"),
        (["--num-gpus", "-1"], "'learners.num_gpus' = -1"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(args, expected):
    result = run_train("--config", str(CARTPOLE), "--dry-run", *args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_no_storage_configured_fails_before_training(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "RL_STORAGE_URI"}
    result = run_train("--config", str(CARTPOLE), "--check", env=env)
    assert result.returncode == 2
    assert "no storage configured" in result.stderr
