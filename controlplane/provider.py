"""The contract every provider (local, docker, kuberay, vm) keeps.

A provider brings a cluster up, takes it down and reports on it, and hands
the state folder one `ClientSettings`: the same client env file
(`.cluster/env`) whatever runs the cluster, so `make train`, `make sweep`
and plain `ray job submit` never need to know which provider is behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from jobs.common.cluster import capacity


class Provider(Protocol):
    """`make cluster-up|cluster-down|cluster-status PROVIDER=<name>`. Each returns an exit status."""

    name: str

    def up(self) -> int: ...

    def down(self) -> int: ...

    def status(self) -> int: ...


@dataclass(frozen=True)
class ClientSettings:
    """What a client needs to reach a cluster and its storage.

    `s3_keys` is set only for a provider that runs its own S3 server (local,
    docker, the dev overlay): real clouds give clients their own credentials.
    The Ray token itself never goes into the env file, only its path.
    """

    ray_address: str
    auth_token_path: Path
    storage_uri: str
    aws_region: str
    # Each worker group's maximum shape, as jobs.common.cluster.capacity reads it.
    worker_groups: Mapping[str, Mapping[str, float]]
    bucket: str | None = None
    s3_endpoint: str | None = None
    s3_keys: Mapping[str, str] | None = field(default=None, repr=False)
    state_dir: Path | None = None

    def variables(self) -> dict[str, str]:
        """The `export NAME=value` lines of the env file, in a stable order."""
        variables = {
            "RAY_ADDRESS": self.ray_address,
            # Ray 2.60 clients need the mode set, or they fail after ~40 s with InvalidAuthToken.
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.auth_token_path),
        }
        if self.s3_endpoint:
            variables["AWS_ENDPOINT_URL"] = self.s3_endpoint
        if self.s3_keys:
            variables["AWS_ACCESS_KEY_ID"] = self.s3_keys["access_key_id"]
            variables["AWS_SECRET_ACCESS_KEY"] = self.s3_keys["secret_access_key"]
        variables["AWS_REGION"] = self.aws_region
        if self.bucket:
            variables["RL_BUCKET"] = self.bucket
        variables["RL_STORAGE_URI"] = self.storage_uri
        variables[capacity.CAPACITY_ENV_VAR] = capacity.to_env(self.worker_groups)
        if self.state_dir is not None:
            variables["CLUSTER_STATE_DIR"] = str(self.state_dir)
        return variables
