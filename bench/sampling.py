"""Which of the env runner's changes mattered: one env runner's round of sampling, in this process, by
RLlib's loop and by the project's, beside the limit's loop, turn about.

    python -m bench.sampling [--experiment jobs/experiments/ppo-halfcheetah-cpu.yaml] [--rounds 9]

One round is one env runner's share of the experiment's batch (train_batch_size / num_env_runners env
steps), on one torch thread:

- limit: the project's vector env stepped by a policy network of the experiment's shape, without RLlib
  (bench/machine_limit.py, what bench/throughput.py calls the one-core env + policy rate);
- RLlib's env runner (SingleAgentEnvRunner) with the project's vector env and pipelines, and, where the
  experiment normalises observations, RLlib's own MeanStdFilter (as shipped before the batched filter);
- RLlib's env runner with the batched MeanStdFilter (jobs/common/rllib/connectors.py);
- the project's BatchedEnvRunner (jobs/common/rllib/env_runner.py), as every experiment samples.

Each variant runs one round in turn, `--rounds` times after a warm-up round each; the table gives each
one's median, its env steps/s and its share of the limit's rate, so a variant is compared with rounds
measured seconds apart (this machine's speed drifts by 10-40 % within the hour). Then, side by side,
the limit and the shipped runner each in N processes (N = the cores): one alone, then all N at once,
turn about, as the cluster's runners sample on every core. Writes bench/out/sampling.json.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import write_json
from controlplane.state import REPO_ROOT
from jobs.common.errors import exits_cleanly
from jobs.common.reports.tables import markdown, table
from jobs.common.schema.experiment import load_experiment

DEFAULT_EXPERIMENT = "jobs/experiments/ppo-halfcheetah-cpu.yaml"
COLUMNS = ("variant", "round_s (median)", "env steps/s", "% of the limit", "rounds")


def rllib_filter_pipeline(env=None, spaces=None, device=None):
    """The env-to-module pipeline as shipped before the batched filter: RLlib's MeanStdFilter, then the stack."""
    from ray.rllib.connectors.env_to_module import MeanStdFilter

    from jobs.common.rllib.connectors import StackObservations

    return [MeanStdFilter(multi_agent=False), StackObservations(device=device)]


LIMIT = "limit (env + policy, no RLlib)"
SHIPPED = "BatchedEnvRunner (shipped)"


def variants(experiment) -> dict:
    """name -> a builder of a callable that samples one round (built where it is called)."""
    from jobs.common.rllib.connectors import MEAN_STD_FILTER

    made = {LIMIT: functools.partial(limit_sampler, experiment)}
    if experiment.env_runners.observation_filter == MEAN_STD_FILTER:
        made["RLlib's env runner, RLlib's MeanStdFilter"] = functools.partial(
            runner_sampler, experiment, "rllib", env_to_module_connector=rllib_filter_pipeline
        )
        made["RLlib's env runner, batched MeanStdFilter"] = functools.partial(runner_sampler, experiment, "rllib")
    else:
        made["RLlib's env runner"] = functools.partial(runner_sampler, experiment, "rllib")
    made[SHIPPED] = functools.partial(runner_sampler, experiment, "batched")
    return made


def limit_sampler(experiment):
    from bench.machine_limit import SamplingLoop

    model = experiment.model
    loop = SamplingLoop(experiment.env, experiment.env_runners.num_envs_per_env_runner, list(model.fcnet_hiddens),
                        model.fcnet_activation)  # fmt: skip
    return functools.partial(loop.run, round_steps(experiment))


def runner_sampler(experiment, kind: str, **settings):
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    from jobs.common.rllib.env_runner import BatchedEnvRunner
    from jobs.common.rllib.ppo import build_ppo_config

    env_runner_cls = BatchedEnvRunner if kind == "batched" else SingleAgentEnvRunner
    config = build_ppo_config(experiment, use_groups=False).env_runners(env_runner_cls=env_runner_cls, **settings)
    runner = env_runner_cls(config=config, worker_index=1, num_workers=max(experiment.env_runners.num_env_runners, 1))
    return functools.partial(runner.sample, num_timesteps=round_steps(experiment))


def side_by_side_worker(builder, commands, done) -> None:
    """One process of the side-by-side measurement: a sampler of its own, a round per command."""
    import torch

    torch.set_num_threads(1)
    sample = builder()
    sample()
    while commands.get():
        started = time.perf_counter()
        sample()
        done.put(time.perf_counter() - started)


