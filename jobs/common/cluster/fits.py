"""Whether what a job asks for fits the cluster, answered in one place, before anything is submitted.

A plan that asks for more than a worker group can ever hold would wait for resources forever; it
fails here instead, naming the groups and what would fit:

    check_placement   a training run's plan: every env runner and learner at once (jobs.train)
    check_trial_fits  a sweep's trials: one at a time per node, each on one node (jobs.sweep)

Both read the groups' capacity (capacity.py: RL_WORKER_GROUPS) and the run's plan (plans.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from jobs.common.cluster.capacity import GroupCapacity, has_real_gpus
from jobs.common.cluster.placement import CPU_GROUP, GPU_GROUP
from jobs.common.cluster.plans import LearnerPlan, PlacementPlan, placement_plan
from jobs.common.errors import UserError

if TYPE_CHECKING:
    from jobs.common.schema.experiment import Experiment
    from jobs.common.schema.sweep import Sweep


def check_placement(experiment: Experiment, groups: dict[str, GroupCapacity] | None) -> None:
    """A training run: its plan, every component at once, against the cluster's capacity."""
    try:
        plan = placement_plan(experiment, groups)
    except ValueError as err:
        raise UserError(f"experiment '{experiment.name}': {err}") from None
    if groups is not None:
        check_fits(plan, groups)


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
    # Learners that share the env runners' cores reserve none: they train while the runners wait.
    demand[group] = demand.get(group, 0) + learners.num_learners * learners.reserved_cpus_per_learner
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
    reserved = learners.reserved_cpus_per_learner
    if capacity is None or not learners.num_learners or not isinstance(reserved, int) or not reserved:
        return []
    per_node = math.floor(capacity.cpus_per_node / reserved)
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


def check_trial_fits(sweep: Sweep, groups: dict[str, GroupCapacity] | None) -> None:
    """A sweep: each trial is one actor, and must fit on one node of its worker group (trials wait for
    each other, so their total does not matter)."""
    if groups is None:
        return
    wanted = sweep.spec.resources_per_trial
    group_name = GPU_GROUP if wanted.gpus > 0 else CPU_GROUP
    group = groups.get(group_name)
    listing = "; ".join(
        f"{g.name}: {g.cpus_per_node:g} CPUs, {g.gpus_per_node:g} GPUs per node" for g in groups.values()
    )
    if group is None or group.max_nodes < 1:
        raise UserError(
            f"sweep '{sweep.source}': resources_per_trial asks for {wanted.gpus:g} GPUs and {wanted.cpus:g} CPUs, "
            f"which only the {group_name} group could run, and this cluster has none ({listing})"
        )
    if wanted.cpus > group.cpus_per_node or wanted.gpus > group.gpus_per_node:
        raise UserError(
            f"sweep '{sweep.source}': resources_per_trial ({wanted.cpus:g} CPUs, {wanted.gpus:g} GPUs) is more than "
            f"one {group_name} node has ({group.cpus_per_node:g} CPUs, {group.gpus_per_node:g} GPUs); a trial "
            f"runs on one node: use at most that ({listing})"
        )
