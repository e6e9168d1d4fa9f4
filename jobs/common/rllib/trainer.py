"""The algorithm in one actor on the CPU group, learning in-process, where it needs no learner actor.

- A small experiment (`env_runners.num_env_runners: 0`, `learners.num_gpus: 0`, one learner) needs
  no remote actors: RLlib's local env runner and local learner do the work. Building it starts one
  worker process instead of an env runner and a learner, each with its own imports: seconds saved
  on every small run.
- One CPU learner on the env runners' cores (`learners.share_env_runner_cpus`): the actor holds the
  algorithm and its local learner, and its remote env runners sample. The episodes go from the runners
  straight to the learner, not to the driver and then on to a learner actor: on MuJoCo a second copy
  of 10-20 MB an iteration (bench/throughput.py).

Inside the driver the learner would put training on the head, which takes none; so the algorithm
lives in one actor on the CPU group, as a sweep trial does, and the driver's loop
(jobs/common/run/loop.py) drives it.

The actor hands each checkpoint's files to the driver, which writes them
through the same writer (and retries, and messages) as every other run: a
small experiment's checkpoint is a few hundred kilobytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from jobs.common.errors import UserError
from jobs.common.schema.experiment import Experiment, parse_experiment
from jobs.common.storage import checkpoints


def runs_in_one_actor(experiment: Experiment) -> bool:
    learners = experiment.learners
    one_cpu_learner = learners.num_gpus == 0 and learners.num_learners == 1
    return one_cpu_learner and (experiment.env_runners.num_env_runners == 0 or learners.share_env_runner_cpus)


def build_in_actor(experiment: Experiment, use_groups: bool):
    """The algorithm as the actor holds it: a local learner on the experiment's CPUs (as torch
    threads), the env runners remote where the experiment has any (on the CPU group with `use_groups`)."""
    from jobs.common.rllib.heap import build_algo
    from jobs.common.rllib.ppo import build_ppo_config

    return build_algo(build_ppo_config(experiment, in_process_gpus=0, remote_env_runners=True, use_groups=use_groups))


class TrainerActor:
    """Holds the algorithm; each method is one remote call from the driver."""

    def __init__(self, experiment: dict[str, Any], use_groups: bool = False):
        from jobs.common.rllib.ppo import rejected

        self.experiment = parse_experiment(experiment, source="<trainer>").experiment
        # Ray's own checks of the settings, as one clear message from ready() (a constructor that
        # raises reaches the driver as a dead actor and a traceback).
        self.failed: UserError | None = None
        try:
            self.algo = build_in_actor(self.experiment, use_groups)
        except (ValueError, TypeError) as err:
            self.failed = rejected(f"experiment '{self.experiment.name}'", err)

    def ready(self) -> None:
        if self.failed:
            raise self.failed

    def train(self) -> dict[str, Any]:
        from jobs.common.run.loop import ENV_RUNNERS_KEY, env_runner_health

        result = self.algo.train()
        # What the loop, the progress lines and the reports read; not the whole result tree.
        kept = ("num_env_steps_sampled_lifetime", "env_runners", "learners")
        return {**{key: result[key] for key in kept if key in result}, ENV_RUNNERS_KEY: env_runner_health(self.algo)}

    def restore(self, path: str) -> None:
        checkpoints.restore(self.algo, path)

    def checkpoint_files(self) -> dict[str, bytes]:
        """RLlib's checkpoint (save_to_path) as {relative path: bytes}."""
        with tempfile.TemporaryDirectory(prefix="rl-trainer-") as folder:
            self.algo.save_to_path(folder)
            return {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


class RemoteAlgorithm:
    """What the loop needs of an Algorithm (train, save_to_path, stop) and a
    restore, backed by a TrainerActor on the CPU group."""

    def __init__(self, experiment: Experiment, resources: dict[str, float]):
        import ray

        from jobs.common.cluster.plans import learner_plan

        # The actor reserves what its one learner would: none where it shares the env runners' cores.
        options: dict[str, Any] = {"num_cpus": learner_plan(experiment).reserved_cpus_per_learner,
                                   "resources": resources}  # fmt: skip
        actor_class = ray.remote(TrainerActor).options(**options)
        self.actor = actor_class.remote(experiment.model_dump(by_alias=True, mode="json"), bool(resources))
        self.health: tuple[int, int] | None = None
        try:
            self._get(self.actor.ready.remote())  # built (or failed) before the first iteration
        except BaseException:
            ray.kill(self.actor)
            raise

    def train(self) -> dict[str, Any]:
        from jobs.common.run.loop import ENV_RUNNERS_KEY

        result = self._get(self.actor.train.remote())
        self.health = result.pop(ENV_RUNNERS_KEY, None)
        return result

    def env_runner_health(self) -> tuple[int, int] | None:
        """(healthy, configured) remote env runners as of the last iteration; None without any."""
        return self.health

    def restore(self, uri: str) -> None:
        """The actor restores, on its own node (from a local copy there, where the checkpoint is in S3)."""
        self._get(self.actor.restore.remote(uri))

    def save_to_path(self, path: str) -> None:
        """The actor's checkpoint, written here (checkpoints.save stages and uploads it)."""
        for name, data in self._get(self.actor.checkpoint_files.remote()).items():
            target = Path(path, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    def stop(self) -> None:
        """Ends the actor, and the env runner and learner inside it with its process: the
        algorithm's own stop() would only close them first (0.4 s a run, nothing kept)."""
        import ray

        ray.kill(self.actor)

    @staticmethod
    def _get(ref):
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            # A storage failure or bad input inside the actor is the same clear message as in the driver.
            if isinstance(err.cause, UserError):
                raise err.cause from None
            raise
