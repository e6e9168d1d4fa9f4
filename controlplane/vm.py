"""PROVIDER=vm: the Ray cluster launcher on AWS, driven by cluster.yaml.

    up:     a Ray token in the state folder, a copy of cluster.yaml there whose
            file_mounts carry that token to every node, `ray up` of the copy, then
            `ray dashboard` (an SSH tunnel to the dashboard) in the background,
            and the client env file.
    down:   stop the tunnel, `ray down` of the same copy.
    status: `ray exec <copy> "ray status"`.

cluster.yaml is read as YAML: the worker groups' capacity comes from its
`available_node_types`, the region from `provider.region`, the storage URI
from the environment its start commands export. Its node types are the gpu
overlay's RayCluster groups as Ray's autoscaler reads them (KubeRay's rules):
`differences_from` names every field that is not, and a unit test holds it. AWS credentials for launching
come from the user's own AWS configuration; the nodes reach S3 through their
instance profile, so no key is written anywhere.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

from controlplane import processes
from controlplane.clusterspec import RAY_HEAD_TYPE, ClusterSpec
from controlplane.errors import ClusterError
from controlplane.ports import wait_for_port
from controlplane.provider import ClientSettings
from controlplane.state import REPO_ROOT, StateDir, write_private
from jobs.common.cluster.placement import HEAD_GROUP
from jobs.common.cluster.ports import DASHBOARD_PORT

CONFIG = REPO_ROOT / "cluster.yaml"
# The overlay whose RayCluster cluster.yaml's node types follow (a cloud cluster with GPU nodes).
VM_OVERLAY = "gpu"
# Where every node expects the token (cluster.yaml's file_mounts).
NODE_TOKEN_PATH = "/home/ray/.ray/auth_token"


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ClusterError(f"cannot read the cluster launcher config {path}: {err}") from None
    if not isinstance(config, dict) or "available_node_types" not in config:
        raise ClusterError(f"{path} is not a Ray cluster launcher config (no available_node_types)")
    return config


def worker_groups(config: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each worker node type's maximum shape: max_workers nodes of its resources."""
    groups = {}
    for name, node_type in config["available_node_types"].items():
        if name == config.get("head_node_type", HEAD_GROUP):
            continue
        resources = node_type.get("resources", {})
        groups[name] = {
            "max_nodes": int(node_type.get("max_workers", 0)),
            "cpus": float(resources.get("CPU", 0)),
            "gpus": float(resources.get("GPU", 0)),
        }
    return groups


def differences_from(spec: ClusterSpec, config: dict[str, Any]) -> list[str]:
    """Each field of the launcher config that differs from the RayCluster's translation into autoscaler
    settings (per node type: min_workers, max_workers, idle_timeout_s and every resource; and the
    idle timeout, upscaling speed and max_workers of the whole cluster), as `field: ours != RayCluster's`."""
    wanted = spec.autoscaling_config
    types = {
        HEAD_GROUP if name == RAY_HEAD_TYPE else name: node for name, node in wanted["available_node_types"].items()
    }
    found = {name: node for name, node in config.get("available_node_types", {}).items()}
    problems = []
    for name in sorted(set(types) | set(found)):
        if name not in found or name not in types:
            where = "cluster.yaml" if name not in found else spec.source
            problems.append(f"available_node_types.{name}: missing from {where}")
            continue
        ours, theirs = found[name], types[name]
        fields = ["min_workers", "max_workers", "idle_timeout_s"] if name != HEAD_GROUP else []
        for field in fields:
            if ours.get(field) != theirs.get(field):
                problems.append(f"available_node_types.{name}.{field}: {ours.get(field)} != {theirs.get(field)}")
        resources = set(ours.get("resources", {})) | set(theirs["resources"])
        for resource in sorted(resources):
            mine, other = ours.get("resources", {}).get(resource), theirs["resources"].get(resource)
            if mine != other:
                problems.append(f"available_node_types.{name}.resources.{resource}: {mine} != {other}")
    for field in ("idle_timeout_minutes", "upscaling_speed", "max_workers"):
        if config.get(field) != wanted.get(field):
            problems.append(f"{field}: {config.get(field)} != {wanted.get(field)}")
    return problems


