"""One run per experiment at a time: the lease protocol on a local folder (the S3 one, with SeaweedFS's
conditional writes, is exercised end to end in tests/e2e/test_local_spine.py)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from jobs.common.run import lease
from jobs.common.run.lease import Lease, LeaseHeld


@pytest.fixture
def status(monkeypatch):
    """What the Jobs API says of each job (absent: the API cannot be asked)."""
    said: dict[str, str] = {}
    monkeypatch.setattr(lease, "job_status", lambda job_id: said.get(job_id))
    return said


def write_lease(folder, job_id: str, age_s: float) -> None:
    record = Lease(job_id, "other-host", "2026-12-07T10:00:00+00:00", time.time() - age_s)
    (folder / lease.LEASE_FILE).write_bytes(record.to_json())


def test_of_two_runs_starting_at_once_exactly_one_gets_the_lease(tmp_path, status):
    status.update({"raysubmit_a": "RUNNING", "raysubmit_b": "RUNNING"})
    results: dict[str, object] = {}
    start = threading.Barrier(2)

    def take(job_id: str) -> None:
        start.wait()
        try:
            results[job_id] = lease.acquire(str(tmp_path), "experiment 'x'", job_id)
        except LeaseHeld as err:
            results[job_id] = err

    threads = [threading.Thread(target=take, args=(job,)) for job in ("raysubmit_a", "raysubmit_b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = [job for job, result in results.items() if isinstance(result, lease.HeldLease)]
    refused = [result for result in results.values() if isinstance(result, LeaseHeld)]
    assert len(held) == 1 and len(refused) == 1
    message = str(refused[0])
    assert f"is being run by job {held[0]} (RUNNING" in message and f"`ray job stop {held[0]}`" in message


def test_the_job_the_check_took_the_lease_for_finds_it_its_own_and_says_whom_it_was_taken_from(tmp_path, status):
    first = lease.acquire(str(tmp_path), "experiment 'x'", "raysubmit_a")  # the check before submission
    again = lease.acquire(str(tmp_path), "experiment 'x'", "raysubmit_a")  # its driver
    assert again.took_over is None and again.lease.taken_at == first.lease.taken_at
    status["raysubmit_a"] = "FAILED"
    lease.acquire(str(tmp_path), "experiment 'x'", "raysubmit_b")  # the next check takes it over ...
    driver = lease.acquire(str(tmp_path), "experiment 'x'", "raysubmit_b")  # ... and the job's log says so
    assert driver.took_over == "took over the lease of experiment 'x' from job raysubmit_a (failed)"


@pytest.mark.parametrize(
    "said, age_s, blocks",
    [
        ("RUNNING", 3600, True),  # alive by the Jobs API, however old its last renewal
        ("PENDING", 3600, True),  # queued behind other jobs: not renewing yet, still the owner
        ("FAILED", 1, False),  # killed with SIGKILL: Ray marked its job FAILED
        ("SUCCEEDED", 1, False),
        ("STOPPED", 1, False),
        ("UNKNOWN", 5, True),  # just taken by a check whose job is about to be submitted, or another cluster's
        ("UNKNOWN", lease.UNKNOWN_JOB_S + 5, False),
        (None, 5, True),  # the Jobs API cannot be asked: the renewal decides
        (None, lease.STALE_S + 5, False),
    ],
)
def test_a_lease_blocks_only_while_its_job_may_still_write(tmp_path, status, said, age_s, blocks):
    write_lease(tmp_path, "raysubmit_old", age_s)
    if said:
        status["raysubmit_old"] = said
    if blocks:
        with pytest.raises(LeaseHeld, match="raysubmit_old"):
            lease.acquire(str(tmp_path), "experiment 'x'", "raysubmit_new")
        with pytest.raises(LeaseHeld):
            lease.check_free(str(tmp_path), "experiment 'x'", "raysubmit_new")
    else:
        held = lease.acquire(str(tmp_path), "experiment 'x'", "raysubmit_new")
        assert held.took_over.startswith("took over the lease of experiment 'x' from job raysubmit_old (")
        assert json.loads((tmp_path / lease.LEASE_FILE).read_text())["job_id"] == "raysubmit_new"


def test_a_kept_lease_is_renewed_and_a_run_that_lost_it_writes_nothing_more(tmp_path, status, monkeypatch):
    monkeypatch.setattr(lease, "RENEW_S", 0.05)
    held = lease.acquire(str(tmp_path), "experiment 'x'", "raysubmit_a").keep()
    first = held.lease.renewed_at
    time.sleep(0.3)
    assert json.loads((tmp_path / lease.LEASE_FILE).read_text())["renewed_at"] > first
    held.check()
    # Another run took it over (this one was stale for longer than STALE_S): the next renewal finds out.
    status["raysubmit_a"] = "FAILED"
    lease.acquire(str(tmp_path), "experiment 'x'", "raysubmit_b")
    time.sleep(0.3)
    with pytest.raises(Exception, match="lost its lease .* to job raysubmit_b"):
        held.check()
    held.release()  # gives back nothing of the other's
    assert json.loads((tmp_path / lease.LEASE_FILE).read_text())["job_id"] == "raysubmit_b"


def test_a_released_lease_is_gone_and_blocks_nobody(tmp_path, status):
    held = lease.acquire(str(tmp_path), "experiment 'x'", "raysubmit_a").keep()
    held.release()
    assert not (tmp_path / lease.LEASE_FILE).exists()
    lease.check_free(str(tmp_path), "experiment 'x'", "raysubmit_b")


def test_a_damaged_lease_blocks_nobody(tmp_path, status):
    (tmp_path / lease.LEASE_FILE).write_text("{not json")
    held = lease.acquire(str(tmp_path), "experiment 'x'", "raysubmit_a")
    assert held.lease.job_id == "raysubmit_a"


def test_a_driver_knows_its_submission_id_from_the_job_config_ray_gives_it(monkeypatch):
    monkeypatch.delenv(lease.SUBMISSION_ID_VAR, raising=False)
    config = {"runtime_env": {}, "metadata": {"job_submission_id": "raysubmit_XYZ", "job_name": "raysubmit_XYZ"}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(config))
    assert lease.current_job_id() == "raysubmit_XYZ"
    monkeypatch.setenv(lease.SUBMISSION_ID_VAR, "raysubmit_fromcheck")
    assert lease.current_job_id() == "raysubmit_fromcheck"
    new = lease.new_submission_id()
    assert new.startswith("raysubmit_") and len(new) == len("raysubmit_") + 16 and new != lease.new_submission_id()
