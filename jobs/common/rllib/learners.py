"""Learner variants: torch threads that follow the learner's CPUs, and bf16.

Ray sets OMP_NUM_THREADS to an actor's CPU count only where it is not set
already, and torch takes its thread count from it: a learner with
`num_cpus_per_learner: 4` trains on 4 threads on the local and KubeRay
providers. The cluster launcher (PROVIDER=vm) runs `ray start` with
`OMP_NUM_THREADS=1` exported (ray/autoscaler/_private/command_runner.py), and
so would any node whose environment sets it: every learner would train on one
thread whatever it reserved. So every learner sets torch's threads to the
CPUs Ray assigned to its actor, before it builds anything.
"""

from __future__ import annotations

import math

import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner


def assigned_cpus() -> int | None:
    """Whole CPUs Ray assigned to the current actor; None outside an actor (a driver)."""
    import ray

    if not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    if context.get_actor_id() is None:
        return None
    cpus = context.get_assigned_resources().get("CPU")
    return max(1, math.floor(cpus)) if cpus else None


# The key of RLlib's learner_config_dict that names a learner's torch threads (jobs/common/rllib/ppo.py):
# its CPUs, also where it reserves none because it shares the env runners' cores.
TORCH_THREADS = "torch_threads"


def follow_assigned_cpus(threads: int | None = None) -> int:
    """Set torch's intra-op threads to `threads`, else to the actor's CPUs; returns the threads in use."""
    cpus = threads or assigned_cpus()
    if cpus is not None and torch.get_num_threads() != cpus:
        torch.set_num_threads(cpus)
    return torch.get_num_threads()


class ThreadedPPOTorchLearner(PPOTorchLearner):
    """PPO's torch learner, training on learners.num_cpus_per_learner threads: as many as its actor
    has CPUs, or as the env runners' cores it shares (learners.share_env_runner_cpus)."""

    def build(self) -> None:
        follow_assigned_cpus((self.config.learner_config_dict or {}).get(TORCH_THREADS))
        super().build()


class MixedPrecisionPPOTorchLearner(ThreadedPPOTorchLearner):
    """PPO's torch learner with the forward pass and loss under bfloat16 autocast.

    Weights, optimizer state and gradients stay float32; matmuls run in bf16,
    which tensor-core GPUs (A100, H100) execute several times faster. bf16 keeps
    float32's exponent range, so no loss scaling is needed. On CPU it is slower
    for small networks: off by default (experiment key learners.mixed_precision).
    """

    def _uncompiled_update(self, batch, **kwargs):
        device_type = getattr(self._device, "type", "cpu")
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            return super()._uncompiled_update(batch, **kwargs)
