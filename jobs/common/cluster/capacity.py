"""What a cluster can ever offer, per worker group (whether a plan fits it: fits.py).

Each provider publishes its worker groups' maximum sizes in RL_WORKER_GROUPS
(JSON, in `.cluster/env`, in every node's environment where the provider starts
the nodes, and in every job `make train|sweep` submits), derived from the
cluster's RayCluster object (controlplane/clusterspec.py): the local provider's
fixed nodes, the docker and KubeRay providers' maxReplicas. A plan
that asks for more than a group can ever hold would wait for resources
forever; jobs/common/cluster/fits.py fails it instead, before submission, naming the groups.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from jobs.common.cluster.placement import CAPACITY_ENV_VAR, GPU_GROUP
from jobs.common.errors import UserError


@dataclass(frozen=True)
class GroupCapacity:
    name: str
    max_nodes: int
    cpus_per_node: float
    gpus_per_node: float

    @property
    def cpus(self) -> float:
        return self.max_nodes * self.cpus_per_node

    @property
    def gpus(self) -> float:
        return self.max_nodes * self.gpus_per_node

    def describe(self, what: str) -> str:
        per_node = self.gpus_per_node if what == "GPUs" else self.cpus_per_node
        total = self.gpus if what == "GPUs" else self.cpus
        return f"{self.name} at most {total:g} {what} ({self.max_nodes} node(s) x {per_node:g})"


def to_env(groups: dict[str, dict[str, Any]]) -> str:
    return json.dumps(groups, separators=(",", ":"), sort_keys=True)


def from_env(environ: dict[str, str] | None = None) -> dict[str, GroupCapacity] | None:
    text = (environ if environ is not None else os.environ).get(CAPACITY_ENV_VAR)
    if not text:
        return None
    try:
        raw = json.loads(text)
        return {
            name: GroupCapacity(name, int(spec["max_nodes"]), float(spec["cpus"]), float(spec["gpus"]))
            for name, spec in raw.items()
        }
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{CAPACITY_ENV_VAR} is malformed ({err}); rerun `make cluster-up`") from None


def has_real_gpus(groups: dict[str, GroupCapacity]) -> bool:
    return groups.get(GPU_GROUP) is not None and groups[GPU_GROUP].gpus > 0
