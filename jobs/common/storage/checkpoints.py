"""Writing a checkpoint so that no crash or storage outage corrupts "latest".

A checkpoint is written in three steps, the same for `jobs.train` and for
every sweep trial:

1. RLlib saves it to a local folder (`save_to_path`), the experiment beside it;
2. its files are uploaded one by one to `<folder>/checkpoint_<iteration>`;
3. `<folder>/latest.json` is written last: one PUT, atomic. Only then is the
   checkpoint "latest", so a half-uploaded folder is never resumed from.

Every storage write is retried while the S3 server is unreachable or busy,
for up to $RL_STORAGE_RETRY_S seconds (default 180), with a line per retry.
A deleted bucket or revoked keys stop the run at once with a message naming
which. Either way the local copy of the checkpoint that could not be uploaded
is kept and its path is in the message; after a good upload it is removed.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from jobs.common.errors import StorageError
from jobs.common.storage import layout
from jobs.common.storage import objects as storage

RETRY_ENV_VAR = "RL_STORAGE_RETRY_S"
DEFAULT_RETRY_S = 180.0
LOCAL_DIR_ENV_VAR = "RL_LOCAL_CHECKPOINT_DIR"
MAX_BACKOFF_S = 15.0

if TYPE_CHECKING:
    from jobs.common.run.state import RunState

T = TypeVar("T")


def retry_budget_s() -> float:
    text = os.environ.get(RETRY_ENV_VAR)
    try:
        return max(0.0, float(text)) if text else DEFAULT_RETRY_S
    except ValueError:
        raise StorageError(f"{RETRY_ENV_VAR}='{text}' is not a number of seconds (e.g. 180)") from None


def retrying(action: Callable[[], T], what: str, uri: str, budget_s: float | None = None) -> T:
    """Run a storage write; on failure, ask S3 what is wrong: retry an outage, stop on anything else."""
    budget_s = retry_budget_s() if budget_s is None else budget_s
    deadline = time.monotonic() + budget_s
    delay = 1.0
    attempt = 1
    while True:
        try:
            return action()
        except OSError as err:  # pyarrow's S3 errors are OSErrors
            failure = _diagnose(uri, err)
            if not failure.transient:
                raise failure from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageError(
                    f"{what}: storage still failing after {budget_s:.0f}s of retries ({failure}); "
                    f"rerun the same command to resume once S3 is back ({RETRY_ENV_VAR} sets the wait)",
                    transient=True,
                ) from None
            wait = min(delay, left)
            print(
                f"storage: {what} failed (attempt {attempt}: {_first_line(failure)}); "
                f"retrying in {wait:.0f}s, giving up in {left:.0f}s",
                flush=True,
            )
            time.sleep(wait)
            delay = min(delay * 2, MAX_BACKOFF_S)
            attempt += 1


def save(algo, run: layout.RunFolder, state: RunState, experiment_yaml: str) -> str:
    """Save `algo` as `<run>/checkpoint_<iteration>`, then point `<run>/latest.json` at it.

    The pointer is `state` with its `checkpoint` set to the new folder.
    Returns that folder's URI.
    """
    uri = run.checkpoint(state.iteration)
    if not storage.is_s3(run.uri):
        algo.save_to_path(uri)
        Path(uri, layout.EXPERIMENT_FILE).write_text(experiment_yaml)
        state.checkpoint = uri
        write_pointer(run, state)
        return uri

    local = local_copy_dir(uri)
    shutil.rmtree(local, ignore_errors=True)
    algo.save_to_path(str(local))
    # The evaluator needs the environment and model: keep the experiment beside the weights.
    (local / layout.EXPERIMENT_FILE).write_text(experiment_yaml)
    previous = state.checkpoint
    try:
        upload_folder(local, uri)
        state.checkpoint = uri
        write_pointer(run, state)
    except StorageError as err:
        state.checkpoint = previous
        raise StorageError(
            f"{err}\ncheckpoint {uri} was not written; a local copy is kept on {socket.gethostname()} at {local}; "
            f"the last complete checkpoint is the one {run.pointer} names",
            transient=err.transient,
        ) from None
    shutil.rmtree(local, ignore_errors=True)
    return uri


def write_pointer(run: layout.RunFolder, state: RunState) -> None:
    """The pointer that makes a checkpoint "latest": written after all its objects."""
    write_bytes(run.pointer, state.to_json())


def write_bytes(uri: str, data: bytes) -> None:
    """A small object (progress, a figure) written with the same retries as checkpoints."""
    retrying(lambda: storage.write_bytes(uri, data), f"writing {uri}", uri)


def restore(algo, uri: str) -> None:
    """`algo.restore_from_path(uri)`, from a local copy when the checkpoint is in S3.

    RLlib 2.60 hands a remote learner on another node its part of the checkpoint
    by packing the driver's local folder: an `s3://` path is no folder there, and
    the restore died (FileNotFoundError in _PackActor) on every multi-node cluster
    (containers, KubeRay, VMs), though never on one machine.
    """
    if not storage.is_s3(uri):
        algo.restore_from_path(uri)
        return
    import pyarrow.fs

    with tempfile.TemporaryDirectory(prefix="rl-restore-") as folder:
        source, path = storage.filesystem(uri)
        retrying(
            lambda: pyarrow.fs.copy_files(path, folder, source_filesystem=source),
            f"downloading {uri}",
            uri,
        )
        algo.restore_from_path(folder)


def upload_folder(local: Path, uri: str) -> None:
    """Upload every file of `local` under `uri`, each with retries; re-uploading is harmless.
    A checkpoint is some 25 files: one filesystem (one S3 connection pool) for all of them, and
    its folder created once, not before each file (S3 needs no folders below it: the check is
    that the bucket is there). Half the requests, and half the time."""
    fs, root = storage.filesystem(uri)
    retrying(lambda: fs.create_dir(root, recursive=True), f"creating {uri}", uri)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        relative = path.relative_to(local).as_posix()
        target = storage.join(uri, relative)
        retrying(lambda path=path, key=f"{root}/{relative}": upload_file(fs, key, path), f"uploading {target}", target)


def upload_file(fs, key: str, path: Path) -> None:
    storage.put(fs, key, path.read_bytes(), make_parent=False)


def local_copy_dir(uri: str) -> Path:
    """Where a checkpoint bound for `uri` is staged: $RL_LOCAL_CHECKPOINT_DIR, else the temp dir."""
    root = Path(os.environ.get(LOCAL_DIR_ENV_VAR) or Path(tempfile.gettempdir()) / "rl-checkpoints")
    location = storage.S3Location.parse(uri)
    return root / location.bucket / location.key


def _diagnose(uri: str, err: OSError) -> StorageError:
    """What S3 says is wrong now. If it answers fine, the failure was a blip: retry."""
    try:
        storage.check_storage_reachable(uri)
    except StorageError as failure:
        return failure
    return StorageError(f"{_first_line(err)}", transient=True)


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
