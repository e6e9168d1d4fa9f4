"""Throughput on an experiment's own shape: where each iteration's time goes, against this machine's limit.

    python -m bench.throughput [--experiment jobs/experiments/ppo-halfcheetah-cpu.yaml] [--workers M]
        [--iterations 4] [--cores N] [--set KEY=VALUE ...]

The project: the experiment's PPOConfig (jobs/common/rllib/ppo.py, exactly as `jobs.train` builds it;
an experiment that runs as one actor is built in this process as its actor builds it) in a local Ray
of `--cores` CPUs, for `--iterations` iterations after a warm-up one. Each iteration is split by
this process's clock: sampling (the env runners' round, as PPO's training_step calls it), the
learner update, and the rest (weight sync, metrics). Env steps per second end to end, and per
env-runner core while sampling.

The limit (bench/machine_limit.py): the same shape without Ray in one process: the vectorised envs
and the policy's forward pass on one core, times the cores; one update of the same batch, epochs and
minibatch on all of them. Measured in the same run, in this process while the cluster idles: before the
first iteration and after each one, and each iteration is compared with the mean of the limits measured
either side of it (this machine's speed drifts by 10-40 % within the hour, and by 10 % within a
minute at times: a limit measured a minute away can decide a comparison on its own).

Prints a table and writes bench/out/throughput.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import machine_limit
from bench.common import write_json
from controlplane.state import REPO_ROOT
from jobs.common.errors import exits_cleanly
from jobs.common.reports.tables import markdown, table
from jobs.common.schema.experiment import load_experiment

DEFAULT_EXPERIMENT = "jobs/experiments/ppo-halfcheetah-cpu.yaml"
COLUMNS = ("iteration", "env_steps", "iteration_s", "sample_s", "learn_s", "other_s", "steps/s", "sample steps/s/core",
           "limit_s", "x limit", "limit steps/s/core", "sampling % of limit")  # fmt: skip
ROW_KEYS = ("iteration", "env_steps", "iteration_s", "sample_s", "learn_s", "other_s", "steps_per_s",
            "sample_steps_per_s_per_core", "limit_s", "x_limit", "limit_steps_per_s_per_core",
            "sampling_percent_of_limit")  # fmt: skip


class PhaseClock:
    """Wall time of PPO's two phases in each iteration, by wrapping what its training_step calls."""

    def __init__(self, algo):
        from ray.rllib.algorithms.ppo import ppo

        self.sample_s = 0.0
        self.learn_s = 0.0
        self._module, self._sample = ppo, ppo.synchronous_parallel_sample
        self._update = algo.learner_group.update
        ppo.synchronous_parallel_sample = self._timed(self._sample, "sample_s")
        algo.learner_group.update = self._timed(self._update, "learn_s")
        self._algo = algo

    def _timed(self, call, field: str):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                setattr(self, field, getattr(self, field) + time.perf_counter() - started)

        return timed

    def reset(self) -> None:
        self.sample_s = self.learn_s = 0.0

    def close(self) -> None:
        self._module.synchronous_parallel_sample = self._sample
        self._algo.learner_group.update = self._update


def build(experiment):
    """The algorithm as `jobs.train` builds it: in this process where the experiment runs as one actor
    (jobs/common/rllib/trainer.py), else the driver's algorithm with its remote env runners and learners."""
    from jobs.common.rllib.heap import build_algo
    from jobs.common.rllib.ppo import build_ppo_config
    from jobs.common.rllib.trainer import build_in_actor, runs_in_one_actor

    if runs_in_one_actor(experiment):
        return build_in_actor(experiment, use_groups=False)
    return build_algo(build_ppo_config(experiment, use_groups=False))


def env_runner_cores(experiment) -> int:
    runners = experiment.env_runners
    if runners.num_env_runners == 0:
        return 1
    return runners.num_env_runners * runners.num_cpus_per_env_runner


