"""`ray start` command lines for the local cluster's nodes.

Plain `ray start --block` nodes rather than Ray's autoscaling fake cluster:
each group is a fixed, real raylet with its own resources, up in seconds and
owned by us (its PID is its process group), so `down` stops exactly it and a
missing node can be started again on its own.

Every port a node opens is chosen here from free ports on 127.0.0.1, so
several nodes share the machine without clashes. Ray 2.60 still binds its
GCS, raylet and agent gRPC ports on all interfaces; they require the token.
"""

from __future__ import annotations

import json
from pathlib import Path

from controlplane.local.groups import NodeGroup
from controlplane.ports import free_ports
from controlplane.processes import venv_executable

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
    group: NodeGroup,
    *,
    temp_dir: Path,
    gcs_port: int,
    dashboard_port: int | None = None,
    client_server_port: int | None = None,
    ray: str | None = None,
    node_ip: str | None = "127.0.0.1",
    head_address: str = "127.0.0.1",
    dashboard_host: str = "127.0.0.1",
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
    # One temp dir per node: nodes sharing a machine must not share a session
    # folder, or one node's runtime-env agent re-extracts a job's working dir
    # under the feet of a driver running on another.
    cmd += [f"--temp-dir={temp_dir / group.name}"]
    cmd += [f"--num-cpus={group.num_cpus}", f"--num-gpus={group.num_gpus}"]
    cmd += [
        f"--resources={json.dumps(group.resources, separators=(',', ':'))}",
        f"--object-store-memory={group.object_store_bytes}",
        # Workers take random free ports: several raylets share this machine.
        "--min-worker-port=0",
        "--max-worker-port=0",
        *(f"--{flag}={port}" for flag, port in ports.items()),
    ]
    return cmd
