"""The local cluster's shape, defined once: a head that takes no training
work, a CPU worker group and a GPU worker group, each a separate Ray node.

Each group advertises its custom resource (jobs.common.placement), which is
how jobs put env runners on CPU nodes and learners on GPU nodes. The GPU
group is started even on a machine without GPUs, so that placement can be
tested; it then advertises 0 GPUs (Ray's own detection), never fake ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from jobs.common.placement import CPU_GROUP, GPU_GROUP, GROUP_CAPACITY, GROUP_RESOURCES, HEAD_GROUP

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


def local_groups() -> list[NodeGroup]:
    cpus = max(2, os.cpu_count() or 2)
    return [
        NodeGroup(
            HEAD_GROUP,
            num_cpus=0,
            num_gpus=0,
            resources={GROUP_RESOURCES[HEAD_GROUP]: DRIVER_SLOTS},
            object_store_bytes=256 * 1024**2,
        ),
        NodeGroup(CPU_GROUP, num_cpus=cpus, num_gpus=0, resources={GROUP_RESOURCES[CPU_GROUP]: GROUP_CAPACITY}),
        NodeGroup(GPU_GROUP, num_cpus=1, num_gpus=None, resources={GROUP_RESOURCES[GPU_GROUP]: GROUP_CAPACITY}),
    ]


def group_of(resources: dict[str, float]) -> str:
    """Which group a node belongs to, from the resources it advertises."""
    for group, resource in GROUP_RESOURCES.items():
        if resource in resources:
            return group
    return "other"
