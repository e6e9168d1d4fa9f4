"""Build-gate scenarios for tests/unit/test_build_gate.py, in a fresh process with a
small in-process Ray (stopped by ray.shutdown), one after the other (each uses a
gate of its own). Prints one JSON line: each scenario's outcome by name."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import threading
import time

import ray

from jobs.common.cluster import build_gate


def second_waits() -> dict:
    inside: list[tuple[str, float, float]] = []
    a_holds = threading.Event()

    def job(label: str, hold_s: float) -> None:
        with build_gate.building(label, name="gate-a"):
            entered = time.monotonic()
            a_holds.set()
            time.sleep(hold_s)
            inside.append((label, entered, time.monotonic()))

    first = threading.Thread(target=job, args=("job a", 2.0))
    first.start()
    # Job b asks only once job a holds the gate (creating the gate actor can take seconds on a busy machine).
    assert a_holds.wait(120), "job a never got the gate"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        job("job b", 0.0)
    first.join()
    return {"inside": inside, "printed": printed.getvalue()}


def lease_expires() -> dict:
    handle = build_gate.gate("gate-b", lease_s=1.0)
    assert ray.get(handle.try_acquire.remote("a killed job")) is None  # taken, then never renewed
    started = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()), build_gate.building("job c", name="gate-b", lease_s=1.0):
        waited = time.monotonic() - started
    return {"waited_s": waited}


SCENARIOS = {"second-waits": second_waits, "lease-expires": lease_expires}

if __name__ == "__main__":
    ray.init(num_cpus=1, include_dashboard=False, logging_level="error", namespace="gate-test")
    try:
        outcomes = {name: SCENARIOS[name]() for name in sys.argv[1:]}
    finally:
        ray.shutdown()
    print(json.dumps(outcomes), flush=True)
