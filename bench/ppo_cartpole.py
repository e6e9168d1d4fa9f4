"""PPO on CartPole-v1: time from `ray job submit` to a mean return of 450, per seed.

Runs, in one go and on the same local cluster, for each seed (0, 1, 2 by
default): our experiment (jobs/experiments/ppo-cartpole.yaml through
`python -m controlplane submit`), and plain RLlib PPO with its default
settings (bench/plain_rllib_ppo.py, submitted the same way). Prints a row per
seed and run, a summary per run, and writes bench/out/ppo_cartpole.json.

    make bench-ppo                               # starts a throw-away cluster, stops it after
    .venv/bin/python -m bench.ppo_cartpole --seeds 0 --use-running-cluster

Both sides are judged the same way, from the same kind of episodes: the return
is the mean of the last 20 finished episodes (jobs.common.run.returns.ReturnWindow
on RLlib's results; our experiment's metrics_smoothing_episodes is set to the
same window), the target is 450 on that mean, and both stop at the same caps
(--max-env-steps, --max-seconds of training time), by the same rule
(jobs.common.schema.experiment.Stop). Only the PPO settings differ: ours
against RLlib's defaults.

Columns: reached (the target, before a cap); wall_to_450_s is from the submit
command's start to the progress line that reaches 450 (upload, driver start,
algorithm build and training); train_s is the training time at that line (from
the first iteration: iterations, and checkpoint writes on our side, no build);
env_steps and iters at that line (or at the last line, where the target was
not reached).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import bench_cluster, submitting, write_json
from controlplane.state import REPO_ROOT
from jobs.common.reports.tables import table

PROGRESS = re.compile(r"iter\s+(\d+) \| env_steps\s+([\d,]+) \| return\s+([\d.]+|n/a) \|.*train_time\s+([\d.]+)s")
OURS = "ours (ppo-cartpole.yaml)"
PLAIN = "plain RLlib PPO defaults"


@dataclass(frozen=True)
class Judge:
    """What both runs are judged by: the target on the mean of the last `window` episodes, and the caps."""

    target: float = 450.0
    window: int = 20
    max_env_steps: int = 300_000
    max_seconds: float = 600.0


def entrypoints(seed: int, name: str, judge: Judge) -> dict[str, list[str]]:
    """Our job and the baseline's, given the same target, window and caps."""
    ours = ["python", "-m", "jobs.train", "--config", "jobs/experiments/ppo-cartpole.yaml", "--name", name]
    for key, value in (
        ("seed", seed),
        ("metrics_smoothing_episodes", judge.window),
        ("stop.episode_return_mean", judge.target),
        ("stop.env_steps", judge.max_env_steps),
        ("stop.time_s", judge.max_seconds),
        ("stop.iterations", "null"),
    ):
        ours += ["--set", f"{key}={value}"]
    plain = ["python", "-m", "bench.plain_rllib_ppo", "--seed", str(seed), "--target", str(judge.target)]
    plain += ["--window", str(judge.window), "--max-env-steps", str(judge.max_env_steps)]
    plain += ["--max-seconds", str(judge.max_seconds)]
    return {OURS: ours, PLAIN: plain}


def follow(lines: Iterable[str], target: float, clock: Callable[[], float], started: float) -> dict:
    """The first progress line at or above `target` (timed by `clock`), else the last one."""
    reached = None
    last = None
    for line in lines:
        match = PROGRESS.search(line)
        if not match:
            continue
        iteration, steps, ret, train_s = match.groups()
        last = {
            "iterations": int(iteration),
            "env_steps": int(steps.replace(",", "")),
            "return": None if ret == "n/a" else float(ret),
            "train_s": float(train_s),
        }
        if reached is None and last["return"] is not None and last["return"] >= target:
            reached = {**last, "wall_to_450_s": round(clock() - started, 1)}
            print(f"    reached {last['return']:.1f} at {last['env_steps']} env steps", flush=True)
    return {"reached": reached is not None, **(reached or last or {})}


def run_job(entrypoint: list[str], env: dict[str, str], target: float) -> dict:
    """Submit, stream, and time the first progress line at or above `target`."""
    started = time.monotonic()
    process = submitting(entrypoint, env)
    result = follow(process.stdout, target, time.monotonic, started)
    status = process.wait()
    return {"exit_status": status, **result, "wall_total_s": round(time.monotonic() - started, 1)}


def summary(rows: list[dict]) -> list[dict]:
    """Per run: seeds that reached the target, and the medians over those seeds."""
    out = []
    for run in dict.fromkeys(row["run"] for row in rows):
        mine = [row for row in rows if row["run"] == run]
        reached = [row for row in mine if row.get("reached")]
        out.append(
            {
                "run": run,
                "reached": f"{len(reached)}/{len(mine)}",
                "median_wall_to_450_s": _median(reached, "wall_to_450_s"),
                "median_train_s": _median(reached, "train_s"),
                "median_env_steps": _median(reached, "env_steps"),
            }
        )
    return out


def _median(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ppo_cartpole", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--skip-plain", action="store_true", help="only our experiment")
    parser.add_argument("--max-env-steps", type=int, default=Judge.max_env_steps, help="cap for both runs")
    parser.add_argument("--max-seconds", type=float, default=Judge.max_seconds, help="training time cap for both runs")
    parser.add_argument("--use-running-cluster", action="store_true", help="use .cluster/env instead of a new cluster")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "ppo_cartpole.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    judge = Judge(max_env_steps=args.max_env_steps, max_seconds=args.max_seconds)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    rows = []
    with bench_cluster(args.use_running_cluster) as env:
        for seed in args.seeds:
            for run, entrypoint in entrypoints(seed, f"bench-{stamp}-s{seed}", judge).items():
                if run == PLAIN and args.skip_plain:
                    continue
                print(f"{run}, seed {seed}", flush=True)
                rows.append({"run": run, "seed": seed, **run_job(entrypoint, env, judge.target)})

    columns = ["run", "seed", "reached", "wall_to_450_s", "train_s", "env_steps", "iters", "exit"]
    keys = ["run", "seed", "reached", "wall_to_450_s", "train_s", "env_steps", "iterations", "exit_status"]
    print(
        f"\ntarget {judge.target:g} on the mean of the last {judge.window} episodes; caps for both: "
        f"{judge.max_env_steps:,} env steps, {judge.max_seconds:g} s of training"
    )
    print(table(columns, [[row.get(key, "-") for key in keys] for row in rows]))
    totals = summary(rows)
    columns = ["run", "reached", "median_wall_to_450_s", "median_train_s", "median_env_steps"]
    print("\n" + table(columns, [["-" if t[c] is None else t[c] for c in columns] for t in totals]))
    write_json(args.out, "ppo_cartpole", stamp, rows, judge=asdict(judge), summary=totals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
