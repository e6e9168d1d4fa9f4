"""`up`, `down` and `status` for the local provider.

`up` starts the S3 server and the Ray head together, then the worker nodes
together (each `ray start` takes seconds), waits until every node is alive
and the bucket answers, and writes the client env file. What it starts is
recorded in state.json as soon as it is started, so `down` can always stop
it, and a failed `up` stops what it had started before it reports.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from controlplane import processes
from controlplane.errors import ClusterError
from controlplane.local import raynodes, s3server
from controlplane.local.groups import NodeGroup, group_of, local_groups
from controlplane.local.groups import capacity as group_capacity
from controlplane.ports import free_ports, port_in_use, wait_for_port
from controlplane.provider import ClientSettings
from controlplane.state import StateDir, write_private
from jobs.common.cluster import capacity
from jobs.common.cluster.placement import HEAD_GROUP
from jobs.common.reports.tables import table
from jobs.common.run.preemption import PREEMPTION_GRACE_S

DEFAULT_BUCKET = "rl-checkpoints"
STORAGE_PREFIX = "experiments"
S3_REGION = "us-east-1"
NODE_TIMEOUT_S = 150.0
WORKER_RETRY_S = 60.0

# Variables of the caller's environment that must not leak into the servers:
# a sourced env file of another cluster would point them elsewhere.
_SCRUBBED = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "AWS_PROFILE", "AWS_SESSION_TOKEN")


def _say(message: str) -> None:
    print(message, flush=True)


class LocalProvider:
    name = "local"

    def __init__(self, state_dir: StateDir, dashboard_port: int = 8265, bucket: str = DEFAULT_BUCKET):
        self.state_dir = state_dir
        self.dashboard_port = dashboard_port
        self.bucket = bucket
        # The shape is fixed for this command (GPU detection runs nvidia-smi: once).
        self.groups = local_groups()
        # This process talks to the cluster too (the state API): same token.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(state_dir.ensure_auth_token())

    # ------------------------------------------------------------------ up

    def up(self) -> int:
        state = self.state_dir.load()
        if state:
            health = self._health(state)
            if all(health.values()):
                _say(
                    f"already up: {state['dashboard_url']} ({len(health) - 1} Ray nodes, S3 at {state['s3_endpoint']})"
                )
                self._print_usage()
                return 0
            if health.get(HEAD_GROUP):
                # The head (and with it every job) is fine: restart only what died.
                return self._repair(state, health)
            _say(
                "the previous cluster is partly down ("
                + ", ".join(k for k, ok in health.items() if not ok)
                + " gone): stopping what is left and starting afresh"
            )
            self.down(quiet=True)

        if port_in_use(self.dashboard_port):
            raise ClusterError(
                f"port {self.dashboard_port} on 127.0.0.1 is already in use (another Ray dashboard?); "
                f"pick another with DASHBOARD_PORT=<port> (make cluster-up DASHBOARD_PORT=8266)"
            )
        started = time.monotonic()
        for attempt in (1, 2):
            state = self._new_state()
            self.state_dir.save(state)
            try:
                self._start_all(state)
                break
            except ClusterError as err:
                # A node that dies while starting on a busy machine: one fresh start (new
                # ports, new temp dirs) usually goes through.
                self.down(quiet=True, keep_ray_logs=True)
                if attempt == 2:
                    _say(f"cluster-up failed twice; Ray's logs are kept in {state['ray_temp_dir']}")
                    raise
                _say(
                    f"cluster-up failed ({str(err).splitlines()[0]}); stopped it (Ray's logs kept in "
                    f"{state['ray_temp_dir']}), starting once more"
                )
            except BaseException:
                _say(f"cluster-up failed: stopping what it started (Ray's logs kept in {state['ray_temp_dir']})")
                self.down(quiet=True, keep_ray_logs=True)
                raise
        self._write_env(state)
        _say(f"cluster up in {time.monotonic() - started:.1f}s")
        self.status()
        self._print_usage()
        return 0

    def _new_state(self) -> dict[str, Any]:
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

    def server_env(self, state: dict[str, Any]) -> dict[str, str]:
        """The environment every server starts with (and Ray jobs inherit).

        S3 keys reach jobs this way, as a Kubernetes Secret would, never
        through a job's runtime_env.
        """
        credentials = self.state_dir.s3_credentials()
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("AWS_")}
        env.update(
            {
                processes.MARKER_VAR: state["cluster_id"],
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self.state_dir.ensure_auth_token()),
                "RAY_USAGE_STATS_ENABLED": "0",
                "AWS_ENDPOINT_URL": state["s3_endpoint"],
                "AWS_ACCESS_KEY_ID": credentials["access_key_id"],
                "AWS_SECRET_ACCESS_KEY": credentials["secret_access_key"],
                "AWS_REGION": S3_REGION,
                "RL_BUCKET": state["bucket"],
                "RL_STORAGE_URI": state["storage_uri"],
                # What each worker group can ever offer: jobs check their plan against it.
                capacity.CAPACITY_ENV_VAR: capacity.to_env(group_capacity(self.groups)),
                "PYTHONUNBUFFERED": "1",
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

    def _start_node(self, state: dict[str, Any], group: NodeGroup, env: dict[str, str]) -> int:
        head = group.name == HEAD_GROUP
        cmd = raynodes.node_command(
            group,
            temp_dir=Path(state["ray_temp_dir"]),
            gcs_port=state["gcs_port"],
            dashboard_port=state["dashboard_port"] if head else None,
            client_server_port=state["client_server_port"] if head else None,
        )
        pid = processes.start_in_own_session(cmd, env, self.state_dir.logs / f"{group.name}.log")
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

    def _start_all(self, state: dict[str, Any]) -> None:
        env = self.server_env(state)
        groups = self.groups
        head, workers = groups[0], groups[1:]
        _say(f"starting S3 server (SeaweedFS) and Ray head on 127.0.0.1 (dashboard :{state['dashboard_port']})")
        self._start_s3(state, env)
        self._start_node(state, head, env)
        if not wait_for_port(state["gcs_port"], NODE_TIMEOUT_S):
            raise ClusterError(self._died_message(HEAD_GROUP, "the GCS port never opened"))
        _say("starting worker nodes: " + ", ".join(g.name for g in workers))
        for group in workers:
            self._start_node(state, group, env)
        credentials = self.state_dir.s3_credentials()
        try:
            s3server.wait_until_serving(state["s3_endpoint"], state["bucket"], credentials)
        except TimeoutError as err:
            raise ClusterError(f"{err}; see {self.state_dir.logs / 's3.log'}") from None
        self._wait_for_nodes(state, env)
        self._wait_for_jobs_api(state)

    def _wait_for_nodes(self, state: dict[str, Any], env: dict[str, str]) -> None:
        """Until every group has an ALIVE node. A worker node that dies or has
        not registered after WORKER_RETRY_S is started again, once: on a busy
        2-core machine a raylet occasionally misses its registration window."""
        groups = {group.name: group for group in self.groups}
        started = time.monotonic()
        retried: set[str] = set()
        missing = list(groups)
        while time.monotonic() - started < NODE_TIMEOUT_S:
            try:
                alive = {n["group"] for n in list_nodes(state) if n["state"] == "ALIVE"}
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
                _say(f"{name}: {'exited' if died else 'not registered yet'}; starting it again")
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
        import urllib.error
        import urllib.request

        token = self.state_dir.auth_token.read_text().strip()
        request = urllib.request.Request(
            f"{state['dashboard_url']}/api/jobs/", headers={"Authorization": f"Bearer {token}"}
        )
        deadline = time.monotonic() + NODE_TIMEOUT_S
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
        raise ClusterError(self._died_message(HEAD_GROUP, f"the Jobs API never answered ({problem})"))

    def _died_message(self, name: str, what: str) -> str:
        log = self.state_dir.logs / (f"{name}.log")
        tail = ""
        if log.exists():
            tail = "\n  " + "\n  ".join(log.read_text(errors="replace").strip().splitlines()[-8:])
        return f"{name} failed to start: {what}; log {log}:{tail}"

    def _repair(self, state: dict[str, Any], health: dict[str, bool]) -> int:
        missing = [name for name, ok in health.items() if not ok]
        _say(f"repairing: restarting {', '.join(missing)}")
        env = self.server_env(state)
        if "s3" in missing:
            # Same ports and data folder: clients and running jobs keep their endpoint.
            self._start_s3(state, env)
            try:
                s3server.wait_until_serving(state["s3_endpoint"], state["bucket"], self.state_dir.s3_credentials())
            except TimeoutError as err:
                raise ClusterError(f"{err}; see {self.state_dir.logs / 's3.log'}") from None
        for group in self.groups:
            if group.name in missing:
                self._start_node(state, group, env)
        self._wait_for_nodes(state, env)
        self._wait_for_jobs_api(state)
        self._write_env(state)
        _say(f"repaired: {', '.join(missing)} back")
        self.status()
        return 0

    def _health(self, state: dict[str, Any]) -> dict[str, bool]:
        names = ["s3", *(g.name for g in self.groups)]
        pids = state.get("pids", {})
        return {name: bool(pids.get(name)) and processes.is_alive(pids[name]) for name in names}

    # ------------------------------------------------------------------ env

    def _write_env(self, state: dict[str, Any]) -> None:
        settings = ClientSettings(
            ray_address=state["dashboard_url"],
            auth_token_path=self.state_dir.ensure_auth_token(),
            storage_uri=state["storage_uri"],
            aws_region=S3_REGION,
            worker_groups=group_capacity(self.groups),
            bucket=state["bucket"],
            s3_endpoint=state["s3_endpoint"],
            s3_keys=self.state_dir.s3_credentials(),
            state_dir=self.state_dir.root,
        )
        header = (
            f"Client settings for the local Ray cluster (written by `make cluster-up`, {state['started_at']}).\n"
            "Use: source .cluster/env   then plain `ray job submit`, `ray job list`, boto3 or the AWS CLI work.\n"
            "The Ray token itself is not in this file: Ray reads it from RAY_AUTH_TOKEN_PATH.\n"
            "Holds the local S3 server's keys: keep it private (mode 0600, git-ignored)."
        )
        self.state_dir.write_client_settings(settings, header)
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

    def _print_usage(self) -> None:
        env_file = self.state_dir.env_file
        shown = os.path.relpath(env_file) if not os.path.relpath(env_file).startswith("..") else str(env_file)
        _say(f"client settings: {shown}  (use: source {shown})")

    # ------------------------------------------------------------------ down

    def down(self, quiet: bool = False, keep_ray_logs: bool = False) -> int:
        state = self.state_dir.load()
        if not state:
            if not quiet:
                _say("nothing to stop: no cluster is recorded in " + str(self.state_dir.root))
            return 0
        pids = state.get("pids", {})
        # Workers first, then the head, then the S3 server, all within one grace period.
        processes.stop_groups(pids.values())
        leftovers = processes.processes_with_marker(state["cluster_id"])
        if leftovers:
            processes.kill_pids(leftovers)
        temp_dir = state.get("ray_temp_dir")
        if temp_dir and Path(temp_dir).name.startswith("rl-ray-") and not keep_ray_logs:
            shutil.rmtree(temp_dir, ignore_errors=True)
        link = self.state_dir.ray_link
        if link.is_symlink():
            link.unlink()
        self.state_dir.clear()
        remaining = processes.processes_with_marker(state["cluster_id"])
        if remaining:
            raise ClusterError(f"processes of this cluster are still running after SIGKILL: {remaining}")
        if not quiet:
            escaped = f"; {len(leftovers)} escaped helper processes killed" if leftovers else ""
            _say(f"stopped: {', '.join(pids)}{escaped}; S3 data kept in {self.state_dir.s3_data}")
        return 0

    # ------------------------------------------------------------------ status

    def status(self) -> int:
        state = self.state_dir.load()
        if not state:
            raise ClusterError(
                f"no local cluster is up (nothing recorded in {self.state_dir.root}); run `make cluster-up`"
            )
        health = self._health(state)
        _say(f"provider: local   started: {state['started_at']}")
        _say(f"Jobs API / dashboard: {state['dashboard_url']} (token auth on)")
        _say(
            f"S3: {state['s3_endpoint']}  bucket: {state['bucket']}  storage: {state['storage_uri']}  "
            f"server: {'running' if health['s3'] else 'DOWN'}"
        )
        try:
            nodes = list_nodes(state)
        except Exception as err:  # noqa: BLE001 - shown to the user as is
            _say(f"Ray nodes: cannot list ({err.__class__.__name__}: {err})")
            return 1
        rows = [
            (node["group"], node["state"], f"{node['cpus']:g}", f"{node['gpus']:g}", node["node_id"][:12])
            for node in sorted(nodes, key=lambda n: (n["group"], n["node_id"]))
        ]
        _say(table(("GROUP", "STATE", "CPUS", "GPUS", "NODE ID"), rows, indent="  ", rule=False))
        down = [name for name, ok in health.items() if not ok]
        if down:
            _say(f"DOWN: {', '.join(down)} (run `make cluster-up` to repair)")
            return 1
        return 0


def list_nodes(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Nodes as the Ray state API reports them, with their group."""
    from ray.util.state import list_nodes as ray_list_nodes

    nodes = []
    for node in ray_list_nodes(address=state["dashboard_url"], detail=True, raise_on_missing_output=False):
        resources = dict(node.resources_total or {})
        nodes.append(
            {
                "node_id": node.node_id,
                "state": node.state,
                "group": group_of(resources),
                "cpus": resources.get("CPU", 0.0),
                "gpus": resources.get("GPU", 0.0),
            }
        )
    return nodes
