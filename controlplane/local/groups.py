"""The local cluster's shape, defined once: a head that takes no training
work, a CPU worker group and a GPU worker group, each a separate Ray node.

Each group advertises its custom resource (jobs.common.cluster.placement), which is
how jobs put env runners on CPU nodes and learners on GPU nodes. The GPU
group is started even on a machine without GPUs, so that placement can be
tested; it then advertises the GPUs nvidia-smi lists: 0, never fake ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from jobs.common.cluster.placement import CPU_GROUP, GPU_GROUP, GROUP_CAPACITY, GROUP_RESOURCES, HEAD_GROUP

# Concurrent job drivers the head accepts; further jobs wait in the Jobs API queue.
DRIVER_SLOTS = 4


@dataclass(frozen=True)
class NodeGroup:
    name: str
    num_cpus: int
    # None: let Ray detect the GPUs (real ones only).
    num_gpus: int | None
    resources: dict[str, float] = field(default_factory=dict)
    object_store_bytes: int = 512 * 1024**2


def detect_gpus() -> int:
    """NVIDIA GPUs on this machine (what Ray would detect), 0 without a driver."""
    nvidia_smi = shutil.which("nvidia-smi")
    if not nvidia_smi:
        return 0
    try:
        listing = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def local_groups() -> list[NodeGroup]:
    cpus = max(2, os.cpu_count() or 2)
    gpus = detect_gpus()
    return [
        NodeGroup(
            HEAD_GROUP,
            num_cpus=0,
            num_gpus=0,
            resources={GROUP_RESOURCES[HEAD_GROUP]: DRIVER_SLOTS},
            object_store_bytes=256 * 1024**2,
        ),
        NodeGroup(CPU_GROUP, num_cpus=cpus, num_gpus=0, resources={GROUP_RESOURCES[CPU_GROUP]: GROUP_CAPACITY}),
        # Two CPUs at least, so that two learners (GPU ones, or their CPU
        # stand-ins on a machine without GPUs) fit on the group's node.
        NodeGroup(
            GPU_GROUP,
            num_cpus=max(2, gpus),
            num_gpus=gpus,
            resources={GROUP_RESOURCES[GPU_GROUP]: GROUP_CAPACITY},
        ),
    ]


def capacity(groups: list[NodeGroup]) -> dict[str, dict[str, float]]:
    """What each group can ever offer (fixed nodes here: one node per group)."""
    return {g.name: {"max_nodes": 1, "cpus": g.num_cpus, "gpus": g.num_gpus or 0} for g in groups}


def group_of(resources: dict[str, float]) -> str:
    """Which group a node belongs to, from the resources it advertises."""
    for group, resource in GROUP_RESOURCES.items():
        if resource in resources:
            return group
    return "other"
