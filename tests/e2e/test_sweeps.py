"""Sweeps, as a user runs them: `ray job submit` of jobs.sweep on the local
cluster, everything in S3, the best checkpoint evaluated, and a sweep stopped
with `ray job stop` and resubmitted that finishes without running any
finished trial again.

Shares the session's cluster (tests/e2e/conftest.py) with the other e2e files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import LOCAL_CLUSTER, REPO_ROOT
from tests.e2e.conftest import job_id_of
from tests.e2e.joblog import job_lines, ours

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(LOCAL_CLUSTER)]

RUN = uuid.uuid4().hex[:6]
# The seed sweep without its ASHA scheduler: every trial runs to its stop criterion.
FIFO = "scheduler={type: fifo}"
FOUND: dict[str, str] = {}


def sweep(cluster, *args: str, config: str = "jobs/sweeps/cartpole-asha.yaml", wait: bool = True, timeout=900):
    submit = ["submit"] if wait else ["submit", "--no-wait"]
    return cluster.control(*submit, "--", "python", "-m", "jobs.sweep", "--config", config, *args, timeout=timeout)


# ---------------------------------------------------------------- a small ASHA sweep


def test_seed_sweep_as_shipped_stops_laggards_with_asha_and_reports_the_best(cluster):
    name = f"e2e-asha-{RUN}"
    # The shipped seed sweep (ASHA at 5, 15 and 45 iterations), two samples per grid point: 8 trials,
    # each capped at 30,000 env steps (30 iterations; shipped: 60,000): the rungs at 5 and 15 still cut.
    result = sweep(cluster, "--name", name, "--set", "num_samples=2", "--set", "stop.env_steps=30000",
                   config="jobs/sweeps/cartpole-seed.yaml")  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    lines = ours(job_lines(result.stdout))
    record = cluster.sweep_outcome(name)
    assert lines[-2:] == record.lines(), lines[-6:]
    assert record.report.endswith(f"/{name}/report") and record.trials == 8 and record.unfinished == 0
    assert re.search(rf"/trials/{record.best_trial}/checkpoint_\d{{6}}$", record.best_checkpoint), record
    assert any(re.search(r"trials \d+/8 done \| \d+ running \| \d+ pending", line) for line in lines)
    assert any(line.startswith("sweep " + name + ": 8 of 8 trials") for line in lines)

    keys = cluster.keys(cluster.prefix(name))
    tune = [k for k in keys if "/tune/" in k]
    assert any(re.search(r"/tune/experiment_state-.*\.json$", k) for k in tune), tune
    assert any(k.endswith("/tune/tuner.pkl") for k in tune)
    # Tune's per-trial files: result.json, which the report reads, and none of its copies of it
    # (progress.csv, TensorBoard events): each would be uploaded again at every save of the state.
    assert sum(k.endswith("/result.json") for k in tune) == 8, tune
    assert not [k for k in tune if k.endswith("/progress.csv") or "/events.out.tfevents" in k]
    trial_checkpoints = {k.split("/trials/")[1].split("/")[0] for k in keys if re.search(r"/trials/\w+/checkpoint_", k)}
    assert trial_checkpoints, "no trial checkpoint in the bucket"
    report = cluster.prefix(name) + "report/"
    for file in ("trials.csv", "learning_curves.png", "summary.txt", "best.json"):
        assert report + file in keys, file
    table = list(csv.DictReader(io.StringIO(cluster.object(report + "trials.csv").decode())))
    assert len(table) == 8, table
    assert list(table[0])[:6] == ["rank", "trial_id", "outcome", "model.fcnet_hiddens", "model.fcnet_activation",
                                  "training.lr"]  # fmt: skip
    assert cluster.object(report + "learning_curves.png")[:8] == b"\x89PNG\r\n\x1a\n"

    # ASHA really cut trials short: below the top third at a rung (grace period 5, reduction factor
    # 3: iterations 5 and 15 before the 30-iteration cap), before their own stop criterion.
    early = [row for row in table if row["outcome"] == "stopped early"]
    assert early, [(row["trial_id"], row["outcome"], row["iterations"]) for row in table]
    assert all(not row["stop_reason"] and int(row["iterations"]) in (5, 15) for row in early), early

    # best.json is the best row of trials.csv by the sweep's own ranking: fewest env steps to 195,
    # or (no trial solved) the highest return.
    def number(text):
        return float(text) if text not in ("", "nan") else math.nan

    solved = [row for row in table if not math.isnan(number(row["env_steps_to_solve"]))]
    expected = (
        min(solved, key=lambda row: number(row["env_steps_to_solve"]))
        if solved
        else max(table, key=lambda row: number(row["episode_return_mean"]))
    )
    best = json.loads(cluster.object(report + "best.json"))
    assert best["trial_id"] == expected["trial_id"], (best, expected)
    assert best["metric"] == ("env_steps_to_solve" if solved else "episode_return_mean")
    assert best["checkpoint"] == record.best_checkpoint
    # The record (outcome.json) says what the report says: what the benches and tools read.
    assert record.planned == 8 and record.counts == dict(Counter(row["outcome"] for row in table)), record
    assert (record.best_metric, record.best_value) == (best["metric"], float(best["value"])), (record, best)
    FOUND["best_checkpoint"] = best["checkpoint"]


def test_best_checkpoint_evaluates(cluster):
    checkpoint = FOUND.get("best_checkpoint")
    assert checkpoint, "the sweep test above left no best checkpoint: it failed, or was not run"
    result = cluster.control("evaluate", "--checkpoint", checkpoint, "--episodes", "3", timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    record = cluster.evaluation_outcome(checkpoint)
    assert record.episodes == 3 and record.video.startswith(checkpoint.rsplit("/", 1)[0] + "/evaluations/")


def test_sweep_report_rebuilds_from_s3_alone(cluster, tmp_path):
    assert FOUND.get("best_checkpoint"), "the sweep test above left no best checkpoint: it failed, or was not run"
    name = f"e2e-asha-{RUN}"
    result = cluster.control("report", "--name", name, "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert cluster.sweep_outcome(name).best_checkpoint == FOUND["best_checkpoint"]
    assert result.stdout.strip().splitlines()[-2:] == cluster.sweep_outcome(name).lines()
    assert (tmp_path / name / "learning_curves.png").stat().st_size > 10_000
    assert len((tmp_path / name / "trials.csv").read_text().strip().splitlines()) == 9


# ---------------------------------------------------------------- stop, resubmit, resume


def trial_pointers(cluster, name: str) -> dict[str, dict]:
    """Each trial's latest.json: its newest complete checkpoint and whether it finished."""
    keys = cluster.keys(cluster.prefix(name) + "trials/")
    return {
        key.split("/trials/")[1].split("/")[0]: json.loads(cluster.object(key))
        for key in keys
        if key.endswith("/latest.json")
    }


