"""TensorBoard event files and provenance (driver.log, run.json) for every run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jobs.common.errors import UserError
from jobs.common.reports import provenance
from jobs.common.reports.tensorboard import TensorBoardLog, scalars
from jobs.common.run.state import RunState
from jobs.common.storage import layout

RESULT = {
    "num_env_steps_sampled_lifetime": 4000,
    "env_runners": {"episode_return_mean": 30.0, "episode_len_mean": 30.0, "num_episodes": 60,
                    "num_env_steps_sampled": 2000},
    "learners": {"default_policy": {"policy_loss": -0.01, "vf_loss": 12.5, "total_loss": 6.2, "entropy": 0.69,
                                    "mean_kl_loss": 0.004},
                 "__all_modules__": {"num_env_steps_trained": 20000}},
}  # fmt: skip


def test_scalars_cover_return_length_losses_entropy_kl_and_throughput():
    found = scalars(RunState(episode_return_mean=31.5, env_steps=4000), RESULT, seconds=2.0)
    assert found["return/episode_return_mean"] == 31.5
    assert found["episodes/len_mean"] == 30.0
    assert found["losses/policy_loss"] == -0.01 and found["losses/vf_loss"] == 12.5
    assert found["policy/entropy"] == 0.69 and found["policy/kl"] == 0.004
    assert found["throughput/env_steps_per_s"] == 1000.0
    assert found["throughput/samples_trained_per_s"] == 10000.0
    # No episode ended yet: no return to plot (never a NaN point).
    assert "return/episode_return_mean" not in scalars(RunState(), {}, seconds=1.0)


def test_event_files_land_in_the_runs_folder_and_tensorboard_reads_them(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = layout.experiment(str(tmp_path), "exp")
    log = TensorBoardLog(run)
    for iteration in (1, 2, 3):
        state = RunState(iteration=iteration, env_steps=2000 * iteration, episode_return_mean=10.0 * iteration)
        log.iteration_done(state, 2.0, RESULT)
    log.close()
    files = list(Path(run.tensorboard).iterdir())
    assert files and all(f.name.startswith("events.out.tfevents") for f in files)
    events = EventAccumulator(run.tensorboard)
    events.Reload()
    returns = events.Scalars("return/episode_return_mean")
    assert [(e.step, e.value) for e in returns] == [(2000, 10.0), (4000, 20.0), (6000, 30.0)]
    assert "losses/vf_loss" in events.Tags()["scalars"]


def test_a_driver_writes_event_files_without_importing_torch(tmp_path):
    """A training job's driver trains nothing: tensorboardX would import torch (1.3 CPU-seconds)."""
    import subprocess

    from tests.conftest import REPO_ROOT

    script = (
        "import sys; from jobs.common.reports.tensorboard import TensorBoardLog; "
        "from jobs.common.run.state import RunState; from jobs.common.storage import layout; "
        f"log = TensorBoardLog(layout.experiment({str(tmp_path)!r}, 'exp')); "
        "log.iteration_done(RunState(iteration=1, env_steps=2000, episode_return_mean=10.0), 2.0, {}); "
        "log.close(); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(layout.experiment(str(tmp_path), "exp").tensorboard)
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("return/episode_return_mean")] == [(2000, 10.0)]


def test_the_driver_log_is_scrubbed_of_every_secret_in_reach(monkeypatch, tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text("ray-token-0123456789\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret-abcdefgh")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rlaccesskey123")
    log = provenance.DriverLog()
    saved = sys.stdout, sys.stderr
    try:
        log.start()
        print("leaked s3-secret-abcdefgh and ray-token-0123456789 and rlaccesskey123")
        print("to stderr", file=sys.stderr)
    finally:
        sys.stdout, sys.stderr = saved
    text = log.text()
    assert "s3-secret" not in text and "ray-token" not in text and "rlaccesskey123" not in text
    assert text.count("***") == 3 and "to stderr" in text
    assert "leaked s3-secret-abcdefgh" in capsys.readouterr().out  # the console itself is untouched


def test_run_json_records_what_it_takes_to_run_it_again(monkeypatch, tmp_path):
    monkeypatch.setenv(provenance.GIT_COMMIT_VAR, "abc123")
    monkeypatch.setenv(provenance.GIT_DIRTY_VAR, "1")
    monkeypatch.setenv("RL_WORKER_GROUPS", '{"cpu-workers":{"cpus":2,"gpus":0,"max_nodes":1}}')
    from datetime import UTC, datetime

    record = provenance.run_record({"name": "exp", "seed": 3}, {"ended": "succeeded"}, datetime.now(UTC))
    assert record["git"] == {"commit": "abc123", "dirty": True}
    assert record["seed"] == 3 and record["experiment"]["name"] == "exp"
    assert set(record["versions"]) == {"python", "ray", "torch", "gymnasium", "mujoco"}
    assert record["versions"]["ray"] == "2.60.0"
    assert record["worker_groups"]["cpu-workers"]["cpus"] == 2 and record["ended"] == "succeeded"


def test_rerun_takes_the_experiment_from_run_json_alone(tmp_path, monkeypatch):
    from jobs import train

    monkeypatch.setenv("RL_STORAGE_URI", str(tmp_path))
    with pytest.raises(UserError, match="no run.json"):
        train.load_rerun(train.parse_args(["--rerun", "exp"]))
    run = layout.experiment(str(tmp_path), "exp")
    Path(run.uri).mkdir()
    experiment = {"name": "exp", "env": "CartPole-v1", "seed": 7, "stop": {"iterations": 3},
                  "training": {"lr": 0.0005}, "storage": "s3://elsewhere/x"}  # fmt: skip
    Path(run.run_record).write_text(json.dumps({"experiment": experiment}))
    loaded = train.load_rerun(train.parse_args(["--rerun", "exp"]))
    assert loaded.experiment.name == "exp-rerun"
    assert loaded.experiment.seed == 7 and loaded.experiment.training.lr == 0.0005
    assert loaded.experiment.storage is None  # today's storage, not the recorded one
    named = train.load_rerun(train.parse_args(["--rerun", "exp", "--name", "again"]))
    assert named.experiment.name == "again"
