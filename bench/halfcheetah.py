"""Time to a return on MuJoCo: this project's CPU HalfCheetah experiment beside what users would otherwise
pick, on the same machine, in the same run.

    python -m bench.halfcheetah [--seeds 0 1 2] [--target 1500] [--max-env-steps 2000000]
        [--max-minutes 40] [--only ours sb3 rllib] [--set KEY=VALUE ...]   # --set: a key of ours

Contenders, each seed in a process of its own, one after another:
  ours   jobs/experiments/ppo-halfcheetah-cpu.yaml, its algorithm built as jobs.train builds it (the
         trainer actor's: jobs/common/rllib/trainer.py) in a local Ray of this machine's cores
  sb3    Stable-Baselines3 PPO with RL Zoo's published HalfCheetah hyperparameters, unchanged
         (rl_zoo3/hyperparams/ppo.yml, HalfCheetah-v4: the zoo has no v5 entry; the env is v5 for all)
  rllib  plain RLlib PPO with its defaults, in a local Ray of this machine's cores

All judged alike: the mean return of the last 20 finished training episodes (jobs/common/run/returns.py
for RLlib's results; SB3's own episode monitor, raw returns, before VecNormalize), checked after every
iteration or rollout; a run stops at --target on that mean, --max-env-steps or --max-minutes of
training, whichever comes first. Time is from the first training step (model or algorithm built).

Stable-Baselines3 and RL Zoo are not in requirements.lock: this bench installs the versions pinned in
bench/requirements-halfcheetah.txt into the venv without their dependencies (it uses only
stable_baselines3 and rl_zoo3's hyperparameter file; everything they need is in the lock already).

Prints a table and writes bench/out/halfcheetah.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import write_json
from controlplane.state import REPO_ROOT
from jobs.common.reports.tables import markdown, table

EXPERIMENT = "jobs/experiments/ppo-halfcheetah-cpu.yaml"
ENV = "HalfCheetah-v5"
ZOO_ENTRY = "HalfCheetah-v4"
WINDOW = 20
REQUIREMENTS = REPO_ROOT / "bench" / "requirements-halfcheetah.txt"
CONTENDERS = ("ours", "sb3", "rllib")
COLUMNS = ("contender", "seed", "reached", "minutes", "env_steps", "last_return", "stopped")


def _stop(args):
    from jobs.common.schema.experiment import Stop

    return Stop(episode_return_mean=args.target, env_steps=args.max_env_steps, time_s=args.max_minutes * 60)


def _train_in_local_ray(build, args) -> dict:
    """`build()`'s RLlib algorithm in a local Ray of this machine's cores, trained until the stop rule."""
    import ray

    from bench.plain_rllib_ppo import train_until

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    algo = build()
    try:
        return train_until(algo, _stop(args), WINDOW, out=lambda line: print(line, flush=True))
    finally:
        algo.stop()
        ray.shutdown()


def run_ours(args) -> dict:
    from jobs.common.rllib.trainer import build_in_actor
    from jobs.common.schema.experiment import load_experiment

    experiment = load_experiment(REPO_ROOT / EXPERIMENT, [f"seed={args.seed}", *args.overrides]).experiment
    return _train_in_local_ray(lambda: build_in_actor(experiment, use_groups=False), args)


def run_rllib(args) -> dict:
    from ray.rllib.algorithms.ppo import PPOConfig

    return _train_in_local_ray(lambda: PPOConfig().environment(ENV).debugging(seed=args.seed).build_algo(), args)


def zoo_hyperparameters() -> dict:
    """RL Zoo's PPO entry for HalfCheetah, read from the installed package's file (not imported: the
    package's __init__ wants its own dependencies)."""
    import yaml

    spec = importlib.util.find_spec("rl_zoo3")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"rl_zoo3 is not installed: pip install --no-deps -r {REQUIREMENTS.relative_to(REPO_ROOT)}")
    path = Path(spec.submodule_search_locations[0]) / "hyperparams" / "ppo.yml"
    return dict(yaml.safe_load(path.read_text())[ZOO_ENTRY])


