"""`up`, `down` and `status`, written once for the providers that run their own nodes (local, docker).

A provider implements small typed steps, as SkyPilot's `sky/provision` does (start the nodes,
wait until they are ready, write the client settings, report health and status, tear down);
this class decides what `make cluster-up` does with them:

    nothing recorded        start afresh (up to `start_attempts` times, fresh ids and ports each)
    everything healthy      already up: say so and change nothing
    the head is healthy     repair: start again only what died; running jobs keep going
    the head is gone        the rest is stopped and the cluster started afresh

What a step starts is recorded in state.json as soon as it is started, so that `down` can
always stop it, and a failed start tears down what it had started before it reports.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from controlplane import processes
from controlplane.clusterspec import LOCAL_OVERLAY, ClusterSpec
from controlplane.errors import ClusterError
from controlplane.local.s3server import DEFAULT_BUCKET, S3_REGION
from controlplane.ports import port_in_use
from controlplane.provider import ClientSettings
from controlplane.state import StateDir
from jobs.common.cluster.placement import HEAD_GROUP
from jobs.common.cluster.ports import DASHBOARD_PORT

State = dict[str, Any]

SPEC_FILE = "raycluster.json"
# Never inherited by what a cluster starts on this host: a user's own cluster, token or cloud keys.
SCRUBBED = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "AWS_PROFILE", "AWS_SESSION_TOKEN")


def say(message: str) -> None:
    print(message, flush=True)


class ProvisionedCluster(ABC):
    """A provider whose nodes this machine starts; subclasses implement the steps below."""

    name: str
    # A start that fails (a node that dies while starting on a busy machine) is tried again from scratch.
    start_attempts = 1

    def __init__(
        self,
        state_dir: StateDir,
        dashboard_port: int = DASHBOARD_PORT,
        bucket: str = DEFAULT_BUCKET,
        overlay: str = LOCAL_OVERLAY,
    ):
        self.state_dir = state_dir
        self.dashboard_port = dashboard_port
        self.bucket = bucket
        self.overlay = overlay
        self._spec: ClusterSpec | None = None
        # This process talks to the cluster too (the state API, the GCS): same token.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(state_dir.ensure_auth_token())

    def host_process_env(self, state: State) -> dict[str, str]:
        """What every process this cluster starts on the host begins with: this environment less
        SCRUBBED and every AWS_ setting, tagged with the cluster's marker (so `down` finds it), the
        cluster's token by its path, no usage stats."""
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith("AWS_")}
        env.update(
            {
                processes.MARKER_VAR: state["cluster_id"],
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self.state_dir.ensure_auth_token()),
                "RAY_USAGE_STATS_ENABLED": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    # ------------------------------------------------------------------ the steps

    @abstractmethod
    def new_state(self) -> State:
        """Ids, ports and paths of a fresh cluster (saved before anything starts)."""

    @abstractmethod
    def start(self, state: State) -> None:
        """Start every part of a fresh cluster (recording each in `state` as it starts)."""

    @abstractmethod
    def restart(self, state: State, roles: Sequence[str]) -> None:
        """Start these parts again, with the ports and data they had."""

    @abstractmethod
    def wait_until_ready(self, state: State, restarted: Sequence[str] = ()) -> None:
        """Until every node is registered in Ray, the S3 server serves and the Jobs API answers."""

    def write_client_settings(self, state: State) -> None:
        """`.cluster/env`: the same file whatever runs the cluster (controlplane/provider.py)."""
        settings = ClientSettings(
            ray_address=state["dashboard_url"],
            auth_token_path=self.state_dir.ensure_auth_token(),
            storage_uri=state["storage_uri"],
            aws_region=S3_REGION,
            worker_groups=self.worker_capacity(),
            bucket=state["bucket"],
            s3_endpoint=state["s3_endpoint"],
            s3_keys=self.state_dir.s3_credentials(),
            state_dir=self.state_dir.root,
        )
        header = "\n".join(
            [
                f"Client settings for the {self.name} Ray cluster (PROVIDER={self.name}, `make cluster-up`, "
                f"{state['started_at']}).",
                "Use: source .cluster/env   then plain `ray job submit`, `ray job list`, boto3 or the AWS CLI work.",
                *self.where_it_runs(state),
                "The Ray token itself is not in this file: Ray reads it from RAY_AUTH_TOKEN_PATH.",
                "Holds the S3 server's keys: keep it private (mode 0600, git-ignored).",
            ]
        )
        self.state_dir.write_client_settings(settings, header)

    def worker_capacity(self) -> dict[str, dict[str, float]]:
        """What each worker group can ever offer (RL_WORKER_GROUPS): jobs check their plan against it."""
        return self.spec.capacity()

    def where_it_runs(self, state: State) -> list[str]:
        """Lines for the env file's header about where the cluster's parts run."""
        return []

    @abstractmethod
    def health(self, state: State) -> dict[str, bool]:
        """Each part this provider keeps running -> whether it runs. HEAD_GROUP decides repair or afresh."""

    @abstractmethod
    def teardown(self, state: State | None, keep_logs: bool) -> list[str]:
        """Stop and remove everything of this cluster (and leftovers of its state folder); what was stopped."""

    @abstractmethod
    def show_status(self, state: State) -> int:
        """Print the cluster's status; 1 when a part is down."""

    def after_ready(self, state: State) -> None:
        """What starts only once the nodes are ready (the docker provider's autoscaler, which would
        otherwise replace nodes that are still starting)."""
        return None

    def check_can_start(self) -> None:
        """What must hold before a fresh start (checked before anything is started)."""
        if port_in_use(self.dashboard_port):
            raise ClusterError(
                f"port {self.dashboard_port} on 127.0.0.1 is already in use (another Ray dashboard?); "
                f"pick another with DASHBOARD_PORT=<port> (make cluster-up PROVIDER={self.name} DASHBOARD_PORT=8266)"
            )

    def logs_hint(self, state: State) -> str:
        return f"logs kept in {self.state_dir.logs}"

    def after_teardown(self, state: State | None) -> None:
        """After `down` or a failed start (the docker provider stops a dockerd it started here)."""
        return None

    def load_state(self) -> State | None:
        state = self.state_dir.load()
        if state and state.get("provider", "local") != self.name:
            other = state.get("provider", "local")
            raise ClusterError(
                f"a {other} cluster is recorded in {self.state_dir.root}: stop it first "
                f"(make cluster-down PROVIDER={other}), or use another CLUSTER_STATE_DIR"
            )
        return state

    # ------------------------------------------------------------------ the shape it runs

    @property
    def spec_file(self):
        return self.state_dir.root / SPEC_FILE

    def recorded_spec(self) -> ClusterSpec:
        """The cluster as it was started (the overlay may have changed since)."""
        return ClusterSpec.load(self.spec_file)

    @property
    def spec(self) -> ClusterSpec:
        """The running cluster's shape as recorded, else the overlay's for this host."""
        if self._spec is None:
            self._spec = self.recorded_spec() if self.spec_file.exists() else self._spec_from_overlay()
        return self._spec

    def _spec_from_overlay(self) -> ClusterSpec:
        spec, notes = self.fit_to_host(ClusterSpec.from_overlay(self.overlay))
        for note in notes:
            say(note)
        return spec

    def record_fresh_spec(self, how: str) -> None:
        """A fresh start: the overlay's shape as of now, recorded (and said, with how the groups run)."""
        self._spec = self._spec_from_overlay()
        self.spec.save(self.spec_file)
        say(f"{self.spec.describe()}\n(PROVIDER={self.name}: {how})")

    @abstractmethod
    def fit_to_host(self, spec: ClusterSpec) -> tuple[ClusterSpec, list[str]]:
        """The overlay's shape as this host can run it, and a line for each change."""

    # ------------------------------------------------------------------ up, down, status

    def up(self) -> int:
        state = self.load_state()
        if state:
            health = self.health(state)
            if all(health.values()):
                say(f"already up: {state['dashboard_url']} (S3 at {state['s3_endpoint']})")
                self.print_usage()
                return 0
            if health.get(HEAD_GROUP):
                return self._repair(state, [part for part, ok in health.items() if not ok])
            gone = ", ".join(part for part, ok in health.items() if not ok)
            say(f"the previous cluster is partly down ({gone} gone): stopping what is left and starting afresh")
            self.teardown(state, keep_logs=True)
            self.state_dir.clear()

        self.check_can_start()
        started = time.monotonic()
        for attempt in range(1, self.start_attempts + 1):
            state = self.new_state()
            self.state_dir.save(state)
            try:
                self.start(state)
                self.wait_until_ready(state)
                self.after_ready(state)
                break
            except ClusterError as err:
                self._tear_down_failed(state)
                if attempt == self.start_attempts:
                    say(f"cluster-up failed; {self.logs_hint(state)}")
                    raise
                say(f"cluster-up failed ({str(err).splitlines()[0]}); stopped it ({self.logs_hint(state)}), "
                    "starting once more")  # fmt: skip
            except BaseException:
                say(f"cluster-up failed: stopping what it started ({self.logs_hint(state)})")
                self._tear_down_failed(state)
                raise
        self.write_client_settings(state)
        say(f"cluster up in {time.monotonic() - started:.1f}s")
        self.show_status(state)
        self.print_usage()
        return 0

    def _tear_down_failed(self, state: State) -> None:
        self.teardown(state, keep_logs=True)
        self.state_dir.clear()
        self.after_teardown(state)

    def _repair(self, state: State, missing: list[str]) -> int:
        say(f"repairing: restarting {', '.join(missing)}")
        self.restart(state, missing)
        self.state_dir.save(state)
        self.wait_until_ready(state, restarted=missing)
        self.write_client_settings(state)
        say(f"repaired: {', '.join(missing)} back")
        self.show_status(state)
        return 0

    def down(self, quiet: bool = False) -> int:
        state = self.load_state()
        removed = self.teardown(state, keep_logs=False)
        self.state_dir.clear()
        self.after_teardown(state)
        if not quiet:
            if state or removed:
                say(f"stopped: {', '.join(removed) or 'nothing was left'}; {self.data_note()}")
            else:
                say("nothing to stop: no cluster is recorded in " + str(self.state_dir.root))
        return 0

    def data_note(self) -> str:
        return f"S3 data kept in {self.state_dir.s3_data}"

    def status(self) -> int:
        state = self.load_state()
        if not state:
            raise ClusterError(
                f"no {self.name} cluster is up (nothing recorded in {self.state_dir.root}); "
                f"run `make cluster-up{'' if self.name == 'local' else ' PROVIDER=' + self.name}`"
            )
        return self.show_status(state)

    def print_usage(self) -> None:
        env_file = self.state_dir.env_file
        shown = os.path.relpath(env_file) if not os.path.relpath(env_file).startswith("..") else str(env_file)
        say(f"client settings: {shown}  (use: source {shown})")
