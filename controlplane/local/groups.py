"""Which of the RayCluster's groups the local provider runs, and with how many GPUs.

The shapes themselves come from the overlay's RayCluster (controlplane/clusterspec.py):
here the local provider only decides that each group with a maxReplicas of at least
one runs as exactly one Ray node (fixed: nothing scales locally), and that a node has
no more GPUs than nvidia-smi lists on this machine (0 without a driver: never faked).
The GPU group is started even then, as the CPU stand-in for learners.
"""

from __future__ import annotations

import shutil
import subprocess

from controlplane.clusterspec import ClusterSpec


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


def for_this_machine(spec: ClusterSpec) -> tuple[ClusterSpec, list[str]]:
    """The spec with no more GPUs per node than this machine has."""
    gpus = detect_gpus()
    return spec.with_gpus_available(gpus, f"nvidia-smi lists {gpus} on this machine")


def fixed_nodes(spec: ClusterSpec) -> dict[str, int]:
    """Nodes per group on the local provider: one, or none for a group whose maxReplicas is 0."""
    return {group.name: 1 if group.max_replicas >= 1 else 0 for group in spec.groups}