def checkpoints_of(cluster, name: str, trial_id: str) -> set[str]:
    keys = cluster.keys(cluster.prefix(name) + f"trials/{trial_id}/")
    return {k.split(f"/{trial_id}/")[1].split("/")[0] for k in keys if "/checkpoint_" in k}


def ray_cli(cluster, *args: str) -> subprocess.CompletedProcess:
    ray = str(Path(sys.executable).parent / "ray")
    return subprocess.run([ray, *args], cwd=REPO_ROOT, env=cluster.client_env(), capture_output=True, text=True)


def test_stopped_sweep_resumes_and_runs_no_finished_trial_again(cluster):
    name = f"e2e-resume-{RUN}"
    # No early solves: every trial runs to 60 iterations (a checkpoint every 5), so a trial caught with
    # a checkpoint and 30 or more iterations to go is still unfinished when `ray job stop` has stopped it.
    # The window to catch that in (its pointer at iteration 5 to 25, about 7 s) is wide enough for a
    # busy machine's polling: at 40 iterations (pointer at 5 or 10, about 3 s) a CI run missed it once.
    args = ("--name", name, "--set", "num_samples=1", "--set", "stop.env_steps=60000", "--set", FIFO,
            "--set", "overrides={checkpoint: {every_n_iterations: 5}}",
            "--set", "stop.episode_return_mean=null", "--set", "best=null")  # fmt: skip
    config = "jobs/sweeps/cartpole-seed.yaml"  # 2 x 2 grid x 1 sample = 4 trials
    submitted = sweep(cluster, *args, config=config, wait=False)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = job_id_of(submitted.stdout)
    client = cluster.jobs()

    # Stop it once a trial has finished and another has an early checkpoint (iteration 25 at most).
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        pointers = trial_pointers(cluster, name).values()
        if any(p["finished"] for p in pointers) and any(not p["finished"] and p["iteration"] <= 25 for p in pointers):
            break
        assert str(client.get_job_status(job_id)) not in ("SUCCEEDED", "FAILED"), client.get_job_logs(job_id)[-3000:]
        time.sleep(0.5)
    else:
        pytest.fail("no finished and unfinished trial with checkpoints side by side in 10 minutes")
    stopped = ray_cli(cluster, "job", "stop", job_id)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert str(client.get_job_status(job_id)) == "STOPPED"

    before = trial_pointers(cluster, name)
    finished = {t: p for t, p in before.items() if p["finished"]}
    unfinished = {t: p for t, p in before.items() if not p["finished"]}
    assert finished and unfinished, before
    checkpoints_before = {t: checkpoints_of(cluster, name, t) for t in finished}

    resumed = sweep(cluster, *args, config=config)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    lines = ours(job_lines(resumed.stdout))
    assert lines[0] == f"resumed from {cluster.client_env()['RL_STORAGE_URI']}/{name}/tune", lines[:3]
    assert any(line.startswith(f"sweep {name}: 4 of 4 trials 4 finished") for line in lines), lines[-20:]

    after = trial_pointers(cluster, name)
    assert len(after) == 4 and all(p["finished"] for p in after.values()), after
    for trial_id, pointer in finished.items():
        # Same trial id, same final iteration and env steps, no new checkpoint: it did not run again.
        assert after[trial_id]["iteration"] == pointer["iteration"], trial_id
        assert after[trial_id]["env_steps"] == pointer["env_steps"], trial_id
        assert after[trial_id]["checkpoint"] == pointer["checkpoint"], trial_id
        assert checkpoints_of(cluster, name, trial_id) == checkpoints_before[trial_id], trial_id
    # The unfinished ones went on from exactly where their last checkpoint was, not from scratch.
    logs = cluster.jobs().get_job_logs(job_id_of(resumed.stdout))
    for trial_id, pointer in unfinished.items():
        expected = f"trial {trial_id}: resumed from {pointer['checkpoint']} at iteration {pointer['iteration']}"
        assert expected in logs, (expected, [line for line in logs.splitlines() if "resumed from" in line])
        assert after[trial_id]["iteration"] > pointer["iteration"], trial_id


