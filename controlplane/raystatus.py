"""What Ray says of a running cluster: its nodes by group, and the demand still waiting for them.

`make cluster-status` prints, for every provider that runs its own nodes, a table of the groups
(nodes alive now, the fewest and most the group may have, one node's shape) and the pending
demand: the resource requests of tasks, actors and placement groups that no node can take yet,
which is what makes Ray's autoscaler add nodes (read from the GCS, as `ray status` reads it).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane.clusterspec import ClusterSpec
from jobs.common.cluster.placement import GROUP_RESOURCES
from jobs.common.reports.tables import table


def group_of(resources: Mapping[str, float]) -> str:
    """Which group a node belongs to, from the custom resource it advertises."""
    for group, resource in GROUP_RESOURCES.items():
        if resource in resources:
            return group
    return "other"


def list_nodes(dashboard_url: str) -> list[dict[str, Any]]:
    """Nodes as the Ray state API reports them, with their group."""
    from ray.util.state import list_nodes as ray_list_nodes

    nodes = []
    for node in ray_list_nodes(address=dashboard_url, detail=True, raise_on_missing_output=False):
        resources = dict(node.resources_total or {})
        nodes.append(
            {
                "node_id": node.node_id,
                "state": node.state,
                "group": group_of(resources),
                "cpus": resources.get("CPU", 0.0),
                "gpus": resources.get("GPU", 0.0),
                "start_time_ms": node.start_time_ms,
            }
        )
    return nodes


@dataclass
class Demand:
    """What waits for resources, and the nodes Ray's autoscaler is bringing up for it."""

    requests: Counter = field(default_factory=Counter)  # bundle (as text) -> how many
    launching: Counter = field(default_factory=Counter)  # node type -> nodes requested or starting

    def describe(self) -> str:
        if not self.requests:
            return "none"
        return "; ".join(f"{count} x {bundle}" for bundle, count in self.requests.most_common())


def _bundle(bundle: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(bundle.items())) + "}"


def pending_demand(gcs_address: str, timeout_s: int = 10) -> Demand:
    """The GCS's view of unmet demand and of the autoscaler's launches (`ray status`'s source)."""
    from ray.autoscaler.v2.sdk import get_cluster_status

    status = get_cluster_status(gcs_address, timeout=timeout_s)
    demand = Demand()
    summary = status.resource_demands
    for item in [*summary.ray_task_actor_demand, *summary.placement_group_demand, *summary.cluster_constraint_demand]:
        for request in item.bundles_by_count:
            demand.requests[_bundle(request.bundle)] += request.count
    for launch in status.pending_launches:
        demand.launching[launch.ray_node_type_name] += launch.count
    for node in status.pending_nodes:
        demand.launching[node.ray_node_type_name] += 1
    return demand


def groups_table(
    spec: ClusterSpec, nodes: list[dict[str, Any]], limits: Mapping[str, tuple[int, int]], demand: Demand | None
) -> str:
    """One row per group: nodes alive now, min and max, one node's shape (and nodes on their way)."""
    alive = Counter(node["group"] for node in nodes if node["state"] == "ALIVE")
    rows = []
    for group in spec.groups:
        low, high = limits[group.name]
        coming = demand.launching.get(group.name, 0) if demand else 0
        now = f"{alive.get(group.name, 0)}" + (f" (+{coming} starting)" if coming else "")
        rows.append((group.name, now, str(low), str(high), f"{group.cpus} CPU, {group.gpus} GPU"))
    return table(("GROUP", "NODES", "MIN", "MAX", "PER NODE"), rows, indent="  ", rule=False)


def nodes_table(nodes: list[dict[str, Any]]) -> str:
    rows = [
        (node["group"], node["state"], f"{node['cpus']:g}", f"{node['gpus']:g}", node["node_id"][:12])
        for node in sorted(nodes, key=lambda n: (n["group"], n["state"], n["node_id"]))
    ]
    return table(("GROUP", "STATE", "CPUS", "GPUS", "NODE ID"), rows, indent="  ", rule=False)


def wait_for_jobs_api(dashboard_url: str, token_path: Path, timeout_s: float) -> None:
    """Until the Jobs API answers a listing with the token; TimeoutError saying what it answered last."""
    token = token_path.read_text().strip()
    request = urllib.request.Request(f"{dashboard_url}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout_s
    problem = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status == 200:
                    return
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            problem = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            problem = str(err)
        time.sleep(0.5)
    raise TimeoutError(f"the Jobs API never answered ({problem})")
