"""What a cluster can ever offer, per worker group, and whether a plan fits.

Each provider publishes its worker groups' maximum sizes in RL_WORKER_GROUPS
(JSON, in `.cluster/env`, in every node's environment where the provider starts
the nodes, and in every job `make train|sweep` submits), derived from the
cluster's RayCluster object (controlplane/clusterspec.py): the local provider's
fixed nodes, the docker and KubeRay providers' maxReplicas. A plan
that asks for more than a group can ever hold would wait for resources
forever; it fails here instead, before submission, naming the groups.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.common.cluster.placement import CAPACITY_ENV_VAR, CPU_GROUP, GPU_GROUP
from jobs.common.errors import UserError

if TYPE_CHECKING:
    from jobs.common.rllib.plans import LearnerPlan, PlacementPlan


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


def check_fits(plan: PlacementPlan, groups: dict[str, GroupCapacity]) -> None:
    """Raise UserError if any component can never be scheduled."""
    problems = []
    learners = plan.learners
    runners = plan.env_runners

    requested_gpus = learners.num_learners * learners.num_gpus_per_learner
    if requested_gpus:
        gpu_group = groups.get(GPU_GROUP)
        offered = gpu_group.gpus if gpu_group else 0
        if requested_gpus > offered:
            listing = "; ".join(g.describe("GPUs") for g in groups.values() if g.name != "head")
            fallback = (
                "; or --gpu-fallback cpu to run the same placement with CPU learners"
                if not has_real_gpus(groups)
                else ""
            )
            problems.append(
                f"learners.num_gpus = {requested_gpus} asks for {requested_gpus} GPU learners, but the cluster "
                f"can offer at most {offered:g} GPUs: {listing}. Use num_gpus <= {offered:g}{fallback}"
            )

    # CPUs per group: every component that lands on a group, together.
    demand: dict[str, float] = {}
    demand[CPU_GROUP] = runners.num_env_runners * runners.num_cpus_per_env_runner
    group = learners.group
    demand[group] = demand.get(group, 0) + learners.num_learners * learners.num_cpus_per_learner
    for name, cpus in demand.items():
        capacity = groups.get(name)
        if capacity is None:
            if cpus:
                problems.append(f"the cluster has no '{name}' worker group, which this plan needs ({cpus:g} CPUs)")
            continue
        if cpus > capacity.cpus:
            problems.append(
                f"{_who(name, plan)} need {cpus:g} CPUs in {name}, but it can offer {capacity.describe('CPUs')}"
            )
        sizes = []
        if name == CPU_GROUP and runners.num_env_runners:
            sizes.append(("env_runners.num_cpus_per_env_runner", runners.num_cpus_per_env_runner))
        if learners.group == name and learners.num_learners:
            sizes.append(("learners.num_cpus_per_learner", learners.num_cpus_per_learner))
        for key, size in sizes:
            if size > capacity.cpus_per_node:
                problems.append(
                    f"{key} = {size:g}: one component needs {size:g} CPUs, "
                    f"more than a {name} node has ({capacity.cpus_per_node:g})"
                )
    if not problems:
        problems += _learners_pack(learners, groups)
    if problems:
        raise UserError("the plan does not fit this cluster:\n  - " + "\n  - ".join(problems))


def _learners_pack(learners: LearnerPlan, groups: dict[str, GroupCapacity]) -> list[str]:
    """Each learner needs its CPUs and its GPU on one node: the totals can fit
    while the nodes cannot (2 nodes x 2 GPUs x 3 CPUs hold 2 learners of 2 CPUs, not 4)."""
    capacity = groups.get(learners.group) if learners.group else None
    if capacity is None or not learners.num_learners or not isinstance(learners.num_cpus_per_learner, int):
        return []
    per_node = math.floor(capacity.cpus_per_node / learners.num_cpus_per_learner)
    if learners.num_gpus_per_learner:
        per_node = min(per_node, math.floor(capacity.gpus_per_node / learners.num_gpus_per_learner))
    fits = capacity.max_nodes * per_node
    if learners.num_learners <= fits:
        return []
    node = f"{capacity.cpus_per_node:g} CPUs" + (
        f", {capacity.gpus_per_node:g} GPUs" if learners.num_gpus_per_learner else ""
    )
    return [
        f"{learners.num_learners} learners with learners.num_cpus_per_learner = {learners.num_cpus_per_learner} "
        f"fit {per_node} to a {learners.group} node ({node}), at most {fits} on its {capacity.max_nodes} node(s): "
        "use fewer CPUs per learner or fewer learners"
    ]


def _who(group: str, plan: PlacementPlan) -> str:
    parts = []
    if group == CPU_GROUP and plan.env_runners.num_env_runners:
        parts.append(f"{plan.env_runners.num_env_runners} env runners")
    if plan.learners.group == group:
        parts.append(f"{plan.learners.num_learners} learners")
    return " + ".join(parts) or "components"
