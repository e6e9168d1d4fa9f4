"""PROVIDER=docker: the overlay's RayCluster as containers on a Docker Engine, scaled by Ray's autoscaler.

What KubeRay does on Kubernetes, done here on one Docker Engine: the head pod and each
worker group's pods become containers of the groups' images, with their rayStartParams,
limits and env (controlplane/containers/nodes.py). Worker groups start at `replicas`
(within minReplicas..maxReplicas); from then on Ray's own autoscaler (v2, as the
manifest asks) adds containers while demand waits and removes those idle past their
group's idleTimeoutSeconds (controlplane/containers/autoscaler.py, on the host). The S3
server (SeaweedFS) runs beside them, its data in the state folder (`.cluster/s3`, kept by
`down`). Same token auth and the same `.cluster/env` as the local provider, so
`make train|sweep|evaluate|jobs` and plain `ray job submit` work unchanged.

Network: one private bridge network per cluster; reachable from the host are only the
Jobs API/dashboard, the GCS (for the autoscaler; it needs the token) and S3, published on
127.0.0.1. Secrets: the S3 keys reach the containers through env files of mode 0600 in the
state folder (`--env-file`), the Ray token through a read-only bind mount
(RAY_AUTH_TOKEN_PATH); never through an image, a command line or a label. Every container
and network carries the cluster's id as a label: `down` removes exactly those (autoscaled
containers included) and their anonymous volumes.

A group with GPUs gets the host's GPUs (`--gpus all`) where the Docker Engine has the NVIDIA
runtime; without it every group runs with 0 GPUs (never faked), as the local provider does
on a machine without GPUs.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controlplane import processes
from controlplane.clusterspec import ClusterSpec
from controlplane.containers import daemon, hostnet, images
from controlplane.containers.daemon import Engine
from controlplane.containers.nodes import (
    CLUSTER_LABEL,
    ROLE_LABEL,
    S3_PORT,
    SCALING_LOG,
    STATE_LABEL,
    TOKEN_IN_CONTAINER,
    ContainerCluster,
    group_image,
    head_tags,
    run_arguments,
    worker_tags,
    write_node_env_files,
)
from controlplane.errors import ClusterError
from controlplane.lifecycle import ProvisionedCluster, say
from controlplane.local import s3server
from controlplane.local.groups import detect_gpus
from controlplane.local.provider import show_ray_status
from controlplane.local.s3server import S3_REGION, STORAGE_PREFIX
from controlplane.ports import free_port
from controlplane.raystatus import list_nodes, wait_for_jobs_api
from controlplane.state import REPO_ROOT, StateDir, write_private
from jobs.common.cluster import capacity
from jobs.common.cluster.placement import HEAD_GROUP
from jobs.common.run.preemption import PREEMPTION_GRACE_S

NODE_TIMEOUT_S = 180.0
WORKER_RETRY_S = 75.0

S3 = "s3"
AUTOSCALER = "autoscaler"
IMAGE_UID, IMAGE_GID = 1000, 100  # the image's user `ray` (docker/Dockerfile)
# Set to 1 to have `down` delete the S3 data too (`make cluster-down PROVIDER=docker DELETE_S3_DATA=1`).
DELETE_DATA_VAR = "DELETE_S3_DATA"


def s3_container_command(bucket: str) -> list[str]:
    """The arguments of the S3 image (`weed` is its entrypoint, as in chrislusf/seaweedfs)."""
    return s3server.command(Path("/data"), bucket, {"s3.port": S3_PORT}, bind="0.0.0.0", weed="weed")[1:]


def for_engine(spec: ClusterSpec, engine: Engine) -> tuple[ClusterSpec, list[str]]:
    """The spec with no more GPUs per node than containers can have on this engine."""
    if "nvidia" in (engine.info().get("Runtimes") or {}):
        gpus = detect_gpus()
        return spec.with_gpus_available(gpus, f"the NVIDIA runtime gives containers the host's {gpus}")
    return spec.with_gpus_available(0, "no NVIDIA runtime in this Docker Engine")


def initial_workers(spec: ClusterSpec) -> dict[str, int]:
    """Worker containers `cluster-up` starts: each group's replicas, within minReplicas..maxReplicas."""
    return {g.name: max(g.min_replicas, min(g.replicas, g.max_replicas)) for g in spec.workers}


