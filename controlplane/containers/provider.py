"""`up`, `down` and `status` for PROVIDER=docker.

The local provider's cluster, as containers: the head, `cpu-workers` and
`gpu-workers` each a container of the project's images (head and CPU group:
the CPU image; GPU group: the GPU image), plus the S3 server (SeaweedFS) with
its data in the state folder (`.cluster/s3`, kept by `down`). Same group
shapes and markers (controlplane/local/groups.py), same `ray start` lines
(controlplane/local/raynodes.py), same token auth and the same `.cluster/env`,
so `make train|sweep|evaluate|jobs` and plain `ray job submit` work unchanged.

Network: one private bridge network per cluster; the only ports reachable
from outside the containers are the Jobs API/dashboard and S3, published on
127.0.0.1. Secrets: the S3 keys reach the containers through env files of mode
0600 in the state folder (`--env-file`), the Ray token through a read-only bind
mount (RAY_AUTH_TOKEN_PATH); never through an image, a command line or a label.
Every container and network carries the cluster's id as a label: `down`
removes exactly those (and their anonymous volumes).

The GPU group gets the host's GPUs (`--gpus all`) where the Docker Engine has
the NVIDIA runtime, and none otherwise: it then advertises 0 GPUs, as the
local provider does on a machine without GPUs.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controlplane.containers import daemon, images
from controlplane.containers.daemon import Engine
from controlplane.errors import ClusterError
from controlplane.local import raynodes, s3server
from controlplane.local.groups import NodeGroup, detect_gpus, local_groups
from controlplane.local.groups import capacity as group_capacity
from controlplane.ports import free_port, port_in_use
from controlplane.provider import ClientSettings
from controlplane.state import StateDir, write_private
from jobs.common.cluster import capacity
from jobs.common.cluster.placement import CPU_GROUP, GPU_GROUP, HEAD_GROUP
from jobs.common.run.preemption import PREEMPTION_GRACE_S

DEFAULT_BUCKET = "rl-checkpoints"
STORAGE_PREFIX = "experiments"
S3_REGION = "us-east-1"
NODE_TIMEOUT_S = 180.0
WORKER_RETRY_S = 75.0

S3 = "s3"
CLUSTER_LABEL = "org.ray-rl.cluster"
ROLE_LABEL = "org.ray-rl.role"
STATE_LABEL = "org.ray-rl.state-dir"
# Inside the containers: each has its own network namespace, so fixed ports.
GCS_PORT = 6379
DASHBOARD_PORT = 8265
CLIENT_SERVER_PORT = 10001
S3_PORT = 8333
TOKEN_IN_CONTAINER = "/run/secrets/ray/auth_token"
IMAGE_UID, IMAGE_GID = 1000, 100  # the image's user `ray` (docker/Dockerfile)
# Set to 1 to have `down` delete the S3 data too (`make cluster-down PROVIDER=docker DELETE_S3_DATA=1`).
DELETE_DATA_VAR = "DELETE_S3_DATA"


def _say(message: str) -> None:
    print(message, flush=True)


def container_groups(engine: Engine) -> tuple[list[NodeGroup], str]:
    """The local provider's groups; the GPU group's GPUs only where containers can have them."""
    groups = local_groups()
    runtimes = engine.info().get("Runtimes") or {}
    if "nvidia" in runtimes:
        gpus = detect_gpus()
        note = f"NVIDIA runtime present: gpu-workers get the host's {gpus} GPUs"
    else:
        gpus = 0
        note = "no NVIDIA runtime in this Docker Engine: gpu-workers run with 0 GPUs (never faked)"
    groups = [
        dataclasses.replace(group, num_gpus=gpus, num_cpus=max(2, gpus)) if group.name == GPU_GROUP else group
        for group in groups
    ]
    return groups, note


def node_container_command(group: NodeGroup) -> list[str]:
    """`ray start --block` for one group, inside its container.

    Workers wait (in the container) until the head's GCS port answers, so that
    every container starts at once; Ray finds each node's own address.
    """
    head = group.name == HEAD_GROUP
    ray = raynodes.node_command(
        group,
        temp_dir=Path("/tmp/ray"),
        gcs_port=GCS_PORT,
        dashboard_port=DASHBOARD_PORT if head else None,
        client_server_port=CLIENT_SERVER_PORT if head else None,
        ray="ray",
        node_ip=None,
        head_address=HEAD_GROUP,
        dashboard_host="0.0.0.0",
    )
    if head:
        return ray
    wait = f'until (exec 3<>"/dev/tcp/{HEAD_GROUP}/{GCS_PORT}") 2>/dev/null; do sleep 0.5; done; exec "$@"'
    return ["bash", "-c", wait, "wait-for-gcs", *ray]


def s3_container_command(bucket: str) -> list[str]:
    """The arguments of the S3 image (`weed` is its entrypoint, as in chrislusf/seaweedfs)."""
    return s3server.command(Path("/data"), bucket, {"s3.port": S3_PORT}, bind="0.0.0.0", weed="weed")[1:]


def run_arguments(
    *,
    name: str,
    role: str,
    cluster_id: str,
    state_root: Path,
    network: str,
    image: str,
    env_file: Path,
    command: list[str],
    publish: dict[int, int] | None = None,
    mounts: list[str] | None = None,
    user: str | None = None,
    shm_bytes: int | None = None,
    gpus: bool = False,
) -> list[str]:
    """`docker run` arguments for one container of the cluster (no secret among them)."""
    args = [
        "run",
        "--detach",
        f"--name={name}",
        f"--hostname={role}",
        f"--network={network}",
        f"--network-alias={role}",
        f"--label={CLUSTER_LABEL}={cluster_id}",
        f"--label={ROLE_LABEL}={role}",
        f"--label={STATE_LABEL}={state_root}",
        f"--env-file={env_file}",
        "--init",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
    ]
    for host_port, container_port in (publish or {}).items():
        args.append(f"--publish=127.0.0.1:{host_port}:{container_port}")
    args += [f"--mount={mount}" for mount in mounts or []]
    if user:
        args.append(f"--user={user}")
    if shm_bytes:
        args.append(f"--shm-size={shm_bytes}")
    if gpus:
        args.append("--gpus=all")
    return [*args, image, *command]


class DockerProvider:
    name = "docker"

    def __init__(self, state_dir: StateDir, dashboard_port: int = 8265, bucket: str = DEFAULT_BUCKET):
        self.state_dir = state_dir
        self.dashboard_port = dashboard_port
        self.bucket = bucket
        self.names = images.ImageNames.from_env()
        self._engine: Engine | None = None
        self._groups: list[NodeGroup] | None = None
        # This process talks to the cluster too (the state API): same token.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(state_dir.ensure_auth_token())

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir.root / "containers"

    # ------------------------------------------------------------------ engine

    def _load(self) -> dict[str, Any] | None:
        state = self.state_dir.load()
        if state and state.get("provider", "local") != self.name:
            raise ClusterError(
                f"a {state.get('provider', 'local')} cluster is recorded in {self.state_dir.root}: stop it first "
                f"(make cluster-down PROVIDER={state.get('provider', 'local')}), or use another CLUSTER_STATE_DIR"
            )
        return state

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

    @property
    def engine(self) -> Engine:
        assert self._engine is not None
        return self._engine

    def groups(self) -> list[NodeGroup]:
        if self._groups is None:
            self._groups, note = container_groups(self.engine)
            _say(note)
        return self._groups

    # ------------------------------------------------------------------ up

    def up(self) -> int:
        state = self._load()
        self._engine, started_daemon = self._connect(state)
        if state:
            health = self._health(state)
            if all(health.values()):
                nodes = len(health) - 1
                _say(f"already up: {state['dashboard_url']} ({nodes} Ray nodes, S3 at {state['s3_endpoint']})")
                self._print_usage()
                return 0
            if health.get(HEAD_GROUP):
                return self._repair(state, health)
            _say(
                "the previous cluster is partly down ("
                + ", ".join(k for k, ok in health.items() if not ok)
                + " gone): removing what is left and starting afresh"
            )
            started_daemon = started_daemon or state.get("daemon_pid")
            self._remove(state)
            self.state_dir.clear()

        if port_in_use(self.dashboard_port):
            raise ClusterError(
                f"port {self.dashboard_port} on 127.0.0.1 is already in use (another Ray dashboard?); "
                f"pick another with DASHBOARD_PORT=<port> (make cluster-up PROVIDER=docker DASHBOARD_PORT=8266)"
            )
        state = self._new_state(started_daemon)
        self._check_images(state)
        started = time.monotonic()
        self.state_dir.save(state)
        try:
            self._start_all(state)
        except BaseException:
            _say(f"cluster-up failed: removing its containers (their logs are kept in {self.state_dir.logs})")
            self._remove(state)
            self.state_dir.clear()
            daemon.stop_if_idle(self.engine, state.get("daemon_pid"))
            raise
        self._write_env(state)
        _say(f"cluster up in {time.monotonic() - started:.1f}s")
        self.status()
        self._print_usage()
        return 0

    def _new_state(self, started_daemon: int | None) -> dict[str, Any]:
        cluster_id = uuid.uuid4().hex
        s3_port = free_port()
        groups = self.groups()
        return {
            "provider": self.name,
            "cluster_id": cluster_id,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "docker_host": self.engine.host,
            "daemon_pid": started_daemon,
            "network": f"rl-{cluster_id[:12]}",
            "containers": {role: f"rl-{cluster_id[:8]}-{role}" for role in (S3, *(g.name for g in groups))},
            "images": {
                HEAD_GROUP: self.names.project("cpu"),
                CPU_GROUP: self.names.project("cpu"),
                GPU_GROUP: self.names.project("gpu"),
                S3: self._s3_image(),
            },
            "gpus": next(g.num_gpus for g in groups if g.name == GPU_GROUP),
            "dashboard_url": f"http://127.0.0.1:{self.dashboard_port}",
            "dashboard_port": self.dashboard_port,
            "s3_port": s3_port,
            "s3_endpoint": f"http://127.0.0.1:{s3_port}",
            "s3_endpoint_in_cluster": f"http://{S3}:{S3_PORT}",
            "bucket": self.bucket,
            "storage_uri": f"s3://{self.bucket}/{STORAGE_PREFIX}",
            # No host processes of ours: the local provider's key, kept empty for tools that read it.
            "pids": {},
        }

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

    def _write_secrets(self, state: dict[str, Any]) -> dict[str, Path]:
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
            capacity.CAPACITY_ENV_VAR: capacity.to_env(group_capacity(self.groups())),
        }
        files = {"node": self.secrets_dir / "node.env", S3: self.secrets_dir / "s3.env"}
        write_private(files["node"], "".join(f"{k}={v}\n" for k, v in node_env.items()))
        write_private(files[S3], "".join(f"{k}={v}\n" for k, v in keys.items()))
        token = self.secrets_dir / "auth_token"
        token.unlink(missing_ok=True)
        shutil.copyfile(self.state_dir.ensure_auth_token(), token)
        if os.geteuid() == 0:
            os.chown(token, IMAGE_UID, IMAGE_GID)
            os.chmod(token, 0o400)
        else:
            os.chmod(token, 0o444)  # readable in the container; on the host the 0700 folder guards it
        files["token"] = token
        return files

    def _s3_data_dir(self) -> tuple[Path, str]:
        """The S3 data folder (the local provider's: `.cluster/s3`) and the user the S3 container runs as:
        the folder's owner, as the local provider's `weed` does, so that the data stays its user's alone
        (uid 1000 may be someone else on the host)."""
        data = self.state_dir.s3_data
        data.mkdir(parents=True, exist_ok=True)
        owner = data.stat()
        return data, f"{owner.st_uid}:{owner.st_gid}"

    def _run(self, state: dict[str, Any], role: str, files: dict[str, Path]) -> None:
        common = {
            "name": state["containers"][role],
            "role": role,
            "cluster_id": state["cluster_id"],
            "state_root": self.state_dir.root,
            "network": state["network"],
            "image": state["images"][role],
        }
        if role == S3:
            data, user = self._s3_data_dir()
            args = run_arguments(
                **common,
                env_file=files[S3],
                command=s3_container_command(state["bucket"]),
                publish={state["s3_port"]: S3_PORT},
                mounts=[f"type=bind,source={data},target=/data"],
                user=user,
            )
        else:
            group = next(g for g in self.groups() if g.name == role)
            token = f"type=bind,source={files['token']},target={TOKEN_IN_CONTAINER},readonly"
            args = run_arguments(
                **common,
                env_file=files["node"],
                command=node_container_command(group),
                publish={state["dashboard_port"]: DASHBOARD_PORT} if role == HEAD_GROUP else None,
                mounts=[token],
                shm_bytes=group.object_store_bytes + 256 * 1024**2,
                gpus=bool(group.num_gpus),
            )
        self.engine.docker(*args, show=True)

    def _start_all(self, state: dict[str, Any]) -> None:
        files = self._write_secrets(state)
        network = state["network"]
        self.engine.docker(
            "network",
            "create",
            f"--label={CLUSTER_LABEL}={state['cluster_id']}",
            f"--label={STATE_LABEL}={self.state_dir.root}",
            network,
            show=True,
        )
        _say(f"starting S3 server (SeaweedFS), Ray head and workers as containers on network {network}")
        for role in state["containers"]:
            self._run(state, role, files)
        try:
            s3server.wait_until_serving(state["s3_endpoint"], state["bucket"], self.state_dir.s3_credentials())
        except TimeoutError as err:
            raise ClusterError(f"{err}\n{self._logs_tail(state, S3)}") from None
        self._wait_for_nodes(state, files)

    def _wait_for_nodes(self, state: dict[str, Any], files: dict[str, Path], old_nodes: Collection[str] = ()) -> None:
        """Until every group has an ALIVE node (not one of `old_nodes`: a killed container's node
        stays ALIVE in Ray for a while); a worker container that exits or has not registered
        after WORKER_RETRY_S is started again, once (as the local provider does)."""
        from controlplane.local.provider import list_nodes

        started = time.monotonic()
        retried: set[str] = set()
        names = [g.name for g in self.groups()]
        missing = names
        while time.monotonic() - started < NODE_TIMEOUT_S:
            try:
                nodes = list_nodes(state)
                alive = {n["group"] for n in nodes if n["state"] == "ALIVE" and n["node_id"] not in old_nodes}
            except Exception:  # the dashboard is still starting
                alive = set()
            missing = [name for name in names if name not in alive]
            if not missing:
                return
            health = self._health(state)
            for name in missing:
                died = not health.get(name)
                slow = time.monotonic() - started > WORKER_RETRY_S
                if not (died or slow):
                    continue
                if name == HEAD_GROUP or name in retried:
                    if died:
                        raise ClusterError(f"{name} exited during start-up\n{self._logs_tail(state, name)}")
                    continue
                _say(f"{name}: {'exited' if died else 'not registered yet'}; starting its container again")
                self._save_logs(state, [name])
                self.engine.docker("rm", "--force", state["containers"][name], check=False)
                retried.add(name)
                self._run(state, name, files)
            time.sleep(0.5)
        raise ClusterError(
            f"Ray nodes of {', '.join(missing)} did not come up within {NODE_TIMEOUT_S:.0f}s\n"
            + "\n".join(self._logs_tail(state, name) for name in missing)
        )

    def _repair(self, state: dict[str, Any], health: dict[str, bool]) -> int:
        missing = [name for name, ok in health.items() if not ok]
        _say(f"repairing: starting the containers of {', '.join(missing)} again")
        from controlplane.local.provider import list_nodes

        old_nodes = {n["node_id"] for n in list_nodes(state) if n["group"] in missing}
        files = self._write_secrets(state)
        self._save_logs(state, missing)
        for role in missing:
            self.engine.docker("rm", "--force", "--volumes", state["containers"][role], check=False)
            self._run(state, role, files)
        if S3 in missing:
            # Same published port and data folder: clients and running jobs keep their endpoint.
            try:
                s3server.wait_until_serving(state["s3_endpoint"], state["bucket"], self.state_dir.s3_credentials())
            except TimeoutError as err:
                raise ClusterError(f"{err}\n{self._logs_tail(state, S3)}") from None
        self._wait_for_nodes(state, files, old_nodes)
        self._write_env(state)
        _say(f"repaired: {', '.join(missing)} back")
        self.status()
        return 0

    def _health(self, state: dict[str, Any]) -> dict[str, bool]:
        """Role -> its container is running (head first, as the local provider reports)."""
        listing = self.engine.docker(
            "ps",
            "--all",
            f"--filter=label={CLUSTER_LABEL}={state['cluster_id']}",
            "--format",
            '{{.Label "' + ROLE_LABEL + '"}}\t{{.State}}',
            check=False,
        ).stdout
        running = {line.split("\t")[0] for line in listing.splitlines() if line.endswith("\trunning")}
        roles = [S3, *(g.name for g in self.groups())]
        return {role: role in running for role in roles}

    def _logs_tail(self, state: dict[str, Any], role: str, lines: int = 12) -> str:
        result = self.engine.docker("logs", "--tail", str(lines), state["containers"][role], check=False)
        text = (result.stdout + result.stderr).strip()
        return f"{role} (docker logs {state['containers'][role]}):\n  " + "\n  ".join(text.splitlines()[-lines:])

    def _save_logs(self, state: dict[str, Any], roles: list[str]) -> None:
        """Each container's output, appended to logs/<role>.log before the container goes."""
        self.state_dir.logs.mkdir(parents=True, exist_ok=True)
        for role in roles:
            result = self.engine.docker("logs", state["containers"][role], check=False)
            if result.returncode == 0:
                with open(self.state_dir.logs / f"{role}.log", "a") as log:
                    log.write(result.stdout + result.stderr)

    # ------------------------------------------------------------------ env

    def _write_env(self, state: dict[str, Any]) -> None:
        settings = ClientSettings(
            ray_address=state["dashboard_url"],
            auth_token_path=self.state_dir.ensure_auth_token(),
            storage_uri=state["storage_uri"],
            aws_region=S3_REGION,
            worker_groups=group_capacity(self.groups()),
            bucket=state["bucket"],
            s3_endpoint=state["s3_endpoint"],
            s3_keys=self.state_dir.s3_credentials(),
            state_dir=self.state_dir.root,
        )
        header = (
            f"Client settings for the containerised Ray cluster (PROVIDER=docker, `make cluster-up`, "
            f"{state['started_at']}).\n"
            "Use: source .cluster/env   then plain `ray job submit`, `ray job list`, boto3 or the AWS CLI work.\n"
            f"Its containers run on the Docker Engine at DOCKER_HOST={state['docker_host']}.\n"
            "The Ray token itself is not in this file: Ray reads it from RAY_AUTH_TOKEN_PATH.\n"
            "Holds the S3 server's keys: keep it private (mode 0600, git-ignored)."
        )
        self.state_dir.write_client_settings(settings, header)

    def _print_usage(self) -> None:
        env_file = self.state_dir.env_file
        shown = os.path.relpath(env_file) if not os.path.relpath(env_file).startswith("..") else str(env_file)
        _say(f"client settings: {shown}  (use: source {shown})")

    # ------------------------------------------------------------------ down

    def _remove(self, state: dict[str, Any] | None) -> list[str]:
        """Remove this cluster's containers (with their anonymous volumes), networks and volumes;
        also any left by an earlier cluster of this state folder. Returns the roles removed."""
        selectors = [f"label={STATE_LABEL}={self.state_dir.root}"]
        if state:
            selectors.insert(0, f"label={CLUSTER_LABEL}={state['cluster_id']}")
            self._save_logs(state, list(state.get("containers", {})))
        removed: list[str] = []
        for selector in selectors:
            listing = self.engine.docker(
                "ps", "--all", f"--filter={selector}", "--format", '{{.ID}}\t{{.Label "' + ROLE_LABEL + '"}}'
            ).stdout.split("\n")
            ids = [line.split("\t") for line in listing if line.strip()]
            if ids:
                self.engine.docker("rm", "--force", "--volumes", *(i for i, _ in ids), show=True)
                removed += [role for _, role in ids]
            for kind in ("network", "volume"):
                found = self.engine.docker(kind, "ls", "--quiet", f"--filter={selector}").stdout.split()
                if found:
                    self.engine.docker(kind, "rm", *found, show=True)
        shutil.rmtree(self.secrets_dir, ignore_errors=True)
        return removed

    def down(self, quiet: bool = False) -> int:
        state = self._load()
        if state:
            self._engine, started_daemon = self._connect(state, start=True)
        else:
            # Nothing recorded: still remove what an interrupted `up` of this state folder left, if an engine runs.
            try:
                self._engine, started_daemon = daemon.connect(start=False)
            except ClusterError:
                if not quiet:
                    _say("nothing to stop: no cluster is recorded in " + str(self.state_dir.root))
                return 0
        removed = self._remove(state)
        self.state_dir.clear()
        if os.environ.get(DELETE_DATA_VAR, "") not in ("", "0"):
            shutil.rmtree(self.state_dir.s3_data, ignore_errors=True)
            kept = f"S3 data deleted ({DELETE_DATA_VAR}=1)"
        else:
            kept = f"S3 data kept in {self.state_dir.s3_data}"
        # Our own dockerd goes when it has no container left and a command of ours started it.
        daemon.stop_if_idle(self.engine, started_daemon or (state or {}).get("daemon_pid"))
        if not quiet:
            if state or removed:
                _say(f"removed: {', '.join(removed) or 'nothing was left'}; {kept}")
            else:
                _say("nothing to stop: no cluster is recorded in " + str(self.state_dir.root))
        return 0

    # ------------------------------------------------------------------ status

    def status(self) -> int:
        from controlplane.local.provider import list_nodes

        state = self._load()
        if not state:
            raise ClusterError(
                f"no docker cluster is up (nothing recorded in {self.state_dir.root}); "
                "run `make cluster-up PROVIDER=docker`"
            )
        if self._engine is None:
            self._engine, _ = self._connect(state, start=False)
        health = self._health(state)
        _say(f"provider: docker   started: {state['started_at']}   DOCKER_HOST={state['docker_host']}")
        _say(f"Jobs API / dashboard: {state['dashboard_url']} (token auth on)")
        _say(
            f"S3: {state['s3_endpoint']}  bucket: {state['bucket']}  storage: {state['storage_uri']}  "
            f"container: {'running' if health[S3] else 'DOWN'}"
        )
        for role, name in state["containers"].items():
            _say(f"  {role:<12} {name:<24} {'running' if health.get(role) else 'DOWN':<8} {state['images'][role]}")
        try:
            nodes = list_nodes(state)
        except Exception as err:  # noqa: BLE001 - shown to the user as is
            _say(f"Ray nodes: cannot list ({err.__class__.__name__}: {err})")
            return 1
        rows = [("GROUP", "STATE", "CPUS", "GPUS", "NODE ID")]
        for node in sorted(nodes, key=lambda n: (n["group"], n["state"], n["node_id"])):
            rows.append((node["group"], node["state"], f"{node['cpus']:g}", f"{node['gpus']:g}", node["node_id"][:12]))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            _say("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        down = [name for name, ok in health.items() if not ok]
        if down:
            _say(f"DOWN: {', '.join(down)} (run `make cluster-up PROVIDER=docker` to repair)")
            return 1
        return 0
