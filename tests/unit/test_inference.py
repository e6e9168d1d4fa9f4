"""The env runners' forward pass for RLlib's default PPO module (jobs/common/rllib/inference.py): the same
tensors as the module's own forward passes, bit for bit, and RLlib's own pass for any other module."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from jobs.common.rllib.inference import policy_forward

OBSERVATIONS = gym.spaces.Box(-np.inf, np.inf, (17,), np.float32)


def build(action_space, module_class=DefaultPPOTorchRLModule, inference_only=True, **model):
    spec = RLModuleSpec(module_class=module_class, observation_space=OBSERVATIONS, action_space=action_space,
                        inference_only=inference_only, model_config=DefaultModelConfig(**model))  # fmt: skip
    module = spec.build()
    module.eval()
    return module


@pytest.mark.parametrize(
    ("action_space", "model"),
    [
        (gym.spaces.Box(-1.0, 1.0, (6,), np.float32), {"fcnet_hiddens": [256, 256], "fcnet_activation": "tanh"}),
        (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), {"fcnet_hiddens": [32], "vf_share_layers": True}),
        (gym.spaces.Discrete(4), {"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"}),
    ],
    ids=["gaussian", "shared-encoder", "categorical"],
)
def test_the_direct_pass_gives_the_modules_own_outputs_bit_for_bit(action_space, model):
    torch.manual_seed(0)
    module = build(action_space, **model)
    forward = policy_forward(module)
    assert forward is not None
    # Log-stds far outside the head's clip: the direct pass clips them as the head does.
    with torch.no_grad():
        module.pi.net.mlp[-1].bias.add_(40.0)
    for batch_size in (1, 64):
        batch = {Columns.OBS: torch.randn(batch_size, 17) * 5}
        ours = forward(dict(batch), t=0)
        for theirs in (module.forward_exploration(dict(batch), t=0), module.forward_inference(dict(batch))):
            assert ours.keys() == theirs.keys() == {Columns.ACTION_DIST_INPUTS}
            assert torch.equal(ours[Columns.ACTION_DIST_INPUTS], theirs[Columns.ACTION_DIST_INPUTS])
    assert not ours[Columns.ACTION_DIST_INPUTS].requires_grad
    if isinstance(action_space, gym.spaces.Box):
        assert ours[Columns.ACTION_DIST_INPUTS][:, action_space.shape[0] :].max() == 20.0


def test_weights_loaded_after_it_was_made_are_the_ones_it_runs():
    module = build(gym.spaces.Box(-1.0, 1.0, (6,), np.float32), fcnet_hiddens=[16])
    forward = policy_forward(module)
    other = build(gym.spaces.Box(-1.0, 1.0, (6,), np.float32), fcnet_hiddens=[16])
    module.set_state(other.get_state())  # what an env runner's weight sync does
    batch = {Columns.OBS: torch.randn(8, 17)}
    assert torch.equal(forward(dict(batch))[Columns.ACTION_DIST_INPUTS],
                       other.forward_inference(dict(batch))[Columns.ACTION_DIST_INPUTS])  # fmt: skip


class CustomPPOModule(DefaultPPOTorchRLModule):
    def _forward(self, batch, **kwargs):
        return super()._forward(batch, **kwargs)


def test_other_modules_keep_rllibs_forward_pass():
    box = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
    assert policy_forward(build(box, module_class=CustomPPOModule)) is None
    assert policy_forward(build(box, use_lstm=True, max_seq_len=4)) is None
