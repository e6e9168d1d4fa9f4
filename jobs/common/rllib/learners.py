"""Learner variants behind the experiment's speed options."""

from __future__ import annotations

import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner


class MixedPrecisionPPOTorchLearner(PPOTorchLearner):
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
