"""The baseline for bench/sweeps.py: the search of jobs/sweeps/cartpole-seed.yaml
or cartpole-asha.yaml as a plain Tune run of RLlib PPO with its default settings.

    python -m bench.plain_tune_sweep --sweep seed|asha --name <name> [--time-budget-s S]

Submitted as a Ray job to the same cluster as ours, by bench/sweeps.py.

The same as ours, on purpose (read from our sweep file, so they cannot drift):
- the search space (keys, primitives, ranges; the values are sampled apart),
  the environment, and the trial count;
- the judge: every trial reports `episode_return_mean`, the mean of the last
  `metrics_smoothing_episodes` (20) finished episodes, computed by
  jobs.common.run.returns.ReturnWindow as our trials do, and `env_steps` and
  `env_steps_to_solve`; trials stop on the sweep's `stop` (195 on that mean, or
  60,000 env steps), and ASHA (asha sweep) compares trials on that mean;
- the CPUs: every bundle of a trial asks for the cpu-workers group's resource,
  as our trials do, so the baseline runs on the CPU group's CPUs only, never on
  the GPU group's; where RLlib's default trial (a main process and 2 env
  runners, one CPU each) does not fit one CPU-group node, it gets fewer env
  runners (said in the last line);
- what counts as done: a trial that met its stop criteria, or that the
  scheduler stopped. A trial still running when --time-budget-s ends the
  run is `cut_by_time_budget`; one that never reported a result (not started
  before the budget ran out) is `no_result`: neither is done.

Not the same, by design (RLlib's and Tune's defaults): PPO's hyperparameters
(4,000 env steps per iteration against our trials' 1,000: ASHA's rungs count
iterations), a new actor and remote env runners per trial, Tune's checkpoints,
the searcher's own sampling; and the seed sweep has no scheduler here, where
ours stops laggards with ASHA (SCHEDULED below).

The last line is `plain: <JSON>` with those counts.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from jobs.common.run.returns import ReturnWindow

SWEEP_FILES = {"seed": "jobs/sweeps/cartpole-seed.yaml", "asha": "jobs/sweeps/cartpole-asha.yaml"}
# Whether the baseline uses our sweep's scheduler: the seed tutorial's plain search has none.
SCHEDULED = {"seed": False, "asha": True}
# RLlib 2.60's PPO defaults that shape a trial (tests/unit/test_bench_logic.py checks them against PPOConfig()).
RLLIB_PPO_ENV_RUNNERS = 2
RLLIB_PPO_TRAIN_BATCH = 4000
RLLIB_MAIN_PROCESS_CPUS = 1
# PPOConfig.training() names that differ from the experiment file's keys.
TRAINING_NAMES = {"lambda": "lambda_"}


@dataclass(frozen=True)
class PlainSearch:
    """What the baseline runs, derived from our sweep file."""

    sweep: str  # seed | asha
    env: str
    dimensions: list  # jobs.common.schema.sweep.Dimension
    num_samples: int
    trial_count: int
    scheduler: dict[str, Any] | None  # ASHA's settings, or None (Tune's FIFO)
    target: float | None
    max_env_steps: int | None
    window: int

    @property
    def stop(self) -> dict[str, float]:
        """Tune's stop dict: any key at or above its value stops the trial."""
        stop: dict[str, float] = {}
        if self.target is not None:
            stop["episode_return_mean"] = self.target
        if self.max_env_steps is not None:
            stop["env_steps"] = self.max_env_steps
        return stop


def plain_search(sweep_name: str, sweep=None) -> PlainSearch:
    """The baseline of one of our sweeps (loaded from SWEEP_FILES unless given)."""
    if sweep is None:
        from jobs.common.schema.sweep import load_sweep

        sweep = load_sweep(SWEEP_FILES[sweep_name])
    spec = sweep.spec
    experiment = sweep.base_experiment
    scheduler = None
    if SCHEDULED[sweep_name] and spec.scheduler.type == "asha":
        s = spec.scheduler
        scheduler = {
            "time_attr": s.time_attr,
            "grace_period": s.grace_period,
            "max_t": s.max_t,
            "reduction_factor": s.reduction_factor,
            "brackets": s.brackets,
        }
    for dim in sweep.dimensions:
        if dim.path[0] not in ("model", "training") or len(dim.path) != 2:
            raise ValueError(f"the baseline cannot search '{dim.key}': only model.* and training.* keys")
    return PlainSearch(
        sweep=sweep_name,
        env=experiment.env,
        dimensions=list(sweep.dimensions),
        num_samples=spec.num_samples,
        trial_count=sweep.trial_count(),
        scheduler=scheduler,
        target=experiment.stop.episode_return_mean,
        max_env_steps=experiment.stop.env_steps,
        window=experiment.metrics_smoothing_episodes,
    )


