"""Where each part of a PPO run goes: typed plans, made from the experiment.

`LearnerPlan` and `PlacementPlan` are what `build_ppo_config` wires into
Ray, what the capacity check (jobs/common/cluster/capacity.py) checks against
the cluster and what `--dry-run` shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.common.cluster.capacity import GroupCapacity, has_real_gpus
from jobs.common.cluster.placement import CPU_GROUP, GPU_GROUP
from jobs.common.schema.experiment import Experiment


@dataclass(frozen=True)
class LearnerPlan:
    num_learners: int
    num_gpus_per_learner: int
    # "auto" (RLlib's): a learner inside the trial's own actor takes that actor's CPUs.
    num_cpus_per_learner: int | str
    # The worker group the learners ask for; None: no group (inside a sweep trial's actor).
    group: str | None
    # GPU learners running on CPU where the GPU group has no GPUs (--gpu-fallback cpu).
    cpu_stand_in: bool
    torch_compile: bool
    mixed_precision: bool
    train_batch_size_per_learner: int | None
    # The experiment's training.minibatch_size is the total per SGD step; Ray's is per
    # learner. None: left out, Ray's default applies per learner.
    minibatch_size: int | None = None
    minibatch_size_per_learner: int | None = None
    # CPU learners on the env runners' cores (learners.share_env_runner_cpus): they reserve none.
    shares_env_runner_cpus: bool = False

    @property
    def reserved_cpus_per_learner(self) -> int | str:
        """What Ray reserves for each learner: its CPUs, or none where it shares the env runners'."""
        return 0 if self.shares_env_runner_cpus else self.num_cpus_per_learner

    @property
    def torch_threads(self) -> int | None:
        """Each learner's torch threads: its CPUs (None: RLlib's "auto", inside a trial's actor)."""
        return self.num_cpus_per_learner if isinstance(self.num_cpus_per_learner, int) else None

    @property
    def remote(self) -> bool:
        return self.num_learners > 0

    @property
    def learners(self) -> int:
        """Learners that share each batch: 0 remote learners means one local learner."""
        return max(1, self.num_learners)

    @property
    def minibatches_per_epoch(self) -> int | None:
        """SGD steps per epoch, the same on every learner and for every learner count."""
        if self.train_batch_size_per_learner is None or self.minibatch_size_per_learner is None:
            return None
        return max(1, self.train_batch_size_per_learner // self.minibatch_size_per_learner)


@dataclass(frozen=True)
class EnvRunnerPlan:
    num_env_runners: int
    num_cpus_per_env_runner: int
    group: str


@dataclass(frozen=True)
class PlacementPlan:
    learners: LearnerPlan
    env_runners: EnvRunnerPlan
    driver: str = "head"


def split_over_learners(key: str, total: int | None, learners: int) -> int | None:
    """A total over all learners -> each learner's share; it must come out whole."""
    if total is None:
        return None
    if total % learners:
        raise ValueError(f"{key} ({total}) must divide evenly over {learners} learners")
    return total // learners


def learner_plan(experiment: Experiment, groups: dict[str, GroupCapacity] | None = None) -> LearnerPlan:
    """`num_gpus: N` -> N remote learners with one GPU each; 0 -> CPU learners.

    The experiment's train_batch_size and minibatch_size are totals, over all
    learners; Ray 2.60 wants both per learner, so both are split evenly. Each
    learner computes gradients on its share of every minibatch and they are
    averaged (DDP) before every step: changing N keeps the effective batch, the
    effective minibatch and the number of SGD steps per epoch the same.

    With `gpu_fallback: cpu` on a cluster whose GPU group has no GPUs, the N
    learners keep their place on the GPU group but run on CPU (a stand-in).
    """
    learners = experiment.learners
    gpus = learners.num_gpus
    stand_in = gpus > 0 and learners.gpu_fallback == "cpu" and groups is not None and not has_real_gpus(groups)
    num_learners = gpus if gpus > 0 else learners.num_learners
    on_gpu = gpus > 0 and not stand_in
    training = experiment.training
    return LearnerPlan(
        num_learners=num_learners,
        num_gpus_per_learner=1 if on_gpu else 0,
        num_cpus_per_learner=learners.num_cpus_per_learner,
        group=GPU_GROUP if gpus > 0 else CPU_GROUP,
        cpu_stand_in=stand_in,
        torch_compile=learners.torch_compile,
        # bf16 pays on GPUs only: autocast slows a CPU learner (or a CPU stand-in) down.
        mixed_precision=learners.mixed_precision and on_gpu,
        train_batch_size_per_learner=split_over_learners(
            "training.train_batch_size", training.train_batch_size, num_learners
        ),
        minibatch_size=training.minibatch_size,
        minibatch_size_per_learner=split_over_learners(
            "training.minibatch_size", training.minibatch_size, num_learners
        ),
        shares_env_runner_cpus=learners.share_env_runner_cpus and gpus == 0,
    )


def placement_plan(experiment: Experiment, groups: dict[str, GroupCapacity] | None = None) -> PlacementPlan:
    runners = experiment.env_runners
    return PlacementPlan(
        learners=learner_plan(experiment, groups),
        env_runners=EnvRunnerPlan(runners.num_env_runners, runners.num_cpus_per_env_runner, CPU_GROUP),
    )


def in_process_plan(experiment: Experiment, gpus: float = 0, threads: bool = False) -> LearnerPlan:
    """A sweep trial: sampling in the local env runner and learning in the
    local learner, all inside the trial's one actor (which Tune places). No
    remote actors to start makes a small trial seconds cheaper. One learner:
    it takes the whole batch and the whole minibatch. `threads` (the trainer
    actor, jobs/common/rllib/trainer.py): the learner trains on
    learners.num_cpus_per_learner torch threads, also where its actor reserves
    none (it shares the env runners' cores)."""
    return LearnerPlan(
        num_learners=0,
        num_gpus_per_learner=1 if gpus > 0 else 0,
        num_cpus_per_learner=experiment.learners.num_cpus_per_learner if threads else "auto",
        group=None,
        cpu_stand_in=False,
        torch_compile=experiment.learners.torch_compile,
        mixed_precision=experiment.learners.mixed_precision and gpus > 0,
        train_batch_size_per_learner=experiment.training.train_batch_size,
        minibatch_size=experiment.training.minibatch_size,
        minibatch_size_per_learner=experiment.training.minibatch_size,
    )