def run_sb3(args) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    stop = _stop(args)
    hp = zoo_hyperparameters()
    hp.pop("n_timesteps", None)
    n_envs = hp.pop("n_envs", 1)
    normalize = hp.pop("normalize", False)
    policy = hp.pop("policy")
    if isinstance(hp.get("policy_kwargs"), str):
        hp["policy_kwargs"] = eval(hp["policy_kwargs"], {"nn": torch.nn, "dict": dict})  # noqa: S307 - the zoo's format
    env = make_vec_env(ENV, n_envs=n_envs, seed=args.seed)
    if normalize:  # as the zoo does: VecNormalize with the algorithm's gamma
        env = VecNormalize(env, gamma=hp.get("gamma", 0.99))
    model = PPO(policy, env, seed=args.seed, device="cpu", verbose=0, **hp)

    class Judge(BaseCallback):
        """After every rollout: the mean of the last 20 finished episodes' raw returns, as ours is judged;
        training stops (`_on_step` says False) once the stop rule is met."""

        def __init__(self):
            super().__init__()
            self.started = time.monotonic()
            self.outcome: dict = {}
            self.rollouts = 0

        def _on_step(self) -> bool:
            return not self.outcome

        def _on_rollout_end(self) -> None:
            self.rollouts += 1
            episodes = [info["r"] for info in list(self.model.ep_info_buffer)[-WINDOW:]]
            mean = statistics.fmean(episodes) if episodes else float("nan")
            elapsed, steps = time.monotonic() - self.started, self.model.num_timesteps
            if self.rollouts % 20 == 0:
                print(f"rollout {self.rollouts} | env_steps {steps:,} | return {mean:.1f} | {elapsed:.0f}s", flush=True)
            if reason := stop.reason(iteration=self.rollouts, env_steps=steps, ret=mean, time_s=elapsed):
                self.outcome = {"env_steps": steps, "return": mean, "time_s": elapsed, "reason": reason}

    judge = Judge()
    model.learn(total_timesteps=10 * args.max_env_steps, callback=judge)  # the judge stops it first
    return judge.outcome


RUNNERS = {"ours": run_ours, "sb3": run_sb3, "rllib": run_rllib}


def one_run(contender: str, seed: int, args) -> dict:
    """One contender and seed in a process of its own; its last line is the outcome as JSON."""
    command = [sys.executable, "-m", "bench.halfcheetah", "--run", contender, "--seeds", str(seed),
               "--target", str(args.target), "--max-env-steps", str(args.max_env_steps),
               "--max-minutes", str(args.max_minutes)]  # fmt: skip
    command += [f"--set={override}" for override in args.overrides]
    print(f"\n== {contender}, seed {seed}", flush=True)
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = None
    for line in process.stdout:
        if line.startswith("outcome: "):
            last = json.loads(line.removeprefix("outcome: "))
        elif line.startswith(("iter ", "rollout ", "stopped")):
            print("  " + line.rstrip(), flush=True)
    process.wait()
    outcome = last or {"reason": f"failed (exit {process.returncode})"}
    reached = str(outcome.get("reason", "")).startswith("episode_return_mean")
    return {
        "contender": contender, "seed": seed, "reached": reached, "exit_status": process.returncode,
        "time_s": outcome.get("time_s"), "env_steps": outcome.get("env_steps"),
        "last_return": outcome.get("return"), "stopped": outcome.get("reason"),
    }  # fmt: skip


def ensure_sb3() -> None:
    if importlib.util.find_spec("stable_baselines3") and importlib.util.find_spec("rl_zoo3"):
        return
    print(f"installing {REQUIREMENTS.relative_to(REPO_ROOT)} (no dependencies: the lock has them)", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(REQUIREMENTS)], check=True
    )


def summary_rows(rows: list[dict]) -> list[list]:
    def shown(value, form: str) -> str:
        return "-" if value is None else format(value, form)

    return [
        [row["contender"], row["seed"], "yes" if row["reached"] else "no",
         shown(None if row["time_s"] is None else row["time_s"] / 60, ".1f"), shown(row["env_steps"], ","),
         shown(row["last_return"], ".0f"), row["stopped"]]
        for row in rows
    ]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.halfcheetah", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=1500.0, help="mean return of the last 20 episodes")
    parser.add_argument("--max-env-steps", type=int, default=2_000_000)
    parser.add_argument("--max-minutes", type=float, default=40.0, help="training time cap per run")
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a key of ours ({EXPERIMENT}); repeatable")  # fmt: skip
    parser.add_argument("--run", choices=CONTENDERS, help=argparse.SUPPRESS)  # one run, in its own process
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "halfcheetah.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run:
        args.seed = args.seeds[0]
        print("outcome: " + json.dumps(RUNNERS[args.run](args), default=float), flush=True)
        return 0
    if "sb3" in args.only:
        ensure_sb3()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    rows = []
    for seed in args.seeds:
        for contender in args.only:
            rows.append(one_run(contender, seed, args))
            # After every run, not once at the end: a run of hours that is stopped keeps what it measured.
            write_json(args.out, "halfcheetah", stamp, rows, target=args.target, window=WINDOW,
                       max_env_steps=args.max_env_steps, max_minutes=args.max_minutes, env=ENV,
                       overrides=args.overrides)  # fmt: skip
    print("\n" + table(COLUMNS, summary_rows(rows)))
    print("\n" + markdown(COLUMNS, summary_rows(rows)))
    return 0 if all(row["exit_status"] == 0 for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
