"""A run's progress, and the schema of its `latest.json`.

`RunState` is what a training run or a sweep trial carries from one
iteration to the next and from one job to the next: counters that survive a
restart, the return window behind `episode_return_mean`, why it stopped and
its newest complete checkpoint. Written as the run's pointer after every
object of a checkpoint is in place (jobs/common/storage/checkpoints.py), read
back and validated when the run resumes: a damaged pointer is one message
naming the object and what to do, never a traceback.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

from jobs.common.errors import UserError
from jobs.common.storage import layout
from jobs.common.storage import objects as storage

# Pointers written before versioning carry no `version`: they have this schema.
VERSION = 1


@dataclass(config=ConfigDict(extra="forbid", validate_assignment=False))
class RunState:
    version: int = VERSION
    iteration: int = Field(0, ge=0)
    # Lifetime counters: they carry on across resumes.
    env_steps: int = Field(0, ge=0)
    time_s: float = Field(0.0, ge=0.0)
    # The mean of the last N episodes (jobs/common/run/returns.py), None before any episode ended.
    episode_return_mean: float | None = None
    episode_len_mean: float | None = None
    # [mean return, episode count] per recent iteration: what the window still needs.
    return_window: list[list[float]] = Field(default_factory=list)
    # Env steps at which episode_return_mean first reached stop.episode_return_mean.
    solved_at: int | None = None
    finished: bool = False
    stop_reason: str | None = None
    # The newest complete checkpoint: set just before the pointer is written.
    checkpoint: str | None = None
    # Sweep trials only: whose trial this is, and (PBT) the other trial's checkpoint it last continued from.
    trial_id: str | None = None
    exploited_from: str | None = None
    # The job (its Ray submission id) that wrote this state: one run of an experiment at a time.
    job_id: str | None = None
    written_at: str | None = None

    def to_json(self) -> bytes:
        record = {name: getattr(self, name) for name in self.__dataclass_fields__}
        record["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        return json.dumps(record, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes | str, where: str) -> RunState:
        """Validate a pointer; `where` names it in the error."""
        try:
            record = json.loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            raise DamagedPointer(where, f"not JSON ({err})") from None
        if not isinstance(record, dict):
            raise DamagedPointer(where, f"a JSON object was expected, got {type(record).__name__}")
        version = record.get("version", VERSION)
        if version != VERSION:
            raise DamagedPointer(where, f"version {version!r} is not one this code reads (version {VERSION})")
        try:
            return cls(**record)
        except (ValidationError, TypeError) as err:
            problems = err.errors() if isinstance(err, ValidationError) else [{"loc": (), "msg": str(err)}]
            detail = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'fields'}: {p['msg']}" for p in problems[:3])
            raise DamagedPointer(where, detail) from None

    @property
    def return_or_nan(self) -> float:
        return math.nan if self.episode_return_mean is None else self.episode_return_mean

    def metrics(self) -> dict[str, Any]:
        """What a sweep trial reports to Tune each iteration (jobs/common/schema/sweep.METRICS)."""
        nan = math.nan
        return {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "episode_return_mean": self.return_or_nan,
            "episode_len_mean": nan if self.episode_len_mean is None else self.episode_len_mean,
            "time_s": round(self.time_s, 3),
            "env_steps_to_solve": nan if self.solved_at is None else self.solved_at,
            "stop_reason": self.stop_reason or "",
            "checkpoint": self.checkpoint or "",
        }


class DamagedPointer(UserError):
    def __init__(self, where: str, problem: str):
        super().__init__(f"{where} is damaged: {problem}")
        self.where = where


def read_pointer(run: layout.RunFolder) -> RunState | None:
    """The run's latest.json, validated, with its checkpoint still in place; None for a new run.

    Anything wrong ends here, before any job is submitted, naming the object
    and what to do: delete the pointer, or point it at the newest complete
    checkpoint, which the message lists.
    """
    data = storage.read_bytes(run.pointer)
    if data is None:
        return None
    try:
        state = RunState.from_json(data, run.pointer)
        if state.checkpoint is None:
            raise DamagedPointer(run.pointer, "it names no checkpoint")
        if not storage.exists(layout.Checkpoint(state.checkpoint).policy):
            raise DamagedPointer(run.pointer, f"its checkpoint {state.checkpoint} is not in storage (or has no policy)")
    except DamagedPointer as err:
        raise UserError(f"{err}; {_what_to_do(run)}") from None
    return state


def latest_checkpoint(storage_uri: str, experiment: str, or_else: str) -> str:
    """Experiment `experiment`'s newest complete checkpoint, by its pointer in storage (the storage
    checked first); without one, a UserError saying to train it first or `or_else`."""
    storage.check_storage_reachable(storage_uri)
    run = layout.experiment(storage_uri, experiment)
    latest = read_pointer(run)
    if not latest:
        raise UserError(
            f"experiment '{experiment}' has no checkpoint in {run.uri}; train it first (`make train`) or {or_else}"
        )
    return latest.checkpoint


def _what_to_do(run: layout.RunFolder) -> str:
    complete = complete_checkpoints(run)
    if not complete:
        return f"no complete checkpoint is left in {run.uri}: delete it to start the run afresh"
    return f"delete it to start the run afresh, or point it at the newest complete checkpoint: {complete[-1]}"


def complete_checkpoints(run: layout.RunFolder) -> list[str]:
    """The run's checkpoint folders that hold the experiment and the policy, oldest first."""
    found = []
    for name in storage.list_names(run.uri):
        if layout.checkpoint_iteration(name) is None:
            continue
        checkpoint = layout.Checkpoint(storage.join(run.uri, name))
        if storage.exists(checkpoint.experiment_file) and storage.exists(checkpoint.policy):
            found.append(checkpoint.uri)
    return sorted(found)
