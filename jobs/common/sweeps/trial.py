"""One sweep trial: a Ray Tune function trainable that runs PPO in its own actor.

Per-trial overhead dominates small RL trials, so a trial is one actor that
samples and learns in-process (no remote env runners or learners to start),
and Tune reuses that actor for the next trial (imports and all).

The training itself is the run loop every training job uses
(jobs/common/run/loop.py): checkpoints go to the trial's own RunFolder
(`<sweep>/trials/<trial_id>/`, jobs/common/storage/layout.py) with its
`latest.json` written last. Tune is handed a one-file checkpoint that holds
that pointer, which is all it needs for resuming and for PBT's exploit step.
On a restart the trial takes the newer of Tune's checkpoint and its own
pointer: the pointer is written as soon as a checkpoint is complete, while
Tune's experiment state can lag by seconds when the driver dies. A trial that
had already met its stop criteria reports that result again and trains no
further. A trial whose node is being drained checkpoints the iteration it is
on and waits for the node to go (jobs/common/run/preemption.py, NodeDrain).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from jobs.common.reports.metrics import RayMetrics
from jobs.common.reports.tensorboard import TensorBoardLog
from jobs.common.run import loop
from jobs.common.run.preemption import NodeDrain
from jobs.common.run.state import RunState
from jobs.common.storage import checkpoints, layout
from jobs.common.storage import objects as storage
from jobs.common.storage.retry import retry_budget_s
from jobs.common.sweeps.tune import trial_experiment

# The one file in the checkpoint Tune keeps for a trial: the trial's RunState.
TUNE_POINTER = "pointer.json"


def choose_start(own: RunState | None, given: RunState | None, trial_id: str) -> RunState | None:
    """Where a (re)started trial continues from.

    `given` is Tune's checkpoint (a pointer); `own` is this trial's latest.json.
    A pointer into another trial's folder is PBT's exploit step: take it. Else
    the newer of the two by iteration; the pointer is never behind Tune.
    """
    if given and given.trial_id != trial_id:
        return given
    candidates = [p for p in (own, given) if p]
    return max(candidates, key=lambda p: p.iteration) if candidates else None


def _read_given_checkpoint() -> RunState | None:
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        path = Path(folder) / TUNE_POINTER
        return RunState.from_json(path.read_bytes(), f"Tune's checkpoint {checkpoint.path}/{TUNE_POINTER}")


def _read_own_pointer(folder: layout.RunFolder) -> RunState | None:
    data = storage.read_bytes(folder.pointer)
    return None if data is None else RunState.from_json(data, folder.pointer)


class ReportToTune(loop.Observer):
    def __init__(self, started_at: float):
        self.started_at = started_at

    def reported(self, state: RunState, checkpointed: bool) -> None:
        from ray import tune

        # Wall-clock seconds (Unix time) of the trial's start and of this report: Tune's own
        # `timestamp` is whole seconds, too coarse to see how busy a sweep of 1-s trials kept its CPUs.
        metrics = {**state.metrics(), "started_at": self.started_at, "reported_at": time.time()}
        if not checkpointed:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="trial-pointer-") as folder:
            (Path(folder) / TUNE_POINTER).write_bytes(state.to_json())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def run_trial(
    config: dict[str, Any],
    *,
    base: dict[str, Any],
    encoded_keys: list[str],
    storage_uri: str,
    sweep_name: str,
    gpus: float,
    job_id: str | None = None,
) -> None:
    from ray import tune

    from jobs.common.rllib.ppo import build_ppo_config

    started_at = time.time()
    _quiet()
    # Tune re-uses this actor for the next trial only once this function has returned, and gives up
    # (failing the next trial for good) after TUNE_FUNCTION_THREAD_TIMEOUT_S, 2 s by default: a trial
    # stopped while its checkpoint write rides out a storage outage needs the write's whole budget.
    os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = str(int(retry_budget_s()) + 60)
    experiment = trial_experiment(base, config, encoded_keys)
    trial_id = tune.get_context().get_trial_id()
    folder = layout.sweep(storage_uri, sweep_name).trial(trial_id)
    start = choose_start(_read_own_pointer(folder), _read_given_checkpoint(), trial_id)
    state = RunState(trial_id=trial_id)
    if start:
        exploited = start.trial_id != trial_id
        state = RunState(**{**vars(start), "trial_id": trial_id})
        if exploited:
            # PBT: this trial now continues another one's weights (and keeps saying so in its pointer).
            state.finished, state.stop_reason, state.solved_at = False, None, None
            state.exploited_from = start.checkpoint
            checkpoints.write_pointer(folder, state)
            print(f"trial {trial_id}: exploited {start.checkpoint} at iteration {start.iteration}", flush=True)
        elif loop.already_done(experiment, state):
            # Finished before a restart that Tune's state had not caught up with.
            tune.report(state.metrics())
            return
        else:
            print(f"trial {trial_id}: resumed from {start.checkpoint} at iteration {start.iteration}", flush=True)

    state.job_id = job_id  # the sweep's job: what wrote this trial's checkpoints
    algo = build_ppo_config(experiment, in_process_gpus=gpus).build_algo()
    try:
        if start:
            checkpoints.restore(algo, start.checkpoint)
        tensorboard = TensorBoardLog(folder)
        try:
            metrics = RayMetrics(f"{sweep_name}/{trial_id}")
            observers = loop.Observers(tensorboard, metrics, ReportToTune(started_at))
            drain = NodeDrain()
            ended = loop.run(algo, experiment, state, folder, observers, stop_request=drain)
        finally:
            tensorboard.close()
        if not state.finished and drain.requested:
            # The checkpoint of this iteration is in storage and Tune has it: wait for the node to go.
            print(
                f"trial {trial_id}: {ended}: checkpoint {state.checkpoint} at iteration {state.iteration}", flush=True
            )
            drain.wait_for_the_node_to_go()
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
