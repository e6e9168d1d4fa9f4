"""A checkpoint on preemption: SIGTERM ends a run at the next iteration boundary,
and a node being drained ends the sweep trials on it the same way.

`ray job stop`, a pod being deleted (KubeRay, after its preStop hook) and the
cluster launcher taking a node away all send the driver SIGTERM, then SIGKILL
after a grace period. Without a handler the run dies at once and loses every
iteration since its last periodic checkpoint. With it, the iteration in flight
finishes, a checkpoint of it is written through the normal path (pointer last)
and the run exits: resubmitted, it resumes at the iteration it was on.

The grace period must cover one iteration and one checkpoint: the local
provider sets Ray's RAY_JOB_STOP_WAIT_TIME_S on the head (default 3 s) to
PREEMPTION_GRACE_S; the KubeRay manifests' terminationGracePeriodSeconds match.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from jobs.common.cluster.ports import DASHBOARD_PORT

PREEMPTION_GRACE_S = 60


class StopRequest:
    """Set by SIGTERM; the training loop checks it after every iteration."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.received_at: float | None = None

    def install(self) -> StopRequest:
        signal.signal(signal.SIGTERM, self._received)
        return self

    def _received(self, signum, frame) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            self.received_at = time.monotonic()
            print(f"{self.signal_name} received: finishing this iteration, then a checkpoint", flush=True)

    @property
    def requested(self) -> str | None:
        """Why the run must stop now ("preempted (SIGTERM)"), or None."""
        return f"preempted ({self.signal_name})" if self.signal_name else None


class NodeDrain:
    """Set when the node this process runs on is being drained.

    Ray's drain API is how a node is taken away gracefully: autoscaler v2 drains a node before
    removing it, the worker pods' preStop hook drains their own node (`--drain-this-node`, below),
    and `ray drain-node` does it by hand. A sweep trial checks after every iteration (at most once
    a second, one GCS call), checkpoints the iteration it is on, then waits for the node to go:
    its actor then dies as preempted, which Tune does not count against `max_failures`, and the
    trial is restarted elsewhere from that checkpoint.
    """

    def __init__(self, check_every_s: float = 1.0) -> None:
        self.check_every_s = check_every_s
        self.deadline_ms: int | None = None
        self._checked_at = -check_every_s

    @property
    def requested(self) -> str | None:
        if self.deadline_ms is None and time.monotonic() - self._checked_at >= self.check_every_s:
            self._checked_at = time.monotonic()
            self.deadline_ms = _this_nodes_drain_deadline_ms()
        if self.deadline_ms is None:
            return None
        left = f", {self.seconds_left():.0f} s before it goes" if self.deadline_ms else ""
        return f"preempted (node draining{left})"

    def seconds_left(self) -> float:
        return max(0.0, (self.deadline_ms or 0) / 1000 - time.time())

    def wait_for_the_node_to_go(self, after_deadline_s: float = PREEMPTION_GRACE_S) -> None:
        """Block until the node is removed (this process dies with it); a node still here
        `after_deadline_s` past its deadline (or, with no deadline, after that long) was not taken:
        raise, and Tune retries the trial from its checkpoint."""
        time.sleep(self.seconds_left() + after_deadline_s)
        raise RuntimeError(f"the node was drained but is still here {after_deadline_s:.0f} s after its deadline")


