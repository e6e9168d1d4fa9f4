"""Sweeps: trials done per minute and the fewest env steps to 195, ours against a plain Tune run.

Runs, in one go and on the same local cluster, each submitted with
`ray job submit` (through `python -m controlplane submit`):

  seed   jobs/sweeps/cartpole-seed.yaml (20 trials, ASHA, stop at 195 on CartPole-v0)
         vs bench/plain_tune_sweep.py --sweep seed (same space, no scheduler, RLlib/Tune defaults)
  asha   jobs/sweeps/cartpole-asha.yaml (216 trials, ASHA)
         vs bench/plain_tune_sweep.py --sweep asha (same space and ASHA settings,
         RLlib/Tune defaults, cut by --plain-asha-budget-s)

Both sides are judged alike: the same return (mean of the last 20 finished
episodes), the same stop (195 or 60,000 env steps), the CPU group's CPUs only,
and the same rule for "done": a trial that met its stop criteria or that the
scheduler stopped. Trials cut by a time budget, errored or never started are
counted apart, never as done. Where the two searches differ (a scheduler on
one side only, a time budget, the iteration size), the output says so under
the table. Prints the table and writes bench/out/sweeps.json.

    make bench-sweeps                       # starts a throw-away cluster, stops it after
    .venv/bin/python -m bench.sweeps --only seed --skip-plain --use-running-cluster

Columns: planned (trials the search asks for); done; cut (by a time budget);
not_done (errors, trials never started or left unfinished); wall_s (from the
submit command's start to its end: upload, driver start, every trial, the
report); done/min (done trials per minute of wall_s); best_steps (the fewest
env steps at which a trial's mean return reached 195).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import bench_cluster, read_outcome, submitting, write_json
from bench.plain_tune_sweep import (
    RLLIB_MAIN_PROCESS_CPUS,
    RLLIB_PPO_ENV_RUNNERS,
    RLLIB_PPO_TRAIN_BATCH,
    SWEEP_FILES,
    PlainSearch,
    plain_search,
)
from controlplane.state import REPO_ROOT
from jobs.common.reports.outcome import SweepOutcome
from jobs.common.reports.tables import table
from jobs.common.storage import layout

PLAIN_LAST = re.compile(r"^plain: (\{.*\})\s*$")
COLUMNS = [
    "sweep",
    "run",
    "scheduler",
    "planned",
    "done",
    "cut",
    "not_done",
    "wall_s",
    "done/min",
    "best_steps",
    "exit",
]
KEYS = ["sweep", "run", "scheduler", "planned", "done", "cut_by_time_budget", "not_done"]
KEYS += ["wall_s", "done_per_min", "best_steps", "exit_status"]


def submit(entrypoint: list[str], env: dict[str, str]) -> tuple[int, list[str], float]:
    started = time.monotonic()
    process = submitting(entrypoint, env)
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if re.search(r"trials \d+/\d+ done|^plain:|^best:|^report:", line):
            print("    " + line.rstrip(), flush=True)
    status = process.wait()
    return status, lines, time.monotonic() - started


# --------------------------------------------------------------------------
# Rows: one completion rule for both sides
# --------------------------------------------------------------------------


def ours_row(status: int, record: SweepOutcome | None, wall: float, planned: int, scheduler: str) -> dict:
    """Our sweep's counts from its record (outcome.json): done = finished + stopped early (by the scheduler)."""
    if record is None:
        return _row(status, wall, planned, None, None, None, None, scheduler)
    solved = record.best_metric == "env_steps_to_solve" and record.best_value is not None
    best = int(record.best_value) if solved else None
    # No time budget on our side: whatever is not done errored or was left unfinished.
    return _row(status, wall, planned, record.done(), 0, planned - record.done(), best, scheduler)


def plain_row(status: int, lines: list[str], wall: float, planned: int) -> dict:
    """The baseline's counts from its last line (bench/plain_tune_sweep.classify): the same rule."""
    last = None
    for line in lines:
        if match := PLAIN_LAST.match(line.strip()):
            last = json.loads(match.group(1))
    if last is None:
        return _row(status, wall, planned, None, None, None, None, "-")
    not_done = last["errors"] + last["no_result"]
    row = _row(
        status, wall, last["planned"], last["done"], last["cut_by_time_budget"], not_done, last["best_env_steps"]
    )
    row.update(scheduler=last["scheduler"], plain=last)
    return row


def _row(status, wall, planned, done, cut, not_done, best, scheduler="-") -> dict:
    return {
        "exit_status": status,
        "scheduler": scheduler,
        "wall_s": round(wall, 1),
        "planned": planned,
        "done": done,
        "cut_by_time_budget": cut,
        "not_done": not_done,
        "done_per_min": round(done / (wall / 60), 1) if done and wall > 0 else None,
        "best_steps": best,
    }


