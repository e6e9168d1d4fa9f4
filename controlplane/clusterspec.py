"""The cluster's shape, from one source: the RayCluster object of a kustomize overlay.

`kustomize build k8s/overlays/<OVERLAY>` makes the RayCluster that KubeRay runs on
Kubernetes; every other provider reads the same object:

    PROVIDER=local    one Ray process per group (fixed), with each group's per-node shape
    PROVIDER=docker   the head and worker pods as containers, scaled by Ray's autoscaler
    PROVIDER=kuberay  the overlay itself, applied with kubectl
    PROVIDER=vm       cluster.yaml, whose node types tests/unit/test_clusterspec.py
                      checks against the gpu overlay, field by field

A group's per-node resources come from Ray's own translation of a RayCluster into
autoscaler settings (`ray.autoscaler._private.kuberay.autoscaling_config`, what
KubeRay's autoscaler runs): rayStartParams (num-cpus, num-gpus, memory,
resources), else the Ray container's limits, else its requests. What jobs may
ask of each group (RL_WORKER_GROUPS) is that shape times the nodes a provider
can ever run: `maxReplicas` where Ray's autoscaler scales the group, one node
where the local provider runs it fixed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane.errors import ClusterError
from controlplane.state import REPO_ROOT
from jobs.common.cluster.placement import HEAD_GROUP

OVERLAYS_DIR = REPO_ROOT / "k8s" / "overlays"
# Where the local and Docker providers read the cluster from unless OVERLAY= says otherwise.
LOCAL_OVERLAY = "local"
# Ray's translation names the head's node type this; our placement (and RL_WORKER_GROUPS) calls it `head`.
RAY_HEAD_TYPE = "headgroup"
GPU_LIMIT = "nvidia.com/gpu"


def overlay_names() -> list[str]:
    return sorted(p.parent.name for p in OVERLAYS_DIR.glob("*/kustomization.yaml"))


def resolve_overlay(overlay: str) -> str:
    """`local` -> `k8s/overlays/local`; a folder holding a kustomization.yaml is taken as it is."""
    if "/" not in overlay and (OVERLAYS_DIR / overlay / "kustomization.yaml").is_file():
        return f"k8s/overlays/{overlay}"
    path = Path(overlay).resolve()
    if (path / "kustomization.yaml").is_file():
        return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
    raise ClusterError(
        f"OVERLAY={overlay!r} is neither one of k8s/overlays ({', '.join(overlay_names())}) nor a folder "
        "holding a kustomization.yaml"
    )


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "4Gi", 2) as a number."""
    from ray.autoscaler._private.kuberay.utils import parse_quantity

    return float(parse_quantity(str(value)))


@dataclass(frozen=True)
class GroupSpec:
    """One group of the RayCluster: what one of its nodes is, and how many there may be."""

    name: str  # `head` for the head group
    image: str
    # Ray's translation of the group: CPU, GPU, memory (bytes) and the custom resources.
    resources: Mapping[str, float]
    ray_start_params: Mapping[str, str]
    replicas: int
    min_replicas: int
    max_replicas: int
    idle_timeout_s: float | None = None
    cpu_limit: float | None = None
    memory_limit_bytes: int | None = None
    shm_bytes: int | None = None
    # The Ray container's plain name/value env (never a secretKeyRef: providers bring the keys).
    env: Mapping[str, str] = field(default_factory=dict)
    pre_stop: tuple[str, ...] | None = None
    termination_grace_s: int = 30

    @property
    def is_head(self) -> bool:
        return self.name == HEAD_GROUP

    @property
    def cpus(self) -> int:
        return int(self.resources.get("CPU", 0))

    @property
    def gpus(self) -> int:
        return int(self.resources.get("GPU", 0))

    @property
    def memory_bytes(self) -> int | None:
        memory = self.resources.get("memory")
        return int(memory) if memory else None

    @property
    def custom_resources(self) -> dict[str, float]:
        return {k: v for k, v in self.resources.items() if k not in ("CPU", "GPU", "memory")}

    @property
    def object_store_bytes(self) -> int | None:
        value = self.ray_start_params.get("object-store-memory")
        return int(value) if value else None

    def describe(self) -> str:
        shape = f"{self.cpus} CPU, {self.gpus} GPU"
        if self.memory_bytes:
            shape += f", {self.memory_bytes / 1024**3:g} GiB"
        if self.is_head:
            return f"{self.name}: {shape}"
        idle = f", idle {self.idle_timeout_s:g} s" if self.idle_timeout_s is not None else ""
        return f"{self.name}: {self.min_replicas}-{self.max_replicas} x ({shape}){idle}"


