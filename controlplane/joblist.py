"""`make jobs`: the cluster's Ray jobs as a short table, oldest first.

The same list as `ray job list` (the Jobs SDK), one line per job instead of a
full record: submission id, status, how long it waited and ran, and what it
runs. A job waiting for a driver slot on the head shows as PENDING.
"""

from __future__ import annotations

import time
from collections import Counter

from controlplane.state import StateDir
from controlplane.submit import check_jobs_api, load_cluster_env
from jobs.common.reports.tables import table


def describe(entrypoint: str, width: int = 60) -> str:
    """`python -m jobs.train --config jobs/experiments/x.yaml --name y` -> `jobs.train x.yaml --name y`."""
    words = entrypoint.split()
    if words[:2] in (["python", "-m"], ["python3", "-m"]):
        words = words[2:]
    words = [w.rsplit("/", 1)[-1] if w.endswith((".yaml", ".yml")) else w for w in words if w != "--config"]
    text = " ".join(words)
    return text if len(text) <= width else text[: width - 3] + "..."


def _seconds(start_ms: int | None, end_ms: int | None) -> str:
    if not start_ms:
        return "-"
    end = end_ms / 1000 if end_ms else time.time()
    return f"{end - start_ms / 1000:.0f}s"


def rows(jobs) -> list[tuple[str, ...]]:
    listed = []
    for job in sorted(jobs, key=lambda j: j.start_time or 0):
        status = str(getattr(job.status, "value", job.status))
        message = (job.message or "").strip().splitlines()[0][:80] if status == "FAILED" and job.message else ""
        listed.append(
            (
                job.submission_id or job.job_id or "-",
                status,
                _seconds(job.start_time, job.end_time),
                describe(job.entrypoint or ""),
                message,
            )
        )
    return listed


def print_jobs(state_dir: StateDir) -> int:
    address = load_cluster_env(state_dir)["RAY_ADDRESS"]  # before Ray is imported: it reads the token settings then
    check_jobs_api(address)
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(address).list_jobs()
    listed = rows(jobs)
    print(table(("SUBMISSION ID", "STATUS", "TIME", "ENTRYPOINT", "MESSAGE"), listed, rule=False))
    counts = Counter(row[1] for row in listed)
    print(f"{len(listed)} jobs: " + ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items())))
    return 0
