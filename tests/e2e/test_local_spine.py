"""The local spine, as a user walks it: cluster-up, train through `ray job
submit`, checkpoints in S3, resume, evaluate from S3, bad input refused before
submission, no credentials anywhere they should not be, cluster-down.

The tests run in file order and share one cluster (tests/e2e/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import uuid

import pytest

from controlplane import processes
from controlplane.local.groups import detect_gpus
from jobs.common.storage import layout
from tests.conftest import CARTPOLE, LOCAL_CLUSTER, REPO_ROOT
from tests.e2e.conftest import CLIENT_ENV, job_id_of
from tests.e2e.joblog import env_steps_of, job_lines, ours

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(LOCAL_CLUSTER)]

RUN = uuid.uuid4().hex[:6]
TRAINED: dict[str, str] = {}


# ---------------------------------------------------------------- cluster-up


def test_cluster_up_starts_a_head_a_cpu_group_and_a_gpu_group(cluster):
    status = cluster.control("status")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {
        line.split()[0]: line.split()
        for line in status.stdout.splitlines()
        if line.startswith("  ") and "ALIVE" in line
    }
    assert set(rows) == {"head", "cpu-workers", "gpu-workers"}
    assert rows["head"][2] == "0", "the head must take no training work (0 CPUs)"
    assert float(rows["cpu-workers"][2]) >= 2
    # The GPU group is up with the GPUs nvidia-smi lists: none on a CPU-only machine, never pretend ones.
    assert rows["gpu-workers"][3] == str(detect_gpus())
    assert "S3: http://127.0.0.1:" in status.stdout


def test_env_file_is_private_and_has_what_a_client_needs(cluster):
    env_file = cluster.state.env_file
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    env = cluster.state.read_env()
    assert set(env) == CLIENT_ENV and all(env.values()), env.keys()
    assert env["RAY_ADDRESS"] == f"http://127.0.0.1:{cluster.env['DASHBOARD_PORT']}"
    assert env["RL_STORAGE_URI"].startswith(f"s3://{env['RL_BUCKET']}/")
    assert "source" in cluster.up_output and ".cluster/env" in cluster.up_output
    # The token is found through its path, never written into the env file.
    token = open(env["RAY_AUTH_TOKEN_PATH"]).read().strip()
    assert token not in env_file.read_text()


def test_cluster_up_twice_says_already_up(cluster):
    again = cluster.control("up")
    assert again.returncode == 0
    assert "already up" in again.stdout


# ---------------------------------------------------------------- train


def test_train_via_ray_job_submit_reaches_450_and_checkpoints_to_s3(cluster):
    # A random token in the name: the security scan looks for it as a planted secret.
    name = f"cartpole-{uuid.uuid4().hex}"
    result = cluster.train("--name", name, config=str(CARTPOLE.relative_to(REPO_ROOT)))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "+ ray job submit --address http://127.0.0.1:" in result.stdout
    lines = ours(job_lines(result.stdout))
    record = cluster.train_outcome(name)
    assert record.checkpoint.startswith("s3://") and lines[-1] == record.lines()[-1], lines[-5:]
    assert record.job_id == job_id_of(result.stdout) and record.timings["train_s"] > 0
    progress = [line for line in lines if line.startswith("iter ")]
    assert len(progress) == record.iterations
    assert record.episode_return_mean >= 450

    checkpoint = record.checkpoint
    bucket = cluster.client_env()["RL_BUCKET"]
    prefix = checkpoint.removeprefix(f"s3://{bucket}/")
    keys = cluster.keys(prefix + "/")
    assert len(keys) >= 10, keys
    # The policy alone, where the evaluator loads it from (RLModule.from_checkpoint): its weights too.
    assert f"{prefix}/{layout.POLICY_PATH}/module_state.pkl" in keys, keys
    assert f"{prefix}/experiment.yaml" in keys
    experiment_keys = cluster.keys(prefix.rsplit("/", 1)[0] + "/")
    for name_in_bucket in ("latest.json", "progress.csv", "learning_curve.png", "experiment.yaml"):
        assert f"{prefix.rsplit('/', 1)[0]}/{name_in_bucket}" in experiment_keys
    # What the run keeps besides checkpoints: TensorBoard events, the driver's log and run.json.
    run_prefix = prefix.rsplit("/", 1)[0]
    assert any(key.startswith(f"{run_prefix}/tensorboard/events.out.tfevents") for key in experiment_keys)
    driver_log = cluster.s3().get_object(Bucket=bucket, Key=f"{run_prefix}/driver.log")["Body"].read().decode()
    assert "iter    1 |" in driver_log and record.lines()[-1] in driver_log
    record = json.loads(cluster.s3().get_object(Bucket=bucket, Key=f"{run_prefix}/run.json")["Body"].read())
    assert record["experiment"]["name"] == name and record["versions"]["ray"] == "2.60.0"
    assert len(record["git"]["commit"]) == 40 and record["ended"].startswith("episode_return_mean")
    assert "summary:" in lines
    TRAINED["checkpoint"] = checkpoint
    TRAINED["name"] = name


def test_plain_ray_job_submit_works_with_the_env_file(cluster):
    env_file = shlex.quote(str(cluster.state.env_file))
    command = (
        f"source {env_file} && ray job submit --working-dir . -- "
        "python -m jobs.train --config jobs/experiments/ppo-cartpole.yaml --dry-run && ray job list"
    )
    env = {**cluster.env, "PATH": f"{os.path.dirname(sys.executable)}:{cluster.env['PATH']}"}
    result = subprocess.run(
        ["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert '"num_learners": 1' in result.stdout
    assert "succeeded" in result.stdout + result.stderr


def test_rerunning_an_experiment_resumes_from_its_latest_checkpoint(cluster):
    name = f"resume-{RUN}"
    base = ["--name", name, "--set", "checkpoint.every_n_iterations=1"]
    first = cluster.train(*base, "--set", "stop.iterations=2")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    first_lines = ours(job_lines(first.stdout))
    assert first_lines[-1].endswith(f"/{name}/checkpoint_000002")
    steps_before = env_steps_of([line for line in first_lines if line.startswith("iter ")][-1])

    second = cluster.train(*base, "--set", "stop.iterations=3")
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    job_logs = cluster.jobs().get_job_logs(job_id_of(second.stdout))
    first_line = job_lines(job_logs)[0]  # the first line the job itself printed
    assert re.fullmatch(rf"resumed from s3://\S+/{name}/checkpoint_000002 at iteration 2", first_line), job_logs[:500]
    iterations = [line for line in ours(job_lines(second.stdout)) if line.startswith("iter ")]
    assert [line.split()[1] for line in iterations] == ["3"]
    steps_after = env_steps_of(iterations[0])
    # One more iteration's worth (the first run sampled steps_before in 2), not the restored
    # algorithm's own lifetime counter added again.
    assert 0.8 * steps_before / 2 <= steps_after - steps_before <= 1.2 * steps_before / 2, (steps_before, steps_after)
    assert ours(job_lines(second.stdout))[-1].endswith(f"/{name}/checkpoint_000003")
    bucket = cluster.client_env()["RL_BUCKET"]
    progress = cluster.s3().get_object(Bucket=bucket, Key=f"experiments/{name}/progress.csv")["Body"].read().decode()
    assert [row.split(",")[0] for row in progress.splitlines()[1:]] == ["1", "2", "3"]


# ---------------------------------------------------------------- evaluate


def test_evaluate_restores_from_s3_plays_450_and_writes_a_video(cluster, tmp_path):
    assert TRAINED, "needs the training test"
    result = cluster.control(
        "evaluate", "--checkpoint", TRAINED["checkpoint"], "--episodes", "5", "--output-dir", str(tmp_path)
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    record = cluster.evaluation_outcome(TRAINED["checkpoint"])
    assert ours(job_lines(result.stdout))[-1] == record.lines()[-1]
    assert record.episodes == 5 and len(record.returns) == 5 and record.mean_return >= 450
    assert record.video.endswith(".gif")
    video = cluster.read(record.video)
    assert video[:6] in (b"GIF87a", b"GIF89a") and len(video) > 10_000
    local = list(tmp_path.rglob("episode-0.gif"))
    assert len(local) == 1 and local[0].read_bytes() == video


# ---------------------------------------------------------------- bad input


def _counts(cluster):
    return len(cluster.jobs().list_jobs()), len(cluster.keys())


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--set", "env=CartPol-v1"], "not a registered Gymnasium environment; did you mean 'CartPole-v1'"),
        (["--set", "training.gama=0.9"], "unknown key 'training.gama' (did you mean 'gamma'?)"),
        (["--set", "training.lr=fast"], "'training.lr' = 'fast'"),
        (["--set", "training.gamma=7"], "'training.gamma' = 7"),
        (["--storage", "gs://bucket/x"], "scheme 'gs://' is not supported"),
        (["--storage", "s3://no-such-bucket-here/x"], "bucket 'no-such-bucket-here' does not exist"),
    ],
    ids=["unknown-env", "unknown-key", "wrong-type", "out-of-range", "bad-storage-uri", "missing-bucket"],
)
def test_bad_training_input_fails_before_anything_is_submitted(cluster, extra, expected):
    before = _counts(cluster)
    result = cluster.train("--name", f"bad-{RUN}", *extra)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert "nothing was submitted" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "+ ray job submit" not in result.stdout
    assert _counts(cluster) == before


def test_malformed_yaml_fails_before_submission(cluster, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nenv: [CartPole-v1\n")
    before = _counts(cluster)
    result = cluster.train(config=str(broken))
    assert result.returncode != 0
    assert "is not valid YAML at line" in result.stderr
    assert _counts(cluster) == before


def _env_copy(cluster, tmp_path, **changes):
    """A state folder whose env file differs from the real one in `changes`."""
    other = tmp_path / "other-state"
    other.mkdir()
    text = cluster.state.env_file.read_text()
    for name, value in changes.items():
        text = re.sub(rf"^export {name}=.*$", f"export {name}={value}", text, flags=re.M)
    (other / "env").write_text(text)
    return {**cluster.env, "CLUSTER_STATE_DIR": str(other)}


def test_wrong_s3_credentials_fail_before_submission(cluster, tmp_path):
    env = _env_copy(cluster, tmp_path, AWS_SECRET_ACCESS_KEY="not-the-secret")
    before = _counts(cluster)
    result = cluster.train(env=env)
    assert result.returncode != 0
    assert "the secret key for access key" in result.stderr and "is wrong" in result.stderr
    assert "not-the-secret" not in result.stderr + result.stdout
    assert _counts(cluster) == before


def test_unreachable_cluster_address_fails_clearly(cluster, tmp_path):
    from controlplane.ports import free_port

    env = _env_copy(cluster, tmp_path, RAY_ADDRESS=f"http://127.0.0.1:{free_port()}")
    result = cluster.train(env=env, timeout=120)
    assert result.returncode != 0
    assert "cannot reach the Ray Jobs API at http://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_of_a_missing_checkpoint_fails_before_submission(cluster):
    bucket = cluster.client_env()["RL_BUCKET"]
    result = cluster.control("evaluate", "--checkpoint", f"s3://{bucket}/experiments/nothing/checkpoint_000001")
    assert result.returncode != 0
    assert "is not a checkpoint written by jobs.train" in result.stderr


# ---------------------------------------------------------------- secrets


# ---------------------------------------------------------------- cluster-down


def test_cluster_down_stops_everything_and_the_bucket_survives_a_restart(cluster):
    assert TRAINED, "needs the training test"
    marker = cluster.state.load()["cluster_id"]
    keys_before = set(cluster.keys(f"experiments/{TRAINED['name']}/"))

    down = cluster.control("down")
    assert down.returncode == 0, down.stderr
    assert processes.processes_with_marker(marker) == []
    assert not cluster.state.env_file.exists()

    up = cluster.control("up", timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    cluster.markers.add(cluster.state.load()["cluster_id"])
    assert set(cluster.keys(f"experiments/{TRAINED['name']}/")) == keys_before
    # Left up: the session fixture stops it (and checks again) after the last test.
