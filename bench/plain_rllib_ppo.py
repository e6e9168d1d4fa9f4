"""The baseline: plain RLlib PPO with its default settings on CartPole-v1.

Submitted as a Ray job to the same cluster as ours, by bench/ppo_cartpole.py,
which gives it the same target, window and caps as our run. It is judged as
jobs.train judges ours: the return on each progress line is the mean of the
last --window finished episodes (jobs.common.run.returns.ReturnWindow, from
RLlib's per-iteration results), and it stops at the first of --target on that
mean, --max-env-steps and --max-seconds of training (from the first
`algo.train()`, after the algorithm is built), by the same rule as an
experiment's `stop` (jobs.common.schema.experiment.Stop). Progress lines are
jobs.train's; the last line is `stopped: <reason>`.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

from jobs.common.run.returns import ReturnWindow
from jobs.common.schema.experiment import Stop
from jobs.train import progress_line


def train_until(
    algo,
    stop: Stop,
    window: int,
    clock: Callable[[], float] = time.monotonic,
    out: Callable[[str], None] = print,
) -> dict:
    """`algo.train()` until `stop` says so, a progress line per iteration; returns the last state."""
    returns = ReturnWindow(window)
    started = clock()
    iteration = 0
    while True:
        iteration_started = clock()
        result = algo.train()
        iteration += 1
        steps = int(result.get("num_env_steps_sampled_lifetime", 0) or 0)
        mean = returns.add(result)
        ret = math.nan if mean is None else mean
        elapsed = clock() - started
        out(progress_line(iteration, steps, ret, clock() - iteration_started, elapsed))
        reason = stop.reason(iteration=iteration, env_steps=steps, ret=ret, time_s=elapsed)
        if reason is not None:
            out(f"stopped: {reason}")
            return {"iterations": iteration, "env_steps": steps, "return": mean, "time_s": elapsed, "reason": reason}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.plain_rllib_ppo")
    parser.add_argument("--target", type=float, default=450.0, help="mean return over the window that counts")
    parser.add_argument("--window", type=int, default=20, help="finished episodes the mean return is taken over")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="training time cap")
    parser.add_argument("--max-env-steps", type=int, default=300_000, help="env steps cap")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    from ray.rllib.algorithms.ppo import PPOConfig

    algo = PPOConfig().environment("CartPole-v1").debugging(seed=args.seed).build_algo()
    stop = Stop(episode_return_mean=args.target, env_steps=args.max_env_steps, time_s=args.max_seconds)
    try:
        train_until(algo, stop, args.window, out=lambda line: print(line, flush=True))
    finally:
        algo.stop()


if __name__ == "__main__":
    main()