class DockerProvider(ProvisionedCluster):
    name = "docker"

    def __init__(self, state_dir: StateDir, **settings: Any):
        """`settings`: ProvisionedCluster's (dashboard_port, bucket, overlay)."""
        super().__init__(state_dir, **settings)
        self.names = images.ImageNames.from_env()
        self._engine: Engine | None = None
        self._started_daemon: int | None = None

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir.root / "containers"

    # ------------------------------------------------------------------ engine and shape

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine, self._started_daemon = self._connect(self.state_dir.load())
        return self._engine

    def _connect(self, state: dict[str, Any] | None, start: bool = True) -> tuple[Engine, int | None]:
        """The engine the recorded cluster lives on, else the one daemon.connect() picks."""
        if state and state.get("docker_host"):
            own = daemon.project_daemon()
            if state["docker_host"] == own.host:
                if own.running():
                    return own.engine, None
                if start:
                    return own.engine, own.start()
            engine = Engine(state["docker_host"])
            if engine.ping():
                return engine, None
            raise ClusterError(f"the Docker Engine of this cluster ({engine.host}) does not answer")
        return daemon.connect(start=start)

    def fit_to_host(self, spec: ClusterSpec) -> tuple[ClusterSpec, list[str]]:
        return for_engine(spec, self.engine)

    def cluster(self, state: dict[str, Any]) -> ContainerCluster:
        return ContainerCluster(self.state_dir, state, self.spec, self.engine)

    # ------------------------------------------------------------------ before a fresh start

    def check_can_start(self) -> None:
        super().check_can_start()
        own = daemon.project_daemon()
        if self.engine.host == own.host and (problem := hostnet.check_bridge_forwarding()):
            raise ClusterError(problem)

    def new_state(self) -> dict[str, Any]:
        self.record_fresh_spec("worker groups scaled by Ray's autoscaler v2")
        cluster_id = uuid.uuid4().hex
        s3_port, gcs_port = free_port(), free_port()
        state = {
            "provider": self.name,
            "cluster_id": cluster_id,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "overlay": self.spec.source,
            "docker_host": self.engine.host,
            "daemon_pid": self._started_daemon,
            "network": f"rl-{cluster_id[:12]}",
            "containers": {S3: f"rl-{cluster_id[:8]}-{S3}", HEAD_GROUP: f"rl-{cluster_id[:8]}-{HEAD_GROUP}"},
            "images": {**{g.name: group_image(g, self.names) for g in self.spec.groups}, S3: self._s3_image()},
            "dashboard_url": f"http://127.0.0.1:{self.dashboard_port}",
            "dashboard_port": self.dashboard_port,
            "gcs_port": gcs_port,
            "s3_port": s3_port,
            "s3_endpoint": f"http://127.0.0.1:{s3_port}",
            "s3_endpoint_in_cluster": f"http://{S3}:{S3_PORT}",
            "bucket": self.bucket,
            "storage_uri": f"s3://{self.bucket}/{STORAGE_PREFIX}",
            # Host processes of ours: Ray's autoscaler.
            "pids": {},
        }
        self._check_images(state)
        return state

    def _s3_image(self) -> str:
        """RL_S3_IMAGE, else upstream SeaweedFS if the engine has it, else the stand-in `make images-local` builds."""
        if os.environ.get("RL_S3_IMAGE"):
            return os.environ["RL_S3_IMAGE"]
        if not self.engine.image_exists(self.names.s3_upstream) and self.engine.image_exists(self.names.s3_local):
            return self.names.s3_local
        return self.names.s3_upstream

    def _check_images(self, state: dict[str, Any]) -> None:
        missing = sorted({image for image in state["images"].values() if not self.engine.image_exists(image)})
        if missing:
            raise ClusterError(
                f"not in the Docker Engine at {self.engine.host}: {', '.join(missing)}. Build them with "
                "`make images-local` (here, no registry needed), or `make images` (from rayproject/ray) and "
                "`docker pull chrislusf/seaweedfs:<pin>`; REGISTRY=... TAG=... name other images"
            )

    # ------------------------------------------------------------------ secrets

    def _write_secrets(self, state: dict[str, Any]) -> None:
        """The env files (0600, read by the docker CLI) and the token the containers mount read-only.

        They sit in a 0700 folder of the state folder; the token copy belongs to
        the image's user (uid 1000) so that it can read it inside the container.
        """
        self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.secrets_dir, 0o700)
        credentials = self.state_dir.s3_credentials()
        keys = {
            "AWS_ACCESS_KEY_ID": credentials["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": credentials["secret_access_key"],
        }
        node_env = {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": TOKEN_IN_CONTAINER,
            "RAY_USAGE_STATS_ENABLED": "0",
            # On a busy 2-core machine a raylet can take more than Ray's default 30 s to register.
            "RAY_raylet_start_wait_time_s": "120",
            # `ray job stop` gives a driver this long after SIGTERM to checkpoint (jobs/common/run/preemption.py).
            "RAY_JOB_STOP_WAIT_TIME_S": str(PREEMPTION_GRACE_S),
            "PYTHONUNBUFFERED": "1",
            "AWS_ENDPOINT_URL": state["s3_endpoint_in_cluster"],
            **keys,
            "AWS_REGION": S3_REGION,
            "RL_BUCKET": state["bucket"],
            "RL_STORAGE_URI": state["storage_uri"],
            capacity.CAPACITY_ENV_VAR: capacity.to_env(self.worker_capacity()),
        }
        write_node_env_files(self.cluster(state), node_env)
        write_private(self.secrets_dir / "s3.env", "".join(f"{k}={v}\n" for k, v in keys.items()))
        token = self.secrets_dir / "auth_token"
        token.unlink(missing_ok=True)
        shutil.copyfile(self.state_dir.ensure_auth_token(), token)
        if os.geteuid() == 0:
            os.chown(token, IMAGE_UID, IMAGE_GID)
            os.chmod(token, 0o400)
        else:
            os.chmod(token, 0o444)  # readable in the container; on the host the 0700 folder guards it

    def _s3_data_dir(self) -> tuple[Path, str]:
        """The S3 data folder (the local provider's: `.cluster/s3`) and the user the S3 container runs as:
        the folder's owner, as the local provider's `weed` does, so that the data stays its user's alone
        (uid 1000 may be someone else on the host)."""
        data = self.state_dir.s3_data
        data.mkdir(parents=True, exist_ok=True)
        owner = data.stat()
        return data, f"{owner.st_uid}:{owner.st_gid}"

    # ------------------------------------------------------------------ the steps

    def _run_s3(self, state: dict[str, Any]) -> None:
        data, user = self._s3_data_dir()
        args = run_arguments(
            name=state["containers"][S3],
            role=S3,
            cluster_id=state["cluster_id"],
            state_root=self.state_dir.root,
            network=state["network"],
            image=state["images"][S3],
            env_file=self.secrets_dir / "s3.env",
            command=s3_container_command(state["bucket"]),
            publish={state["s3_port"]: S3_PORT},
            mounts=[f"type=bind,source={data},target=/data"],
            user=user,
            alias=S3,
        )
        self.engine.docker(*args, show=True)

    def _start_autoscaler(self, state: dict[str, Any]) -> None:
        """Ray's autoscaler for this cluster, on the host, in its own session (stopped by PID)."""
        env = self.host_process_env(state)
        env.update(
            {
                "RAY_enable_autoscaler_v2": "1",
                # Seconds between the autoscaler's rounds (Ray's default is 5): demand is seen within a second.
                "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                "DOCKER_HOST": self.engine.host,
            }
        )
        cmd = [sys.executable, "-m", "controlplane.containers.autoscaler", "--state-dir", str(self.state_dir.root)]
        say(f"starting Ray's autoscaler (v2) on the host: log {self.state_dir.logs / 'autoscaler.log'}")
        pid = processes.start_in_own_session(cmd, env, self.state_dir.logs / "autoscaler.log", cwd=REPO_ROOT)
        state["pids"][AUTOSCALER] = pid
        self.state_dir.save(state)

    def start(self, state: dict[str, Any]) -> None:
        self._write_secrets(state)
        network = state["network"]
        self.engine.docker("network", "create", f"--label={CLUSTER_LABEL}={state['cluster_id']}",
                           f"--label={STATE_LABEL}={self.state_dir.root}", network, show=True)  # fmt: skip
        say(f"starting S3 server (SeaweedFS), Ray head and workers as containers on network {network}")
        self._run_s3(state)
        cluster = self.cluster(state)
        cluster.run_node(self.spec.head, head_tags())
        for group in self.spec.workers:
            for _ in range(initial_workers(self.spec)[group.name]):
                name = cluster.run_node(group, worker_tags(group.name))
                cluster.log_scaling(f"start      {group.name} +1 {name} (cluster-up: replicas {group.replicas})")

    def after_ready(self, state: dict[str, Any]) -> None:
        # From here on Ray's autoscaler keeps the worker groups (it adopts the containers started above).
        self._start_autoscaler(state)

    def restart(self, state: dict[str, Any], roles: Sequence[str]) -> None:
        self._write_secrets(state)
        if S3 in roles:
            # Same published port and data folder: clients and running jobs keep their endpoint.
            self.cluster(state).discard(state["containers"][S3])
            self._run_s3(state)
        if AUTOSCALER in roles:
            self._start_autoscaler(state)

    def wait_until_ready(self, state: dict[str, Any], restarted: Sequence[str] = ()) -> None:
        if not restarted or S3 in restarted:
            try:
                s3server.wait_until_serving(state["s3_endpoint"], state["bucket"], self.state_dir.s3_credentials())
            except TimeoutError as err:
                raise ClusterError(f"{err}\n{self._logs_tail(state['containers'][S3])}") from None
        if not restarted:
            self._wait_for_nodes(state)
        try:
            wait_for_jobs_api(state["dashboard_url"], self.state_dir.auth_token, NODE_TIMEOUT_S)
        except TimeoutError as err:
            raise ClusterError(f"{err}\n{self._logs_tail(state['containers'][HEAD_GROUP])}") from None

    def _wait_for_nodes(self, state: dict[str, Any]) -> None:
        """Until the head and the workers cluster-up started are ALIVE in Ray. A worker container that exits
        or has not registered after WORKER_RETRY_S is replaced, once per group (as the local provider does)."""
        cluster = self.cluster(state)
        wanted = Counter({HEAD_GROUP: 1, **initial_workers(self.spec)})
        started = time.monotonic()
        retried: set[str] = set()
        missing: list[str] = list(wanted)
        while time.monotonic() - started < NODE_TIMEOUT_S:
            try:
                alive = Counter(n["group"] for n in list_nodes(state["dashboard_url"]) if n["state"] == "ALIVE")
            except Exception:  # the dashboard is still starting
                alive = Counter()
            missing = [group for group, count in wanted.items() if alive[group] < count]
            if not missing:
                return
            containers = cluster.containers(everything=True)
            for group in missing:
                mine = [c for c in containers if c["role"] == group]
                exited = [c for c in mine if c["state"] != "running"]
                slow = time.monotonic() - started > WORKER_RETRY_S
                if group == HEAD_GROUP:
                    if exited:
                        raise ClusterError(f"the head exited during start-up\n{self._logs_tail(exited[0]['name'])}")
                    continue
                if group in retried or not (exited or slow):
                    continue
                retried.add(group)
                for container in exited or mine[:1]:
                    say(f"{group}: {container['name']} {'exited' if exited else 'not registered yet'}; replacing it")
                    cluster.remove_node(container["name"], self.spec.group(group), hook=False)
                    cluster.run_node(self.spec.group(group), worker_tags(group))
            time.sleep(0.5)
        tails = [self._logs_tail(c["name"]) for c in self.cluster(state).containers(everything=True)
                 if c["role"] in missing]  # fmt: skip
        raise ClusterError(f"Ray nodes of {', '.join(missing)} did not come up within {NODE_TIMEOUT_S:.0f}s\n"
                           + "\n".join(tails))  # fmt: skip

    def health(self, state: dict[str, Any]) -> dict[str, bool]:
        """The head, S3 and the autoscaler: the worker containers are the autoscaler's to keep."""
        running = {c["role"] for c in self.cluster(state).containers() if c["role"] in (HEAD_GROUP, S3)}
        pid = state.get("pids", {}).get(AUTOSCALER)
        return {HEAD_GROUP: HEAD_GROUP in running, S3: S3 in running,
                AUTOSCALER: bool(pid) and processes.is_alive(pid)}  # fmt: skip

    def _logs_tail(self, name: str, lines: int = 12) -> str:
        result = self.engine.docker("logs", "--tail", str(lines), name, check=False)
        text = (result.stdout + result.stderr).strip()
        return f"docker logs {name}:\n  " + "\n  ".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ env

    def where_it_runs(self, state: dict[str, Any]) -> list[str]:
        return [f"Its containers run on the Docker Engine at DOCKER_HOST={state['docker_host']}."]

    # ------------------------------------------------------------------ down

    def load_state(self) -> dict[str, Any] | None:
        state = super().load_state()
        if state and self._engine is None:
            self._engine, self._started_daemon = self._connect(state)
        return state

    def teardown(self, state: dict[str, Any] | None, keep_logs: bool) -> list[str]:
        """The autoscaler first (so that it adds nothing meanwhile), then this cluster's containers (with their
        anonymous volumes), networks and volumes, and any left by an earlier cluster of this state folder."""
        removed: list[str] = []
        if state:
            pid = state.get("pids", {}).get(AUTOSCALER)
            if pid:
                processes.stop_groups([pid])
                removed.append(AUTOSCALER)
            leftovers = processes.processes_with_marker(state["cluster_id"])
            if leftovers:
                processes.kill_pids(leftovers)
        if self._engine is None:
            try:
                self._engine, self._started_daemon = daemon.connect(start=False)
            except ClusterError:
                return removed  # no engine runs: no container of ours either
        selectors = [f"label={STATE_LABEL}={self.state_dir.root}"]
        if state:
            selectors.insert(0, f"label={CLUSTER_LABEL}={state['cluster_id']}")
        for selector in selectors:
            listing = self.engine.docker(
                "ps", "--all", f"--filter={selector}", "--format", '{{.Names}}\t{{.Label "' + ROLE_LABEL + '"}}'
            ).stdout.split("\n")
            found = [line.split("\t") for line in listing if line.strip()]
            for name, _ in found:
                if state:
                    self.cluster(state).save_logs(name)
            if found:
                self.engine.docker("rm", "--force", "--volumes", *(name for name, _ in found), show=True)
                removed += [role for _, role in found]
            for kind in ("network", "volume"):
                ids = self.engine.docker(kind, "ls", "--quiet", f"--filter={selector}").stdout.split()
                if ids:
                    self.engine.docker(kind, "rm", *ids, show=True)
        shutil.rmtree(self.secrets_dir, ignore_errors=True)
        self.spec_file.unlink(missing_ok=True)
        if os.environ.get(DELETE_DATA_VAR, "") not in ("", "0") and not keep_logs:
            shutil.rmtree(self.state_dir.s3_data, ignore_errors=True)
        return [f"{count} x {role}" if count > 1 else role for role, count in Counter(removed).items()]

    def after_teardown(self, state: dict[str, Any] | None) -> None:
        # Our own dockerd goes when it has no container left and a command of ours started it.
        if self._engine is not None:
            daemon.stop_if_idle(self.engine, self._started_daemon or (state or {}).get("daemon_pid"))

    def data_note(self) -> str:
        if os.environ.get(DELETE_DATA_VAR, "") not in ("", "0"):
            return f"S3 data deleted ({DELETE_DATA_VAR}=1)"
        return f"S3 data kept in {self.state_dir.s3_data}"

    # ------------------------------------------------------------------ status

    def show_status(self, state: dict[str, Any]) -> int:
        health = self.health(state)
        say(f"provider: docker   started: {state['started_at']}   groups from: {self.spec.source}   "
            f"DOCKER_HOST={state['docker_host']}")  # fmt: skip
        say(f"Jobs API / dashboard: {state['dashboard_url']} (token auth on)")
        say(
            f"S3: {state['s3_endpoint']}  bucket: {state['bucket']}  storage: {state['storage_uri']}  "
            f"container: {'running' if health[S3] else 'DOWN'}"
        )
        running = "running" if health[AUTOSCALER] else "DOWN"
        say(f"Ray's autoscaler (v2): {running} (pid {state['pids'].get(AUTOSCALER)}); "
            f"scaling events: {self.state_dir.root / SCALING_LOG}")  # fmt: skip
        for container in sorted(self.cluster(state).containers(everything=True), key=lambda c: (c["role"], c["name"])):
            say(f"  {container['role']:<12} {container['name']:<32} {container['state']:<8} "
                f"{state['images'].get(container['role'], '')}")  # fmt: skip
        return show_ray_status(
            self.spec,
            state["dashboard_url"],
            f"127.0.0.1:{state['gcs_port']}",
            limits={g.name: (g.min_replicas, g.max_replicas) for g in self.spec.groups},
            down=[name for name, ok in health.items() if not ok],
            repair="make cluster-up PROVIDER=docker",
        )
