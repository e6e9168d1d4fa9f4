"""Storage URIs, the latest-checkpoint pointer, and local-path storage."""

from pathlib import Path

import pytest

from jobs.common import checkpoints, storage
from jobs.common.errors import UserError


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
    root = str(tmp_path)
    assert storage.read_latest(root, "exp") is None
    checkpoints.write_pointer(
        storage.experiment_uri(root, "exp"), {"checkpoint": storage.checkpoint_uri(root, "exp", 7), "iteration": 7}
    )
    latest = storage.read_latest(root, "exp")
    assert latest["iteration"] == 7
    assert latest["checkpoint"].endswith("/exp/checkpoint_000007")


def test_checkpoint_on_local_storage_is_written_before_its_pointer(tmp_path):
    class Algorithm:
        def save_to_path(self, path):
            Path(path).mkdir(parents=True)
            Path(path, "state.pkl").write_bytes(b"weights")

    folder = storage.experiment_uri(str(tmp_path), "exp")
    uri = checkpoints.save(Algorithm(), folder, 3, "env: CartPole-v1\n", {"iteration": 3})
    assert uri == f"{folder}/checkpoint_000003"
    assert sorted(p.name for p in Path(uri).iterdir()) == ["experiment.yaml", "state.pkl"]
    assert storage.read_latest(str(tmp_path), "exp")["checkpoint"] == uri
