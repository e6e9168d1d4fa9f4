"""Where everything lives in the bucket: the one module that spells its paths.

    <storage>/<experiment>/                    RunFolder: one training run
      experiment.yaml                          the resolved experiment
      checkpoint_000005/                       RLlib's checkpoint (algo.save_to_path)
        experiment.yaml                        ... plus the experiment, for the evaluator
        learner_group/learner/rl_module/default_policy/   the policy alone
      latest.json                              the run's RunState; written last
      progress.csv, learning_curve.png
      tensorboard/                             TensorBoard event files
      driver.log, run.json                     the driver's output (scrubbed), what it takes to rerun it
      evaluations/checkpoint_000005/           episode-0.gif, result.json

    <storage>/<sweep>/                         SweepFolder
      sweep.json                               what the report needs to know
      tune/                                    Ray Tune's experiment (Tuner.restore)
      trials/<trial_id>/                       a RunFolder per trial (checkpoints, latest.json, tensorboard/)
      report/                                  summary.txt, trials.csv, learning_curves.png, best.json

`<storage>` is an `s3://bucket/prefix` or a local directory (objects.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jobs.common.storage.objects import join

POINTER = "latest.json"
EXPERIMENT_FILE = "experiment.yaml"
# In each checkpoint folder: the run's state as of that checkpoint (its iteration, counters, job).
STATE_FILE = "state.json"
CHECKPOINT_PREFIX = "checkpoint_"
# Inside an RLlib checkpoint: the policy alone, which RLModule.from_checkpoint loads.
POLICY_PATH = "learner_group/learner/rl_module/default_policy"
# The env runners' env-to-module connector pipeline (its MeanStdFilter's statistics, where one is set).
ENV_TO_MODULE_PATH = "env_runner/env_to_module_connector"
VIDEO_FILE = "episode-0.gif"
RESULT_FILE = "result.json"
OUTCOME_FILE = "outcome.json"
REPORT_FILES = ("summary.txt", "trials.csv", "learning_curves.png", "best.json")

_CHECKPOINT_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}(\d{{6}})$")


def checkpoint_name(iteration: int) -> str:
    return f"{CHECKPOINT_PREFIX}{iteration:06d}"


def checkpoint_iteration(name: str) -> int | None:
    """checkpoint_000005 -> 5; None for any other name."""
    match = _CHECKPOINT_NAME.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class RunFolder:
    """One run's folder: a training experiment, or one sweep trial."""

    uri: str

    @property
    def pointer(self) -> str:
        return join(self.uri, POINTER)

    @property
    def experiment_file(self) -> str:
        return join(self.uri, EXPERIMENT_FILE)

    @property
    def progress(self) -> str:
        return join(self.uri, "progress.csv")

    @property
    def learning_curve(self) -> str:
        return join(self.uri, "learning_curve.png")

    @property
    def tensorboard(self) -> str:
        """TensorBoard event files (jobs/common/reports/tensorboard.py)."""
        return join(self.uri, "tensorboard")

    @property
    def driver_log(self) -> str:
        return join(self.uri, "driver.log")

    @property
    def run_record(self) -> str:
        """run.json: what it takes to run it again (jobs/common/reports/provenance.py)."""
        return join(self.uri, "run.json")

    @property
    def outcome(self) -> str:
        """outcome.json: how the last training job ended (jobs/common/reports/outcome.py)."""
        return join(self.uri, OUTCOME_FILE)

    def checkpoint(self, iteration: int) -> str:
        return join(self.uri, checkpoint_name(iteration))

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder, `<run>/checkpoint_NNNNNN`."""

    uri: str

    @property
    def run(self) -> RunFolder:
        return RunFolder(self.uri.rstrip("/").rsplit("/", 1)[0])

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def experiment_file(self) -> str:
        return join(self.uri, EXPERIMENT_FILE)

    @property
    def state_file(self) -> str:
        return join(self.uri, STATE_FILE)

    @property
    def policy(self) -> str:
        return join(self.uri, POLICY_PATH)

    @property
    def env_to_module(self) -> str:
        return join(self.uri, ENV_TO_MODULE_PATH)

    @property
    def evaluation(self) -> Evaluation:
        return Evaluation(join(self.run.uri, "evaluations", self.name), run_name=self.run.name, name=self.name)


@dataclass(frozen=True)
class Evaluation:
    """`<run>/evaluations/<checkpoint>/`: a checkpoint's video and result."""

    uri: str
    run_name: str
    name: str

    @property
    def video(self) -> str:
        return join(self.uri, VIDEO_FILE)

    @property
    def result(self) -> str:
        return join(self.uri, RESULT_FILE)

    @classmethod
    def of_video(cls, video_uri: str) -> Evaluation:
        """Back from the video's URI (what `jobs.evaluate` prints) to its folder."""
        folder = video_uri.rstrip("/").rsplit("/", 1)[0]
        evaluations, name = folder.rsplit("/", 1)
        run = evaluations.rsplit("/", 1)[0]
        return cls(folder, run_name=run.rsplit("/", 1)[-1], name=name)


@dataclass(frozen=True)
class SweepFolder:
    uri: str

    @property
    def context(self) -> str:
        return join(self.uri, "sweep.json")

    @property
    def tune(self) -> str:
        """Ray Tune's experiment folder (RunConfig(storage_path=uri, name="tune"))."""
        return join(self.uri, self.tune_name)

    tune_name = "tune"

    def trial(self, trial_id: str) -> RunFolder:
        return RunFolder(join(self.uri, "trials", trial_id))

    @property
    def driver_log(self) -> str:
        """The sweep driver's output, scrubbed (the last job's: a resumed sweep writes it again)."""
        return join(self.uri, "driver.log")

    @property
    def report(self) -> str:
        return join(self.uri, "report")

    def report_file(self, name: str) -> str:
        return join(self.report, name)

    @property
    def outcome(self) -> str:
        """outcome.json: the sweep's result, its best trial and checkpoint (jobs/common/reports/outcome.py)."""
        return join(self.uri, OUTCOME_FILE)


def experiment(storage_uri: str, name: str) -> RunFolder:
    return RunFolder(join(storage_uri, name))


def sweep(storage_uri: str, name: str) -> SweepFolder:
    return SweepFolder(join(storage_uri, name))