# --------------------------------------------------------------------------
# Trials: the judge, the CPUs
# --------------------------------------------------------------------------


def judge(state: dict, result: dict, window: int, target: float | None) -> dict[str, float]:
    """What our trials report, computed the same way from RLlib's result:
    the windowed return (NaN before the first episode), env steps, and the env
    steps at which that return first reached the target (NaN before)."""
    returns = state.setdefault("window", ReturnWindow(window))
    mean = returns.add(result)
    steps = int(result.get("num_env_steps_sampled_lifetime", 0) or 0)
    if state.get("solved_at") is None and target is not None and mean is not None and mean >= target:
        state["solved_at"] = steps
    solved = state.get("solved_at")
    return {
        "episode_return_mean": math.nan if mean is None else mean,
        "env_steps": steps,
        "env_steps_to_solve": math.nan if solved is None else solved,
    }


def add_judged_metrics(*, algorithm, result: dict, window: int, target: float | None, **_) -> None:
    """RLlib's on_train_result callback: the result Tune sees gets our metrics."""
    state = algorithm.__dict__.setdefault("_bench_judge", {})
    result.update(judge(state, result, window, target))


def env_runners_that_fit(cpus_per_node: float) -> int:
    """RLlib's default env runners per trial, or fewer where a trial (main process
    + one CPU per env runner) would not fit one CPU-group node."""
    return max(0, min(RLLIB_PPO_ENV_RUNNERS, int(cpus_per_node) - RLLIB_MAIN_PROCESS_CPUS))


