"""One Ray node of a RayCluster group as a container: what KubeRay's operator does for a pod.

`cluster-up` starts the head and the first workers with these functions, and Ray's
autoscaler adds and removes workers with the same ones (through the node provider in
controlplane/containers/node_provider.py), so that every node of a group is the same:

    image        the group's container image (RL_IMAGE/RL_IMAGE_TAG rename the project's own)
    command      `ray start --block` with the group's rayStartParams and per-node shape
                 (controlplane/local/raynodes.py, the operator's rules); the head with
                 --no-monitor: Ray's autoscaler runs on the host, as KubeRay runs it beside
                 the head rather than in it
    limits       --cpus and --memory from the Ray container's limits, --shm-size from the
                 pod's /dev/shm volume
    env          the group's plain env, the S3 settings and keys (from an env file of mode
                 0600, never a command line), RAY_NODE_TYPE_NAME and RAY_CLOUD_INSTANCE_ID
                 (the container's name): how Ray's autoscaler v2 tells which Ray node is
                 which container, as KubeRay sets them in pods
    removal      the group's preStop hook (which drains the node: sweep trials checkpoint),
                 then `docker stop` within terminationGracePeriodSeconds, then `docker rm`

Every container carries the cluster's labels (`down` removes exactly those) and its
Ray tags as labels (the node provider lists them back).
"""

from __future__ import annotations

import secrets
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controlplane.clusterspec import RAY_HEAD_TYPE, ClusterSpec, GroupSpec
from controlplane.containers.daemon import Engine
from controlplane.containers.images import DEFAULT_REGISTRY, ImageNames
from controlplane.local import raynodes
from controlplane.state import StateDir, write_private
from jobs.common.cluster.placement import HEAD_GROUP
from jobs.common.cluster.ports import DASHBOARD_PORT, GCS_PORT

CLUSTER_LABEL = "org.ray-rl.cluster"
ROLE_LABEL = "org.ray-rl.role"
STATE_LABEL = "org.ray-rl.state-dir"
# Ray's node tags (ray.autoscaler.tags), one label each: `org.ray-rl.tag.ray-node-type=worker`.
TAG_LABEL_PREFIX = "org.ray-rl.tag."
# Inside the containers: each has its own network namespace, so fixed ports.
CLIENT_SERVER_PORT = 10001
S3_PORT = 8333
TOKEN_IN_CONTAINER = "/run/secrets/ray/auth_token"
# The scale-up and scale-down log of a docker cluster, in its state folder.
SCALING_LOG = "scaling.log"

_log_lock = threading.Lock()


def group_image(group: GroupSpec, names: ImageNames) -> str:
    """The group's image; the project's own image (the manifests' default) as RL_IMAGE/RL_IMAGE_TAG name it."""
    default = ImageNames(f"{DEFAULT_REGISTRY}/ray-rl", f"{names.pins.ray}-{names.pins.python_tag}", names.pins)
    for variant in ("cpu", "gpu"):
        if group.image == default.project(variant):
            return names.project(variant)
    return group.image


def worker_tags(group: str) -> dict[str, str]:
    """Ray's tags of a worker node of `group`, as its autoscaler reads them back (ray.autoscaler.tags)."""
    return {"ray-node-type": "worker", "ray-user-node-type": group}


def head_tags() -> dict[str, str]:
    return {"ray-node-type": "head", "ray-user-node-type": RAY_HEAD_TYPE}


def ray_type(group: GroupSpec) -> str:
    """The group's node type in Ray's translation (the head's is `headgroup`)."""
    return RAY_HEAD_TYPE if group.is_head else group.name