@dataclass(frozen=True)
class ClusterSpec:
    """The RayCluster object of one overlay and what every provider reads of it."""

    source: str
    raycluster: Mapping[str, Any]
    groups: tuple[GroupSpec, ...]
    autoscaling_config: Mapping[str, Any]

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_overlay(cls, overlay: str = LOCAL_OVERLAY) -> ClusterSpec:
        from controlplane.kuberay import manifests

        path = resolve_overlay(overlay)
        docs = manifests.objects(manifests.render(path))
        clusters = [doc for doc in docs if doc.get("kind") == "RayCluster"]
        if len(clusters) != 1:
            raise ClusterError(f"{path} renders {len(clusters)} RayCluster objects; the providers need exactly one")
        return cls.from_object(clusters[0], source=path)

    @classmethod
    def from_object(cls, raycluster: Mapping[str, Any], source: str = "RayCluster") -> ClusterSpec:
        obj = copy.deepcopy(dict(raycluster))
        obj.setdefault("metadata", {}).setdefault("namespace", "default")
        config = translate(obj, source)
        spec = obj["spec"]
        groups = [_group(HEAD_GROUP, spec["headGroupSpec"], config["available_node_types"][RAY_HEAD_TYPE], True)]
        for worker in spec.get("workerGroupSpecs", []):
            groups.append(_group(worker["groupName"], worker, config["available_node_types"][worker["groupName"]]))
        return cls(source=source, raycluster=obj, groups=tuple(groups), autoscaling_config=config)

    @classmethod
    def load(cls, path: Path) -> ClusterSpec:
        """What a provider recorded in its state folder when it started the cluster."""
        saved = json.loads(path.read_text())
        return cls.from_object(saved["raycluster"], source=saved["source"])

    def save(self, path: Path) -> None:
        from controlplane.state import write_private

        write_private(path, json.dumps({"source": self.source, "raycluster": self.raycluster}, indent=1) + "\n")

    # ------------------------------------------------------------------ groups

    @property
    def head(self) -> GroupSpec:
        return self.groups[0]

    @property
    def workers(self) -> tuple[GroupSpec, ...]:
        return self.groups[1:]

    def group(self, name: str) -> GroupSpec:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)

    @property
    def idle_timeout_s(self) -> float:
        return float(self.autoscaling_config["idle_timeout_minutes"]) * 60

    def capacity(self, nodes: Mapping[str, int] | None = None) -> dict[str, dict[str, float]]:
        """RL_WORKER_GROUPS: each group's per-node CPUs and GPUs and the most nodes it can have
        (`nodes`, else maxReplicas; the head is always one node)."""
        found = {}
        for group in self.groups:
            if group.is_head:
                count = 1
            else:
                count = nodes[group.name] if nodes is not None else group.max_replicas
            found[group.name] = {"cpus": group.cpus, "gpus": group.gpus, "max_nodes": count}
        return found

    def describe(self) -> str:
        return f"groups from {self.source}:\n  " + "\n  ".join(group.describe() for group in self.groups)

    # ------------------------------------------------------------------ the host

    def with_gpus_available(self, available: int, why: str) -> tuple[ClusterSpec, list[str]]:
        """The same cluster where a node can have at most `available` GPUs (a laptop, an engine without
        the NVIDIA runtime): never fake GPUs. Changed in the object itself, so that Ray's translation,
        the node commands and RL_WORKER_GROUPS all follow."""
        obj = copy.deepcopy(dict(self.raycluster))
        notes = []
        spec = obj["spec"]
        for name, group in [(HEAD_GROUP, spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec.get(
                "workerGroupSpecs", [])]:  # fmt: skip
            declared = self.group(name).gpus
            if declared <= available:
                continue
            params = group.setdefault("rayStartParams", {})
            params["num-gpus"] = str(available)
            for kind in ("limits", "requests"):
                resources = group["template"]["spec"]["containers"][0].get("resources", {}).get(kind, {})
                if GPU_LIMIT in resources:
                    if available:
                        resources[GPU_LIMIT] = str(available)
                    else:
                        del resources[GPU_LIMIT]
            notes.append(f"{name}: {available} GPUs per node instead of the {declared} declared ({why})")
        if not notes:
            return self, []
        return ClusterSpec.from_object(obj, source=self.source), notes


def translate(raycluster: Mapping[str, Any], source: str = "RayCluster") -> dict[str, Any]:
    """Ray's own RayCluster -> autoscaler settings (KubeRay's rules), with its errors made ours."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    try:
        return _derive_autoscaling_config_from_ray_cr(copy.deepcopy(dict(raycluster)))
    except (ValueError, KeyError, TypeError, AssertionError) as err:
        raise ClusterError(f"{source}: Ray cannot read the RayCluster's groups ({type(err).__name__}: {err})") from None
    except Exception as err:  # noqa: BLE001 - jsonschema's ValidationError and the like, from validate_config
        raise ClusterError(f"{source}: Ray rejects the autoscaler settings made from it: {err}") from None


def _group(name: str, group: Mapping[str, Any], node_type: Mapping[str, Any], head: bool = False) -> GroupSpec:
    pod = group["template"]["spec"]
    container = pod["containers"][0]
    limits = container.get("resources", {}).get("limits", {})
    hook = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    shm = None
    for volume in pod.get("volumes", []):
        empty_dir = volume.get("emptyDir") or {}
        if mounts.get(volume["name"]) == "/dev/shm" and empty_dir.get("medium") == "Memory":
            shm = int(quantity(empty_dir["sizeLimit"])) if "sizeLimit" in empty_dir else None
    # numOfHosts pods per replica, as Ray's translation counts them.
    hosts = int(group.get("numOfHosts", 1))
    return GroupSpec(
        name=name,
        image=container["image"],
        resources=dict(node_type["resources"]),
        ray_start_params={k: str(v) for k, v in group.get("rayStartParams", {}).items()},
        replicas=1 if head else int(group.get("replicas", group["minReplicas"])) * hosts,
        min_replicas=1 if head else int(node_type["min_workers"]),
        max_replicas=1 if head else int(node_type["max_workers"]),
        idle_timeout_s=node_type.get("idle_timeout_s"),
        cpu_limit=quantity(limits["cpu"]) if "cpu" in limits else None,
        memory_limit_bytes=int(quantity(limits["memory"])) if "memory" in limits else None,
        shm_bytes=shm,
        env={e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e},
        pre_stop=tuple(hook) if hook else None,
        termination_grace_s=int(pod.get("terminationGracePeriodSeconds", 30)),
    )
