"""Faults on the local cluster, processes killed by PID: a worker node dies mid-sweep
and mid-training, the head dies mid-sweep. What must hold: `make cluster-up`
brings the missing part back, the run resumes from S3, a crash costs at most
one checkpoint interval, and no finished trial runs again.

Marked `chaos` (`make test-chaos` runs them all). In `make test` they run on a
local cluster of their own, in the worker that ran the container tests first
(tests/conftest.py), and end with the secret scan of tests/e2e/test_security.py
on that cluster; run alone, in one process, they come after every other e2e
module on the session's cluster. The mid-training worker kill takes 3-4 minutes, so it is also
`slow`: out of the default suite, which must fit CI's budget. The head kill is
in CI again: it once failed there because a `ray job submit` right after
cluster-up found the Jobs API not yet serving (Ray 2.60's dashboard starts its
job module as a separate subprocess, after the state API that cluster-up
polled); cluster-up now waits until the Jobs API answers with the token.
With FAULT_REPORT=<file>, each test appends one JSON line (fault, what the run
did, time to recover, what was lost, the test's result): bench/faults.py runs
them and prints that table. The row is written whatever happens
(`fault_row`, a try/finally): what was lost is measured before it is asserted
on, so a failed test's row shows the measured loss and `FAILED: <assertion>`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest

from bench.reporting import NOT_MEASURED, append_row, reported_row
from jobs.common.reports.outcome import SweepOutcome
from jobs.common.run import lease
from jobs.common.storage import layout
from tests.conftest import SECOND
from tests.e2e.conftest import job_id_of
from tests.e2e.joblog import job_lines, ours
from tests.e2e.test_sweeps import FIFO, checkpoints_of, sweep, trial_pointers

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.xdist_group(SECOND)]

RUN = uuid.uuid4().hex[:6]
SEED_SWEEP = "jobs/sweeps/cartpole-seed.yaml"  # 2 x 2 grid x num_samples
PPO = "jobs/experiments/ppo-cartpole.yaml"
# The faults' sweeps: the seed sweep's 2 x 2 grid once, FIFO, short trials. The point is what
# survives a dead node or head (finished trials kept, the rest resumed), not learning.
TRIALS = 4
SHORT_SWEEP = ("--set", "num_samples=1", "--set", "stop.env_steps=20000", "--set", FIFO)


REPORT_VAR = "FAULT_REPORT"


def record(**row) -> None:
    """One row for bench/faults.py (fault, outcome, recover_s, lost), tagged with the test's id."""
    append_row(REPORT_VAR, row)


def fault_row(fault: str):
    """`with fault_row(...) as row:` around a test's body: set row["lost"] (and the rest)
    as soon as it is measured, before asserting on it; the row is written on failure too."""
    return reported_row(REPORT_VAR, fault=fault, outcome="-", recover_s=None, lost=NOT_MEASURED)


def sweep_loss(cluster, name: str, total: int, rerun: int) -> str:
    """What a sweep lost to a fault: finished trials that ran again, trials that never finished (by its record)."""
    data = cluster.read(layout.sweep(cluster.client_env()["RL_STORAGE_URI"], name).outcome)
    if not data:
        return f"{rerun} finished trials re-run; no outcome.json: 0 of {total} trials known to have finished"
    done = SweepOutcome.from_json(data).done()
    return f"{rerun} finished trials re-run; {total - done} of {total} trials unfinished"


def all_finished(name: str) -> str:
    return f"sweep {name}: {TRIALS} of {TRIALS} trials {TRIALS} finished"


