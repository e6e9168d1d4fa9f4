"""Training that heals in the same job: what counts as a lost actor, and how many losses a run takes.

A lost env runner is Ray's and RLlib's to bring back (jobs/common/rllib/ppo.py). A lost learner, or
the one actor that holds a small experiment, ends the algorithm: `jobs.train` then rebuilds it from
the run's latest checkpoint and goes on, up to the experiment's `max_failures` times, as Tune does
for a sweep's trials. Rebuilding waits until the cluster has room again (`make cluster-up` repairs
a local node; the docker cluster's autoscaler adds one for the waiting actors).
"""

from __future__ import annotations

import re
import time

from jobs.common.errors import UserError


def _innermost(err: BaseException) -> BaseException:
    import ray.exceptions as errors

    for _ in range(5):  # a task's error wraps what killed it
        cause = getattr(err, "cause", None)
        if not isinstance(err, errors.RayTaskError) or not isinstance(cause, BaseException) or cause is err:
            break
        err = cause
    return err


def lost_actor(err: BaseException) -> str | None:
    """One line saying what was lost, when `err` is the loss of an actor, a worker or a node; else None."""
    import ray.exceptions as errors

    err = _innermost(err)
    lost = (errors.RayActorError, errors.NodeDiedError, errors.WorkerCrashedError, errors.ObjectLostError)
    if not isinstance(err, lost):
        return None
    text = str(err)
    actor = re.search(r"class_name: (\S+)", text)
    if isinstance(err, errors.ActorUnavailableError):
        rpc = re.search(r"RPC error: ([^.]+?)(?: rpc_code|\.|$)", text)
        return "an actor became unreachable" + (f" ({rpc.group(1).strip()})" if rpc else "")
    why = re.search(r"The actor died because (.+)", text) or re.search(r"terminated unexpectedly: (.+)", text)
    if actor:
        return f"{actor.group(1)} died" + (f" ({why.group(1).strip().rstrip('.')})" if why else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else 'lost'}"


def node_of(err: BaseException) -> str | None:
    """The node the lost actor was on: named in Ray's message, else the actor's record in the GCS."""
    err = _innermost(err)
    found = re.search(r"Node Id: ([0-9a-f]{56})", str(err))
    if found:
        return found.group(1)
    actor_id = getattr(err, "actor_id", None)
    if not actor_id:
        return None
    try:
        from ray.util.state import get_actor

        actor = get_actor(actor_id if isinstance(actor_id, str) else actor_id.hex(), timeout=10)
    except Exception:  # noqa: BLE001 - no record to be had: rebuild without waiting
        return None
    return getattr(actor, "node_id", None) if actor else None


def wait_until_node_is_gone(err: BaseException, timeout_s: float = 60.0) -> None:
    """Until Ray stops counting the lost actor's node as alive, when that node is gone (its health checks
    take seconds): an actor placed on it meanwhile would never run. A node still alive after `timeout_s`
    lost only the actor's process: the rebuild may go there."""
    import ray

    node = node_of(err)
    if node is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(n["NodeID"] == node and n["Alive"] for n in ray.nodes()):
            return
        time.sleep(0.5)


class Recoveries:
    """How many times this run was rebuilt; past `max_failures` the job fails, naming the cause."""

    def __init__(self, max_failures: int):
        self.max_failures = max_failures
        self.count = 0

    def failed(self, cause: str, latest: str | None) -> None:
        self.count += 1
        if self.count > self.max_failures:
            where = f"the latest checkpoint is {latest}: rerun to resume" if latest else "no checkpoint was written"
            raise UserError(
                f"training failed: {cause} ({self.count} losses, more than max_failures = {self.max_failures}); {where}"
            )
