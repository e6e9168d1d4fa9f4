"""Storage URIs, the latest-checkpoint pointer, and local-path storage."""

from pathlib import Path

import pytest

from jobs.common.errors import UserError
from jobs.common.run.state import RunState, read_pointer
from jobs.common.storage import checkpoints, layout
from jobs.common.storage import objects as storage


@pytest.mark.parametrize(
    "uri", ["s3://rl-checkpoints/experiments", "s3://my.bucket-1", "/tmp/runs", "runs", "file:///tmp/x"]
)
def test_accepted_storage_uris(uri):
    storage.validate_storage_uri(uri)


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("gs://bucket/x", "scheme 'gs://' is not supported"),
        ("http://127.0.0.1:9000/bucket", "scheme 'http://' is not supported"),
        ("s3://Upper/x", "not a valid S3 bucket name"),
        ("s3://ab", "not a valid S3 bucket name"),
        ("", "must be s3://bucket/prefix or a local directory path"),
    ],
)
def test_rejected_storage_uris(uri, expected):
    with pytest.raises(ValueError, match=expected):
        storage.validate_storage_uri(uri)


def test_storage_defaults_to_the_cluster_env(monkeypatch):
    monkeypatch.setenv("RL_STORAGE_URI", "s3://rl-checkpoints/experiments/")
    assert storage.resolve_storage(None) == "s3://rl-checkpoints/experiments"


def test_no_storage_anywhere_says_what_to_do(monkeypatch):
    monkeypatch.delenv("RL_STORAGE_URI", raising=False)
    with pytest.raises(UserError, match="source .cluster/env"):
        storage.resolve_storage(None)


def test_relative_local_storage_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.resolve_storage("runs") == str(tmp_path / "runs")


def test_latest_pointer_round_trip_on_local_storage(tmp_path):
    run = layout.experiment(str(tmp_path), "exp")
    assert read_pointer(run) is None

    class Algorithm:
        def save_to_path(self, path):
            Path(path, layout.POLICY_PATH).mkdir(parents=True)

    checkpoints.save(Algorithm(), run, RunState(iteration=7), "env: CartPole-v1\n")
    latest = read_pointer(run)
    assert latest.iteration == 7
    assert latest.checkpoint.endswith("/exp/checkpoint_000007")


def test_checkpoint_on_local_storage_is_written_before_its_pointer(tmp_path):
    class Algorithm:
        def save_to_path(self, path):
            Path(path).mkdir(parents=True)
            Path(path, "state.pkl").write_bytes(b"weights")

    run = layout.experiment(str(tmp_path), "exp")
    uri = checkpoints.save(Algorithm(), run, RunState(iteration=3, job_id="raysubmit_a"), "env: CartPole-v1\n")
    assert uri == f"{run.uri}/checkpoint_000003"
    assert sorted(p.name for p in Path(uri).iterdir()) == ["experiment.yaml", "state.json", "state.pkl"]
    assert RunState.from_json(Path(run.pointer).read_bytes(), run.pointer).checkpoint == uri
    # Each checkpoint says which job wrote it, at which iteration.
    written = RunState.from_json(Path(uri, layout.STATE_FILE).read_bytes(), uri)
    assert (written.job_id, written.iteration, written.checkpoint) == ("raysubmit_a", 3, uri)
