"""The forward pass an env runner samples with, where the module is RLlib's default PPO module over an MLP.

RLlib's DefaultPPOTorchRLModule reaches its policy network through six layers of wrappers (the module's
`_forward`, the actor-critic encoder, the MLP encoder, TorchMLP, the head, its TorchMLP), each a Python
call and a dict or two, before the network's own nn.Sequential stacks run: on HalfCheetah's 64
observations 220 microseconds a call against 202 for the stacks alone, and more between env steps, which
push those objects out of the caches. `policy_forward` runs the two nn.Sequential stacks and the head's
log-std clip, which is all those wrappers compute: the same tensors, bit for bit
(tests/unit/test_inference.py).

Any other module (a subclass, a CNN or LSTM encoder, a compiled module) keeps RLlib's forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.models.torch.encoder import TorchActorCriticEncoder, TorchMLPEncoder
from ray.rllib.core.models.torch.heads import TorchMLPHead

Forward = Callable[..., dict[str, Any]]


def policy_forward(module) -> Forward | None:
    """A forward pass equal to `module._forward_exploration` and `_forward_inference` (RLlib's default PPO
    module runs `_forward` for both) that calls the policy's layers directly; None where the module is not
    RLlib's default PPO module over stateless MLPs."""
    if type(module) is not DefaultPPOTorchRLModule or module.is_stateful():
        return None
    encoder, head = module.encoder, getattr(module, "pi", None)
    if type(encoder) is not TorchActorCriticEncoder or type(head) is not TorchMLPHead:
        return None
    actor = encoder.encoder if encoder.config.shared else encoder.actor_encoder
    if type(actor) is not TorchMLPEncoder:
        return None
    body, head_layers = actor.net.mlp, head.net.mlp
    clip = head.log_std_clip_param_const if head.clip_log_std else None

    def forward(batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        with torch.no_grad():
            outputs = head_layers(body(batch[Columns.OBS]))
            if clip is not None:
                means, log_stds = torch.chunk(outputs, chunks=2, dim=-1)
                outputs = torch.cat((means, torch.clamp(log_stds, -clip, clip)), dim=-1)
        return {Columns.ACTION_DIST_INPUTS: outputs}

    return forward
