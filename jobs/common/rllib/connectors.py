"""The env runners' connector pipelines: RLlib's defaults minus the per-env round trip.

RLlib's default env-to-module pipeline adds each env's observation to the batch one item at a time and
then batches the items through `tree`; its module-to-env pipeline unbatches every output of the forward
pass into one item per env, then lists them again for the vector env (ListifyDataForVectorEnv). The env
runner indexes the batched arrays itself, so these pipelines keep the batch whole:

- env to module: the envs' last observations stacked into one tensor (what AddObservationsFromEpisodes-
  ToBatch, BatchIndividualItems and NumpyToTensor give a module without state), after RLlib's
  MeanStdFilter where the experiment sets `env_runners.observation_filter: MeanStdFilter` (it normalises
  the observation in each episode, so the learner trains on what the module saw);
- module to env: RLlib's own GetActions and TensorToNumpy, and nothing after them.

The project's modules are stateless MLPs of one agent (no recurrent model in the experiment schema),
and actions are rescaled and clipped in the env (envs.py, normalize_actions off), so the default
pieces these leave out (time ranks, states, agent mapping, NormalizeAndClipActions) did nothing here.
Same actions, log-probs and episodes as the defaults; 10 % less time per env runner step on HalfCheetah
with 64 envs (bench/throughput.py).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from ray.rllib.connectors.common import TensorToNumpy
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.env_to_module import MeanStdFilter
from ray.rllib.connectors.module_to_env import GetActions
from ray.rllib.core.columns import Columns
from ray.rllib.utils.spaces.space_utils import batch as batch_items
from ray.rllib.utils.torch_utils import convert_to_torch_tensor


class StackObservations(ConnectorV2):
    """Each episode's last observation, stacked into one batch (float64 becomes float32, as NumpyToTensor does)."""

    def __init__(self, *args, device=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.device = device

    def __call__(self, *, rl_module, batch: dict[str, Any], episodes, explore=None, shared_data=None, **kwargs):
        observations = [episode.get_observations(-1) for episode in episodes]
        # One np.stack for Box spaces; RLlib's tree-based batching for nested ones (Dict, Tuple).
        if all(isinstance(observation, np.ndarray) for observation in observations):
            stacked = np.stack(observations)
        else:
            stacked = batch_items(observations)
        batch[Columns.OBS] = convert_to_torch_tensor(stacked, device=self.device)
        return batch


MEAN_STD_FILTER = "MeanStdFilter"


def env_to_module(env=None, spaces=None, device=None, observation_filter: str = "NoFilter") -> list[ConnectorV2]:
    normalise = [MeanStdFilter(multi_agent=False)] if observation_filter == MEAN_STD_FILTER else []
    return [*normalise, StackObservations(device=device)]


def module_to_env(env=None, spaces=None) -> list[ConnectorV2]:
    return [GetActions(), TensorToNumpy()]


def batched_pipelines(observation_filter: str = "NoFilter") -> dict[str, Any]:
    """The `config.env_runners(...)` settings that replace RLlib's default env runner pipelines with these."""
    return {
        "add_default_connectors_to_env_to_module_pipeline": False,
        # A partial of a module-level function: the config is pickled to every env runner.
        "env_to_module_connector": functools.partial(env_to_module, observation_filter=observation_filter),
        "add_default_connectors_to_module_to_env_pipeline": False,
        "module_to_env_connector": module_to_env,
    }
