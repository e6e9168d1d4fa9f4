"""The Makefile, the front door: each documented variable reaches the command
line as `make help` and the README say, an empty one adds nothing,
and what the targets print is what the entrypoints' own parsers read.

`make -n -o venv` prints a target's commands without running them and
without (re)building .venv, so these run in a fresh clone too. Where a
command must really run (the exported settings, `sweep-report` without
NAME), PY points at a stand-in interpreter that records its arguments.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys

import pytest

from controlplane import cli as controlplane_cli
from jobs import sweep as sweep_entrypoint
from jobs import train as train_entrypoint
from tests.conftest import REPO_ROOT

MAKEFILE = REPO_ROOT / "Makefile"
README = REPO_ROOT / "README.md"
# Every variable a target reads, so that none leaks in from the caller's environment
# (or from a `make test GPUS=2` that runs these tests).
VARIABLES = (
    "EXPERIMENT",
    "SWEEP",
    "RESUME",
    "NAME",
    "CHECKPOINT",
    "EPISODES",
    "GPUS",
    "WORKERS",
    "GPU_FALLBACK",
    "PROVIDER",
    "OVERLAY",
    "DRY_RUN",
    "DASHBOARD_PORT",
    "MAKEFLAGS",
    "MAKELEVEL",
    "MFLAGS",
    "MAKEOVERRIDES",
)
DEFAULT_EXPERIMENT = "jobs/experiments/ppo-cartpole.yaml"
DEFAULT_SWEEP = "jobs/sweeps/cartpole-seed.yaml"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in VARIABLES}


def make(*args: str, dry_run: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = ["make", "--no-print-directory", "-C", str(REPO_ROOT), "-o", "venv"]
    if dry_run:
        cmd.append("-n")
    return subprocess.run(
        [*cmd, *args], env=env if env is not None else clean_env(), capture_output=True, text=True, timeout=60
    )


def commands(*args: str) -> list[list[str]]:
    """The commands `make -n` prints for a target, each split as the shell would."""
    result = make(*args)
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines() if line.strip()]


def command(*args: str) -> list[str]:
    """The one command a target runs (its prerequisites, .venv aside, print nothing)."""
    found = commands(*args)
    assert len(found) == 1, found
    return found[0]


def control(argv: list[str]) -> list[str]:
    """`.venv/bin/python -m controlplane <args>` -> <args>."""
    assert argv[:3] == [".venv/bin/python", "-m", "controlplane"], argv
    return argv[3:]


def entrypoint(argv: list[str]) -> list[str]:
    """`... submit -- python -m jobs.X <args>`: the job's entrypoint, as the control plane parses it."""
    args = controlplane_cli.parse_args(control(argv))
    assert args.command == "submit"
    return args.entrypoint


# --------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------


def test_train_passes_gpus_workers_and_the_gpu_fallback():
    argv = command("train", "GPUS=2", "WORKERS=8", "GPU_FALLBACK=cpu")
    job = entrypoint(argv)
    assert job == [
        "python",
        "-m",
        "jobs.train",
        "--config",
        DEFAULT_EXPERIMENT,
        "--num-gpus",
        "2",
        "--num-workers",
        "8",
        "--gpu-fallback",
        "cpu",
    ]
    # ...and jobs.train reads them as the experiment keys the README names.
    overrides = train_entrypoint.overrides_from(train_entrypoint.parse_args(job[3:]))
    assert overrides == ["env_runners.num_env_runners=8", "learners.num_gpus=2", 'learners.gpu_fallback="cpu"']


def test_train_takes_the_experiment_file():
    job = entrypoint(command("train", "EXPERIMENT=jobs/experiments/ppo-halfcheetah.yaml", "GPUS=4", "WORKERS=32"))
    assert job[3:] == ["--config", "jobs/experiments/ppo-halfcheetah.yaml", "--num-gpus", "4", "--num-workers", "32"]


@pytest.mark.parametrize("empty", [(), ("GPUS=", "WORKERS=", "GPU_FALLBACK=")])
def test_train_with_nothing_set_adds_nothing(empty):
    assert entrypoint(command("train", *empty)) == ["python", "-m", "jobs.train", "--config", DEFAULT_EXPERIMENT]


@pytest.mark.parametrize(
    "variable, flag",
    [
        ("GPUS=1", ["--num-gpus", "1"]),
        ("WORKERS=3", ["--num-workers", "3"]),
        ("GPU_FALLBACK=cpu", ["--gpu-fallback", "cpu"]),
    ],
)
def test_train_each_knob_alone(variable, flag):
    assert entrypoint(command("train", variable))[3:] == ["--config", DEFAULT_EXPERIMENT, *flag]


# --------------------------------------------------------------------------
# sweep, sweep-report
# --------------------------------------------------------------------------


def test_sweep_passes_the_sweep_file_and_resume():
    job = entrypoint(command("sweep", "SWEEP=x", "RESUME=1"))
    assert job == ["python", "-m", "jobs.sweep", "--config", "x", "--resume"]
    args = sweep_entrypoint.parse_args(job[3:])
    assert args.config == "x" and args.resume is True


@pytest.mark.parametrize("empty", [(), ("RESUME=",)])
def test_sweep_without_resume_adds_nothing(empty):
    job = entrypoint(command("sweep", *empty))
    assert job == ["python", "-m", "jobs.sweep", "--config", DEFAULT_SWEEP]
    assert sweep_entrypoint.parse_args(job[3:]).resume is False


