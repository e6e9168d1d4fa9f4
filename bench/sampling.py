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
measured seconds apart (this machine's speed drifts by 10-40 % within the hour). Writes
bench/out/sampling.json.
"""

from __future__ import annotations

import argparse
import functools
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


def variants(experiment) -> dict:
    """name -> a callable that samples one round, built in this process."""
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    from bench.machine_limit import SamplingLoop
    from jobs.common.rllib.connectors import MEAN_STD_FILTER
    from jobs.common.rllib.ppo import build_ppo_config

    runners = experiment.env_runners
    steps = round_steps(experiment)
    model = experiment.model
    loop = SamplingLoop(experiment.env, runners.num_envs_per_env_runner, list(model.fcnet_hiddens),
                        model.fcnet_activation)  # fmt: skip
    made = {"limit (env + policy, no RLlib)": functools.partial(loop.run, steps)}

    def runner(env_runner_cls, **settings):
        config = build_ppo_config(experiment, use_groups=False).env_runners(env_runner_cls=env_runner_cls, **settings)
        made_runner = env_runner_cls(config=config, worker_index=1, num_workers=max(runners.num_env_runners, 1))
        return functools.partial(made_runner.sample, num_timesteps=steps)

    if runners.observation_filter == MEAN_STD_FILTER:
        made["RLlib's env runner, RLlib's MeanStdFilter"] = runner(
            SingleAgentEnvRunner, env_to_module_connector=rllib_filter_pipeline
        )
        made["RLlib's env runner, batched MeanStdFilter"] = runner(SingleAgentEnvRunner)
    else:
        made["RLlib's env runner"] = runner(SingleAgentEnvRunner)
    from jobs.common.rllib.env_runner import BatchedEnvRunner

    made["BatchedEnvRunner (shipped)"] = runner(BatchedEnvRunner)
    return made


def round_steps(experiment) -> int:
    runners = experiment.env_runners
    batch = experiment.training.train_batch_size or 4000
    return batch // max(runners.num_env_runners, 1)


def measure(samplers: dict, rounds: int) -> dict[str, list[float]]:
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sampling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"default {DEFAULT_EXPERIMENT}")
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds of each variant (default 9)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the experiment (repeatable)")  # fmt: skip
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
    write_json(args.out, "sampling", stamp, rows, experiment=args.experiment, overrides=args.overrides,
               env_steps_per_round=steps)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
