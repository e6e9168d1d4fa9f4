"""Where the time of `make train` and `make sweep` goes, as a user sees it.

    python -m bench.latency [--use-running-cluster] [--sweeps seed asha] [--against HEAD~1]

Runs the commands `make train` and `make sweep` run (`python -m controlplane
submit -- ...`) on a throw-away local cluster and timestamps every line of
their output as it arrives. From the lines alone:

    before submission     command start -> the `+ ray job submit` line (the local --check)
    submission -> driver  -> the job's first line
    driver -> built       -> the first progress line, less that iteration's own time
    training              the iterations' own times (iter_time)
    checkpoint, report    the last progress line -> the command's end (it ends with the job)
    and shutdown
    total                 command start -> the command's end

and from the run's record (`outcome.json`: jobs/common/reports/outcome.py), the
driver's own view of the same phases. For sweeps: wall time, Tune's own run, trials per minute and the share
of the sweep during which fewer trials ran than the CPU group has CPUs (from
the trials' own result timestamps in Tune's experiment). Prints a table, writes bench/out/latency.json.

With `--against REV` every workload also runs from commit REV (a git worktree:
its code, this venv, the same cluster), each right after this tree's, and the
table has a column for each: a before/after in one run, on one machine state.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import bench_cluster, submitting, write_json
from controlplane.state import REPO_ROOT, StateDir, default_state_dir
from jobs.common.reports import outcome
from jobs.common.reports.outcome import TrainOutcome
from jobs.common.reports.tables import markdown, table
from jobs.common.storage import layout

ITER = re.compile(r"^iter\s+(\d+) \|.*iter_time\s+([\d.]+)s")
SWEEP_PROGRESS = re.compile(r"^\[\s*([\d.]+)s\] trials (\d+)/(\d+) done \| (\d+) running \| (\d+) pending")


@dataclass
class Line:
    at: float  # seconds since the command started
    text: str


def run_timed(entrypoint: list[str], env: dict[str, str], tree: Path = REPO_ROOT) -> tuple[list[Line], float, int]:
    """`make train`/`make sweep`'s command (from the checkout `tree`), each output line timestamped as it
    arrives; when the command ended; its exit status."""
    started = time.monotonic()
    process = submitting(entrypoint, env, tree)
    lines = []
    assert process.stdout is not None
    for text in process.stdout:
        lines.append(Line(time.monotonic() - started, text.rstrip("\n")))
    status = process.wait()
    return lines, time.monotonic() - started, status


def job_text(line: Line) -> str:
    """A job's own line, without Ray's `(pid=...)` prefix of actor output."""
    return re.sub(r"^\(\S+ pid=\d+(, ip=\S+)?\)\s*", "", line.text)


def train_breakdown(lines: list[Line], ended: float, job_time: str | None) -> dict[str, float | str | None]:
    """The phases of one `make train`, from the timestamped lines and the command's end (see the module's
    docstring); `job_time`: the driver's own view, from the run's record."""
    submit = next(i for i, line in enumerate(lines) if line.text.startswith("+ ray job submit"))
    # `ray job submit` prints its own lines first; the job's begin after "Running entrypoint for job".
    banner = next((i for i in range(submit, len(lines)) if "Running entrypoint for job" in lines[i].text), submit)
    first_job_line = next((line for line in lines[banner + 1 :] if line.text.strip()), lines[-1])
    iterations = [(line, ITER.match(job_text(line))) for line in lines]
    iterations = [(line, float(match.group(2))) for line, match in iterations if match]
    first_iteration, first_iteration_s = iterations[0]
    return {
        "before_submission_s": round(lines[submit].at, 1),
        "submission_to_driver_s": round(first_job_line.at - lines[submit].at, 1),
        "driver_to_built_s": round(first_iteration.at - first_iteration_s - first_job_line.at, 1),
        "training_s": round(sum(seconds for _, seconds in iterations), 1),
        "checkpoint_report_shutdown_s": round(ended - iterations[-1][0].at, 1),
        "total_s": round(ended, 1),
        "iterations": len(iterations),
        "driver_job_time": job_time,
    }


def sweep_breakdown(lines: list[Line], end: float) -> dict[str, float | int | None]:
    """Wall time (to the command's end), Tune's run and trials/min, from the sweep's own progress lines."""
    reports = [
        (float(m.group(1)), int(m.group(2))) for m in (SWEEP_PROGRESS.match(job_text(line)) for line in lines) if m
    ]
    if not reports:
        return {"total_s": round(end, 1), "tune_s": None, "trials": None, "trials_per_min": None}
    tune_s, done = reports[-1]
    return {
        "total_s": round(end, 1),
        "tune_s": round(tune_s, 1),
        "trials": done,
        "trials_per_min": round(done / tune_s * 60, 1) if tune_s else None,
    }


def underused(intervals: list[tuple[float, float]], cpus: int) -> float | None:
    """The share of the sweep's span (first trial start to last trial end) during which fewer trials
    ran than there are CPUs, except at the end when fewer trials were left than CPUs."""
    if not intervals:
        return None
    start, end = min(a for a, _ in intervals), max(b for _, b in intervals)
    edges = sorted({t for interval in intervals for t in interval})
    short = 0.0
    for left, right in zip(edges, edges[1:], strict=False):
        running = sum(a <= left and b >= right for a, b in intervals)
        left_to_start = sum(a >= right for a, _ in intervals)
        if running < cpus and running + left_to_start >= cpus:
            short += right - left
    return short / (end - start) if end > start else None


def trial_intervals(env: dict[str, str], storage_uri: str, name: str) -> list[tuple[float, float]]:
    """Each trial's [start, last report] in wall-clock seconds, from its results in Tune's experiment
    (in storage): the trial's own `started_at` (its function entered: the algorithm's build counts
    as running, Tune's hand-over between trials does not) and `reported_at` (jobs/common/sweeps/trial.py)."""
    from ray.tune import ExperimentAnalysis

    os.environ.update(env)
    analysis = ExperimentAnalysis(layout.sweep(storage_uri, name).tune)
    return [
        (float(frame["started_at"].iloc[0]), float(frame["reported_at"].iloc[-1]))
        for frame in analysis.trial_dataframes.values()
        if len(frame) and "started_at" in frame and "reported_at" in frame
    ]


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[tuple[str, Path]]:
    """`rev` checked out beside this tree (a git worktree, removed afterwards): its short hash and folder.
    Its commands run with this tree's venv; the job runs its code (it is the job's working dir)."""
    short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO_ROOT, capture_output=True, text=True)
    if short.returncode != 0:
        raise SystemExit(f"error: --against {rev}: not a commit of this repository ({short.stderr.strip()})")
    folder = Path(tempfile.mkdtemp(prefix="bench-against-")) / short.stdout.strip()
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(folder), rev], cwd=REPO_ROOT, check=True)
    try:
        yield short.stdout.strip(), folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO_ROOT, check=False)
        shutil.rmtree(folder.parent, ignore_errors=True)