def session_of(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid pgrp session ..."; comm may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[3])


def raylet_of(cluster, group: str) -> int:
    """The raylet of one node: the `raylet` process in that node's session."""
    leader = cluster.state.load()["pids"][group]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "raylet" and session_of(int(entry.name)) == leader:
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    raise AssertionError(f"no raylet in the session of {group} ({leader})")


def head_logs(cluster) -> str:
    """The tails of the head's dashboard and GCS logs, for a failure message."""
    logs = Path(os.path.realpath(cluster.state.ray_link)) / "head" / "session_latest" / "logs"
    tails = []
    for name in ("dashboard.log", "gcs_server.out"):
        if (logs / name).exists():
            tails.append(f"\n--- {logs / name} ---\n" + "\n".join((logs / name).read_text().splitlines()[-15:]))
    return "".join(tails)


def wait_for_trials_done(cluster, job_id: str, total: int, at_least: int, timeout: float = 600) -> None:
    client = cluster.jobs()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = client.get_job_logs(job_id)
        done = [int(n) for n in re.findall(rf"trials (\d+)/{total} done", logs)]
        if done and max(done) >= at_least:
            return
        assert str(client.get_job_status(job_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"), logs[-3000:]
        time.sleep(1)
    pytest.fail(f"fewer than {at_least} trials done in {timeout:.0f} s")


def finished_unchanged(cluster, name: str, before: dict, checkpoints_before: dict) -> int:
    """How many trials that had finished before the fault ran again (must be 0)."""
    after = trial_pointers(cluster, name)
    again = 0
    for trial_id, pointer in before.items():
        if not pointer["finished"]:
            continue
        if trial_id not in after:  # its pointer is gone: count it as lost
            again += 1
            continue
        same = (after[trial_id]["iteration"], after[trial_id]["checkpoint"]) == (
            pointer["iteration"],
            pointer["checkpoint"],
        )
        same = same and checkpoints_of(cluster, name, trial_id) == checkpoints_before[trial_id]
        again += not same
    return again


def test_worker_node_dies_mid_sweep_repair_and_trials_retry(cluster):
    name = f"chaos-worker-{RUN}"
    args = ("--name", name, *SHORT_SWEEP)
    with fault_row(f"cpu-workers raylet killed mid-sweep ({TRIALS} trials)") as row:
        submitted = sweep(cluster, *args, config=SEED_SWEEP, wait=False)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        job_id = job_id_of(submitted.stdout)
        wait_for_trials_done(cluster, job_id, total=TRIALS, at_least=1)
        before = trial_pointers(cluster, name)
        checkpoints_before = {t: checkpoints_of(cluster, name, t) for t, p in before.items() if p["finished"]}

        killed_at = time.monotonic()
        os.kill(raylet_of(cluster, "cpu-workers"), signal.SIGKILL)
        time.sleep(3)
        repaired = cluster.control("up", timeout=300)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert "repaired: cpu-workers back" in repaired.stdout, repaired.stdout
        row["outcome"] = "cluster-up repaired the node"

        status = cluster.wait_for_job(job_id)
        recovered_s = time.monotonic() - killed_at
        logs = cluster.jobs().get_job_logs(job_id)
        lines = ours(logs.splitlines())
        again = finished_unchanged(cluster, name, before, checkpoints_before)
        row.update(
            outcome=f"cluster-up repaired the node; failed trials retried from their checkpoints; job {status.lower()}",
            recover_s=round(recovered_s, 1),
            lost=sweep_loss(cluster, name, total=TRIALS, rerun=again),
        )
        assert status == "SUCCEEDED", logs[-4000:]
        assert any(line.startswith(f"sweep {name}: {TRIALS} of {TRIALS} trials {TRIALS} finished") for line in lines), (
            lines[-15:]
        )
        assert again == 0


def test_head_dies_mid_sweep_resubmit_resumes_with_finished_trials_kept(cluster):
    name = f"chaos-head-{RUN}"
    args = ("--name", name, *SHORT_SWEEP)
    # The kill takes the head's job records and Ray's temp folder (driver logs) with it: scan them first.
    assert_no_secret_so_far(cluster)
    with fault_row("head killed mid-sweep (GCS and the driver gone)") as row:
        submitted = sweep(cluster, *args, config=SEED_SWEEP, wait=False)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        job_id = job_id_of(submitted.stdout)
        wait_for_trials_done(cluster, job_id, total=TRIALS, at_least=2)
        before = trial_pointers(cluster, name)
        finished_before = [t for t, p in before.items() if p["finished"]]
        checkpoints_before = {t: checkpoints_of(cluster, name, t) for t in finished_before}

        killed_at = time.monotonic()
        os.killpg(cluster.state.load()["pids"]["head"], signal.SIGKILL)  # GCS, dashboard, the job's driver
        up = cluster.control("up", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        row["outcome"] = "cluster-up restarted the cluster"
        cluster.markers.add(cluster.state.load()["cluster_id"])
        # The killed driver's lease names a job the restarted head does not know: by design it holds for
        # UNKNOWN_JOB_S after its last renewal (a submission on its way looks the same), and a faster
        # cluster-up than that was refused ("wait until it ends"). The renewal was before the kill.
        time.sleep(max(0.0, killed_at + lease.UNKNOWN_JOB_S + 1.0 - time.monotonic()))
        resumed = sweep(cluster, *args, config=SEED_SWEEP)
        recovered_s = time.monotonic() - killed_at
        again = finished_unchanged(cluster, name, before, checkpoints_before)
        row.update(
            outcome=f"cluster-up restarted the cluster; resubmitted sweep exited {resumed.returncode} with "
            f"{len(finished_before)} trials finished before the kill",
            recover_s=round(recovered_s, 1),
            lost=sweep_loss(cluster, name, total=TRIALS, rerun=again),
        )
        # Before its output is parsed: a resubmission that never reached the job has no job lines, and
        # its stderr says why.
        assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:] + up.stdout + head_logs(cluster)
        lines = ours(job_lines(resumed.stdout))
        assert lines[0].startswith("resumed from ") and lines[0].endswith(f"/{name}/tune"), lines[:3]
        assert any(line.startswith(f"sweep {name}: {TRIALS} of {TRIALS} trials {TRIALS} finished") for line in lines), (
            lines[-15:]
        )
        assert again == 0


@pytest.mark.slow
def test_worker_node_dies_mid_training_resubmit_resumes_from_the_latest_checkpoint(cluster):
    name = f"chaos-train-{RUN}"
    args = ("--name", name, "--set", "checkpoint.every_n_iterations=2", "--set", "stop.env_steps=400000")
    with fault_row("cpu-workers raylet killed mid-training (env runner and learner)") as row:
        submitted = cluster.control(
            "submit",
            "--no-wait",
            "--",
            "python",
            "-m",
            "jobs.train",
            "--config",
            "jobs/experiments/ppo-cartpole.yaml",
            *args,
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        job_id = job_id_of(submitted.stdout)
        latest_key = cluster.prefix(name) + "latest.json"
        cluster.wait_for_checkpoint(name, iteration=4)

        killed_at = time.monotonic()
        os.kill(raylet_of(cluster, "cpu-workers"), signal.SIGKILL)  # the env runner and the learner
        status = cluster.wait_for_job(job_id, timeout=600)
        latest = json.loads(cluster.object(latest_key))  # the newest complete checkpoint
        # Iterations the killed run finished after its last checkpoint: what the crash cost.
        reached = max(int(n) for n in re.findall(r"^iter\s+(\d+)", cluster.jobs().get_job_logs(job_id), re.M))
        lost_iterations = reached - latest["iteration"]
        row.update(
            outcome=f"job {status.lower()}",
            lost=f"{lost_iterations} iterations since the last checkpoint (interval 2)",
        )
        assert 0 <= lost_iterations <= 2, (reached, latest["iteration"])  # at most one checkpoint interval
        repaired = cluster.control("up", timeout=300)
        assert repaired.returncode == 0 and "repaired: cpu-workers back" in repaired.stdout, repaired.stdout
        row["outcome"] = f"job {status.lower()}; cluster-up repaired the node"
        resumed = cluster.control(
            "submit", "--", "python", "-m", "jobs.train", "--config", "jobs/experiments/ppo-cartpole.yaml", *args
        )
        recovered_s = time.monotonic() - killed_at
        lines = ours(job_lines(resumed.stdout))
        iterations = [int(m.group(1)) for line in lines if (m := re.match(r"^iter\s+(\d+)", line))]
        first_iteration = iterations[0] if iterations else None
        row.update(
            outcome=f"job {status.lower()}; cluster-up repaired the node; resubmitted run exited "
            f"{resumed.returncode}, first iteration {first_iteration} after checkpoint {latest['iteration']}",
            recover_s=round(recovered_s, 1),
        )
        assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
        assert lines[0] == f"resumed from {latest['checkpoint']} at iteration {latest['iteration']}", lines[:3]
        assert first_iteration == latest["iteration"] + 1
        assert lines[-1] == cluster.train_outcome(name).lines()[-1]


def test_s3_down_30s_during_checkpoint_writes_training_rides_it_out(cluster):
    name = f"chaos-s3-{RUN}"
    args = (
        "--name",
        name,
        "--set",
        "checkpoint.every_n_iterations=2",
        "--set",
        "stop.episode_return_mean=null",
        "--set",
        "stop.env_steps=50000",
    )
    outage_s = 30.0
    with fault_row(f"S3 server killed for {outage_s:.0f} s mid-training (checkpoint every 2 iterations)") as row:
        submitted = cluster.control("submit", "--no-wait", "--", "python", "-m", "jobs.train", "--config", PPO, *args)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        job_id = job_id_of(submitted.stdout)
        prefix = cluster.prefix(name)
        latest = cluster.wait_for_checkpoint(name, iteration=2)
        objects_per_checkpoint = len([k for k in cluster.keys(latest_prefix(cluster, latest)) if not k.endswith("/")])

        killed_at = time.monotonic()
        os.killpg(cluster.state.load()["pids"]["s3"], signal.SIGKILL)
        time.sleep(outage_s)
        repaired = cluster.control("up", timeout=300)
        assert repaired.returncode == 0 and "repaired: s3 back" in repaired.stdout, repaired.stdout + repaired.stderr
        row["outcome"] = "cluster-up restarted S3"

        status = cluster.wait_for_job(job_id, timeout=600)
        logs = cluster.jobs().get_job_logs(job_id)
        recovered_s = time.monotonic() - killed_at
        retries = [line for line in ours(logs.splitlines()) if line.startswith("storage: ") and "retrying in" in line]
        final = json.loads(cluster.object(prefix + "latest.json"))
        # Every checkpoint in the bucket is complete: same objects as the one written before the outage.
        folders = {k[len(prefix) :].split("/")[0] for k in cluster.keys(prefix) if "/checkpoint_" in k}
        short = {}
        for folder in folders:
            objects = [k for k in cluster.keys(prefix + folder + "/") if not k.endswith("/")]
            if len(objects) != objects_per_checkpoint:
                short[folder] = objects_per_checkpoint - len(objects)
        expected = {f"checkpoint_{i:06d}" for i in range(2, final["iteration"] + 1, 2)} | {
            f"checkpoint_{final['iteration']:06d}"
        }
        missing = expected - folders
        row.update(
            outcome=f"checkpoint upload retried ({len(retries)} retry lines); cluster-up restarted S3; job "
            f"{status.lower()} at iteration {final['iteration']}",
            recover_s=round(recovered_s, 1),
            lost=f"{len(missing)} checkpoints missing, {len(short)} incomplete ({sum(short.values())} objects short)",
        )
        assert status == "SUCCEEDED", logs[-4000:]
        assert retries, "the outage should have hit a checkpoint write"
        assert final["finished"] and final["checkpoint"].endswith(f"checkpoint_{final['iteration']:06d}")
        assert not short, short
        assert folders == expected


def latest_prefix(cluster, latest: dict) -> str:
    return latest["checkpoint"].split("/", 3)[3] + "/"


def assert_no_secret_so_far(cluster) -> None:
    """tests/e2e/test_security.py's scan (every object in the bucket, every job the head knows with
    its logs, every file in the state folder and in Ray's temp folder). In `make test` the fault
    tests have a cluster of their own (tests/conftest.py), which that module never sees."""
    from tests.e2e.test_security import find_secrets, secrets_of

    assert find_secrets(cluster, secrets_of(cluster)) == []


def test_no_secret_anywhere_after_the_faults(cluster):
    """Last of the fault tests. The head kill took the earlier jobs' records and Ray's temp folder
    with it: the head-kill test ran the same scan before its kill."""
    keys = cluster.keys()
    for name in (f"chaos-worker-{RUN}", f"chaos-head-{RUN}", f"chaos-s3-{RUN}"):
        assert any(f"/{name}/" in key for key in keys), f"expected the fault runs before the scan: no {name}"
    assert_no_secret_so_far(cluster)
