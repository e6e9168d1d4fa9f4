"""The Docker Engine that `make images-local` and PROVIDER=docker talk to.

Which engine, in this order:
  1. DOCKER_HOST, when it is set: used as it is, never started or stopped here;
  2. the system engine at /var/run/docker.sock, when it answers;
  3. else the project's own `dockerd`, started here (as root) with its own data
     root (~/.cache/ray-rl/docker/data: images and build cache persist across
     runs), exec root, pidfile and socket, and stopped by its PID.

Our own dockerd leaves the host's network as it is: no iptables rules, no IP
forwarding or masquerading turned on, no default bridge (`--iptables=false
--ip-forward=false --ip-masq=false --bridge=none`). Clusters get a private
bridge network each and publish ports on 127.0.0.1 only (docker-proxy).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from controlplane import processes
from controlplane.errors import ClusterError

SYSTEM_SOCKET = Path("/var/run/docker.sock")
# Set in our dockerd's environment; containerd and its shims inherit it (containers do not),
# so that whatever outlives a stopped daemon can be found and stopped, and nothing else.
DAEMON_MARKER_PREFIX = "dockerd-"
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 45.0


def say(message: str) -> None:
    print(message, flush=True)


def cache_dir() -> Path:
    """~/.cache/ray-rl (or $RL_CACHE_DIR): what makes a second build fast, never needed for a first."""
    if os.environ.get("RL_CACHE_DIR"):
        return Path(os.environ["RL_CACHE_DIR"]).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (base / "ray-rl").resolve()


def docker_cli() -> str:
    found = shutil.which("docker")
    if not found:
        raise ClusterError("the `docker` command is missing: install Docker (Debian: apt-get install docker.io)")
    return found


@dataclass(frozen=True)
class Engine:
    """One Docker Engine, reached through the docker CLI with DOCKER_HOST set."""

    host: str

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, **(extra or {})}

    def docker(
        self,
        *args: str,
        check: bool = True,
        capture: bool = True,
        timeout: float | None = 300,
        show: bool = False,
        cli: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run `docker <args>` against this engine; `show` prints the command first."""
        cmd = [cli or docker_cli(), *args]
        if show:
            say("$ " + " ".join(_shown(cmd)))
        result = subprocess.run(
            cmd, env=self.env(), capture_output=capture, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip() if capture else ""
            raise ClusterError(f"`docker {' '.join(_shown(args)[:3])} ...` failed (exit {result.returncode}): {detail}")
        return result

    def ping(self, timeout_s: float = 5.0) -> bool:
        if self.host.startswith("unix://"):
            return _ping_unix(self.host[len("unix://") :], timeout_s)
        try:
            version = self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=timeout_s)
            return version.returncode == 0
        except (subprocess.TimeoutExpired, ClusterError):
            return False

    def info(self) -> dict:
        return json.loads(self.docker("info", "--format", "{{json .}}").stdout)

    def image_id(self, ref: str) -> str | None:
        result = self.docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def image_label(self, ref: str, key: str) -> str | None:
        result = self.docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{key}"}}}}', ref, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def image_exists(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def remove_if_untagged(self, image_id: str) -> None:
        """Drop an image a rebuild replaced (left untagged), unless a tag or a container still uses it."""
        tags = self.docker("image", "inspect", "--format", "{{len .RepoTags}}", image_id, check=False)
        if tags.returncode == 0 and tags.stdout.strip() == "0":
            self.docker("image", "rm", image_id, check=False)

    def image_size(self, ref: str) -> int:
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def _shown(args: Sequence[str]) -> list[str]:
    """Arguments as a shell would need them (the printed command can be pasted)."""
    return [shlex.quote(arg) for arg in args]


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _ping_unix(path: str, timeout_s: float) -> bool:
    if not Path(path).exists():
        return False
    connection = _UnixHTTPConnection(path, timeout_s)
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class OwnDaemon:
    """A dockerd of our own: its data root under `root`, started and stopped by PID."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.data_root = self.root / "data"
        self.run_dir = _run_dir(self.root)
        self.socket = self.run_dir / "docker.sock"
        self.pidfile = self.run_dir / "docker.pid"
        self.log = self.root / "dockerd.log"
        self.marker = DAEMON_MARKER_PREFIX + hashlib.sha256(str(self.root).encode()).hexdigest()[:16]

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def engine(self) -> Engine:
        return Engine(self.host)

    def running(self) -> bool:
        return self.engine.ping()

    def pid(self) -> int | None:
        """The PID of our dockerd, if one runs (checked against its command line, not just the pidfile)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if not processes.is_alive(pid) or f"--data-root={self.data_root}".encode() not in cmdline:
            return None
        return pid

    def command(self) -> list[str]:
        dockerd = shutil.which("dockerd")
        if not dockerd:
            raise ClusterError(
                "no Docker Engine here: `dockerd` is missing (Debian: apt-get install docker.io), "
                "DOCKER_HOST is not set and /var/run/docker.sock does not answer"
            )
        return [
            dockerd,
            f"--config-file={self.root / 'daemon.json'}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.run_dir / 'exec'}",
            f"--pidfile={self.pidfile}",
            f"--host={self.host}",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
        ]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> int:
        """Start it (or find it started by someone else meanwhile). Returns its PID."""
        if os.geteuid() != 0:
            raise ClusterError(
                "starting a Docker Engine needs root: run as root, or start Docker yourself and set "
                "DOCKER_HOST (or use the system engine at /var/run/docker.sock)"
            )
        cmd = self.command()
        with self._lock():
            if self.running() and self.pid():
                return self.pid()  # type: ignore[return-value]
            self.data_root.mkdir(parents=True, exist_ok=True)
            self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.root / "daemon.json").write_text("{}\n")  # not /etc/docker/daemon.json: our flags only
            say("$ " + " ".join(cmd) + f"   (log: {self.log})")
            env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
            env[processes.MARKER_VAR] = self.marker
            pid = processes.start_in_own_session(cmd, env, self.log)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.running():
                    driver = self.engine.docker("info", "--format", "{{.Driver}}").stdout.strip()
                    say(f"Docker Engine up: DOCKER_HOST={self.host} (pid {pid}, storage driver {driver})")
                    return pid
                if not processes.is_alive(pid):
                    break
                time.sleep(0.2)
            tail = "\n  ".join(self.log.read_text(errors="replace").strip().splitlines()[-10:])
            self._stop_pid(pid)
            raise ClusterError(f"dockerd did not come up within {timeout_s:.0f}s; {self.log}:\n  {tail}")

    def stop(self) -> bool:
        """Stop our dockerd (its containers stop with it). False when none was running."""
        pid = self.pid()
        if pid is None:
            return False
        self._stop_pid(pid)
        say(f"Docker Engine stopped (pid {pid}); images kept in {self.data_root}")
        return True

    def _stop_pid(self, pid: int) -> None:
        # dockerd first, alone: it stops its containers and then its containerd.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and processes.is_alive(pid):
            time.sleep(0.1)
        processes.stop_groups([pid], grace_s=2.0)
        leftovers = processes.processes_with_marker(self.marker)
        if leftovers:
            processes.kill_pids(leftovers)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _run_dir(root: Path) -> Path:
    """Sockets live here: Unix socket paths must stay short (containerd's are the longest)."""
    candidate = root / "run"
    if len(str(candidate / "exec" / "containerd" / "containerd-debug.sock")) < 100:
        return candidate
    return Path("/tmp") / f"rl-dockerd-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def project_daemon() -> OwnDaemon:
    return OwnDaemon(cache_dir() / "docker")


def connect(start: bool = True) -> tuple[Engine, int | None]:
    """The engine to use, and the PID of a dockerd started by this call (None: it was running already)."""
    if os.environ.get("DOCKER_HOST"):
        engine = Engine(os.environ["DOCKER_HOST"])
        if not engine.ping():
            raise ClusterError(f"the Docker Engine at DOCKER_HOST={engine.host} does not answer")
        return engine, None
    system = Engine(f"unix://{SYSTEM_SOCKET}")
    if system.ping():
        return system, None
    own = project_daemon()
    if own.running():
        return own.engine, None
    if not start:
        raise ClusterError("no Docker Engine is running: not at DOCKER_HOST, /var/run/docker.sock or " + own.host)
    return own.engine, own.start()


def stop_if_idle(engine: Engine, started_pid: int | None) -> None:
    """Stop the project's dockerd if this command started it and no container is left on it."""
    if not started_pid:
        return
    own = project_daemon()
    if own.host != engine.host or own.pid() != started_pid:
        return
    remaining = engine.docker("ps", "-aq", check=False).stdout.split()
    if remaining:
        say(f"Docker Engine left running: {len(remaining)} containers still on it")
        return
    own.stop()
