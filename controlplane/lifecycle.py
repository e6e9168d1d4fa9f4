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

from controlplane.clusterspec import ClusterSpec
from controlplane.errors import ClusterError
from controlplane.ports import port_in_use
from controlplane.state import StateDir
from jobs.common.cluster.placement import HEAD_GROUP

State = dict[str, Any]

SPEC_FILE = "raycluster.json"


def say(message: str) -> None:
    print(message, flush=True)


class ProvisionedCluster(ABC):
    """A provider whose nodes this machine starts; subclasses implement the steps below."""

    name: str
    # A start that fails (a node that dies while starting on a busy machine) is tried again from scratch.
    start_attempts = 1

    def __init__(self, state_dir: StateDir, dashboard_port: int = 8265):
        self.state_dir = state_dir
        self.dashboard_port = dashboard_port
        # This process talks to the cluster too (the state API, the GCS): same token.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(state_dir.ensure_auth_token())

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

    @abstractmethod
    def write_client_settings(self, state: State) -> None:
        """`.cluster/env` (and what else clients read)."""

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
