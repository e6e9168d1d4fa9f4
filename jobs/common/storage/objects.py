"""Where runs live: an `s3://bucket/prefix` or a local directory; every read and write of it.

Objects go through pyarrow's filesystem layer, the one RLlib and Ray Tune
use. Every write here is retried through the one policy of retry.py, so no
caller can pick a write that gives up at the first blip. Callers import this
module alone: it also hands on the URI helpers (uris.py) and the check of the
bucket and credentials (reachability.py). Where things go is layout.py; what a
checkpoint is, checkpoints.py.

S3 settings come from the environment only (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION): keys are never passed
to a filesystem object, so they are never pickled into anything we write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jobs.common.errors import UserError
from jobs.common.storage.reachability import check_storage_reachable, s3_client
from jobs.common.storage.retry import retry_budget_s, retrying
from jobs.common.storage.uris import STORAGE_ENV_VAR, S3Location, is_s3, join, resolve_storage, validate_storage_uri

__all__ = [  # the URI helpers and the check live beside this module; callers reach them here
    "STORAGE_ENV_VAR",
    "S3Location",
    "check_storage_reachable",
    "is_s3",
    "join",
    "resolve_storage",
    "s3_client",
    "validate_storage_uri",
]

# --------------------------------------------------------------------------
# Small objects, through pyarrow (the filesystem layer RLlib and Tune use)
# --------------------------------------------------------------------------


def filesystem(uri: str):
    """pyarrow's filesystem for `uri` and the path in it; reuse it for many objects under one folder."""
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def write_bytes(uri: str, data: bytes) -> None:
    """One object, written with retries (retry.py)."""
    retrying(lambda: _put(*filesystem(uri), data), f"writing {uri}", uri)


def upload_folder(local: Path, uri: str) -> None:
    """Every file of `local` under `uri`, each with retries; re-uploading is harmless.
    A checkpoint is some 25 files: one filesystem (one S3 connection pool) for all of them, and
    its folder created once, not before each file (S3 needs no folders below it: the check is
    that the bucket is there). Half the requests, and half the time."""
    fs, root = filesystem(uri)
    retrying(lambda: fs.create_dir(root, recursive=True), f"creating {uri}", uri)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        relative = path.relative_to(local).as_posix()
        target = join(uri, relative)
        retrying(lambda path=path, key=f"{root}/{relative}": upload_file(fs, key, path), f"uploading {target}", target)


def upload_file(fs, key: str, path: Path) -> None:
    _put(fs, key, path.read_bytes(), make_parent=False)


def _put(fs, path: str, data: bytes, make_parent: bool = True) -> None:
    """One object written through `fs`, its folder created first unless the caller just did
    (on S3 that check also fails on a deleted bucket, which some servers would re-create on a PUT)."""
    parent = path.rsplit("/", 1)[0]
    if parent and make_parent:
        fs.create_dir(parent, recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def tune_filesystem(uri: str):
    """(filesystem, path) for Ray Tune's own writes under `uri` (a sweep's experiment state and results),
    whose retries cover retry.py's budget, as ours do; (None, uri) for a local directory.

    An S3FileSystem of pyarrow's own, its retry strategy and timeouts set: attempts of at most
    REQUEST_TIMEOUT_S until the budget is spent, so that an S3 server frozen for tens of seconds holds
    Tune's writes up, never fails them. Endpoint and region from the environment; no keys (they stay
    in the environment, never pickled into Tune's state); Tune is handed it again on every resume."""
    if not is_s3(uri):
        return None, uri
    import math

    import pyarrow.fs

    attempts = max(3, math.ceil(retry_budget_s() / TUNE_REQUEST_TIMEOUT_S))
    fs = pyarrow.fs.S3FileSystem(
        region=os.environ.get("AWS_REGION") or "us-east-1",
        endpoint_override=os.environ.get("AWS_ENDPOINT_URL") or None,
        retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=attempts),
        connect_timeout=TUNE_REQUEST_TIMEOUT_S,
        request_timeout=TUNE_REQUEST_TIMEOUT_S,
    )
    return fs, uri.removeprefix("s3://")


# Tune's own S3 requests: each attempt may take this long (then it is tried again).
TUNE_REQUEST_TIMEOUT_S = 5.0


def read_bytes(uri: str) -> bytes | None:
    import pyarrow.fs

    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return stream.read()


def read_json(uri: str) -> Any:
    data = read_bytes(uri)
    return json.loads(data) if data else None


def exists(uri: str) -> bool:
    import pyarrow.fs

    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def list_names(uri: str) -> list[str]:
    """The names directly under a folder (objects and sub-folders); [] where there is none."""
    import pyarrow.fs

    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return []
    selector = pyarrow.fs.FileSelector(path, allow_not_found=True, recursive=False)
    return sorted(info.base_name for info in fs.get_file_info(selector))


def download_file(uri: str, destination: Path) -> Path:
    data = read_bytes(uri)
    if data is None:
        raise UserError(f"'{uri}' does not exist")
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(data)
    return destination
