"""Storage URIs: `s3://bucket/prefix` or a local directory; which one a run uses, and how to join them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from jobs.common.errors import UserError

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
