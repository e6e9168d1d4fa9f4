"""The baseline for bench/sweeps.py: the same search spaces as
jobs/sweeps/cartpole-seed.yaml and cartpole-asha.yaml, as a plain Tune run of
RLlib PPO with default settings (PPO's defaults, Tune's defaults: a new actor
and remote env runners per trial, checkpoints as Tune makes them).

Submitted as a Ray job to the same cluster as ours. The last line is
`plain: trials <n> done in <s> s; best env steps to <target>: <steps>`.
"""

import argparse
import math
import os
import time

from ray import tune
from ray.rllib.algorithms.ppo import PPO, PPOConfig

RETURN = "env_runners/episode_return_mean"
STEPS = "num_env_steps_sampled_lifetime"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sweep", choices=("seed", "asha"), required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--time-budget-s", type=float, default=None)
    args = parser.parse_args()

    config = PPOConfig().environment("CartPole-v0")
    if args.sweep == "seed":
        config = config.training(lr=tune.uniform(1e-7, 1e-2)).rl_module(
            model_config={
                "fcnet_hiddens": tune.grid_search([[32], [64]]),
                "fcnet_activation": tune.grid_search(["linear", "relu"]),
            }
        )
        tune_config = tune.TuneConfig(num_samples=5, time_budget_s=args.time_budget_s)
    else:
        config = config.training(
            lr=tune.loguniform(1e-4, 3e-2),
            gamma=tune.uniform(0.95, 0.999),
            lambda_=tune.uniform(0.8, 1.0),
            num_epochs=tune.randint(4, 16),
        ).rl_module(
            model_config={
                "fcnet_hiddens": tune.grid_search([[32], [64], [64, 64]]),
                "fcnet_activation": tune.grid_search(["relu", "tanh"]),
            }
        )
        scheduler = tune.schedulers.ASHAScheduler(
            metric=RETURN, mode="max", grace_period=2, max_t=60, reduction_factor=3
        )
        tune_config = tune.TuneConfig(num_samples=36, scheduler=scheduler, time_budget_s=args.time_budget_s)

    started = time.monotonic()
    results = tune.Tuner(
        PPO,
        param_space=config,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=args.name,
            storage_path=os.environ["RL_STORAGE_URI"] + "/bench-plain",
            stop={RETURN: 195, STEPS: 60_000},
            verbose=1,
        ),
    ).fit()
    elapsed = time.monotonic() - started
    # Trials that ran and ended (a trial cut by the time budget counts too: in the baseline's favour).
    done = sum(1 for r in results if r.metrics)
    solved = []
    for result in results:
        metrics = result.metrics or {}
        ret = metrics.get("env_runners", {}).get("episode_return_mean", math.nan)
        if not math.isnan(ret) and ret >= 195:
            solved.append(metrics[STEPS])
    best = min(solved) if solved else None
    print(f"plain: trials {done} done in {elapsed:.1f} s; best env steps to 195: {best}", flush=True)


if __name__ == "__main__":
    main()
