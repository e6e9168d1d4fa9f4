"""Where runs live: an `s3://bucket/prefix` or a local directory; every read and write of it.

Objects go through pyarrow's filesystem layer, the one RLlib and Ray Tune
use. This module holds storage URIs, a check of the bucket and credentials
with a clear message (up front, and after a failed write mid-run), and the
reads and writes: every write is retried through the one policy of retry.py,
so no caller can pick a write that gives up at the first blip. Where things
go is layout.py; what a checkpoint is, checkpoints.py.

S3 settings come from the environment only (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION): keys are never passed
to a filesystem object, so they are never pickled into anything we write.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jobs.common.errors import StorageError, UserError

STORAGE_ENV_VAR = "RL_STORAGE_URI"

# S3 bucket naming rules (the common subset every S3 implementation accepts).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def validate_storage_uri(uri: str) -> None:
    """Accept `s3://bucket[/prefix]` or a local path (absolute, relative or file://)."""
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError("storage must be s3://bucket/prefix or a local directory path")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not _BUCKET_RE.match(parsed.netloc or ""):
            raise ValueError(
                f"'{parsed.netloc}' is not a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-'); "
                "expected s3://bucket/prefix"
            )
        return
    if parsed.scheme in ("", "file"):
        return
    raise ValueError(
        f"scheme '{parsed.scheme}://' is not supported; use s3://bucket/prefix "
        "(any S3-compatible server via AWS_ENDPOINT_URL) or a local directory path"
    )


def resolve_storage(explicit: str | None) -> str:
    """The experiment's storage, else $RL_STORAGE_URI (written by `make cluster-up`)."""
    uri = explicit or os.environ.get(STORAGE_ENV_VAR)
    if not uri:
        raise UserError(
            "no storage configured: set 'storage' in the experiment, pass --storage s3://bucket/prefix "
            f"or a local path, or set {STORAGE_ENV_VAR} (`source .cluster/env` after `make cluster-up`)"
        )
    try:
        validate_storage_uri(uri)
    except ValueError as err:
        raise UserError(f"storage '{uri}': {err}") from None
    if urlparse(uri).scheme in ("", "file"):
        uri = str(Path(urlparse(uri).path if uri.startswith("file://") else uri).expanduser().resolve())
    return uri.rstrip("/")


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        parsed = urlparse(uri)
        return cls(bucket=parsed.netloc, key=parsed.path.lstrip("/"))


def _s3_client():
    import boto3

    # boto3 reads AWS_ENDPOINT_URL, the keys and the region from the environment. A new
    # session each time: the default one keeps the first keys it saw for the whole process.
    return boto3.session.Session().client("s3", region_name=os.environ.get("AWS_REGION") or "us-east-1")


def check_storage_reachable(uri: str) -> None:
    """Fail fast, before any training, if the bucket or the credentials are wrong.

    Raises StorageError, `transient` when the server is unreachable or busy.
    Also used after a failed write mid-run, to tell an outage (retry) from a
    deleted bucket or revoked keys (stop at once, naming which).
    """
    if not is_s3(uri):
        path = Path(uri)
        existing = next((p for p in [path, *path.parents] if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            raise StorageError(f"storage '{uri}': local directory is not writable (nearest existing: {existing})")
        return

    import botocore.exceptions

    location = S3Location.parse(uri)
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "the AWS default endpoint")
    try:
        _s3_client().list_objects_v2(Bucket=location.bucket, Prefix=location.key, MaxKeys=1)
    except botocore.exceptions.NoCredentialsError:
        raise StorageError(
            f"storage '{uri}': no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(`source .cluster/env` for the local cluster) or use an instance profile / workload identity"
        ) from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
        raise StorageError(
            f"storage '{uri}': cannot reach the S3 endpoint {endpoint}; is the S3 server up "
            "(`make cluster-status`)? Check AWS_ENDPOINT_URL",
            transient=True,
        ) from None
    except botocore.exceptions.ClientError as err:
        raise _client_error(uri, location, endpoint, err) from None


def _client_error(uri: str, location: S3Location, endpoint: str, err) -> StorageError:
    code = err.response.get("Error", {}).get("Code", "")
    access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
    masked = f"{access_key[:4]}..." if access_key else "(none)"
    if code in ("NoSuchBucket", "404"):
        return StorageError(
            f"storage '{uri}': bucket '{location.bucket}' does not exist at {endpoint}; create it, "
            "or point storage at an existing bucket"
        )
    if code == "InvalidAccessKeyId":
        return StorageError(
            f"storage '{uri}': the S3 server at {endpoint} does not know access key '{masked}' "
            "(revoked or mistyped); check AWS_ACCESS_KEY_ID"
        )
    if code == "SignatureDoesNotMatch":
        return StorageError(
            f"storage '{uri}': the secret key for access key '{masked}' is wrong at {endpoint} "
            "(rotated or mistyped); check AWS_SECRET_ACCESS_KEY"
        )
    if code in ("AccessDenied", "403", "Forbidden"):
        return StorageError(f"storage '{uri}': access denied to bucket '{location.bucket}' for access key '{masked}'")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return StorageError(
        f"storage '{uri}': S3 error {code}: {err.response.get('Error', {}).get('Message', '')}",
        transient=status >= 500 or code in ("SlowDown", "RequestTimeout"),
    )


# --------------------------------------------------------------------------
# Small objects, through pyarrow (the filesystem layer RLlib and Tune use)
# --------------------------------------------------------------------------


def filesystem(uri: str):
    """pyarrow's filesystem for `uri` and the path in it; reuse it for many objects under one folder."""
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def write_bytes(uri: str, data: bytes) -> None:
    """One object, written with retries (retry.py)."""
    from jobs.common.storage.retry import retrying

    retrying(lambda: _put(*filesystem(uri), data), f"writing {uri}", uri)


def upload_folder(local: Path, uri: str) -> None:
    """Every file of `local` under `uri`, each with retries; re-uploading is harmless.
    A checkpoint is some 25 files: one filesystem (one S3 connection pool) for all of them, and
    its folder created once, not before each file (S3 needs no folders below it: the check is
    that the bucket is there). Half the requests, and half the time."""
    from jobs.common.storage.retry import retrying

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

    from jobs.common.storage.retry import retry_budget_s

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
