"""What each entrypoint leaves as its result: a small JSON record beside its run, and the lines it prints.

    jobs.train     <run>/outcome.json                    TrainOutcome       last line  `checkpoint: <uri>`
    jobs.evaluate  <run>/evaluations/<ckpt>/result.json  EvaluationOutcome  last line  `mean_return: ... video: <uri>`
    jobs.sweep     <sweep>/outcome.json                  SweepOutcome       last lines `report: <uri>`,
                                                                                       `best_checkpoint: <uri>`

The lines are for people reading the job's log; every program (the CLI, the benchmarks, the tests)
reads the record, through `read`, and never parses a line. The line formats live here and nowhere
else: each record prints its own lines.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import TypeVar

from jobs.common.storage import objects as storage

R = TypeVar("R", bound="Outcome")


@dataclass
class Outcome:
    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, default=str).encode()

    @classmethod
    def from_json(cls: type[R], data: bytes | str) -> R:
        record = json.loads(data)
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    def lines(self) -> list[str]:
        raise NotImplementedError


@dataclass
class TrainOutcome(Outcome):
    experiment: str
    job_id: str | None
    # The newest complete checkpoint (None: checkpoint.at_end off and no interval reached).
    checkpoint: str | None
    iterations: int
    env_steps: int
    episode_return_mean: float | None
    train_time_s: float
    stopped: str
    checkpointed_at: int | None
    learning_curve: str
    # Where the job's wall time went: build_s, train_s, shutdown_s, report_s.
    timings: dict[str, float] = field(default_factory=dict)
    # How often the job rebuilt its algorithm after losing an actor (jobs/common/run/recovery.py).
    recovered: int = 0

    def lines(self) -> list[str]:
        if self.checkpoint is None:
            return ["checkpoint: none (checkpoint.at_end is off and no interval was reached)"]
        return [f"checkpoint: {self.checkpoint}"]

    def job_time(self) -> str:
        return ", ".join(f"{name.removesuffix('_s')} {seconds:.1f}s" for name, seconds in self.timings.items())


@dataclass
class EvaluationOutcome(Outcome):
    checkpoint: str
    env: str
    episodes: int
    mean_return: float
    std_return: float
    returns: list[float]
    lengths: list[int]
    # None where the env could not render here (why: `no_video`).
    video: str | None
    no_video: str | None = None

    def lines(self) -> list[str]:
        return [
            f"mean_return: {self.mean_return:.1f} std: {self.std_return:.1f} episodes: {self.episodes} "
            f"video: {self.video or 'none (' + str(self.no_video) + ')'}"
        ]


@dataclass
class SweepOutcome(Outcome):
    sweep: str
    trials: int  # trials Tune knows of
    report: str
    best_trial: str | None
    best_checkpoint: str | None
    unfinished: int = 0
    planned: int = 0  # trials the sweep file asks for
    # Trials per outcome: finished, stopped early (by the scheduler), error, running, pending.
    counts: dict[str, int] = field(default_factory=dict)
    # What the best trial was ranked by, and its value there (None: no trial reported it).
    best_metric: str | None = None
    best_value: float | None = None

    def done(self) -> int:
        """Trials that met their stop criteria or that the scheduler stopped: nothing left to run."""
        return self.counts.get("finished", 0) + self.counts.get("stopped early", 0)

    def lines(self) -> list[str]:
        return [f"report: {self.report}", f"best_checkpoint: {self.best_checkpoint or 'none'}"]


def write(outcome: Outcome, uri: str) -> None:
    storage.write_bytes(uri, outcome.to_json())


def read(kind: type[R], uri: str) -> R | None:
    """The record at `uri` (a layout path), or None where the run left none."""
    data = storage.read_bytes(uri)
    return kind.from_json(data) if data else None
