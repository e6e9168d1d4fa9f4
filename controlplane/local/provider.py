"""PROVIDER=local: the overlay's RayCluster as Ray processes on this machine, plus an S3 server.

One `ray start --block` process per group (fixed: nothing scales), each with its
group's per-node shape from the RayCluster (controlplane/clusterspec.py), every
port on 127.0.0.1. `start` runs the S3 server and the Ray head together, then the
worker nodes together (each `ray start` takes seconds); `wait_until_ready` waits
until every node is alive, the bucket answers and the Jobs API takes jobs. When to
start, repair or start afresh is decided in controlplane/lifecycle.py.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from controlplane import processes
from controlplane.clusterspec import ClusterSpec, GroupSpec
from controlplane.errors import ClusterError
from controlplane.lifecycle import ProvisionedCluster, say
from controlplane.local import raynodes, s3server
from controlplane.local.groups import fixed_nodes, for_this_machine
from controlplane.local.s3server import S3_REGION, STORAGE_PREFIX
from controlplane.ports import free_ports, wait_for_port
from controlplane.raystatus import Demand, groups_table, list_nodes, nodes_table, pending_demand, wait_for_jobs_api
from controlplane.state import write_private
from jobs.common.cluster import capacity
from jobs.common.cluster.placement import HEAD_GROUP
from jobs.common.run.preemption import PREEMPTION_GRACE_S

NODE_TIMEOUT_S = 150.0
WORKER_RETRY_S = 60.0


# Variables of the caller's environment that must not leak into the servers:
# a sourced env file of another cluster would point them elsewhere.
class LocalProvider(ProvisionedCluster):
    name = "local"
    # A node that dies while starting on a busy machine: one fresh start (new ports, new temp dirs)
    # usually goes through.
    start_attempts = 2

    # ------------------------------------------------------------------ the shape

    def fit_to_host(self, spec: ClusterSpec) -> tuple[ClusterSpec, list[str]]:
        return for_this_machine(spec)

    @property
    def groups(self) -> list[GroupSpec]:
        """The groups this provider runs, head first: one node each."""
        nodes = fixed_nodes(self.spec)
        return [group for group in self.spec.groups if nodes[group.name]]

    # ------------------------------------------------------------------ fresh state

    def new_state(self) -> dict[str, Any]:
        self.record_fresh_spec("one node per group, fixed")
        gcs_port, client_port = free_ports(2)
        temp_dir = Path(tempfile.mkdtemp(prefix="rl-ray-"))
        link = self.state_dir.ray_link
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(temp_dir)
        s3_ports = s3server.allocate_ports()
        return {
            "provider": self.name,
            "cluster_id": uuid.uuid4().hex,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "overlay": self.spec.source,
            "dashboard_url": f"http://127.0.0.1:{self.dashboard_port}",
            "dashboard_port": self.dashboard_port,
            "gcs_port": gcs_port,
            "client_server_port": client_port,
            "ray_temp_dir": str(temp_dir),
            "s3_ports": s3_ports,
            "s3_endpoint": f"http://127.0.0.1:{s3_ports['s3.port']}",
            "bucket": self.bucket,
            "storage_uri": f"s3://{self.bucket}/{STORAGE_PREFIX}",
            "pids": {},
        }

    def logs_hint(self, state: dict[str, Any]) -> str:
        return f"Ray's logs kept in {state['ray_temp_dir']}"

    def server_env(self, state: dict[str, Any]) -> dict[str, str]:
        """The environment every server starts with (and Ray jobs inherit).

        S3 keys reach jobs this way, as a Kubernetes Secret would, never
        through a job's runtime_env.
        """
        credentials = self.state_dir.s3_credentials()
        env = self.host_process_env(state)
        env.update(
            {
                "AWS_ENDPOINT_URL": state["s3_endpoint"],
                "AWS_ACCESS_KEY_ID": credentials["access_key_id"],
                "AWS_SECRET_ACCESS_KEY": credentials["secret_access_key"],
                "AWS_REGION": S3_REGION,
                "RL_BUCKET": state["bucket"],
                "RL_STORAGE_URI": state["storage_uri"],
                # What each worker group can ever offer: jobs check their plan against it.
                capacity.CAPACITY_ENV_VAR: capacity.to_env(self.worker_capacity()),
                # `ray job stop` waits this long after SIGTERM before SIGKILL (Ray's default: 3 s):
                # time for a training job to finish its iteration and checkpoint it (jobs/common/run/preemption.py).
                "RAY_JOB_STOP_WAIT_TIME_S": str(PREEMPTION_GRACE_S),
                # On a busy 2-core machine a raylet can take more than Ray's default 30 s to register.
                "RAY_raylet_start_wait_time_s": "120",
                # Job entrypoints say `python`: make it this environment's, as an image's would be.
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            }
        )
        return env

    def _start_node(self, state: dict[str, Any], group: GroupSpec, env: dict[str, str]) -> int:
        head = group.is_head
        cmd = raynodes.node_command(
            group,
            temp_dir=Path(state["ray_temp_dir"]),
            gcs_port=state["gcs_port"],
            dashboard_port=state["dashboard_port"] if head else None,
            client_server_port=state["client_server_port"] if head else None,
        )
        # The group's own plain env from the manifest, as a pod's container has it.
        pid = processes.start_in_own_session(cmd, {**env, **group.env}, self.state_dir.logs / f"{group.name}.log")
        state["pids"][group.name] = pid
        self.state_dir.save(state)
        return pid

    def _start_s3(self, state: dict[str, Any], env: dict[str, str]) -> int:
        self.state_dir.s3_data.mkdir(parents=True, exist_ok=True)
        cmd = s3server.command(self.state_dir.s3_data, state["bucket"], state["s3_ports"])
        pid = processes.start_in_own_session(cmd, env, self.state_dir.logs / "s3.log", cwd=self.state_dir.root)
        state["pids"]["s3"] = pid
        self.state_dir.save(state)
        return pid

    # ------------------------------------------------------------------ the steps

    def start(self, state: dict[str, Any]) -> None:
        env = self.server_env(state)
        head, *workers = self.groups
        say(f"starting S3 server (SeaweedFS) and Ray head on 127.0.0.1 (dashboard :{state['dashboard_port']})")
        self._start_s3(state, env)
        self._start_node(state, head, env)
        if not wait_for_port(state["gcs_port"], NODE_TIMEOUT_S):
            raise ClusterError(self._died_message(HEAD_GROUP, "the GCS port never opened"))
        say("starting worker nodes: " + ", ".join(g.name for g in workers))
        for group in workers:
            self._start_node(state, group, env)

    def restart(self, state: dict[str, Any], roles: Sequence[str]) -> None:
        env = self.server_env(state)
        if "s3" in roles:
            # Same ports and data folder: clients and running jobs keep their endpoint.
            self._start_s3(state, env)
        for group in self.groups:
            if group.name in roles:
                self._start_node(state, group, env)

    def wait_until_ready(self, state: dict[str, Any], restarted: Sequence[str] = ()) -> None:
        if not restarted or "s3" in restarted:
            try:
                s3server.wait_until_serving(state["s3_endpoint"], state["bucket"], self.state_dir.s3_credentials())
            except TimeoutError as err:
                raise ClusterError(f"{err}; see {self.state_dir.logs / 's3.log'}") from None
        self._wait_for_nodes(state, self.server_env(state))
        self._wait_for_jobs_api(state)

    def _wait_for_nodes(self, state: dict[str, Any], env: dict[str, str]) -> None:
        """Until every group has an ALIVE node. A worker node that dies or has not registered
        after WORKER_RETRY_S is started again, once: on a busy 2-core machine a raylet
        occasionally misses its registration window."""
        groups = {group.name: group for group in self.groups}
        started = time.monotonic()
        retried: set[str] = set()
        missing = list(groups)
        while time.monotonic() - started < NODE_TIMEOUT_S:
            try:
                alive = {n["group"] for n in list_nodes(state["dashboard_url"]) if n["state"] == "ALIVE"}
            except Exception:  # the dashboard is still starting
                alive = set()
            missing = [name for name in groups if name not in alive]
            if not missing:
                return
            for name in missing:
                died = not processes.is_alive(state["pids"][name])
                slow = time.monotonic() - started > WORKER_RETRY_S
                if not (died or slow):
                    continue
                if name == HEAD_GROUP or name in retried:
                    if died:
                        raise ClusterError(self._died_message(name, "it exited during start-up"))
                    continue
                say(f"{name}: {'exited' if died else 'not registered yet'}; starting it again")
                processes.stop_groups([state["pids"][name]], grace_s=2.0)
                retried.add(name)
                self._start_node(state, groups[name], env)
            time.sleep(0.5)
        raise ClusterError(
            f"Ray nodes of {', '.join(missing)} did not come up within {NODE_TIMEOUT_S:.0f}s; "
            f"see the logs in {self.state_dir.logs}"
        )

    def _wait_for_jobs_api(self, state: dict[str, Any]) -> None:
        """Until the Jobs API answers a listing with the token.

        Ray 2.60's dashboard serves the state API (which _wait_for_nodes polls)
        before its job module, a separate subprocess, is up: on a busy machine a
        `ray job submit` right after cluster-up found the Jobs API unreachable
        (seen in CI after a head restart). Ready means ready to take jobs.
        """
        try:
            wait_for_jobs_api(state["dashboard_url"], self.state_dir.auth_token, NODE_TIMEOUT_S)
        except TimeoutError as err:
            raise ClusterError(self._died_message(HEAD_GROUP, str(err))) from None

    def _died_message(self, name: str, what: str) -> str:
        log = self.state_dir.logs / (f"{name}.log")
        tail = ""
        if log.exists():
            tail = "\n  " + "\n  ".join(log.read_text(errors="replace").strip().splitlines()[-8:])
        return f"{name} failed to start: {what}; log {log}:{tail}"

    def health(self, state: dict[str, Any]) -> dict[str, bool]:
        pids = state.get("pids", {})
        names = [HEAD_GROUP, "s3", *(g.name for g in self.groups if not g.is_head)]
        return {name: bool(pids.get(name)) and processes.is_alive(pids[name]) for name in names}

    # ------------------------------------------------------------------ env

    def worker_capacity(self) -> dict[str, dict[str, float]]:
        return self.spec.capacity(fixed_nodes(self.spec))

    def write_client_settings(self, state: dict[str, Any]) -> None:
        super().write_client_settings(state)
        self._write_prometheus_config(state)

    def _write_prometheus_config(self, state: dict[str, Any]) -> None:
        """`.cluster/prometheus.yml`: Prometheus finds every node's metrics through the dashboard's
        service discovery (with the token) and scrapes them on 127.0.0.1 (Ray's SD names the host's
        own address; the metrics agents listen on every interface)."""
        config = {
            "global": {"scrape_interval": "10s"},
            "scrape_configs": [
                {
                    "job_name": "ray",
                    "http_sd_configs": [
                        {
                            "url": f"{state['dashboard_url']}/api/prometheus/sd",
                            "authorization": {"credentials_file": str(self.state_dir.auth_token)},
                        }
                    ],
                    "relabel_configs": [
                        {
                            "source_labels": ["__address__"],
                            "regex": ".*:(\\d+)",
                            "target_label": "__address__",
                            "replacement": "127.0.0.1:$1",
                        }
                    ],
                }
            ],
        }
        write_private(self.state_dir.root / "prometheus.yml", yaml.safe_dump(config, sort_keys=False))

    # ------------------------------------------------------------------ down

    def teardown(self, state: dict[str, Any] | None, keep_logs: bool) -> list[str]:
        if not state:
            return []
        pids = state.get("pids", {})
        # Workers first, then the head, then the S3 server, all within one grace period.
        processes.stop_groups(pids.values())
        leftovers = processes.processes_with_marker(state["cluster_id"])
        if leftovers:
            processes.kill_pids(leftovers)
        temp_dir = state.get("ray_temp_dir")
        if temp_dir and Path(temp_dir).name.startswith("rl-ray-") and not keep_logs:
            shutil.rmtree(temp_dir, ignore_errors=True)
        link = self.state_dir.ray_link
        if link.is_symlink():
            link.unlink()
        self.spec_file.unlink(missing_ok=True)
        remaining = processes.processes_with_marker(state["cluster_id"])
        if remaining:
            raise ClusterError(f"processes of this cluster are still running after SIGKILL: {remaining}")
        stopped = list(pids)
        if leftovers:
            stopped.append(f"{len(leftovers)} escaped helper processes killed")
        return stopped

    # ------------------------------------------------------------------ status

    def show_status(self, state: dict[str, Any]) -> int:
        health = self.health(state)
        say(f"provider: local   started: {state['started_at']}   groups from: {self.spec.source}")
        say(f"Jobs API / dashboard: {state['dashboard_url']} (token auth on)")
        say(
            f"S3: {state['s3_endpoint']}  bucket: {state['bucket']}  storage: {state['storage_uri']}  "
            f"server: {'running' if health['s3'] else 'DOWN'}"
        )
        return show_ray_status(
            self.spec,
            state["dashboard_url"],
            f"127.0.0.1:{state['gcs_port']}",
            limits={name: (count, count) for name, count in fixed_nodes(self.spec).items()},
            down=[name for name, ok in health.items() if not ok],
            repair="make cluster-up",
        )


def show_ray_status(
    spec: ClusterSpec,
    dashboard_url: str,
    gcs_address: str,
    limits: dict[str, tuple[int, int]],
    down: list[str],
    repair: str,
) -> int:
    """The groups (nodes now, min, max), the pending demand and the nodes; 1 if something is down."""
    try:
        nodes = list_nodes(dashboard_url)
    except Exception as err:  # noqa: BLE001 - shown to the user as is
        say(f"Ray nodes: cannot list ({err.__class__.__name__}: {err})")
        return 1
    try:
        demand: Demand | None = pending_demand(gcs_address)
        waiting = demand.describe()
    except Exception as err:  # noqa: BLE001 - the GCS may be restarting: the rest is still worth showing
        demand, waiting = None, f"unknown ({err.__class__.__name__})"
    say(groups_table(spec, nodes, limits, demand))
    say(f"pending demand: {waiting}")
    say(nodes_table(nodes))
    if down:
        say(f"DOWN: {', '.join(down)} (run `{repair}` to repair)")
        return 1
    return 0