def side_by_side(builder, processes: int, rounds: int) -> dict:
    """A sampler's round alone (the other processes idle) and with `processes` of it sampling at once (the
    slowest of them), turn about: what the cluster's runners meet when every core samples."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queues = [(context.Queue(), context.Queue()) for _ in range(processes)]
    workers = [context.Process(target=side_by_side_worker, args=(builder, *pair)) for pair in queues]
    for worker in workers:
        worker.start()
    alone, together = [], []
    try:
        for _ in range(rounds):
            queues[0][0].put(True)
            alone.append(queues[0][1].get())
            for commands, _ in queues:
                commands.put(True)
            together.append(max(done.get() for _, done in queues))
    finally:
        for commands, _ in queues:
            commands.put(False)
        for worker in workers:
            worker.join()
    return {"alone_s": statistics.median(alone), "together_s": statistics.median(together),
            "alone": [round(t, 4) for t in alone], "together": [round(t, 4) for t in together]}  # fmt: skip


def round_steps(experiment) -> int:
    runners = experiment.env_runners
    batch = experiment.training.train_batch_size or 4000
    return batch // max(runners.num_env_runners, 1)


def measure(builders: dict, rounds: int) -> dict[str, list[float]]:
    import torch

    torch.set_num_threads(1)
    samplers = {name: build() for name, build in builders.items()}
    for sample in samplers.values():
        sample()  # warm-up: resets, first allocations
    seconds: dict[str, list[float]] = {name: [] for name in samplers}
    for index in range(rounds):
        for name, sample in samplers.items():
            started = time.perf_counter()
            sample()
            seconds[name].append(time.perf_counter() - started)
        times = ", ".join(f"{name.split(' (')[0]} {taken[-1]:.3f}s" for name, taken in seconds.items())
        print(f"  round {index + 1}/{rounds}: {times}", flush=True)
    return seconds


def rows_for(seconds: dict[str, list[float]], steps: int) -> list[dict]:
    limit = statistics.median(next(iter(seconds.values())))
    return [
        {"variant": name, "round_s": statistics.median(times), "env_steps_per_s": steps / statistics.median(times),
         "percent_of_limit": 100 * limit / statistics.median(times), "rounds": [round(t, 4) for t in times]}
        for name, times in seconds.items()
    ]  # fmt: skip


def run_side_by_side(experiment, processes: int, rounds: int) -> dict:
    print(f"\nside by side: each alone, then {processes} at once in as many processes", flush=True)
    builders = variants(experiment)
    together = {name: side_by_side(builders[name], processes, rounds) for name in (LIMIT, SHIPPED)}
    cells = [
        [name, f"{t['alone_s']:.3f}", f"{t['together_s']:.3f}", f"{100 * (t['together_s'] / t['alone_s'] - 1):+.0f} %"]
        for name, t in together.items()
    ]
    columns = ("variant", "round_s alone", f"round_s, {processes} at once (slowest)", "change")
    print("\n" + table(columns, cells))
    print("\n" + markdown(columns, cells))
    return together


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sampling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"default {DEFAULT_EXPERIMENT}")
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds of each variant (default 9)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the experiment (repeatable)")  # fmt: skip
    parser.add_argument("--side-by-side", type=int, default=os.cpu_count(), metavar="N",
                        help="then the limit and the shipped runner alone and N at once, in N processes "
                             "(default: the cores; 0 or 1 for none)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "sampling.json")
    return parser.parse_args(argv)


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    experiment = load_experiment(args.experiment, args.overrides).experiment
    steps = round_steps(experiment)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    print(f"{args.experiment}: rounds of {steps:,} env steps on {experiment.env_runners.num_envs_per_env_runner} "
          f"envs, one torch thread, in this process", flush=True)  # fmt: skip
    rows = rows_for(measure(variants(experiment), args.rounds), steps)
    cells = [[row["variant"], f"{row['round_s']:.3f}", f"{row['env_steps_per_s']:,.0f}",
              f"{row['percent_of_limit']:.0f} %", str(len(row["rounds"]))] for row in rows]  # fmt: skip
    print("\n" + table(COLUMNS, cells))
    print("\n" + markdown(COLUMNS, cells))
    together = run_side_by_side(experiment, args.side_by_side, args.rounds) if args.side_by_side > 1 else {}
    write_json(args.out, "sampling", stamp, rows, experiment=args.experiment, overrides=args.overrides,
               env_steps_per_round=steps, side_by_side=together)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