def node_environment(config: dict[str, Any]) -> dict[str, str]:
    """The variables the head's start commands export (`export A=1 B=2; ...`)."""
    variables: dict[str, str] = {}
    for command in config.get("head_start_ray_commands", []):
        for statement in command.split(";"):
            words = shlex.split(statement)
            if words[:1] == ["export"]:
                variables.update(word.split("=", 1) for word in words[1:] if "=" in word)
    return variables


class VmProvider:
    name = "vm"

    def __init__(self, state_dir: StateDir, dashboard_port: int = DASHBOARD_PORT, dry_run: bool = False):
        self.state_dir = state_dir
        self.dashboard_port = dashboard_port
        self.dry_run = dry_run
        self.config = load_config()

    @property
    def token_file(self) -> Path:
        return self.state_dir.root / "vm-auth-token"

    @property
    def launcher_config(self) -> Path:
        """cluster.yaml with its token mount pointing into this state folder."""
        return self.state_dir.root / "cluster.yaml"

    def _write_launcher_config(self) -> None:
        config = dict(self.config)
        config["file_mounts"] = {**config.get("file_mounts", {}), NODE_TOKEN_PATH: str(self.token_file)}
        write_private(self.launcher_config, yaml.safe_dump(config, sort_keys=False))

    def _ray(self, *args: str) -> int:
        command = ["ray", *args]
        print("+ " + shlex.join(command), flush=True)
        if self.dry_run:
            return 0
        return subprocess.run(command, cwd=REPO_ROOT).returncode

    def up(self) -> int:
        if not self.dry_run:
            if not self.token_file.exists():
                self.state_dir.root.mkdir(parents=True, exist_ok=True)
                write_private(self.token_file, os.urandom(32).hex())
            self._write_launcher_config()
        if self._ray("up", str(self.launcher_config), "--yes") != 0:
            raise ClusterError(
                "`ray up cluster.yaml` failed (see its output above); check your AWS credentials and region"
            )
        tunnel = ["ray", "dashboard", str(self.launcher_config), "--port", str(self.dashboard_port)]
        print("+ " + shlex.join(tunnel) + "  (in the background)", flush=True)
        if self.dry_run:
            return 0
        pid = processes.start_in_own_session(tunnel, dict(os.environ), self.state_dir.logs / "vm-dashboard.log")
        self.state_dir.save({"provider": self.name, "cluster_id": "vm", "pids": {"dashboard": pid}})
        if not wait_for_port(self.dashboard_port, 120):
            raise ClusterError(f"the dashboard tunnel to 127.0.0.1:{self.dashboard_port} did not open")
        exported = node_environment(self.config)
        settings = ClientSettings(
            ray_address=f"http://127.0.0.1:{self.dashboard_port}",
            auth_token_path=self.token_file,
            storage_uri=exported["RL_STORAGE_URI"],
            aws_region=self.config["provider"]["region"],
            worker_groups=worker_groups(self.config),
            state_dir=self.state_dir.root,
        )
        self.state_dir.write_client_settings(
            settings,
            "Client settings for the cluster-launcher cluster in cluster.yaml (dashboard through `ray dashboard`).",
        )
        print(f"client settings: {self.state_dir.env_file}  (use: source {self.state_dir.env_file})")
        return 0

    def down(self) -> int:
        state = self.state_dir.load() or {}
        processes.stop_groups(state.get("pids", {}).values())
        if not self.launcher_config.exists() and not self.dry_run:
            self._write_launcher_config()
        self._ray("down", str(self.launcher_config), "--yes")
        if not self.dry_run:
            self.state_dir.clear()
        return 0

    def status(self) -> int:
        return self._ray("exec", str(self.launcher_config), "ray status")
