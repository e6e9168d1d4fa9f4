"""PPO on CartPole-v1: time from `ray job submit` to a mean return of 450.

Runs, in one go and on the same local cluster: our experiment
(jobs/experiments/ppo-cartpole.yaml through `python -m controlplane submit`),
and plain RLlib PPO with its default settings (bench/plain_rllib_ppo.py,
submitted the same way). Prints a table and writes bench/out/ppo_cartpole.json.

    make bench                                   # starts a throw-away cluster, stops it after
    .venv/bin/python -m bench.ppo_cartpole --seeds 0 1 2 --use-running-cluster

Columns: wall_to_450_s is from the submit command's start to the progress
line that reaches 450 (upload, driver start, algorithm build and training);
train_s is jobs.train's own training time at that line (iterations and
checkpoint writes, no build).
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

PROGRESS = re.compile(r"iter\s+(\d+) \| env_steps\s+([\d,]+) \| return\s+([\d.]+|n/a) \|.*train_time\s+([\d.]+)s")
TARGET = 450.0


def run_job(entrypoint: list[str], env: dict[str, str]) -> dict:
    """Submit, stream, and time the first progress line at or above TARGET."""
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
    reached = None
    last = None
    for line in process.stdout:
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
        if reached is None and last["return"] is not None and last["return"] >= TARGET:
            reached = {**last, "wall_to_450_s": round(time.monotonic() - started, 1)}
            print(f"    reached {last['return']:.1f} at {last['env_steps']} env steps", flush=True)
    status = process.wait()
    return {
        "exit_status": status,
        "reached": reached is not None,
        **(reached or last or {}),
        "wall_total_s": round(time.monotonic() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--skip-plain", action="store_true", help="only our experiment")
    parser.add_argument("--use-running-cluster", action="store_true", help="use .cluster/env instead of a new cluster")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "ppo_cartpole.json")
    args = parser.parse_args()

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    rows = []
    with bench_cluster(args.use_running_cluster) as env:
        for seed in args.seeds:
            print(f"ours, seed {seed}: jobs/experiments/ppo-cartpole.yaml", flush=True)
            result = run_job(
                [
                    "python",
                    "-m",
                    "jobs.train",
                    "--config",
                    "jobs/experiments/ppo-cartpole.yaml",
                    "--name",
                    f"bench-{stamp}-s{seed}",
                    "--set",
                    f"seed={seed}",
                ],
                env,
            )
            rows.append({"run": "ours (ppo-cartpole.yaml)", "seed": seed, **result})
            if not args.skip_plain:
                print(f"plain RLlib PPO defaults, seed {seed}", flush=True)
                result = run_job(["python", "-m", "bench.plain_rllib_ppo", "--seed", str(seed)], env)
                rows.append({"run": "plain RLlib PPO defaults", "seed": seed, **result})

    columns = ["run", "seed", "reached", "wall_to_450_s", "train_s", "env_steps", "iters"]
    keys = ["run", "seed", "reached", "wall_to_450_s", "train_s", "env_steps", "iterations"]
    print("\n" + table(columns, [[row.get(key, "-") for key in keys] for row in rows]))
    write_json(args.out, "ppo_cartpole", stamp, rows, target_return=TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
