"""Learner throughput, CPU learners vs GPU learners, same workload, one run.

    .venv/bin/python -m bench.learner_throughput [--experiment jobs/experiments/ppo-halfcheetah.yaml]

For each variant (a CPU learner; where CUDA exists: a GPU learner, then with
bf16 mixed precision, then with torch.compile) it builds the experiment's PPO
in a local Ray instance, runs --iterations training iterations after one
warm-up iteration, and reports:

  samples_trained_per_s   train_batch_size x num_epochs / learner update time
  learner_s_per_iter      the learner update alone
  wall_s_per_iter         a whole iteration (sampling + learning + weight sync)

Prints a table and writes bench/out/learner_throughput.json. Without a CUDA
device it measures the CPU side, says the GPU side was not run, and exits 0.
Runs unchanged on a GPU machine with the pinned Ray and a CUDA build of torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from jobs.common.rllib.ppo import build_ppo_config
from jobs.common.schema.experiment import load_experiment

REPO_ROOT = Path(__file__).resolve().parent.parent


def measure(experiment_path: Path, variant: dict, iterations: int) -> dict:
    overrides = [f"learners.{key}={json.dumps(value)}" for key, value in variant["learners"].items()]
    experiment = load_experiment(experiment_path, overrides).experiment
    algo = build_ppo_config(experiment, use_groups=False).build_algo()
    total_batch = experiment.training.train_batch_size
    epochs = algo.config.num_epochs
    walls, learner_times = [], []
    try:
        for index in range(iterations + 1):
            started = time.perf_counter()
            result = algo.train()
            wall = time.perf_counter() - started
            learner = float(result["timers"]["learner_update_timer"]) if index else None
            print(f"  {variant['name']}: iteration {index} {'(warm-up) ' if not index else ''}{wall:.2f}s", flush=True)
            if index:  # the first iteration pays for compilation and CUDA start-up
                walls.append(wall)
                learner_times.append(learner)
    finally:
        algo.stop()
    learner_s = statistics.median(learner_times)
    return {
        "variant": variant["name"],
        "device": variant["device"],
        "train_batch_size": total_batch,
        "num_epochs": epochs,
        "samples_trained_per_s": round(total_batch * epochs / learner_s),
        "learner_s_per_iter": round(learner_s, 3),
        "wall_s_per_iter": round(statistics.median(walls), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "jobs/experiments/ppo-halfcheetah.yaml")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "learner_throughput.json")
    args = parser.parse_args()

    import ray
    import torch

    cuda = torch.cuda.is_available()
    variants = [{"name": "cpu learner", "device": "cpu", "learners": {"num_gpus": 0, "num_learners": 1}}]
    if cuda:
        variants += [
            {"name": "gpu learner", "device": torch.cuda.get_device_name(0), "learners": {"num_gpus": 1}},
            {"name": "gpu learner + bf16", "device": torch.cuda.get_device_name(0),
             "learners": {"num_gpus": 1, "mixed_precision": True}},
            {"name": "gpu learner + torch.compile", "device": torch.cuda.get_device_name(0),
             "learners": {"num_gpus": 1, "torch_compile": True}},
        ]  # fmt: skip
    ray.init(logging_level="error", include_dashboard=False)
    rows = []
    for variant in variants:
        print(f"{variant['name']} on {variant['device']}", flush=True)
        rows.append(measure(args.experiment, variant, args.iterations))
    ray.shutdown()

    header = f"{'variant':<28} {'device':<24} {'samples_trained/s':>17} {'learner_s/iter':>14} {'wall_s/iter':>11}"
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        print(
            f"{row['variant']:<28} {row['device'][:24]:<24} {row['samples_trained_per_s']:>17,} "
            f"{row['learner_s_per_iter']:>14} {row['wall_s_per_iter']:>11}"
        )
    if not cuda:
        print("\nGPU side not run: no CUDA device here (torch.cuda.is_available() is False).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "learner_throughput", "experiment": str(args.experiment.relative_to(REPO_ROOT)),
        "cuda": cuda, "gpu_side_run": cuda, "torch": torch.__version__, "ray": ray.__version__,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "rows": rows,
    }, indent=2))  # fmt: skip
    print(f"wrote {os.path.relpath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
