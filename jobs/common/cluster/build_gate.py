"""One training job at a time builds its algorithm: no deadlock between jobs.

RLlib creates a job's env runners, then its learners, as separate actors (Ray
2.60's RLlib skips Ray Train's placement group for learners outside Tune).
Two jobs building together on a full cluster can each take part of what they
need and wait for the rest forever: seen with 20 jobs submitted at once, two
jobs holding one env runner each while their learners waited for the CPUs the
other held. So a job takes this gate before `build_algo()` and lets go once
every actor is up; while it waits for resources no other job takes any. Jobs
still run side by side.

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
    def __init__(self, lease_s: float = LEASE_S) -> None:
        self.lease_s = lease_s
        self.holder: str | None = None
        self.expires = 0.0

    def try_acquire(self, who: str) -> str | None:
        """Take the gate if free (or its lease ran out); else say who holds it."""
        now = time.monotonic()
        if self.holder in (None, who) or now > self.expires:
            self.holder, self.expires = who, now + self.lease_s
            return None
        return self.holder

    def renew(self, who: str) -> None:
        if self.holder == who:
            self.expires = time.monotonic() + self.lease_s

    def release(self, who: str) -> None:
        if self.holder == who:
            self.holder = None


def gate(name: str = GATE_NAME, lease_s: float = LEASE_S):
    """The cluster's gate (created by the first job that asks for it)."""
    # On this driver's node (the head, for our jobs), taking none of its driver slots.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return BuildGate.options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, scheduling_strategy=here
    ).remote(lease_s)


@contextlib.contextmanager
def building(label: str, name: str = GATE_NAME, lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold the cluster's build gate for the block (the algorithm's construction)."""
    handle = gate(name, lease_s)
    who = f"{label} (pid {os.getpid()})"
    waited_since = time.monotonic()
    announced = False
    while (holder := ray.get(handle.try_acquire.remote(who))) is not None:
        if not announced:
            print(f"waiting for {holder} to finish placing its actors", flush=True)
            announced = True
        time.sleep(1.0)
    if announced:
        print(f"placing actors after {time.monotonic() - waited_since:.0f}s in line", flush=True)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(min(RENEW_S, lease_s / 3)):
            handle.renew.remote(who)

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(ray.exceptions.RayError):  # a lost gate lets everyone through anyway
            ray.get(handle.release.remote(who))