def test_sweep_report_passes_the_name():
    check, report = commands("sweep-report", "NAME=cartpole-seed")
    assert check[:3] == ["test", "-n", "cartpole-seed"]
    argv = control(report)
    assert argv == ["report", "--name", "cartpole-seed"]
    assert controlplane_cli.parse_args(argv).name == "cartpole-seed"


@pytest.mark.parametrize("empty", [(), ("NAME=",)])
def test_sweep_report_without_a_name_fails_with_the_documented_message(empty):
    # For real, not -n: the check is the recipe's first command. It fails before any Python runs.
    result = make("sweep-report", *empty, "PY=/nonexistent/python", dry_run=False)
    assert result.returncode != 0
    assert "error: NAME is required, e.g. make sweep-report NAME=cartpole-seed" in result.stderr.splitlines()
    assert "/nonexistent/python" not in result.stdout + result.stderr


# --------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------


def test_evaluate_passes_the_checkpoint_and_the_episodes():
    argv = control(command("evaluate", "CHECKPOINT=s3://b/c", "EPISODES=3"))
    assert argv == ["evaluate", "--checkpoint", "s3://b/c", "--episodes", "3"]
    args = controlplane_cli.parse_args(argv)
    assert (args.checkpoint, args.config, args.episodes) == ("s3://b/c", None, 3)


@pytest.mark.parametrize("empty", [(), ("CHECKPOINT=",)])
def test_evaluate_without_a_checkpoint_takes_the_experiments_latest(empty):
    argv = control(command("evaluate", *empty))
    assert argv == ["evaluate", "--config", DEFAULT_EXPERIMENT, "--episodes", "10"]
    argv = control(command("evaluate", *empty, "EXPERIMENT=jobs/experiments/ppo-cartpole-gpu.yaml"))
    assert argv == ["evaluate", "--config", "jobs/experiments/ppo-cartpole-gpu.yaml", "--episodes", "10"]


# --------------------------------------------------------------------------
# The other targets, and what they hand the control plane
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, expected",
    [("cluster-up", ["up"]), ("cluster-status", ["status"]), ("cluster-down", ["down"]), ("jobs", ["jobs"])],
)
def test_cluster_targets_run_one_control_plane_command(target, expected):
    assert control(command(target)) == expected


def test_demo_is_cluster_up_then_train_then_evaluate():
    steps = [control(argv)[0] for argv in commands("demo")]
    assert steps == ["up", "submit", "evaluate"]


@pytest.fixture
def recording_python(tmp_path):
    """A stand-in for .venv/bin/python that writes its arguments and the settings it was given."""
    record = tmp_path / "record.json"
    script = tmp_path / "python"
    names = ["PROVIDER", "OVERLAY", "DRY_RUN", "DASHBOARD_PORT"]
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': {{n: os.environ.get(n) for n in {names!r}}}}}, "
        f"open({str(record)!r}, 'w'))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


def test_cluster_settings_reach_the_control_plane_through_the_environment(recording_python, monkeypatch):
    script, record = recording_python
    result = make(
        "cluster-up",
        f"PY={script}",
        "PROVIDER=kuberay",
        "OVERLAY=gpu",
        "DRY_RUN=1",
        "DASHBOARD_PORT=18265",
        dry_run=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["-m", "controlplane", "up"]
    assert seen["env"] == {"PROVIDER": "kuberay", "OVERLAY": "gpu", "DRY_RUN": "1", "DASHBOARD_PORT": "18265"}
    # ...and the control plane's parser reads them as its options.
    for name, value in seen["env"].items():
        monkeypatch.setenv(name, value)
    args = controlplane_cli.parse_args(seen["argv"][2:])
    assert (args.provider, args.overlay, args.dry_run, args.dashboard_port) == ("kuberay", "gpu", True, 18265)


def test_cluster_settings_default_to_the_local_provider(recording_python, monkeypatch):
    script, record = recording_python
    assert make("cluster-up", f"PY={script}", dry_run=False).returncode == 0
    env = json.loads(record.read_text())["env"]
    assert env == {
        "PROVIDER": "local",
        "OVERLAY": "",  # each provider's own default: local (local, docker), dev (kuberay)
        "DRY_RUN": "",
        "DASHBOARD_PORT": "",  # the control plane's default...
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # ...which is Ray's own, where `ray job submit` and Ray's docs look for it.
    assert controlplane_cli.parse_args(["up"]).dashboard_port == 8265


# --------------------------------------------------------------------------
# Documentation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, variables",
    [
        ("train", ["EXPERIMENT=", "GPUS=N", "WORKERS=M", "GPU_FALLBACK=cpu"]),
        ("evaluate", ["CHECKPOINT="]),
        ("sweep", ["SWEEP=", "RESUME=1"]),
        ("sweep-report", ["NAME="]),
    ],
)
def test_every_variable_tested_here_is_documented(target, variables):
    """`make help` (each target's `##` string) names the target's variables; the README's day-to-day list too."""
    line = next(line for line in MAKEFILE.read_text().splitlines() if line.startswith(f"{target}:"))
    assert "## " in line, line
    readme = README.read_text()
    for variable in variables:
        assert variable in line, (variable, line)
        assert variable.split("=")[0] + "=" in readme, variable
