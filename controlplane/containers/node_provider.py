"""Ray's autoscaler's node provider for a docker cluster: nodes are containers.

Ray's autoscaler v2 takes a node provider of one's own (`provider: {type: external,
module: ...}`) and drives it through its NodeProviderAdapter: it asks which nodes run
(`non_terminated_nodes`, with their Ray tags), launches nodes of a type when demand waits
(`create_node_with_resources_and_labels`) and terminates the ones idle past their group's
idleTimeoutSeconds, after draining them (`terminate_nodes`). Here a node is a container of
its group (controlplane/containers/nodes.py), its Ray tags are labels on it, and Ray matches
it to its Ray node by RAY_CLOUD_INSTANCE_ID, the container's name: the roles KubeRay's
operator and pods play on Kubernetes.

This runs in the autoscaler process on the host (controlplane/containers/autoscaler.py),
never in a Ray container: acting on the Docker Engine is root on the host.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import TAG_RAY_USER_NODE_TYPE

from controlplane.clusterspec import RAY_HEAD_TYPE
from controlplane.containers.nodes import ContainerCluster
from jobs.common.cluster.placement import HEAD_GROUP
from jobs.common.run.preemption import LOST, PREEMPTED, unregister_node

logger = logging.getLogger(__name__)

# A worker container that exited and that the autoscaler has not removed within this long is cleared
# away. (Ray stops a node it drained as idle before the autoscaler removes its container: such a
# container is exited for a moment, and removed by the autoscaler.)
LOST_AFTER_S = 30.0
# How often the idle times of the nodes are read from the GCS, for the scaling log's reasons.
IDLE_READ_EVERY_S = 5.0


class DockerNodeProvider(NodeProvider):
    def __init__(self, provider_config: dict[str, Any], cluster_name: str) -> None:
        super().__init__(provider_config, cluster_name)
        from controlplane.containers.autoscaler import load_cluster

        self.cluster: ContainerCluster = load_cluster(Path(provider_config["state_dir"]))
        self._lock = threading.Lock()
        self._removing: set[str] = set()
        self._listed: dict[str, dict[str, Any]] = {}
        self._tags: dict[str, dict[str, str]] = {}
        self._exited_since: dict[str, float] = {}
        self._idle_s: dict[str, float] = {}
        self._idle_read_at = 0.0

    # ------------------------------------------------------------------ what runs

    def non_terminated_nodes(self, tag_filters: dict[str, str]) -> list[str]:
        containers = self.cluster.containers(everything=True)
        running = {}
        now = time.monotonic()
        for container in containers:
            name = container["name"]
            if container["role"] == "s3" or name in self._removing:
                continue
            if container["state"] == "running":
                running[name] = container
                self._exited_since.pop(name, None)
            elif container["role"] != HEAD_GROUP:
                if name not in self._exited_since:
                    self._exited_since[name] = now
                    self._forget_if_lost(container)
                elif now - self._exited_since[name] > LOST_AFTER_S:
                    self._clear_away(container)
                    self._exited_since.pop(name, None)
        with self._lock:
            self._listed = running
        self._read_idle_times()
        return [name for name in running if all(self.node_tags(name).get(k) == v for k, v in tag_filters.items())]

    def _forget_if_lost(self, container: dict[str, Any]) -> None:
        """A worker container that exited while its Ray node is still alive in the GCS died by itself
        (killed, out of memory). Its raylet could not unregister, and the GCS would call the node alive
        until its health checks fail (15 s and more), placing new work there meanwhile: the GCS is told
        now, as the raylet would have told it. A node Ray stopped itself (drained as idle) is dead already."""
        from ray._raylet import GcsClient
        from ray.core.generated import gcs_pb2

        address = f"127.0.0.1:{self.cluster.state['gcs_port']}"
        try:
            gcs = GcsClient(address=address)
            lost = [info.node_id for info in gcs.get_all_node_info(timeout=10).values()
                    if info.instance_id == container["name"] and info.state == gcs_pb2.GcsNodeInfo.ALIVE]  # fmt: skip
            draining = gcs.get_draining_nodes()
            for node_id in lost:
                # A node drained as preempted (its preStop hook ran) that then died ended as preempted.
                reason = PREEMPTED if node_id.hex() in draining else LOST
                unregister_node(address, node_id, reason, f"its container {container['name']} exited")
            if lost:
                self.cluster.log_scaling(
                    f"lost       {container['role']} -1 {container['name']} (the container exited with its Ray node "
                    "alive: the GCS is told the node is gone)"
                )
        except Exception:  # noqa: BLE001 - the GCS finds out by itself, later
            logger.exception("telling the GCS that %s is gone failed", container["name"])

    def _clear_away(self, container: dict[str, Any]) -> None:
        """A worker container exited long ago and was never removed by the autoscaler: its output is kept
        and the container removed, so that what the engine holds is what runs."""
        self.cluster.discard(container["name"])

    def is_running(self, node_id: str) -> bool:
        with self._lock:
            return node_id in self._listed

    def is_terminated(self, node_id: str) -> bool:
        return not self.is_running(node_id)

    def node_tags(self, node_id: str) -> dict[str, str]:
        with self._lock:
            listed = self._listed.get(node_id, {}).get("tags", {})
            return {**listed, **self._tags.get(node_id, {})}

    def set_node_tags(self, node_id: str, tags: dict[str, str]) -> None:
        # Container labels are fixed at creation: later tags are kept here (what Ray reads back).
        with self._lock:
            self._tags.setdefault(node_id, {}).update(tags)

    def internal_ip(self, node_id: str) -> str:
        network = self.cluster.state["network"]
        template = '{{(index .NetworkSettings.Networks "' + network + '").IPAddress}}'
        return self.cluster.engine.docker("inspect", "--format", template, node_id, check=False).stdout.strip()

    def external_ip(self, node_id: str) -> str | None:
        return None

    # ------------------------------------------------------------------ scaling

    def create_node(self, node_config: dict[str, Any], tags: dict[str, str], count: int) -> dict[str, Any]:
        return self.create_node_with_resources_and_labels(node_config, tags, count, {}, {})

    def create_node_with_resources_and_labels(
        self, node_config: dict[str, Any], tags: dict[str, str], count: int, resources: dict, labels: dict
    ) -> dict[str, Any]:
        node_type = tags[TAG_RAY_USER_NODE_TYPE]
        group = self.cluster.spec.group(HEAD_GROUP if node_type == RAY_HEAD_TYPE else node_type)
        demand = self._demand()
        created = {}
        for _ in range(count):
            name = self.cluster.run_node(group, tags, show=False)
            created[name] = tags
            running = sum(1 for c in self.cluster.containers() if c["role"] == group.name)
            self.cluster.log_scaling(
                f"scale-up   {group.name} +1 {name} ({running} of max {group.max_replicas}; pending demand: {demand})"
            )
        return created

    def terminate_node(self, node_id: str) -> None:
        self.terminate_nodes([node_id])

    def terminate_nodes(self, node_ids: list[str]) -> None:
        """Each node goes as a pod does (preStop hook, then SIGTERM, SIGKILL after the grace period), in
        the background: the autoscaler's next round does not wait for a hook."""
        for node_id in node_ids:
            with self._lock:
                if node_id in self._removing:
                    continue
                self._removing.add(node_id)
                container = self._listed.pop(node_id, None)
            role = container["role"] if container else self._role_of(node_id)
            if role == HEAD_GROUP:
                logger.warning("not removing the head container %s", node_id)
                self._removing.discard(node_id)
                continue
            threading.Thread(target=self._remove, args=(node_id, role, self._idle_s.get(node_id)), daemon=False).start()

    def _remove(self, name: str, role: str, idle_s: float | None) -> None:
        try:
            group = self.cluster.spec.group(role)
            if idle_s is None:
                why = "idle time unknown"
            else:
                why = f"idle {idle_s:.0f} s, idleTimeoutSeconds {group.idle_timeout_s:g}" if idle_s else "busy"
            self.cluster.log_scaling(f"scale-down {role} -1 {name} (Ray's autoscaler; last seen {why})")
            said = self.cluster.remove_node(name, group)
            if said:
                logger.info("preStop hook of %s: %s", name, said.splitlines()[-1])
        except Exception:  # noqa: BLE001 - logged; the next round lists what is left
            logger.exception("removing %s failed", name)
        finally:
            with self._lock:
                self._removing.discard(name)
                self._exited_since.pop(name, None)

    def _role_of(self, name: str) -> str:
        found = [c for c in self.cluster.containers(everything=True) if c["name"] == name]
        return found[0]["role"] if found else ""

    # ------------------------------------------------------------------ what the GCS says (for the log)

    def _demand(self) -> str:
        from controlplane.raystatus import pending_demand

        try:
            return pending_demand(f"127.0.0.1:{self.cluster.state['gcs_port']}").describe()
        except Exception as err:  # noqa: BLE001 - only for the log line
            return f"unknown ({type(err).__name__})"

    def _read_idle_times(self) -> None:
        """How long each node has been idle, as the GCS last said (a node drained as idle is gone from
        it by the time the autoscaler removes its container)."""
        from ray.autoscaler.v2.sdk import get_cluster_status

        if time.monotonic() - self._idle_read_at < IDLE_READ_EVERY_S:
            return
        self._idle_read_at = time.monotonic()
        try:
            status = get_cluster_status(f"127.0.0.1:{self.cluster.state['gcs_port']}", timeout=5)
        except Exception:  # noqa: BLE001 - only for the log line
            return
        idle = {n.instance_id: n.resource_usage.idle_time_ms / 1000 for n in status.idle_nodes if n.resource_usage}
        busy = {n.instance_id: 0.0 for n in status.active_nodes}
        self._idle_s.update({**busy, **idle})
