"""Checkpoint writes against a real S3 server (its own SeaweedFS) that fails mid-write.

The server is stopped and started by PID; the "algorithm" is a stand-in that
saves a few files, since what is under test is the upload, the pointer and
the messages (the Ray jobs are covered in test_faults.py).
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from controlplane import processes
from controlplane.local import s3server
from jobs.common.errors import StorageError
from jobs.common.run.state import RunState
from jobs.common.storage import checkpoints, layout, retry
from jobs.common.storage import objects as storage
from tests.e2e.test_faults import record

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

BUCKET = "fault-bucket"
FILES = 6
# Beside RLlib's files, each checkpoint folder holds experiment.yaml and state.json.
OBJECTS = FILES + 2


class FakeAlgorithm:
    """Saves FILES files of 64 KiB, like RLlib's save_to_path does a folder."""

    def __init__(self, label: str):
        self.label = label

    def save_to_path(self, path: str) -> None:
        for i in range(FILES):
            Path(path, f"part_{i}.bin").parent.mkdir(parents=True, exist_ok=True)
            Path(path, f"part_{i}.bin").write_bytes(self.label.encode() * (65536 // len(self.label)))


class S3Server:
    def __init__(self, root: Path):
        self.root = root
        self.ports = s3server.allocate_ports()
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.keys = {"access_key_id": "ft" + secrets.token_hex(8), "secret_access_key": secrets.token_urlsafe(24)}
        self.pid: int | None = None

    def start(self) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "AWS_ACCESS_KEY_ID": self.keys["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.keys["secret_access_key"],
        }
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        cmd = s3server.command(self.root / "data", BUCKET, self.ports)
        self.pid = processes.start_in_own_session(cmd, env, self.root / "s3.log", cwd=self.root)
        s3server.wait_until_serving(self.endpoint, BUCKET, self.keys)

    def stop(self) -> None:
        if self.pid:
            processes.stop_groups([self.pid], grace_s=2.0)
            self.pid = None

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.keys["access_key_id"],
            aws_secret_access_key=self.keys["secret_access_key"],
        )

    def keys_under(self, prefix: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        # Not the empty "folder/" markers pyarrow writes.
        return sorted(o["Key"] for o in listing.get("Contents", []) if not o["Key"].endswith("/"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One S3 server for the module, stopped by PID at the end; tests that stop it get it back."""
    server = S3Server(tmp_path_factory.mktemp("s3"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(server, tmp_path, monkeypatch):
    """The module's server, running (a test may have stopped it); each test writes its own run, RUN."""
    if server.pid is None:
        server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.keys["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.keys["secret_access_key"])
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv(checkpoints.LOCAL_DIR_ENV_VAR, str(tmp_path / "local"))
    monkeypatch.setattr(sys.modules[__name__], "RUN", layout.experiment(f"s3://{BUCKET}/experiments", tmp_path.name))
    return server


RUN = layout.experiment(f"s3://{BUCKET}/experiments", "run")  # each test's own, set by the s3 fixture


def under(checkpoint: str) -> str:
    """A checkpoint's key prefix in the bucket, e.g. under("checkpoint_000002")."""
    return RUN.uri.split("/", 3)[3] + f"/{checkpoint}/"


def local_copy(tmp_path: Path, checkpoint: str) -> Path:
    """Where a checkpoint's local copy is kept when its upload fails."""
    return tmp_path / "local" / RUN.uri.removeprefix("s3://") / checkpoint


def save(iteration: int) -> str:
    return checkpoints.save(FakeAlgorithm(f"it{iteration}"), RUN, RunState(iteration=iteration), "env: CartPole-v1\n")


def latest() -> RunState:
    return RunState.from_json(storage.read_bytes(RUN.pointer), RUN.pointer)


def stop_server_after(s3: S3Server, monkeypatch, files: int) -> list[str]:
    """Stop the S3 server for real once `files` files of the next upload are in."""
    uploaded: list[str] = []
    real_upload = storage.upload_file

    def upload_then_maybe_stop(fs, key, path):
        real_upload(fs, key, path)
        uploaded.append(key)
        if len(uploaded) == files:
            s3.stop()

    monkeypatch.setattr(storage, "upload_file", upload_then_maybe_stop)
    return uploaded


def test_upload_interrupted_half_way_never_becomes_latest(s3, monkeypatch, tmp_path):
    first = save(1)
    monkeypatch.setenv(retry.RETRY_ENV_VAR, "3")
    stop_server_after(s3, monkeypatch, files=FILES // 2)

    with pytest.raises(StorageError) as raised:
        save(2)
    message = str(raised.value)
    assert "cannot reach the S3 endpoint" in message and "after 3s of retries" in message
    local = local_copy(tmp_path, "checkpoint_000002")
    assert f"a local copy is kept on {os.uname().nodename} at {local}" in message
    assert len(list(local.iterdir())) == OBJECTS

    s3.start()
    half = s3.keys_under(under("checkpoint_000002"))
    assert 0 < len(half) < OBJECTS, half  # really half-written
    pointer = latest()
    assert pointer.checkpoint == first and pointer.iteration == 1
    assert len(s3.keys_under(under("checkpoint_000001"))) == OBJECTS
    record(
        fault="S3 server stopped half-way through an upload (3 of 7 files; 3 s retry budget)",
        outcome="write failed with the local copy named; latest.json still names checkpoint_000001",
        recover_s=None,
        lost="0: the half-written checkpoint_000002 is never latest",
    )


def test_a_short_outage_mid_upload_is_ridden_out(s3, monkeypatch, tmp_path, capsys):
    save(1)
    outage_s = 20.0  # longer than pyarrow's own retries (about 12 s)
    uploaded = stop_server_after(s3, monkeypatch, files=2)
    stopped_at: list[float] = []

    def restart_later():
        while s3.pid is not None:
            time.sleep(0.1)
        stopped_at.append(time.monotonic())
        time.sleep(outage_s)
        s3.start()

    restarter = threading.Thread(target=restart_later)
    restarter.start()
    try:
        second = save(2)
    finally:
        restarter.join()

    assert time.monotonic() - stopped_at[0] >= outage_s
    assert "retrying in" in capsys.readouterr().out
    assert len(uploaded) >= OBJECTS
    assert len(s3.keys_under(under("checkpoint_000002"))) == OBJECTS
    assert latest().checkpoint == second
    assert not (local_copy(tmp_path, "checkpoint_000002")).exists()
    record(
        fault=f"S3 server stopped for {outage_s:.0f} s mid-upload (stand-alone S3)",
        outcome="upload retried until the server was back; all 7 objects in; latest.json updated",
        recover_s=round(time.monotonic() - stopped_at[0], 1),
        lost="0 checkpoints",
    )


def test_deleted_bucket_stops_at_once_naming_the_bucket(s3, tmp_path, monkeypatch):
    # A bucket of its own: the module's is shared by the other tests.
    doomed = "doomed-" + secrets.token_hex(4)
    client = s3.client()
    client.create_bucket(Bucket=doomed)
    monkeypatch.setattr(sys.modules[__name__], "RUN", layout.experiment(f"s3://{doomed}/experiments", "run"))
    save(1)
    for key in [o["Key"] for o in client.list_objects_v2(Bucket=doomed).get("Contents", [])]:
        client.delete_object(Bucket=doomed, Key=key)
    client.delete_bucket(Bucket=doomed)

    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        save(2)
    stopped_s = time.monotonic() - started
    assert stopped_s < 30, "a deleted bucket is not an outage to wait out"
    assert not raised.value.transient
    assert f"bucket '{doomed}' does not exist" in str(raised.value)
    assert (local_copy(tmp_path, "checkpoint_000002") / "part_0.bin").exists()
    record(
        fault="bucket deleted before a checkpoint write (stand-alone S3)",
        outcome=f"stopped after {stopped_s:.1f} s: bucket '{doomed}' does not exist; local copy kept",
        recover_s=None,
        lost="0: the checkpoint's local copy is kept",
    )


@pytest.mark.parametrize(
    "variable, expected",
    [
        ("AWS_SECRET_ACCESS_KEY", "check AWS_SECRET_ACCESS_KEY"),
        ("AWS_ACCESS_KEY_ID", "check AWS_ACCESS_KEY_ID"),
    ],
)
def test_revoked_credentials_stop_at_once_naming_the_credential(s3, monkeypatch, tmp_path, variable, expected):
    save(1)
    monkeypatch.setenv(variable, "revoked" + secrets.token_hex(6))

    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        save(2)
    stopped_s = time.monotonic() - started
    assert stopped_s < 30
    assert expected in str(raised.value)
    assert s3.keys["secret_access_key"] not in str(raised.value)
    assert (local_copy(tmp_path, "checkpoint_000002") / "part_0.bin").exists()
    record(
        fault=f"{variable} revoked before a checkpoint write (stand-alone S3)",
        outcome=f"stopped after {stopped_s:.1f} s: '{expected}'; local copy kept",
        recover_s=None,
        lost="0: the checkpoint's local copy is kept",
    )
