"""`ray start` command lines for one node of a RayCluster group, as KubeRay's operator writes them.

The operator starts every pod's Ray with the group's rayStartParams, and fills in
--num-cpus, --num-gpus and --memory from the Ray container's limits where the params
leave them out; Ray's translation of the group (controlplane/clusterspec.py) has
the same numbers, and they are written here. The local provider runs these as plain
`ray start --block` processes (one fixed, real raylet per group, owned by us: its PID
is its process group), the docker provider inside each node's container.

Every port a node opens is chosen here from free ports on 127.0.0.1, so
several nodes share the machine without clashes. Ray 2.60 still binds its
GCS, raylet and agent gRPC ports on all interfaces; they require the token.
"""

from __future__ import annotations

import json
from pathlib import Path

from controlplane.clusterspec import GroupSpec
from controlplane.ports import free_ports
from controlplane.processes import venv_executable

# rayStartParams a provider sets itself (addresses, ports, folders), never taken from the manifest.
PROVIDER_PARAMS = {
    "address", "block", "head", "port", "node-ip-address", "temp-dir", "dashboard-host", "dashboard-port",
    "ray-client-server-port", "num-cpus", "num-gpus", "memory", "resources", "min-worker-port", "max-worker-port",
}  # fmt: skip

PER_NODE_PORTS = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)


def ray_binary() -> str:
    return venv_executable("ray", "install the pinned Ray (make venv)")


def node_command(
    group: GroupSpec,
    *,
    temp_dir: Path,
    gcs_port: int,
    dashboard_port: int | None = None,
    client_server_port: int | None = None,
    ray: str | None = None,
    node_ip: str | None = "127.0.0.1",
    head_address: str = "127.0.0.1",
    dashboard_host: str = "127.0.0.1",
    per_node_temp_dir: bool = True,
) -> list[str]:
    """The command that starts one node of `group`; the head when dashboard_port is given.

    The defaults are the local provider's (every node on 127.0.0.1, this venv's
    `ray`); PROVIDER=docker runs the image's `ray` in containers, with the head
    at its container name and the node's address left to Ray.
    """
    head = dashboard_port is not None
    ports = dict(zip(PER_NODE_PORTS, free_ports(len(PER_NODE_PORTS)), strict=True))
    cmd = [ray or ray_binary(), "start", "--block", "--disable-usage-stats"]
    if node_ip:
        cmd += [f"--node-ip-address={node_ip}"]
    if head:
        cmd += [
            "--head",
            f"--port={gcs_port}",
            f"--dashboard-host={dashboard_host}",
            f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={client_server_port}",
        ]
    else:
        cmd += [f"--address={head_address}:{gcs_port}"]
    # One temp dir per node where nodes share a machine: they must not share a session
    # folder, or one node's runtime-env agent re-extracts a job's working dir under the
    # feet of a driver running on another. A container has its own (Ray's default).
    cmd += [f"--temp-dir={temp_dir / group.name if per_node_temp_dir else temp_dir}"]
    cmd += [f"--num-cpus={group.cpus}", f"--num-gpus={group.gpus}"]
    if group.memory_bytes:
        cmd += [f"--memory={group.memory_bytes}"]
    cmd += [f"--resources={json.dumps(group.custom_resources, separators=(',', ':'))}"]
    # The rest of the group's rayStartParams, as the operator passes them (object-store-memory, ...).
    cmd += [f"--{k}={v}" for k, v in group.ray_start_params.items() if k not in PROVIDER_PARAMS and k not in ports]
    cmd += [
        # Workers take random free ports: several raylets share this machine.
        "--min-worker-port=0",
        "--max-worker-port=0",
        *(f"--{flag}={port}" for flag, port in ports.items()),
    ]
    return cmd
