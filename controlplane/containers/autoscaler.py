"""Ray's autoscaler (v2) for a docker cluster, run on the host beside the cluster's containers.

    python -m controlplane.containers.autoscaler --state-dir .cluster

What KubeRay runs as the autoscaler container of the head pod, with the RayCluster read
from the state folder instead of the Kubernetes API: each round, the RayCluster recorded
by `make cluster-up` is translated into autoscaler settings by Ray's own rules
(controlplane/clusterspec.py), with the provider set to the docker node provider
(controlplane/containers/node_provider.py), and Ray's v2 monitor loop runs against the
head's GCS, published on 127.0.0.1 only and guarded by the cluster's token.

It runs on the host because it acts on the Docker Engine (root on the host): no Ray
container gets the Docker socket. `cluster-up` starts it in its own session and records
its PID, `cluster-down` stops it by that PID (first, so that it adds nothing while the
containers go), and `cluster-up` starts it again if it died. It opens no port.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig, IConfigReader

from controlplane.clusterspec import ClusterSpec
from controlplane.containers.daemon import Engine
from controlplane.containers.nodes import ContainerCluster
from controlplane.lifecycle import SPEC_FILE
from controlplane.state import StateDir

NODE_PROVIDER = "controlplane.containers.node_provider.DockerNodeProvider"


def load_cluster(state_root: Path) -> ContainerCluster:
    state_dir = StateDir(state_root)
    state = state_dir.load()
    if not state:
        raise SystemExit(f"no docker cluster is recorded in {state_root}")
    return ContainerCluster(state_dir, state, ClusterSpec.load(state_root / SPEC_FILE), Engine(state["docker_host"]))


def autoscaling_config(state_root: Path) -> dict:
    """Ray's translation of the recorded RayCluster, with this node provider in KubeRay's place."""
    spec = ClusterSpec.load(state_root / SPEC_FILE)
    config = dict(spec.autoscaling_config)
    # KubeRay's provider settings are kept (no node updaters, no launch-config checks, foreground
    # launches): the nodes start Ray themselves, as pods do.
    config["provider"] = {**config["provider"], "type": "external", "module": NODE_PROVIDER,
                          "state_dir": str(state_root)}  # fmt: skip
    return config


class RecordedRayClusterReader(IConfigReader):
    """The recorded RayCluster, translated again whenever its file changes (KubeRay's reader reads the
    RayCluster object every round: an edit of the object changes the autoscaler's settings)."""

    def __init__(self, state_root: Path):
        self.state_root = state_root
        self._read_at: float | None = None
        self.refresh_cached_autoscaling_config()

    def get_cached_autoscaling_config(self) -> AutoscalingConfig:
        return self._cached

    def refresh_cached_autoscaling_config(self) -> None:
        changed_at = (self.state_root / SPEC_FILE).stat().st_mtime
        if changed_at != self._read_at:
            self._cached = AutoscalingConfig(autoscaling_config(self.state_root))
            self._read_at = changed_at


def wait_for_gcs(address: str, timeout_s: float = 120.0) -> None:
    from ray._raylet import GcsClient

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            GcsClient(address=address).internal_kv_get(b"session_name", b"session", timeout=5)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane.containers.autoscaler", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    state = StateDir(args.state_dir).load()
    if not state:
        print(f"no docker cluster is recorded in {args.state_dir}", file=sys.stderr)
        return 2
    address = f"127.0.0.1:{state['gcs_port']}"
    wait_for_gcs(address)
    from ray.autoscaler.v2.monitor import AutoscalerMonitor

    logging.getLogger(__name__).info("Ray's autoscaler v2 for %s, GCS at %s", args.state_dir, address)
    AutoscalerMonitor(address=address, config_reader=RecordedRayClusterReader(args.state_dir.resolve())).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