# ---------------------------------------------------------------- PBT


def test_pbt_sweep_exploits_and_the_exploiting_trial_continues_from_the_exploited_checkpoint(cluster):
    name = f"e2e-pbt-{RUN}"
    # The shipped PBT sweep (4 trials, a perturbation every 5 iterations), shortened to 15 iterations.
    result = sweep(cluster, "--name", name, "--set", "stop.iterations=15", config="jobs/sweeps/cartpole-pbt.yaml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    logs = cluster.jobs().get_job_logs(job_id_of(result.stdout))
    exploits = re.findall(r"trial (\w+): exploited (s3://\S+/trials/(\w+)/checkpoint_(\d{6})) at iteration (\d+)", logs)
    assert exploits, "PBT never exploited: " + logs[-3000:]
    pointers = trial_pointers(cluster, name)
    for trial_id, checkpoint, source, saved_at, iteration in exploits:
        assert source != trial_id and source in pointers, (trial_id, source)
        # The exploited checkpoint is a complete one of the other trial, at the iteration it was copied at.
        assert int(saved_at) == int(iteration) and checkpoint in {
            f"{cluster.client_env()['RL_STORAGE_URI']}/{name}/trials/{source}/{c}"
            for c in checkpoints_of(cluster, name, source)
        }
    # The last exploit of each trial is on record in its pointer, and the trial went on from there.
    last = {trial_id: (checkpoint, int(iteration)) for trial_id, checkpoint, _, _, iteration in exploits}
    for trial_id, (checkpoint, iteration) in last.items():
        assert pointers[trial_id]["exploited_from"] == checkpoint, pointers[trial_id]
        assert pointers[trial_id]["iteration"] > iteration
        own = {int(c.removeprefix("checkpoint_")) for c in checkpoints_of(cluster, name, trial_id)}
        assert max(own) > iteration, (trial_id, sorted(own))  # its own checkpoint after the copy