def time_train(env: dict[str, str], name: str, tree: Path, client: dict[str, str]) -> dict:
    print(f"make train (jobs/experiments/ppo-cartpole.yaml as {name})", flush=True)
    lines, ended, status = run_timed(["python", "-m", "jobs.train", "--config",
                                      "jobs/experiments/ppo-cartpole.yaml", "--name", name], env, tree)  # fmt: skip
    os.environ.update(client)
    record = outcome.read(TrainOutcome, layout.experiment(client["RL_STORAGE_URI"], name).outcome)
    job_time = record.job_time() if record else None
    return {"run": "make train (ppo-cartpole)", "exit": status, **train_breakdown(lines, ended, job_time)}


def time_sweep(env: dict[str, str], sweep: str, name: str, tree: Path, client: dict[str, str]) -> dict:
    print(f"make sweep SWEEP=jobs/sweeps/cartpole-{sweep}.yaml (as {name})", flush=True)
    lines, ended, status = run_timed(["python", "-m", "jobs.sweep", "--config", f"jobs/sweeps/cartpole-{sweep}.yaml",
                                      "--name", name], env, tree)  # fmt: skip
    row = {"run": f"make sweep (cartpole-{sweep})", "exit": status, **sweep_breakdown(lines, ended)}
    share = underused(trial_intervals(client, client["RL_STORAGE_URI"], name), int(os.cpu_count() or 2))
    row["underused"] = None if share is None else f"{share:.0%}"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--use-running-cluster", action="store_true", help="use .cluster/env's cluster")
    parser.add_argument("--sweeps", nargs="*", default=["seed", "asha"], choices=["seed", "asha"],
                        help="which shipped sweeps to time (default both; none: `make train` only)")  # fmt: skip
    parser.add_argument("--against", metavar="REV",
                        help="also time commit REV (e.g. HEAD~1): each run right after this tree's")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "latency.json")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    rows = []
    with contextlib.ExitStack() as stack:
        trees = [("this tree", REPO_ROOT)] + ([stack.enter_context(checkout(args.against))] if args.against else [])
        env = stack.enter_context(bench_cluster(args.use_running_cluster))
        state_dir = StateDir(default_state_dir() if args.use_running_cluster else Path(env["CLUSTER_STATE_DIR"]))
        client = {**env, **state_dir.read_env()}
        # Each workload on every tree in turn, so that a machine that slows down slows both alike.
        for index, (tree, folder) in enumerate(trees):
            rows.append({"tree": tree, **time_train(env, f"bench-latency-{stamp}-{index}", folder, client)})
        for sweep in args.sweeps:
            for index, (tree, folder) in enumerate(trees):
                name = f"bench-latency-{stamp}-{index}-{sweep}"
                rows.append({"tree": tree, **time_sweep(env, sweep, name, folder, client)})

    trains = [row for row in rows if row["run"].startswith("make train")]
    phases = [key for key in trains[0] if key.endswith("_s")]
    columns = ["phase", *(f"seconds ({row['tree']})" for row in trains)]
    cells = [[key.removesuffix("_s").replace("_", " "), *(row[key] for row in trains)] for key in phases]
    print("\n" + table(columns, cells))
    for row in trains:
        print(f"driver's own view ({row['tree']}): {row['driver_job_time']}")
    sweeps = [row for row in rows if row["run"].startswith("make sweep")]
    if sweeps:
        keys = ["run", "tree", "total_s", "tune_s", "trials", "trials_per_min", "underused", "exit"]
        print("\n" + table(keys, [[row.get(key, "-") for key in keys] for row in sweeps]))
        print(
            "underused: share of the sweep's span with fewer trials running than the CPU group's CPUs "
            "(while more were waiting), from the trials' own result timestamps"
        )
    print("\n" + markdown(columns, cells))
    write_json(args.out, "latency", stamp, rows)
    return 0 if all(row["exit"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
