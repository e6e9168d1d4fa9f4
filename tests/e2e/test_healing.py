"""Runs that heal themselves and never share a folder, on the session's local cluster.

- One run per experiment: two `make train` of one experiment at once, exactly one runs and the other is
  refused before submission, naming the job; every checkpoint of the run says it came from that job;
  a lease left by a driver killed with SIGKILL does not block the next run.
- Training heals in the same job: the CPU group's node killed (the env runner lost) and the run goes on
  once `make cluster-up` repairs it, no finished iteration lost; then the node holding the learner
  killed, and the job rebuilds from its latest checkpoint by itself and finishes with exit 0.
- No storage write left unretried: the S3 server frozen for 40 s mid-sweep, and every trial finishes.

The fault tests (`chaos`) write a row each for bench/faults.py (FAULT_REPORT), as test_faults.py's do.

Nodes are killed by PID (their process groups), as tests/e2e/test_faults.py does, and repaired before
the test ends, so that the tests after these find the cluster whole.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid

import pytest

from controlplane.polling import wait_for
from tests.conftest import LOCAL_CLUSTER
from tests.e2e.conftest import Cluster, job_id_of
from tests.e2e.joblog import job_lines, ours
from tests.e2e.test_faults import SEED_SWEEP, fault_row, sweep_loss, wait_for_trials_done
from tests.e2e.test_sweeps import sweep

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(LOCAL_CLUSTER)]

RUN = uuid.uuid4().hex[:6]
PPO = "jobs/experiments/ppo-cartpole.yaml"


def checkpoint_jobs(cluster: Cluster, name: str) -> dict[str, str]:
    """checkpoint folder -> the job its state.json names."""
    prefix = cluster.prefix(name)
    found = {}
    for key in cluster.keys(prefix):
        if re.fullmatch(rf"{re.escape(prefix)}checkpoint_\d+/state\.json", key):
            found[key.rsplit("/", 2)[1]] = json.loads(cluster.object(key))["job_id"]
    return found


def job_status(cluster: Cluster, job_id: str) -> str:
    return str(cluster.jobs().get_job_status(job_id))


def test_two_trainings_of_one_experiment_at_once_exactly_one_runs_and_a_killed_ones_lease_blocks_nothing(cluster):
    name = f"lease-{RUN}"
    args = ("--name", name)
    results: list = [None, None]
    start = threading.Barrier(2)

    def submit(i: int) -> None:
        start.wait()
        results[i] = cluster.train(*args, timeout=600)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ran = [r for r in results if r.returncode == 0]
    refused = [r for r in results if r.returncode != 0]
    assert len(ran) == 1 and len(refused) == 1, [r.stdout[-2000:] + r.stderr[-2000:] for r in results]
    winner = job_id_of(ran[0].stdout)
    message = refused[0].stderr
    assert f"experiment '{name}' is being run by job {winner}" in message, message
    assert f"`ray job stop {winner}`" in message and "(nothing was submitted)" in message
    assert "ray job submit" not in refused[0].stdout  # refused before submission
    assert [j for j in cluster.jobs().list_jobs() if name in j.entrypoint] == [
        j for j in cluster.jobs().list_jobs() if j.submission_id == winner
    ]
    # Every checkpoint of the run was written by the one job that ran.
    written = checkpoint_jobs(cluster, name)
    assert written and set(written.values()) == {winner}, written

    # A driver killed with SIGKILL leaves its lease behind: Ray marks its job failed, and the next run
    # takes the lease over at once.
    longer = (*args, "--set", "stop.episode_return_mean=null", "--set", "stop.iterations=400")
    submitted = cluster.control("submit", "--no-wait", "--", "python", "-m", "jobs.train", "--config", PPO, *longer)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    killed = job_id_of(submitted.stdout)
    wait_for("the run to train", lambda: "iter " in cluster.jobs().get_job_logs(killed))
    driver = next(j for j in cluster.jobs().list_jobs() if j.submission_id == killed).driver_info.pid
    os.kill(int(driver), signal.SIGKILL)
    wait_for("Ray to mark the killed job failed", lambda: job_status(cluster, killed) == "FAILED", timeout_s=60)
    lease = json.loads(cluster.object(cluster.prefix(name) + "lease.json"))
    assert lease["job_id"] == killed  # left behind
    again = cluster.train(*longer[:-2], "--set", "stop.iterations=20", timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    lines = ours(job_lines(again.stdout))
    assert f"took over the lease of experiment '{name}' from job {killed} (failed)" in lines[:3], lines[:3]


def kill_node(cluster: Cluster, group: str) -> None:
    """SIGKILL to every process of one node (its process group): raylet, agents, workers."""
    os.killpg(cluster.state.load()["pids"][group], signal.SIGKILL)


def repair(cluster: Cluster, group: str) -> None:
    repaired = cluster.control("up", timeout=300)
    assert repaired.returncode == 0 and f"repaired: {group} back" in repaired.stdout, repaired.stdout + repaired.stderr


@pytest.mark.chaos
def test_training_heals_in_the_same_job_when_the_env_runners_node_and_then_the_learners_node_die(cluster):
    """One env runner on cpu-workers, the learner on gpu-workers (a CPU stand-in where there is no GPU).
    The CPU node killed: the env runner is lost, rounds without samples are not counted, and the run goes
    on when the node is back, every finished iteration kept. Then the learner's node killed: the job
    rebuilds the algorithm from its latest checkpoint by itself and finishes with exit 0."""
    name = f"heal-{RUN}"
    args = ("--config", PPO, "--name", name, "--num-workers", "1", "--num-gpus", "1", "--gpu-fallback", "cpu",
            "--set", "stop.episode_return_mean=null", "--set", "stop.iterations=60",
            "--set", "checkpoint.every_n_iterations=5")  # fmt: skip
    submitted = cluster.control("submit", "--no-wait", "--", "python", "-m", "jobs.train", *args)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = job_id_of(submitted.stdout)
    logs = lambda: cluster.jobs().get_job_logs(job_id)  # noqa: E731
    iterations = lambda text: [int(n) for n in re.findall(r"^iter\s+(\d+)", text, re.M)]  # noqa: E731
    wait_for("iteration 10", lambda: re.search(r"^iter\s+10 ", logs(), re.M))

    with fault_row("cpu-workers node killed mid-training (the env runner; the learner on gpu-workers)") as row:
        kill_node(cluster, "cpu-workers")
        killed_at = time.monotonic()
        wait_for("the run to wait for its env runner", lambda: "waiting for env runners: no samples" in logs())
        repair(cluster, "cpu-workers")
        ran = len(iterations(logs()))
        wait_for("training to go on after the repair", lambda: len(iterations(logs())) > ran + 5)
        done = iterations(logs())
        skipped_or_repeated = len(set(range(1, done[-1] + 1)) ^ set(done)) + len(done) - len(set(done))
        row.update(outcome="the same job waited for its env runner, went on after cluster-up repaired the node",
                   recover_s=round(time.monotonic() - killed_at, 1),
                   lost=f"{skipped_or_repeated} iterations lost or repeated")  # fmt: skip
        assert job_status(cluster, job_id) == "RUNNING" and skipped_or_repeated == 0, done

    with fault_row("gpu-workers node killed mid-training (the learner)") as row:
        kill_node(cluster, "gpu-workers")
        killed_at = time.monotonic()
        wait_for("the job to notice its learner gone", lambda: "rebuilding from" in logs())
        repair(cluster, "gpu-workers")
        wait_for("the job to rebuild its algorithm", lambda: "recovered from " in logs(), timeout_s=600)
        recover_s = time.monotonic() - killed_at
        status = cluster.wait_for_job(job_id, timeout=600)
        text = logs()
        lines = ours(text.splitlines())
        recovered = [line for line in lines if line.startswith("recovered from ")]
        assert len(recovered) == 1, lines[-40:]
        resumed = re.search(r"resumed from (\S+) at iteration (\d+)$", recovered[0])
        before, after = text.split(recovered[0], 1)
        ran_before, ran_after, resume_at = iterations(before), iterations(after), int(resumed.group(2))
        row.update(outcome=f"the job rebuilt its algorithm from its latest checkpoint by itself; job {status.lower()}",
                   recover_s=round(recover_s, 1),
                   lost=f"{ran_before[-1] - resume_at} iterations since the last checkpoint re-run")  # fmt: skip
        assert status == "SUCCEEDED", text[-4000:]
        assert resumed.group(1).endswith(f"/checkpoint_{resume_at:06d}"), recovered
        # Before the learner's loss: every iteration once, in order, the env runner's loss included (no
        # round without samples counted, none lost). After it: on from the checkpoint it resumed from.
        assert ran_before == list(range(1, len(ran_before) + 1)) and resume_at <= ran_before[-1]
        assert ran_after == list(range(resume_at + 1, 61))
        record = cluster.train_outcome(name)
        assert record.checkpoint == f"{resumed.group(1).rsplit('/', 1)[0]}/checkpoint_000060" and record.recovered == 1
        assert re.search(r"\| env runners 1/1", text)  # the progress line says how many runners it has


@pytest.mark.chaos
def test_s3_frozen_40s_mid_seed_sweep_every_trial_finishes_and_nothing_counts_as_a_failure(cluster):
    """The S3 server stopped (SIGSTOP: it holds every connection, answers nothing) for 40 s while the
    shipped seed sweep runs, then let go. Trials' checkpoints, Tune's experiment state and the sweep's
    report ride it out through the one retry policy (jobs/common/storage/retry.py, and Tune's own S3
    filesystem with retries covering the same budget): every trial finishes, none errors or is retried
    (max_failures stays untouched), and the report is complete."""
    name = f"chaos-freeze-{RUN}"
    outage_s = 40.0
    trials = 8  # the seed sweep's 2 x 2 grid, twice
    with fault_row(f"S3 server frozen (SIGSTOP) for {outage_s:.0f} s mid seed sweep ({trials} trials)") as row:
        submitted = sweep(cluster, "--name", name, "--set", "num_samples=2", config=SEED_SWEEP, wait=False)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        job_id = job_id_of(submitted.stdout)
        wait_for_trials_done(cluster, job_id, total=trials, at_least=2)
        s3 = cluster.state.load()["pids"]["s3"]
        frozen_at = time.monotonic()
        os.killpg(s3, signal.SIGSTOP)
        try:
            time.sleep(outage_s)
        finally:
            os.killpg(s3, signal.SIGCONT)
        status = cluster.wait_for_job(job_id, timeout=600)
        recovered_s = time.monotonic() - frozen_at
        logs = cluster.jobs().get_job_logs(job_id)
        lines = ours(logs.splitlines())
        errored = max((int(n) for n in re.findall(r"\| (\d+) errored \|", logs)), default=0)
        retried = [line for line in lines if re.match(r"trial \w+: resumed from ", line)]
        row.update(
            outcome=f"job {status.lower()}; {errored} trials errored, {len(retried)} retried",
            recover_s=round(recovered_s, 1),
            lost=sweep_loss(cluster, name, total=trials, rerun=len(retried)),
        )
        assert status == "SUCCEEDED", logs[-4000:]
        summary = next(line for line in lines if line.startswith(f"sweep {name}: {trials} of {trials} trials "))
        assert "error" not in summary and "failed" not in summary, summary
        assert errored == 0 and not retried, [line for line in lines if "errored" in line or "resumed" in line][-5:]
        report = cluster.prefix(name) + "report/"
        assert {key.rsplit("/", 1)[1] for key in cluster.keys(report)} >= {"summary.txt", "trials.csv", "best.json"}
        table = cluster.object(report + "trials.csv").decode().strip().splitlines()
        assert len(table) == trials + 1 and not [row for row in table if ",error" in row], table
