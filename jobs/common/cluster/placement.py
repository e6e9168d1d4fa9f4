"""Which Ray node runs what.

Every provider (local, KubeRay, cluster launcher) makes each worker group
advertise one custom resource, named here. Components ask for a sliver of it,
so Ray schedules them only onto that group, and the head, which advertises
neither, never gets training work:

    env runners          -> cpu-workers
    CPU learners         -> cpu-workers
    GPU learners         -> gpu-workers
    job drivers          -> head (one `driver_slots` unit per job)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

CPU_GROUP = "cpu-workers"
GPU_GROUP = "gpu-workers"
HEAD_GROUP = "head"

# group name -> the custom resource its nodes advertise
GROUP_RESOURCES: dict[str, str] = {
    CPU_GROUP: "cpu_group",
    GPU_GROUP: "gpu_group",
    HEAD_GROUP: "driver_slots",
}

# What one component asks of its group's resource: small enough never to be
# the limit (CPUs and GPUs are), large enough to be a real demand.
GROUP_SLIVER = 0.001

# What each worker group can ever offer (JSON; jobs.common.cluster.capacity reads it): every
# provider publishes it, derived from the cluster's RayCluster object.
CAPACITY_ENV_VAR = "RL_WORKER_GROUPS"


def group_request(group: str) -> dict[str, float]:
    return {GROUP_RESOURCES[group]: GROUP_SLIVER}


def cluster_has_groups(cluster_resources: Mapping[str, float], environ: Mapping[str, str] | None = None) -> bool:
    """True on our clusters, also while an autoscaled group has no node yet (its provider publishes the
    groups in RL_WORKER_GROUPS); False on a plain Ray cluster (then Ray places freely)."""
    environ = os.environ if environ is None else environ
    return GROUP_RESOURCES[CPU_GROUP] in cluster_resources or bool(environ.get(CAPACITY_ENV_VAR))