def node_command(group: GroupSpec) -> list[str]:
    """`ray start --block` for one node of `group`, inside its container.

    The node's cloud instance id is its container's name (the container's hostname), as a
    pod's is its pod name. Workers wait (in the container) until the head's GCS port answers,
    so that every container can start at once; Ray finds each node's own address.
    """
    ray = raynodes.node_command(
        group,
        temp_dir=Path("/tmp/ray"),
        gcs_port=GCS_PORT,
        dashboard_port=DASHBOARD_PORT if group.is_head else None,
        client_server_port=CLIENT_SERVER_PORT if group.is_head else None,
        ray="ray",
        node_ip=None,
        head_address=HEAD_GROUP,
        dashboard_host="0.0.0.0",
        per_node_temp_dir=False,
    )
    script = 'export RAY_CLOUD_INSTANCE_ID="$(hostname)"; '
    if group.is_head:
        return ["bash", "-c", script + 'exec "$@"', "ray-node", *ray, "--no-monitor"]
    script += f'until (exec 3<>"/dev/tcp/{HEAD_GROUP}/{GCS_PORT}") 2>/dev/null; do sleep 0.2; done; exec "$@"'
    return ["bash", "-c", script, "ray-node", *ray]


def run_arguments(
    *,
    name: str,
    role: str,
    cluster_id: str,
    state_root: Path,
    network: str,
    image: str,
    env_file: Path,
    command: list[str],
    publish: dict[int, int] | None = None,
    mounts: list[str] | None = None,
    user: str | None = None,
    shm_bytes: int | None = None,
    gpus: bool = False,
    cpus: float | None = None,
    memory_bytes: int | None = None,
    labels: Mapping[str, str] | None = None,
    alias: str | None = None,
) -> list[str]:
    """`docker run` arguments for one container of the cluster (no secret among them)."""
    args = [
        "run",
        "--detach",
        f"--name={name}",
        f"--hostname={name}",
        f"--network={network}",
        f"--label={CLUSTER_LABEL}={cluster_id}",
        f"--label={ROLE_LABEL}={role}",
        f"--label={STATE_LABEL}={state_root}",
        f"--env-file={env_file}",
        "--init",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
    ]
    if alias:
        args.append(f"--network-alias={alias}")
    args += [f"--label={key}={value}" for key, value in (labels or {}).items()]
    for host_port, container_port in (publish or {}).items():
        args.append(f"--publish=127.0.0.1:{host_port}:{container_port}")
    args += [f"--mount={mount}" for mount in mounts or []]
    if user:
        args.append(f"--user={user}")
    if shm_bytes:
        args.append(f"--shm-size={shm_bytes}")
    if cpus:
        args.append(f"--cpus={cpus:g}")
    if memory_bytes:
        args.append(f"--memory={memory_bytes}")
    if gpus:
        args.append("--gpus=all")
    return [*args, image, *command]


