"""One training job at a time builds its algorithm: no deadlock between jobs.

RLlib creates a job's env runners one actor at a time, then its learners (as a
placement group). Two jobs building together on a full cluster can each take
part of what they need and wait for the rest forever: seen with 20 jobs
submitted at once, two jobs holding one env runner each while their learners
waited for the CPUs the other held. So a job takes this gate before
`build_algo()` and lets go once every actor is up; while it waits for
resources no other job takes any. Jobs still run side by side.

The gate is a named actor on the head. Its holder renews a lease every few
seconds; a holder that dies (a killed job) loses the gate after LEASE_S.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

GATE_NAME = "rl-build-gate"
NAMESPACE = "rl-jobs"
LEASE_S = 30.0
RENEW_S = 5.0


@ray.remote(num_cpus=0)
class BuildGate:
    def __init__(self) -> None:
        self.holder: str | None = None
        self.expires = 0.0

    def try_acquire(self, who: str) -> str | None:
        """Take the gate if free (or its lease ran out); else say who holds it."""
        now = time.monotonic()
        if self.holder in (None, who) or now > self.expires:
            self.holder, self.expires = who, now + LEASE_S
            return None
        return self.holder

    def renew(self, who: str) -> None:
        if self.holder == who:
            self.expires = time.monotonic() + LEASE_S

    def release(self, who: str) -> None:
        if self.holder == who:
            self.holder = None


def _gate():
    # On this driver's node (the head, for our jobs), taking none of its driver slots.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return BuildGate.options(
        name=GATE_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, scheduling_strategy=here
    ).remote()


@contextlib.contextmanager
def building(label: str) -> Iterator[None]:
    """Hold the cluster's build gate for the block (the algorithm's construction)."""
    gate = _gate()
    who = f"{label} (pid {os.getpid()})"
    waited_since = time.monotonic()
    announced = False
    while (holder := ray.get(gate.try_acquire.remote(who))) is not None:
        if not announced:
            print(f"waiting for {holder} to finish placing its actors", flush=True)
            announced = True
        time.sleep(1.0)
    if announced:
        print(f"placing actors after {time.monotonic() - waited_since:.0f}s in line", flush=True)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(RENEW_S):
            gate.renew.remote(who)

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(ray.exceptions.RayError):  # a lost gate lets everyone through anyway
            ray.get(gate.release.remote(who))
