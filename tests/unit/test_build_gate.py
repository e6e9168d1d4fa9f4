"""The build gate: one job at a time places its actors; a dead holder loses it."""

import threading
import time
import uuid

import pytest
import ray

from jobs.common import build_gate


@pytest.fixture(scope="module")
def local_ray():
    # An in-process Ray (its own GCS and raylet, stopped by ray.shutdown), no dashboard.
    ray.init(num_cpus=1, include_dashboard=False, logging_level="error", namespace="gate-test")
    try:
        yield
    finally:
        ray.shutdown()


def test_a_second_job_waits_until_the_first_has_placed_its_actors(local_ray, capsys):
    name = f"gate-{uuid.uuid4().hex[:6]}"
    inside: list[tuple[str, float, float]] = []

    def job(label: str, hold_s: float) -> None:
        with build_gate.building(label, name=name):
            entered = time.monotonic()
            time.sleep(hold_s)
            inside.append((label, entered, time.monotonic()))

    first = threading.Thread(target=job, args=("job a", 2.0))
    first.start()
    time.sleep(0.5)
    job("job b", 0.0)
    first.join()

    (a, a_in, a_out), (b, b_in, _) = sorted(inside, key=lambda row: row[1])
    assert (a, b) == ("job a", "job b") and b_in >= a_out
    assert "waiting for job a (pid" in capsys.readouterr().out


def test_a_holder_that_stops_renewing_loses_the_gate_after_its_lease(local_ray):
    name = f"gate-{uuid.uuid4().hex[:6]}"
    handle = build_gate.gate(name, lease_s=1.0)
    assert ray.get(handle.try_acquire.remote("a killed job")) is None  # taken, then never renewed
    started = time.monotonic()
    with build_gate.building("job c", name=name, lease_s=1.0):
        waited = time.monotonic() - started
    assert 0.5 <= waited < 10
