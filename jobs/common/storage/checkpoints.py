"""Writing a checkpoint so that no crash or storage outage corrupts "latest".

A checkpoint is written in three steps, the same for `jobs.train` and for
every sweep trial:

1. RLlib saves it to a local folder (`save_to_path`), the experiment beside it;
2. its files are uploaded one by one to `<folder>/checkpoint_<iteration>`;
3. `<folder>/latest.json` is written last: one PUT, atomic. Only then is the
   checkpoint "latest", so a half-uploaded folder is never resumed from.

Every write goes through jobs/common/storage/objects.py, which retries an
outage (jobs/common/storage/retry.py). When a checkpoint cannot be uploaded
after all, the local copy is kept and its path is in the message; after a good
upload it is removed. This module only saves, restores and finds checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.common.errors import StorageError
from jobs.common.storage import layout
from jobs.common.storage import objects as storage
from jobs.common.storage.retry import retrying

LOCAL_DIR_ENV_VAR = "RL_LOCAL_CHECKPOINT_DIR"

if TYPE_CHECKING:
    from jobs.common.run.state import RunState


def save(algo, run: layout.RunFolder, state: RunState, experiment_yaml: str) -> str:
    """Save `algo` as `<run>/checkpoint_<iteration>`, then point `<run>/latest.json` at it.

    The pointer is `state` with its `checkpoint` set to the new folder.
    Returns that folder's URI.
    """
    uri = run.checkpoint(state.iteration)
    # Beside the weights: the experiment (the evaluator needs the environment and model) and the run's
    # state as of this checkpoint (which job wrote it, at which iteration).
    state_here = dataclasses.replace(state, checkpoint=uri).to_json()
    if not storage.is_s3(run.uri):
        algo.save_to_path(uri)
        Path(uri, layout.EXPERIMENT_FILE).write_text(experiment_yaml)
        Path(uri, layout.STATE_FILE).write_bytes(state_here)
        state.checkpoint = uri
        write_pointer(run, state)
        return uri

    local = local_copy_dir(uri)
    shutil.rmtree(local, ignore_errors=True)
    algo.save_to_path(str(local))
    (local / layout.EXPERIMENT_FILE).write_text(experiment_yaml)
    (local / layout.STATE_FILE).write_bytes(state_here)
    previous = state.checkpoint
    try:
        storage.upload_folder(local, uri)
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
    storage.write_bytes(run.pointer, state.to_json())


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


def local_copy_dir(uri: str) -> Path:
    """Where a checkpoint bound for `uri` is staged: $RL_LOCAL_CHECKPOINT_DIR, else the temp dir."""
    root = Path(os.environ.get(LOCAL_DIR_ENV_VAR) or Path(tempfile.gettempdir()) / "rl-checkpoints")
    location = storage.S3Location.parse(uri)
    return root / location.bucket / location.key
