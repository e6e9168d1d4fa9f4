"""Sweeps: wall time and trials per minute, ours against a plain Tune run.

Runs, in one go and on the same local cluster, each submitted with
`ray job submit` (through `python -m controlplane submit`):

  seed   jobs/sweeps/cartpole-seed.yaml (20 trials, stop at 195 on CartPole-v0)
         vs bench/plain_tune_sweep.py --sweep seed (same space, RLlib/Tune defaults)
  asha   jobs/sweeps/cartpole-asha.yaml (216 trials, ASHA)
         vs bench/plain_tune_sweep.py --sweep asha (same space and ASHA settings,
         RLlib/Tune defaults, cut by --plain-asha-budget-s; trials per minute is a rate)

Prints a table and writes bench/out/sweeps.json.

    make bench-sweeps                       # starts a throw-away cluster, stops it after
    .venv/bin/python -m bench.sweeps --only seed --skip-plain --use-running-cluster

wall_s is from the submit command's start to its end (upload, driver start,
every trial, the report); best_steps is the fewest env steps at which a
trial reached a mean return of 195.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import bench_cluster, write_json
from jobs.common.reports.tables import table

REPO_ROOT = Path(__file__).resolve().parent.parent

OURS_SUMMARY = re.compile(r"^sweep \S+: (\d+) of (\d+) trials(.*)$")
OURS_BEST = re.compile(r"^best: \S+ env_steps_to_solve=([\d,]+)")
PLAIN_LAST = re.compile(r"^plain: trials (\d+) done in ([\d.]+) s; best env steps to 195: (\S+)")


def submit(entrypoint: list[str], env: dict[str, str]) -> tuple[int, list[str], float]:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "controlplane", "submit", "--", *entrypoint],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if re.search(r"trials \d+/\d+ done|^plain:|^best:|^report:", line):
            print("    " + line.rstrip(), flush=True)
    status = process.wait()
    return status, lines, time.monotonic() - started


def ours(sweep: str, name: str, env: dict[str, str]) -> dict:
    status, lines, wall = submit(["python", "-m", "jobs.sweep", "--config", sweep, "--name", name], env)
    trials = best = None
    for line in lines:
        if match := OURS_SUMMARY.match(line):
            trials = int(match.group(1))
        if match := OURS_BEST.match(line):
            best = int(match.group(1).replace(",", ""))
    return _row(status, wall, trials, best)


def plain(sweep: str, name: str, env: dict[str, str], budget_s: float | None) -> dict:
    entrypoint = ["python", "-m", "bench.plain_tune_sweep", "--sweep", sweep, "--name", name]
    if budget_s:
        entrypoint += ["--time-budget-s", str(budget_s)]
    status, lines, wall = submit(entrypoint, env)
    trials = best = None
    for line in lines:
        if match := PLAIN_LAST.match(line):
            trials = int(match.group(1))
            best = None if match.group(3) == "None" else int(float(match.group(3)))
    return _row(status, wall, trials, best)


def _row(status: int, wall: float, trials: int | None, best: int | None) -> dict:
    return {
        "exit_status": status,
        "wall_s": round(wall, 1),
        "trials": trials,
        "trials_per_min": round(trials / (wall / 60), 1) if trials else None,
        "best_steps": best,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("seed", "asha"), help="run one of the two sweeps")
    parser.add_argument("--skip-plain", action="store_true", help="only our sweeps")
    parser.add_argument("--plain-asha-budget-s", type=float, default=300.0, help="time budget of the plain ASHA run")
    parser.add_argument("--use-running-cluster", action="store_true", help="use .cluster/env instead of a new cluster")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "sweeps.json")
    args = parser.parse_args()

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    rows = []
    with bench_cluster(args.use_running_cluster) as env:
        for sweep in ("seed", "asha"):
            if args.only and sweep != args.only:
                continue
            print(f"ours: jobs/sweeps/cartpole-{sweep}.yaml", flush=True)
            result = ours(f"jobs/sweeps/cartpole-{sweep}.yaml", f"bench-{stamp}-{sweep}", env)
            rows.append({"sweep": sweep, "run": "ours", **result})
            if not args.skip_plain:
                budget = args.plain_asha_budget_s if sweep == "asha" else None
                print(f"plain Tune defaults: --sweep {sweep}" + (f" (time budget {budget:g} s)" if budget else ""))
                result = plain(sweep, f"bench-{stamp}-plain-{sweep}", env, budget)
                rows.append({"sweep": sweep, "run": "plain Tune + RLlib defaults", **result})

    columns = ["sweep", "run", "trials", "wall_s", "trials/min", "best_steps", "exit"]
    keys = ["sweep", "run", "trials", "wall_s", "trials_per_min", "best_steps", "exit_status"]
    print("\n" + table(columns, [[row[key] if row[key] is not None else "-" for key in keys] for row in rows]))
    write_json(args.out, "sweeps", stamp, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
