"""Load on the local cluster: 20 training jobs submitted at once, and a sweep of
500 short trials. Both take minutes, so they are `slow` (`make test-all`);
bench/load.py runs them with LOAD_REPORT=<file> and prints the figures.

What must hold: the Jobs API queues what does not fit (the head has 4 driver
slots), every job finishes, none is lost or runs twice, `make jobs` lists
them all; the sweep's driver memory stays bounded.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from controlplane.submit import submit_command
from tests.conftest import LOCAL_CLUSTER, REPO_ROOT
from tests.e2e.conftest import job_id_of
from tests.e2e.test_sweeps import FIFO, sweep

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group(LOCAL_CLUSTER)]

RUN = uuid.uuid4().hex[:6]
JOBS = 20
TRIALS = 500


def record(**row) -> None:
    path = os.environ.get("LOAD_REPORT")
    if path:
        with open(path, "a") as report:
            report.write(json.dumps(row) + "\n")


@pytest.mark.timeout(2400)
def test_twenty_training_jobs_at_once_are_queued_and_all_finish_once(cluster):
    client = cluster.jobs()
    command = submit_command(cluster.client_env()["RAY_ADDRESS"], ["python"])
    driver_resources = json.loads(command[command.index("--entrypoint-resources") + 1])
    names = [f"load-{RUN}-{i:02d}" for i in range(JOBS)]

    def submit(name: str) -> str:
        return client.submit_job(
            entrypoint=f"python -m jobs.train --config jobs/experiments/ppo-cartpole.yaml --name {name} "
            "--set stop.iterations=2 --set stop.episode_return_mean=null",
            runtime_env={"working_dir": str(REPO_ROOT)},
            entrypoint_num_cpus=0,
            entrypoint_resources=driver_resources,
            metadata={"load_test": RUN},
        )

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        job_ids = list(pool.map(submit, names))
    submitted_s = time.monotonic() - started
    assert len(set(job_ids)) == JOBS

    most_pending = most_running = 0
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline:
        statuses = [str(client.get_job_status(job_id)) for job_id in job_ids]
        most_pending = max(most_pending, statuses.count("PENDING"))
        most_running = max(most_running, statuses.count("RUNNING"))
        if all(s in ("SUCCEEDED", "FAILED", "STOPPED") for s in statuses):
            break
        time.sleep(1)
    else:
        pytest.fail(f"jobs still unfinished after 25 minutes: {statuses}")
    finished_s = time.monotonic() - started

    failed = {j: client.get_job_logs(j)[-1500:] for j, s in zip(job_ids, statuses, strict=True) if s != "SUCCEEDED"}
    assert not failed, failed
    assert most_pending > 0, "20 jobs should not all fit the head's driver slots at once"
    for job_id, name in zip(job_ids, names, strict=True):
        logs = client.get_job_logs(job_id)
        assert "resumed from" not in logs, f"{name} ran twice"
        latest = json.loads(cluster.object(cluster.prefix(name) + "latest.json"))
        assert latest["iteration"] == 2 and latest["finished"], (name, latest)

    listed = cluster.control("jobs")
    assert listed.returncode == 0, listed.stderr
    for job_id in job_ids:
        assert re.search(rf"^{job_id}\s+SUCCEEDED\s", listed.stdout, re.M), listed.stdout
    record(
        load=f"{JOBS} training jobs submitted at once",
        figures=f"submitted in {submitted_s:.1f} s; at most {most_pending} pending (queued) and {most_running} "
        f"running at once; {JOBS}/{JOBS} succeeded, each once, in {finished_s:.0f} s",
    )


def driver_rss_mib(name: str) -> float | None:
    """Resident memory of the sweep's driver (`python -m jobs.sweep ... --name <name>`), if it runs."""
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            # The driver itself (`python -m jobs.sweep`), not the `ray job submit` client or the shell.
            if cmdline[1:3] == [b"-m", b"jobs.sweep"] and name.encode() in cmdline:
                status = (entry / "status").read_text()
                return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024
        except (OSError, AttributeError, ValueError):
            continue
    return None


@pytest.mark.timeout(3600)
def test_sweep_of_500_short_trials_keeps_driver_memory_bounded(cluster):
    name = f"load-sweep-{RUN}"
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        started = time.monotonic()
        while not done.is_set():
            rss = driver_rss_mib(name)
            if rss is not None:
                samples.append((time.monotonic() - started, rss))
            done.wait(2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        # The seed sweep's 2 x 2 grid, 125 samples each, one iteration per trial.
        result = sweep(
            cluster,
            "--name",
            name,
            "--set",
            f"num_samples={TRIALS // 4}",
            "--set",
            "stop.iterations=1",
            "--set",
            FIFO,
            config="jobs/sweeps/cartpole-seed.yaml",
            timeout=3000,
        )
    finally:
        done.set()
        sampler.join()
    wall_s = time.monotonic() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    job_id_of(result.stdout)
    assert re.search(rf"^sweep {name}: {TRIALS} of {TRIALS} trials {TRIALS} finished", result.stdout, re.M), (
        result.stdout[-3000:]
    )
    peak = float(re.search(r"^driver peak RSS: (\d+) MiB", result.stdout, re.M).group(1))
    assert samples, "the driver was never seen running"
    # Bounded: the last fifth of the run holds no more than the first fifth's high-water mark + 25%.
    fifth = max(1, len(samples) // 5)
    early = max(rss for _, rss in samples[:fifth])
    late = max(rss for _, rss in samples[-fifth:])
    assert peak < 2048 and late <= early * 1.25 + 50, (early, late, peak)
    record(
        load=f"sweep of {TRIALS} one-iteration trials (FIFO)",
        figures=f"finished in {wall_s:.0f} s ({TRIALS / wall_s * 60:.0f} trials/min); driver peak RSS {peak:.0f} MiB; "
        f"RSS over the first fifth of the run up to {early:.0f} MiB, over the last fifth up to {late:.0f} MiB",
    )