def concurrent_trials(group_cpus: float, env_runners: int) -> int:
    """Trials the CPU group's CPUs hold at once."""
    return max(1, int(group_cpus) // (RLLIB_MAIN_PROCESS_CPUS + env_runners))


def cpu_group_shape() -> tuple[float, float] | None:
    """(CPUs per node, CPUs in all) of the cpu-workers group, or None on a cluster without groups."""
    import ray

    from jobs.common.cluster import capacity
    from jobs.common.cluster.placement import CPU_GROUP, GROUP_RESOURCES

    groups = capacity.from_env()
    if groups and CPU_GROUP in groups:
        group = groups[CPU_GROUP]
        return group.cpus_per_node, group.cpus
    nodes = [n for n in ray.nodes() if n.get("Alive") and GROUP_RESOURCES[CPU_GROUP] in n.get("Resources", {})]
    if not nodes:
        return None
    cpus = [n["Resources"].get("CPU", 0) for n in nodes]
    return max(cpus), sum(cpus)


def ppo_config(search: PlainSearch, env_runners: int | None):
    """RLlib's PPO defaults, the search space, our judge; pinned to the CPU group
    (env_runners None: a cluster without groups, left as RLlib places it)."""
    from ray import tune
    from ray.rllib.algorithms.ppo import PPOConfig

    from jobs.common.cluster.placement import CPU_GROUP, group_request

    training: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for dim in search.dimensions:
        section, key = dim.path
        args = list(dim.args)
        domain = tune.grid_search(args) if dim.primitive == "grid_search" else getattr(tune, dim.primitive)(*args)
        if section == "training":
            training[TRAINING_NAMES.get(key, key)] = domain
        else:
            model[key] = domain
    config = PPOConfig().environment(search.env).training(**training).rl_module(model_config=model)
    config = config.callbacks(
        on_train_result=functools.partial(add_judged_metrics, window=search.window, target=search.target)
    )
    if env_runners is not None:
        pinned = group_request(CPU_GROUP)
        config = config.env_runners(num_env_runners=env_runners, custom_resources_per_env_runner=pinned)
        config = config.resources(custom_resources_for_main_process=pinned)
    return config


def recording_asha(stopped: set[str], metric: str, mode: str, settings: dict[str, Any]):
    """Tune's ASHAScheduler, noting the trials it stops (at a rung, or at max_t)."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP:
                stopped.add(trial.trial_id)
            return decision

    return RecordingASHA(metric=metric, mode=mode, **settings)


# --------------------------------------------------------------------------
# What counts as done
# --------------------------------------------------------------------------


def met_stop(metrics: dict, stop: dict[str, float]) -> bool:
    for key, value in stop.items():
        got = metrics.get(key)
        if isinstance(got, int | float) and not math.isnan(got) and got >= value:
            return True
    return False


def classify(trials: list[dict], stopped_by_scheduler: set[str], stop: dict[str, float], planned: int) -> dict:
    """Counts by the rule both sides share. `trials`: {"trial_id", "metrics" (the
    last result, {} if none), "error" (bool)} for every trial Tune made."""
    counts = {"finished": 0, "stopped_by_scheduler": 0, "cut_by_time_budget": 0, "errors": 0, "no_result": 0}
    for trial in trials:
        metrics = trial.get("metrics") or {}
        if trial.get("error"):
            counts["errors"] += 1
        elif met_stop(metrics, stop):
            counts["finished"] += 1
        elif trial["trial_id"] in stopped_by_scheduler:
            counts["stopped_by_scheduler"] += 1
        elif metrics:
            counts["cut_by_time_budget"] += 1
        else:
            counts["no_result"] += 1
    # Trials the searcher never made before the budget ran out.
    counts["no_result"] += max(0, planned - len(trials))
    counts["done"] = counts["finished"] + counts["stopped_by_scheduler"]
    solved = [
        t["metrics"]["env_steps_to_solve"]
        for t in trials
        if isinstance((t.get("metrics") or {}).get("env_steps_to_solve"), int | float)
        and not math.isnan(t["metrics"]["env_steps_to_solve"])
    ]
    counts["best_env_steps"] = int(min(solved)) if solved else None
    return counts


# --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sweep", choices=sorted(SWEEP_FILES), required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--time-budget-s", type=float, default=None)
    args = parser.parse_args()

    import ray
    from ray import tune
    from ray.rllib.algorithms.ppo import PPO

    search = plain_search(args.sweep)
    ray.init(logging_level="warning")
    shape = cpu_group_shape()
    env_runners = env_runners_that_fit(shape[0]) if shape else None
    max_concurrent = concurrent_trials(shape[1], env_runners) if shape else 0
    config = ppo_config(search, env_runners)
    stopped: set[str] = set()
    scheduler = recording_asha(stopped, "episode_return_mean", "max", search.scheduler) if search.scheduler else None
    tune_config = tune.TuneConfig(
        num_samples=search.num_samples,
        scheduler=scheduler,
        time_budget_s=args.time_budget_s,
        max_concurrent_trials=max_concurrent or None,
    )
    started = time.monotonic()
    results = tune.Tuner(
        PPO,
        param_space=config,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=args.name,
            storage_path=os.environ["RL_STORAGE_URI"] + "/bench-plain",
            stop=search.stop,
            verbose=1,
        ),
    ).fit()
    elapsed = time.monotonic() - started
    trials = [
        {
            "trial_id": (result.metrics or {}).get("trial_id") or str(index),
            "metrics": result.metrics or {},
            "error": result.error is not None,
        }
        for index, result in enumerate(results)
    ]
    counts = classify(trials, stopped, search.stop, search.trial_count)
    line = {
        "planned": search.trial_count,
        **counts,
        "fit_s": round(elapsed, 1),
        "time_budget_s": args.time_budget_s,
        "scheduler": "asha" if search.scheduler else "none",
        "env_runners_per_trial": env_runners if env_runners is not None else RLLIB_PPO_ENV_RUNNERS,
        "cpus_per_trial": RLLIB_MAIN_PROCESS_CPUS + (env_runners if env_runners is not None else RLLIB_PPO_ENV_RUNNERS),
        "max_concurrent_trials": max_concurrent or None,
        "pinned_to_cpu_group": shape is not None,
    }
    print("plain: " + json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
