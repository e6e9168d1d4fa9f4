"""A checkpoint on preemption: SIGTERM ends a run at the next iteration boundary.

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

import signal
import time

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


def stop_running_jobs(address: str = "http://127.0.0.1:8265", grace_s: float = PREEMPTION_GRACE_S) -> int:
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
    parser.add_argument("--stop-running-jobs", action="store_true", required=True, help="the head's preStop hook")
    parser.add_argument("--address", default="http://127.0.0.1:8265")
    sys.exit(stop_running_jobs(parser.parse_args().address))