def _this_nodes_drain_deadline_ms() -> int | None:
    """The drain deadline of this process's node (0: no deadline), or None when it is not draining."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    draining = ray._private.worker.global_worker.gcs_client.get_draining_nodes()  # {node id (hex): deadline ms}
    return draining.get(node_id)


def drain_this_node(address: str, grace_s: float = PREEMPTION_GRACE_S) -> int:
    """A worker pod's preStop hook: ask the GCS to drain this node as preempted, with a deadline of
    the grace period. Ray then schedules nothing new here; the sweep trials on it checkpoint the
    iteration they are on (NodeDrain). Waits until they have had the time for that, unless the node
    is idle. Talks to the GCS only: the node's own raylet may be gone already (autoscaler v2 stops
    Ray on a node it drained as idle before the node is removed), and then there is nothing to do."""
    from ray._private.services import canonicalize_bootstrap_address_or_die
    from ray._raylet import GcsClient
    from ray.core.generated import autoscaler_pb2

    gcs_address = canonicalize_bootstrap_address_or_die(address)
    gcs = GcsClient(address=gcs_address)
    node_id = _this_nodes_id(gcs)
    if node_id is None:
        print("no live Ray node here (drained or stopped already): nothing to drain", flush=True)
        return 0
    deadline_ms = int((time.time() + grace_s) * 1000)
    accepted, why = gcs.drain_node(
        node_id, autoscaler_pb2.DRAIN_NODE_REASON_PREEMPTION, "pod terminating (preStop)", deadline_ms, timeout=30
    )
    if not accepted:
        print(f"drain of node {node_id} refused: {why}", flush=True)
        return 1
    if _is_idle(gcs_address, node_id):
        print(f"draining node {node_id}: idle, nothing to checkpoint", flush=True)
        return 0
    print(f"draining node {node_id}: its trials checkpoint the iteration they are on", flush=True)
    # An iteration and a checkpoint: the trials check for the drain after every iteration.
    time.sleep(float(os.environ.get(DRAIN_WAIT_VAR) or DRAIN_WAIT_S))
    # Then the node is gone as preempted, before the pod's SIGTERM: a raylet stopped by SIGTERM tells the
    # GCS it ended as expected, and Tune would count the failure of every trial on it (max_failures).
    unregister_node(gcs_address, bytes.fromhex(node_id), PREEMPTED, "drained by its pod's preStop hook")
    print(f"node {node_id} ended as preempted: its trials go on elsewhere from their checkpoints", flush=True)
    return 0


PREEMPTED = "AUTOSCALER_DRAIN_PREEMPTED"
LOST = "UNEXPECTED_TERMINATION"


def unregister_node(gcs_address: str, node_id: bytes, reason: str, why: str) -> None:
    """What a raylet asks of the GCS when it shuts down (NodeInfoGcsService.UnregisterNode), asked for it:
    the node is dead at once, for `reason` (a NodeDeathInfo reason: PREEMPTED, LOST). Actors on a node
    ended as preempted die as preempted, and Tune restarts their trials without counting a failure."""
    import grpc
    from ray.core.generated import common_pb2, gcs_service_pb2, gcs_service_pb2_grpc

    token = os.environ.get("RAY_AUTH_TOKEN") or Path(os.environ["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    death = common_pb2.NodeDeathInfo(reason=common_pb2.NodeDeathInfo.Reason.Value(reason), reason_message=why)
    with grpc.insecure_channel(gcs_address) as channel:
        gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).UnregisterNode(
            gcs_service_pb2.UnregisterNodeRequest(node_id=node_id, node_death_info=death),
            timeout=10,
            metadata=(("authorization", f"Bearer {token}"),),
        )


def _this_nodes_id(gcs) -> str | None:
    """This machine's live Ray node (hex id): by its cloud instance id (the pod's or container's name,
    which KubeRay and PROVIDER=docker set as RAY_CLOUD_INSTANCE_ID), else by its address."""
    from ray._private.services import get_node_ip_address
    from ray.core.generated import gcs_pb2

    alive = [info for info in gcs.get_all_node_info(timeout=30).values() if info.state == gcs_pb2.GcsNodeInfo.ALIVE]
    instance = os.environ.get("RAY_CLOUD_INSTANCE_ID")
    found = [info for info in alive if instance and info.instance_id == instance]
    if not found:
        address = get_node_ip_address()
        found = [info for info in alive if info.node_manager_address == address]
    return found[0].node_id.hex() if len(found) == 1 else None


def _is_idle(gcs_address: str, node_id: str) -> bool:
    """Whether the node runs nothing (no task, actor or placement group holds its resources)."""
    from ray.autoscaler.v2.sdk import get_cluster_status

    try:
        status = get_cluster_status(gcs_address, timeout=10)
    except Exception:  # noqa: BLE001 - unknown: wait, as for a busy node
        return False
    return any(node.node_id == node_id for node in status.idle_nodes)


# How long the preStop hook waits after draining a busy node: one iteration of a sweep trial and its
# checkpoint. A group whose iterations are short can say less in its pods' env (RL_DRAIN_WAIT_S).
DRAIN_WAIT_VAR = "RL_DRAIN_WAIT_S"
DRAIN_WAIT_S = 30


def stop_running_jobs(address: str = f"http://127.0.0.1:{DASHBOARD_PORT}", grace_s: float = PREEMPTION_GRACE_S) -> int:
    """The head pod's preStop hook: `ray job stop` every running job (SIGTERM to its driver,
    which checkpoints the iteration it is on) and wait, within the grace period, until they end."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    live = (JobStatus.PENDING, JobStatus.RUNNING)
    running = [job.submission_id for job in client.list_jobs() if job.status in live and job.submission_id]
    for job_id in running:
        client.stop_job(job_id)
        print(f"stopping {job_id}: its driver checkpoints the iteration it is on", flush=True)
    deadline = time.monotonic() + grace_s
    while running and time.monotonic() < deadline:
        running = [job_id for job_id in running if client.get_job_status(job_id) in live]
        time.sleep(1)
    return 1 if running else 0


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m jobs.common.run.preemption")
    hook = parser.add_mutually_exclusive_group(required=True)
    hook.add_argument("--stop-running-jobs", action="store_true", help="the head's preStop hook")
    hook.add_argument("--drain-this-node", action="store_true", help="a worker's preStop hook")
    parser.add_argument("--address", help="Jobs API (head) or GCS address (worker; default: this node's)")
    args = parser.parse_args()
    if args.stop_running_jobs:
        sys.exit(stop_running_jobs(args.address or f"http://127.0.0.1:{DASHBOARD_PORT}"))
    sys.exit(drain_this_node(args.address or "auto"))