@dataclass(frozen=True)
class ContainerCluster:
    """What every node container of one running docker cluster shares, as state.json records it."""

    state_dir: StateDir
    state: Mapping[str, Any]
    spec: ClusterSpec
    engine: Engine

    @property
    def cluster_id(self) -> str:
        return self.state["cluster_id"]

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir.root / "containers"

    def env_file(self, group: GroupSpec) -> Path:
        return self.secrets_dir / f"{group.name}.env"

    def container_name(self, group: GroupSpec) -> str:
        prefix = f"rl-{self.cluster_id[:8]}-{group.name}"
        return prefix if group.is_head else f"{prefix}-{secrets.token_hex(3)}"

    def run_node(self, group: GroupSpec, tags: Mapping[str, str] | None = None, show: bool = True) -> str:
        """Start one node of `group`; its container's name."""
        name = self.container_name(group)
        head = group.is_head
        token = f"type=bind,source={self.secrets_dir / 'auth_token'},target={TOKEN_IN_CONTAINER},readonly"
        publish = {self.state["dashboard_port"]: DASHBOARD_PORT, self.state["gcs_port"]: GCS_PORT} if head else None
        labels = {TAG_LABEL_PREFIX + key: value for key, value in (tags or {}).items()}
        args = run_arguments(
            name=name,
            role=group.name,
            cluster_id=self.cluster_id,
            state_root=self.state_dir.root,
            network=self.state["network"],
            image=self.state["images"][group.name],
            env_file=self.env_file(group),
            command=node_command(group),
            publish=publish,
            mounts=[token],
            shm_bytes=group.shm_bytes or (group.object_store_bytes or 0) + 256 * 1024**2,
            gpus=bool(group.gpus),
            cpus=group.cpu_limit,
            memory_bytes=group.memory_limit_bytes,
            labels=labels,
            alias=HEAD_GROUP if head else None,
        )
        self.engine.docker(*args, show=show)
        return name

    def remove_node(self, name: str, group: GroupSpec, hook: bool = True) -> str:
        """Take a node away as Kubernetes deletes a pod: its preStop hook (within the grace period),
        then SIGTERM and, after the grace period, SIGKILL; its output is kept in logs/. What the hook said."""
        said = ""
        if hook and group.pre_stop:
            try:
                result = self.engine.docker(
                    "exec", name, *group.pre_stop, check=False, timeout=group.termination_grace_s
                )
                said = (result.stdout + result.stderr).strip()
            except subprocess.TimeoutExpired:
                said = f"preStop hook still running after {group.termination_grace_s} s: stopped"
        self.save_logs(name)
        self.engine.docker("stop", f"--time={group.termination_grace_s}", name, check=False)
        self.engine.docker("rm", "--force", "--volumes", name, check=False)
        return said

    def discard(self, name: str) -> None:
        """Remove a container that no longer runs (its output kept in logs/)."""
        self.save_logs(name)
        self.engine.docker("rm", "--force", "--volumes", name, check=False)

    def save_logs(self, name: str) -> None:
        """The container's output, appended to logs/<container>.log before the container goes."""
        self.state_dir.logs.mkdir(parents=True, exist_ok=True)
        result = self.engine.docker("logs", name, check=False)
        if result.returncode == 0:
            with open(self.state_dir.logs / f"{name}.log", "a") as log:
                log.write(result.stdout + result.stderr)

    def containers(self, everything: bool = False) -> list[dict[str, Any]]:
        """This cluster's containers: name, role, state, Ray tags (running ones only unless `everything`)."""
        fields = '{{.Names}}\t{{.State}}\t{{.Label "' + ROLE_LABEL + '"}}\t{{.Labels}}'
        listing = self.engine.docker(
            "ps", "--all", f"--filter=label={CLUSTER_LABEL}={self.cluster_id}", "--format", fields, check=False
        ).stdout
        found = []
        for line in listing.splitlines():
            if not line.strip():
                continue
            name, status, role, labels = line.split("\t", 3)
            if status != "running" and not everything:
                continue
            tags = {}
            for pair in labels.split(","):
                key, _, value = pair.partition("=")
                if key.startswith(TAG_LABEL_PREFIX):
                    tags[key[len(TAG_LABEL_PREFIX) :]] = value
            found.append({"name": name, "state": status, "role": role, "tags": tags})
        return found

    def log_scaling(self, event: str) -> None:
        """One line of the scaling log (`.cluster/scaling.log`), with the time."""
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with _log_lock, open(self.state_dir.root / SCALING_LOG, "a") as log:
            log.write(f"{stamp} {event}\n")


def write_node_env_files(cluster: ContainerCluster, node_env: Mapping[str, str]) -> None:
    """One env file per group (mode 0600, read by the docker CLI): the settings every node has, then the
    group's own plain env from the manifest, then the group's Ray node type."""
    for group in cluster.spec.groups:
        env = {**node_env, **group.env, "RAY_NODE_TYPE_NAME": ray_type(group)}
        if group.is_head:
            # The GCS runs autoscaler v2's state service: what Ray's autoscaler on the host talks to.
            env["RAY_enable_autoscaler_v2"] = "1"
        write_private(cluster.env_file(group), "".join(f"{k}={v}\n" for k, v in env.items()))
