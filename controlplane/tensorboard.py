"""`make tensorboard NAME=<experiment or sweep>`: a run's TensorBoard event files,
synced from storage to results/tensorboard/<name>/, served on 127.0.0.1.

TensorBoard reads local folders (its S3 support needs TensorFlow): the files
every run uploads to `<run>/tensorboard/` are copied here first, a sweep's
trials each into a folder of their own, so TensorBoard shows one curve per
trial. Nothing else is needed from the cluster: the bucket alone will do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from controlplane.errors import ClusterError
from jobs.common.storage import layout
from jobs.common.storage import objects as storage


def event_folders(storage_uri: str, name: str) -> dict[str, str]:
    """{local sub-folder: folder in storage} for an experiment or a sweep called `name`."""
    run = layout.experiment(storage_uri, name)
    if storage.list_names(run.tensorboard):
        return {".": run.tensorboard}
    sweep = layout.sweep(storage_uri, name)
    trials = storage.list_names(storage.join(sweep.uri, "trials"))
    found = {trial: sweep.trial(trial).tensorboard for trial in trials}
    return {trial: folder for trial, folder in found.items() if storage.list_names(folder)}


def sync(storage_uri: str, name: str, destination: Path) -> int:
    folders = event_folders(storage_uri, name)
    if not folders:
        raise ClusterError(
            f"no TensorBoard event files for '{name}' in {storage_uri} (neither {name}/tensorboard/ nor "
            f"{name}/trials/*/tensorboard/); check NAME and RL_STORAGE_URI"
        )
    copied = 0
    for sub, folder in folders.items():
        for file_name in storage.list_names(folder):
            storage.download_file(storage.join(folder, file_name), destination / sub / file_name)
            copied += 1
    return copied


def serve(storage_uri: str, name: str, results: Path, port: int) -> int:
    destination = results / name
    shutil.rmtree(destination, ignore_errors=True)
    copied = sync(storage_uri, name, destination)
    print(f"synced {copied} event files of '{name}' to {os.path.relpath(destination)}", flush=True)
    binary = Path(sys.executable).parent / "tensorboard"
    command = [str(binary), "--logdir", str(destination), "--host", "127.0.0.1", "--port", str(port)]
    print("+ " + shlex.join(command), flush=True)
    os.execv(command[0], command)  # TensorBoard in the foreground: Ctrl+C stops it
