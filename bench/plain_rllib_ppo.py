"""The baseline: plain RLlib PPO with its default settings on CartPole-v1.

Submitted as a Ray job to the same cluster as ours, by bench/ppo_cartpole.py.
Prints the same progress lines as jobs.train, and stops at a mean return of
450 (RLlib's default 100-episode smoothing), 300 s or 300k env steps.
"""

import argparse
import time

from ray.rllib.algorithms.ppo import PPOConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", type=float, default=450.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--max-steps", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    algo = PPOConfig().environment("CartPole-v1").debugging(seed=args.seed).build_algo()
    started = time.monotonic()
    iteration, steps, ret = 0, 0, float("nan")
    while True:
        iter_started = time.monotonic()
        result = algo.train()
        iteration += 1
        steps = int(result["num_env_steps_sampled_lifetime"])
        ret = float(result["env_runners"].get("episode_return_mean", float("nan")))
        elapsed = time.monotonic() - started
        print(
            f"iter {iteration:4d} | env_steps {steps:9,d} | return {ret:6.1f} | "
            f"iter_time {time.monotonic() - iter_started:5.2f}s | train_time {elapsed:7.1f}s",
            flush=True,
        )
        if ret >= args.target or elapsed >= args.max_seconds or steps >= args.max_steps:
            break
    algo.stop()
    print(f"done: return {ret:.1f} after {steps} env steps", flush=True)


if __name__ == "__main__":
    main()