def run_project(experiment, iterations: int, cores: int, measure_limit) -> tuple[list[dict], list]:
    """The project's iterations (a warm-up one first), and the limit measured before the first and after
    each one by `measure_limit(when)`; each row compares its iteration with the mean of the limits either
    side of it."""
    import ray

    ray.init(num_cpus=cores, include_dashboard=False, configure_logging=False, log_to_driver=False)
    algo = build(experiment)
    clock = PhaseClock(algo)
    rows, lifetime = [], 0
    try:
        limits = [measure_limit("before the warm-up")]
        for index in range(iterations + 1):
            clock.reset()
            started = time.perf_counter()
            result = algo.train()
            seconds = time.perf_counter() - started
            name = index if index else "warm-up"
            limits.append(measure_limit(f"after iteration {name}"))
            now = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
            steps, lifetime = now - lifetime, now
            limit = machine_limit.Limit.mean(limits[-2:])
            per_core = steps / clock.sample_s / env_runner_cores(experiment)
            row = {
                "iteration": name,
                "env_steps": steps,
                "iteration_s": seconds,
                "sample_s": clock.sample_s,
                "learn_s": clock.learn_s,
                "other_s": seconds - clock.sample_s - clock.learn_s,
                "steps_per_s": steps / seconds,
                "sample_steps_per_s_per_core": per_core,
                "limit_s": limit.iteration_s,
                "x_limit": seconds / limit.iteration_s,
                "limit_steps_per_s_per_core": limit.steps_per_s_per_core,
                "sampling_percent_of_limit": 100 * per_core / limit.steps_per_s_per_core,
                "limit_update_s": limit.update_s,
                "episode_return_mean": result["env_runners"].get("episode_return_mean"),
            }
            print("  " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                  flush=True)  # fmt: skip
            rows.append(row)
    finally:
        clock.close()
        algo.stop()
        ray.shutdown()
    return rows, limits


def summary(rows: list[dict]) -> dict:
    """Medians over the measured iterations (the warm-up left out), each against its own adjacent limit."""
    measured = [row for row in rows if row["iteration"] != "warm-up"]

    def median(key: str) -> float:
        return statistics.median(row[key] for row in measured)

    return {
        "iteration_s": median("iteration_s"),
        "sample_s": median("sample_s"),
        "learn_s": median("learn_s"),
        "other_s": median("other_s"),
        "steps_per_s": median("steps_per_s"),
        "sample_steps_per_s_per_core": median("sample_steps_per_s_per_core"),
        "limit_iteration_s": median("limit_s"),
        "limit_update_s": median("limit_update_s"),
        "limit_steps_per_s_per_core": median("limit_steps_per_s_per_core"),
        "x_limit": median("x_limit"),
        "sampling_vs_one_core": median("sampling_percent_of_limit") / 100,
    }


def limit_fields(limit: machine_limit.Limit) -> dict:
    return {"iteration_s": limit.iteration_s, "sample_s": limit.sample_s, "update_s": limit.update_s,
            "steps_per_s_per_core": limit.steps_per_s_per_core}  # fmt: skip


def fmt(value) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"default {DEFAULT_EXPERIMENT}")
    parser.add_argument("--workers", type=int, help="env runners (env_runners.num_env_runners)")
    parser.add_argument("--iterations", type=int, default=4, help="measured iterations after a warm-up one (default 4)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="cores for Ray and the limit (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the experiment (repeatable)")  # fmt: skip
    parser.add_argument("--limit-seconds", type=float, default=3.0,
                        help="seconds of one-core sampling per limit measurement (default 3)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "throughput.json")
    return parser.parse_args(argv)


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.workers is not None:
        overrides.append(f"env_runners.num_env_runners={args.workers}")
    experiment = load_experiment(args.experiment, overrides).experiment
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    print(f"the project: {args.experiment}, {args.iterations} iterations after a warm-up one; the limit: "
          f"{experiment.env}, {experiment.env_runners.num_envs_per_env_runner} envs per core, {args.cores} cores, "
          f"without Ray, before the first iteration and after each", flush=True)  # fmt: skip

    def measure_limit(when: str) -> machine_limit.Limit:
        limit = machine_limit.measure(experiment, args.cores, seconds=args.limit_seconds, repeats=1)
        print(f"  limit {when}: {limit.steps_per_s_per_core:,.0f} env steps/s per core, one update in "
              f"{limit.update_s:.2f}s", flush=True)  # fmt: skip
        return limit

    with contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115 - Ray's start-up warnings
        rows, limits = run_project(experiment, args.iterations, args.cores, measure_limit)
    result = {**summary(rows), "limits": [limit_fields(limit) for limit in limits]}
    cells = [[fmt(row[key]) for key in ROW_KEYS] for row in rows]
    print("\n" + table(COLUMNS, cells))
    print(
        f"\nmedian iteration {result['iteration_s']:.2f}s = {result['x_limit']:.2f}x the limit measured either side "
        f"of it (median {result['limit_iteration_s']:.2f}s); sampling at "
        f"{100 * result['sampling_vs_one_core']:.0f} % of the one-core env + policy rate per env-runner core"
    )
    print("\n" + markdown(COLUMNS, cells))
    write_json(args.out, "throughput", stamp, rows, experiment=args.experiment, cores=args.cores,
               overrides=overrides, summary=result)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