def describe_scheduler(sweep) -> str:
    s = sweep.spec.scheduler
    if s.type == "asha":
        return f"asha (rungs from {s.grace_period} iterations, max_t {s.max_t}, reduction {s.reduction_factor:g})"
    return s.type


def differences(ours, plain: PlainSearch, budget_s: float | None, plain_shape: dict | None = None) -> list[str]:
    """Where our search and the baseline's differ, in words (empty: only the defaults of RLlib/Tune differ)."""
    notes = []
    if ours.spec.scheduler.type != "fifo" and plain.scheduler is None:
        notes.append(
            f"ours stops laggards with {describe_scheduler(ours)}; the baseline does not "
            "(every trial runs to its stop criteria): compare done/min with that in mind"
        )
    elif ours.spec.scheduler.type == "fifo" and plain.scheduler is not None:
        notes.append("the baseline stops laggards with ASHA; ours does not")
    if budget_s:
        notes.append(
            f"the baseline is cut by a {budget_s:g} s time budget, ours runs to the end: its trials still running "
            "then are counted as cut, not done; compare done/min, not wall_s"
        )
    ours_batch = ours.base_experiment.training.train_batch_size
    if plain.scheduler is not None and ours_batch and ours_batch != RLLIB_PPO_TRAIN_BATCH:
        notes.append(
            f"an iteration is {ours_batch:,} env steps in ours and {RLLIB_PPO_TRAIN_BATCH:,} in the baseline "
            f"(RLlib's default): ASHA's rungs, counted in iterations, come after "
            f"{RLLIB_PPO_TRAIN_BATCH / ours_batch:g}x more env steps in the baseline"
        )
    shape = plain_shape or {}
    runners = shape.get("env_runners_per_trial", RLLIB_PPO_ENV_RUNNERS)
    cpus = shape.get("cpus_per_trial", RLLIB_MAIN_PROCESS_CPUS + runners)
    notes.append(
        f"a trial is one actor on {ours.spec.resources_per_trial.cpus:g} CPU in ours (sampling in-process); "
        f"{cpus} CPUs in the baseline (a main process and {runners} env runners); both on the CPU group only"
        + ("" if shape.get("pinned_to_cpu_group", True) else " (not pinned here: this cluster has no groups)")
    )
    return notes


def main() -> int:
    from jobs.common.schema.sweep import load_sweep

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("seed", "asha"), help="run one of the two sweeps")
    parser.add_argument("--skip-plain", action="store_true", help="only our sweeps")
    parser.add_argument("--plain-asha-budget-s", type=float, default=300.0, help="time budget of the plain ASHA run")
    parser.add_argument("--use-running-cluster", action="store_true", help="use .cluster/env instead of a new cluster")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "sweeps.json")
    args = parser.parse_args()

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    rows, notes = [], {}
    with bench_cluster(args.use_running_cluster) as env:
        for sweep_name in ("seed", "asha"):
            if args.only and sweep_name != args.only:
                continue
            ours = load_sweep(SWEEP_FILES[sweep_name])
            name = f"bench-{stamp}-{sweep_name}"
            print(f"ours: {SWEEP_FILES[sweep_name]}", flush=True)
            status, lines, wall = submit(
                ["python", "-m", "jobs.sweep", "--config", SWEEP_FILES[sweep_name], "--name", name], env
            )
            record = read_outcome(SweepOutcome, env, lambda storage, name=name: layout.sweep(storage, name).outcome)
            row = ours_row(status, record, wall, ours.trial_count(), describe_scheduler(ours).split(" ")[0])
            rows.append({"sweep": sweep_name, "run": "ours", **row})
            if args.skip_plain:
                continue
            plain = plain_search(sweep_name, ours)
            budget = args.plain_asha_budget_s if sweep_name == "asha" else None
            print(f"plain Tune defaults: --sweep {sweep_name}" + (f" (time budget {budget:g} s)" if budget else ""))
            entrypoint = ["python", "-m", "bench.plain_tune_sweep", "--sweep", sweep_name, "--name", f"{name}-plain"]
            entrypoint += ["--time-budget-s", str(budget)] if budget else []
            status, lines, wall = submit(entrypoint, env)
            row = plain_row(status, lines, wall, plain.trial_count)
            rows.append({"sweep": sweep_name, "run": "plain Tune + RLlib defaults", **row})
            notes[sweep_name] = differences(ours, plain, budget, row.get("plain"))

    print("\n" + table(COLUMNS, [["-" if row[key] is None else row[key] for key in KEYS] for row in rows]))
    for sweep_name, lines in notes.items():
        print(f"\n{sweep_name}: how the two searches differ")
        print("\n".join(f"  - {line}" for line in lines))
    write_json(args.out, "sweeps", stamp, rows, differences=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
