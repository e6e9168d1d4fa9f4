"""The one training loop: `algo.train()` until a stop criterion, checkpoints on the way.

Used by `jobs.train` (which prints a line per iteration) and by every sweep
trial (which reports to Tune): both count iterations, carry the lifetime
counters over from the run they resume, judge returns on the same window,
stop on the same criteria and checkpoint through the same writer, so a
trial and a training run of the same experiment behave alike.
"""

from __future__ import annotations

import math
import time

from jobs.common.run.preemption import StopRequest
from jobs.common.run.returns import ReturnWindow
from jobs.common.run.state import RunState
from jobs.common.schema.experiment import Experiment
from jobs.common.storage import checkpoints, layout

# In the result the observers get: (healthy, configured) remote env runners.
ENV_RUNNERS_KEY = "rl_env_runners"


def env_runner_health(algo) -> tuple[int, int] | None:
    """How many of the algorithm's remote env runners answer, of how many; None without remote ones."""
    if hasattr(algo, "env_runner_health"):  # the algorithm in an actor (jobs/common/rllib/trainer.py)
        return algo.env_runner_health()
    group = getattr(algo, "env_runner_group", None)
    if group is None or not group.num_remote_env_runners():
        return None
    return group.num_healthy_remote_env_runners(), group.num_remote_env_runners()


class Observer:
    """What the caller does around each iteration; every hook is optional."""

    def iteration_done(self, state: RunState, seconds: float, result: dict) -> None:
        """After the counters are updated, before any checkpoint. `result` is RLlib's, plus
        ENV_RUNNERS_KEY: (healthy, configured) remote env runners, where there are any."""

    def waiting_for_env_runners(self, state: RunState, healthy: int, configured: int, seconds: float) -> None:
        """After a round that sampled nothing because no env runner was left: not an iteration."""

    def before_checkpoint(self, state: RunState) -> None:
        """Just before a checkpoint (and its pointer) is written."""

    def reported(self, state: RunState, checkpointed: bool) -> None:
        """Last in every iteration, once any checkpoint is complete."""


class Observers(Observer):
    """Several observers, called in order."""

    def __init__(self, *observers: Observer):
        self.observers = observers

    def iteration_done(self, state: RunState, seconds: float, result: dict) -> None:
        for observer in self.observers:
            observer.iteration_done(state, seconds, result)

    def waiting_for_env_runners(self, state: RunState, healthy: int, configured: int, seconds: float) -> None:
        for observer in self.observers:
            observer.waiting_for_env_runners(state, healthy, configured, seconds)

    def before_checkpoint(self, state: RunState) -> None:
        for observer in self.observers:
            observer.before_checkpoint(state)

    def reported(self, state: RunState, checkpointed: bool) -> None:
        for observer in self.observers:
            observer.reported(state, checkpointed)


def already_done(experiment: Experiment, state: RunState) -> str | None:
    """Why a resumed run has nothing left to do under this experiment's stop criteria."""
    if state.iteration == 0:
        return None
    return experiment.stop.reason(
        iteration=state.iteration, env_steps=state.env_steps, ret=state.return_or_nan, time_s=state.time_s
    )


def run(
    algo,
    experiment: Experiment,
    state: RunState,
    folder: layout.RunFolder,
    observer: Observer,
    stop_request: StopRequest | None = None,
) -> str:
    """Train `algo` from `state` until the experiment says stop; returns why it stopped.

    `state` is updated in place; a checkpoint is written every
    `checkpoint.every_n_iterations` and (with `checkpoint.at_end`) at the end.
    A `stop_request` (SIGTERM) ends the run after the iteration in flight, with
    a checkpoint of it: the run is not finished, and resumes there.
    """
    experiment_yaml = experiment.to_yaml()
    every = experiment.checkpoint.every_n_iterations
    target = experiment.stop.episode_return_mean
    window = ReturnWindow(experiment.metrics_smoothing_episodes, state.return_window)
    # Counters carry on from the run resumed: add what this algorithm sampled to what earlier runs did.
    # RLlib restores an algorithm's lifetime counter with its checkpoint (a new one starts at 0), so
    # it is counted from where it stood before this loop's first iteration, never from 0.
    steps_before, time_before = state.env_steps, state.time_s
    lifetime_at_start: int | None = None
    last_lifetime: int | None = None
    started = time.monotonic()
    while True:
        iteration_started = time.monotonic()
        result = algo.train()
        runners = env_runner_health(algo)
        lifetime = int(result.get("num_env_steps_sampled_lifetime", 0))
        # RLlib's per-round metrics keep their last values when no runner reports: the lifetime counter tells.
        sampled_nothing = last_lifetime is not None and lifetime == last_lifetime
        last_lifetime = lifetime
        if runners is not None and sampled_nothing:
            # The env runners lost (their node gone): RLlib trains on nothing until Ray restarts one (it
            # may count a restarting runner healthy meanwhile). Not an iteration: no counter moves,
            # nothing is checkpointed.
            observer.waiting_for_env_runners(state, *runners, time.monotonic() - iteration_started)
            if stop_request is not None and stop_request.requested:
                if state.iteration and state.checkpoint != folder.checkpoint(state.iteration):
                    observer.before_checkpoint(state)
                    checkpoints.save(algo, folder, state, experiment_yaml)
                    observer.reported(state, True)
                return stop_request.requested
            continue
        if runners is not None:
            result[ENV_RUNNERS_KEY] = runners
        state.iteration += 1
        if lifetime_at_start is None:
            this_iteration = (result.get("env_runners") or {}).get("num_env_steps_sampled")
            lifetime_at_start = lifetime - int(this_iteration) if this_iteration is not None else 0
        state.env_steps = steps_before + lifetime - lifetime_at_start
        state.episode_return_mean = window.add(result)
        state.return_window = window.history
        state.episode_len_mean = _finite(result.get("env_runners", {}).get("episode_len_mean"))
        state.time_s = time_before + time.monotonic() - started
        ret = state.episode_return_mean
        if state.solved_at is None and target is not None and ret is not None and ret >= target:
            state.solved_at = state.env_steps
        reason = experiment.stop.reason(
            iteration=state.iteration, env_steps=state.env_steps, ret=state.return_or_nan, time_s=state.time_s
        )
        state.finished, state.stop_reason = reason is not None, reason
        preempted = reason is None and stop_request is not None and stop_request.requested
        observer.iteration_done(state, time.monotonic() - iteration_started, result)
        due = state.iteration % every == 0 or (reason is not None and experiment.checkpoint.at_end) or preempted
        if due:
            observer.before_checkpoint(state)
            checkpoints.save(algo, folder, state, experiment_yaml)
        observer.reported(state, due)
        if reason is not None:
            return reason
        if preempted:
            return preempted


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None
