"""One sweep trial: a Ray Tune function trainable that runs PPO in its own actor.

Per-trial overhead dominates small RL trials, so a trial is one actor that
samples and learns in-process (no remote env runners or learners to start),
and Tune reuses that actor for the next trial (imports and all).

Checkpoints are RLlib's own, one folder per trial:
`<sweep>/trials/<trial_id>/checkpoint_<iteration>`, then a `latest.json`
pointer written last (jobs/common/checkpoints.py, as for `jobs.train`). Tune is handed a
one-file checkpoint that points there, which is all it needs for resuming and
for PBT's exploit step. On a restart the trial takes the newer of Tune's
checkpoint and its own pointer: the pointer is written as soon as a
checkpoint is complete, while Tune's experiment state can lag by seconds when
the driver dies. A trial whose pointer says it finished reports that result
again and trains no further.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from jobs.common import checkpoints, storage
from jobs.common.experiment import Experiment
from jobs.common.returns import ReturnWindow
from jobs.common.sweep import trial_experiment

POINTER = "pointer.json"


def trial_uri(storage_uri: str, sweep_name: str, trial_id: str) -> str:
    return storage.join(storage_uri, sweep_name, "trials", trial_id)


def metrics_of(state: dict[str, Any]) -> dict[str, Any]:
    """What a trial reports to Tune each iteration (see sweep.METRICS)."""
    nan = math.nan
    return {
        "iteration": state["iteration"],
        "env_steps": state["env_steps"],
        "episode_return_mean": nan if state["episode_return_mean"] is None else state["episode_return_mean"],
        "episode_len_mean": nan if state["episode_len_mean"] is None else state["episode_len_mean"],
        "time_s": round(state["time_s"], 3),
        "env_steps_to_solve": nan if state["solved_at"] is None else state["solved_at"],
        "stop_reason": state["stop_reason"] or "",
        "checkpoint": state["checkpoint"] or "",
    }


def choose_start(own: dict[str, Any] | None, given: dict[str, Any] | None, trial_id: str) -> dict[str, Any] | None:
    """Where a (re)started trial continues from.

    `given` is Tune's checkpoint (a pointer); `own` is this trial's latest.json.
    A pointer into another trial's folder is PBT's exploit step: take it. Else
    the newer of the two by iteration; the pointer is never behind Tune.
    """
    if given and given.get("trial_id") != trial_id:
        return given
    candidates = [p for p in (own, given) if p]
    return max(candidates, key=lambda p: p["iteration"]) if candidates else None


def _read_given_checkpoint() -> dict[str, Any] | None:
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return json.loads((Path(folder) / POINTER).read_text())


def run_trial(
    config: dict[str, Any],
    *,
    base: dict[str, Any],
    encoded_keys: list[str],
    storage_uri: str,
    sweep_name: str,
    gpus: float,
) -> None:
    import time

    from ray import tune

    from jobs.common.ppo import build_ppo_config

    _quiet()
    experiment = trial_experiment(base, config, encoded_keys)
    trial_id = tune.get_context().get_trial_id()
    folder = trial_uri(storage_uri, sweep_name, trial_id)
    state: dict[str, Any] = {
        "trial_id": trial_id,
        "iteration": 0,
        "env_steps": 0,
        "episode_return_mean": None,
        "episode_len_mean": None,
        "time_s": 0.0,
        "solved_at": None,
        "finished": False,
        "stop_reason": None,
        "checkpoint": None,
        "return_window": [],
    }
    start = choose_start(
        storage.read_json(storage.join(folder, storage.LATEST_POINTER)), _read_given_checkpoint(), trial_id
    )
    if start:
        state.update({k: start[k] for k in state if k in start and k != "trial_id"})
        if start.get("trial_id") != trial_id:
            # Exploited (PBT): this trial now continues another one's weights.
            state.update(finished=False, stop_reason=None, solved_at=None)
            state["exploited_from"] = start["checkpoint"]
            checkpoints.write_pointer(folder, state)
        elif state["finished"]:
            # Finished before a restart that Tune's state had not caught up with.
            tune.report(metrics_of(state))
            return

    algo = build_ppo_config(experiment, in_process_gpus=gpus).build_algo()
    try:
        if start:
            algo.restore_from_path(start["checkpoint"])
        steps_before, time_before = state["env_steps"], state["time_s"]
        started = time.monotonic()
        every = experiment.checkpoint.every_n_iterations
        target = experiment.stop.episode_return_mean
        window = ReturnWindow(experiment.metrics_smoothing_episodes, state["return_window"])
        while True:
            result = algo.train()
            runners = result.get("env_runners", {})
            state["iteration"] += 1
            state["env_steps"] = steps_before + int(result.get("num_env_steps_sampled_lifetime", 0))
            state["episode_return_mean"] = window.add(result)
            state["return_window"] = window.history
            state["episode_len_mean"] = _finite(runners.get("episode_len_mean"))
            state["time_s"] = time_before + time.monotonic() - started
            ret = state["episode_return_mean"]
            if state["solved_at"] is None and target is not None and ret is not None and ret >= target:
                state["solved_at"] = state["env_steps"]
            reason = experiment.stop.reason(
                iteration=state["iteration"],
                env_steps=state["env_steps"],
                ret=state["episode_return_mean"],
                time_s=state["time_s"],
            )
            state["finished"], state["stop_reason"] = reason is not None, reason
            due = state["iteration"] % every == 0 or (reason is not None and experiment.checkpoint.at_end)
            if due:
                _save(algo, experiment, folder, state)
                _report_with_pointer(state)
            else:
                tune.report(metrics_of(state))
            if reason is not None:
                return
    finally:
        algo.stop()


def _quiet() -> None:
    """Keep a trial's log to what matters: one line per checkpoint from Ray
    Train and a gymnasium note per environment would repeat hundreds of times."""
    import logging
    import warnings

    for name in ("ray.train", "ray.tune", "ray.rllib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*is out of date.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _save(algo, experiment: Experiment, folder: str, state: dict[str, Any]) -> None:
    state.pop("exploited_from", None)
    state["checkpoint"] = checkpoints.save(algo, folder, state["iteration"], experiment.to_yaml(), state)


def _report_with_pointer(state: dict[str, Any]) -> None:
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="trial-pointer-") as folder:
        (Path(folder) / POINTER).write_text(json.dumps(state))
        tune.report(metrics_of(state), checkpoint=tune.Checkpoint.from_directory(folder))
