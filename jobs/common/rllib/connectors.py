"""The env runners' connector pipelines: RLlib's defaults minus the per-env round trip.

RLlib's default env-to-module pipeline adds each env's observation to the batch one item at a time and
then batches the items through `tree`; its module-to-env pipeline unbatches every output of the forward
pass into one item per env, then lists them again for the vector env (ListifyDataForVectorEnv). The env
runner (env_runner.py, or RLlib's) indexes the batched arrays itself, so these pipelines keep the batch
whole. BatchedEnvRunner hands them each step's observations as one array in `batch`; RLlib's loop (and
every reset) leaves them in the episodes, where the pipelines read them:

- env to module: the envs' last observations stacked into one tensor (what AddObservationsFromEpisodes-
  ToBatch, BatchIndividualItems and NumpyToTensor give a module without state), after a MeanStdFilter
  where the experiment sets `env_runners.observation_filter: MeanStdFilter`: RLlib's, on the whole
  batch at once (below); the episodes keep the normalised observations, so the learner trains on what
  the module saw;
- module to env: RLlib's GetActions and TensorToNumpy in one connector (SampleActions, below), and
  nothing after it.

The project's modules are stateless MLPs of one agent (no recurrent model in the experiment schema),
and actions are rescaled and clipped in the env (envs.py, normalize_actions off), so the default
pieces these leave out (time ranks, states, agent mapping, NormalizeAndClipActions) did nothing here.
Same actions, log-probs and episodes as the defaults (tests/unit/test_env_runner_pipelines.py); 10 % less
time per env runner step on HalfCheetah with 64 envs (bench/throughput.py).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.env_to_module import MeanStdFilter as RLlibMeanStdFilter
from ray.rllib.connectors.module_to_env import GetActions
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchDiagGaussian
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.utils.filter import RunningStat
from ray.rllib.utils.numpy import SMALL_NUMBER, convert_to_numpy
from ray.rllib.utils.spaces.space_utils import batch as batch_items
from ray.rllib.utils.torch_utils import convert_to_torch_tensor

MEAN_STD_FILTER = "MeanStdFilter"
# Where MeanStdFilter leaves the batch it normalised, in the connectors' shared data, for the env runner
# to store in its episodes (jobs/common/rllib/env_runner.py).
NORMALISED_OBSERVATIONS = "normalised_observations"


class StackObservations(ConnectorV2):
    """Each episode's last observation, stacked into one batch (float64 becomes float32, as NumpyToTensor does).
    Where a connector before it has stacked them already (MeanStdFilter), that batch."""

    def __init__(self, *args, device=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.device = device

    def __call__(self, *, rl_module, batch: dict[str, Any], episodes, explore=None, shared_data=None, **kwargs):
        stacked = batch.get(Columns.OBS)
        if stacked is None:
            stacked = stack_last_observations(episodes)
        batch[Columns.OBS] = to_tensor(stacked, self.device)
        return batch


def to_tensor(stacked, device=None):
    """convert_to_torch_tensor(stacked, device): an array on the CPU without its tree walk (over a third of
    the env-to-module pipeline's time with 64 envs on HalfCheetah, in a py-spy profile of one runner)."""
    on_cpu = device is None or torch.device(device).type == "cpu"
    floats = isinstance(stacked, np.ndarray) and stacked.dtype in (np.float32, np.float64)
    if on_cpu and floats and stacked.flags.writeable:
        return torch.from_numpy(stacked).float()
    return convert_to_torch_tensor(stacked, device=device)


def stack_last_observations(episodes):
    observations = [episode.get_observations(-1) for episode in episodes]
    # One np.stack for Box spaces; RLlib's tree-based batching for nested ones (Dict, Tuple).
    if all(isinstance(observation, np.ndarray) for observation in observations):
        return np.stack(observations)
    return batch_items(observations)


class Pushed(NamedTuple):
    """A batch of rows pushed into a RunningStat (push_rows): the statistics after each row, and the batch's
    own moments."""

    counts: np.ndarray  # (rows, 1): the stat's count after each row
    means: np.ndarray  # (rows, features): its mean after each row
    sum_sq: np.ndarray  # its sum of squared deviations from that mean, as Welford's update keeps it
    moments: tuple[int, np.ndarray, np.ndarray]  # the batch's count, mean and squared deviations from it


def push_rows(stat: RunningStat, rows: np.ndarray) -> Pushed | None:
    """`stat.push(row)` for each row, in one pass: running sums of the rows' deviations from the mean before
    them give the statistics after each row (which normalised_as_pushed needs) and the batch's own moments
    (which the filter's buffer takes, merge_moments); the stat and its delta since the last sync move to
    the last row's. None for no rows."""
    x = rows.astype(np.float64, copy=False)
    count = len(x)
    if count == 0:
        return None
    seen = stat.num_pushes
    counts = np.arange(seen + 1, seen + count + 1, dtype=np.float64)[:, None]
    deviations = x - stat.mean_array
    sums = np.cumsum(deviations, axis=0)
    squares = np.cumsum(deviations * deviations, axis=0)
    means = stat.mean_array + sums / counts
    sum_sq = stat.sum_sq_diff_array + squares - sums * sums / counts
    total, total_sq = sums[-1], squares[-1]
    moments = (count, stat.mean_array + total / count, total_sq - total * total / count)
    move_to(stat, count, means[-1], sum_sq[-1])
    return Pushed(counts, means, sum_sq, moments)


def merge_moments(stat: RunningStat, count: int, rows_mean: np.ndarray, rows_sq: np.ndarray) -> None:
    """A batch's moments merged into the stat's (Chan, Golub and LeVeque's parallel form of Welford's
    update), its delta since the last sync moved by as much, as pushing the rows one by one would have."""
    if count == 0:
        return
    seen = stat.num_pushes
    if seen == 0:
        mean, sum_sq = rows_mean, rows_sq
    else:
        total = seen + count
        delta = rows_mean - stat.mean_array
        mean = stat.mean_array + delta * (count / total)
        sum_sq = stat.sum_sq_diff_array + rows_sq + np.square(delta) * (seen * count / total)
    move_to(stat, count, mean, sum_sq)


def move_to(stat: RunningStat, count: int, mean: np.ndarray, sum_sq: np.ndarray) -> None:
    """The stat after `count` more pushes, at `mean` and `sum_sq`; its delta since the last sync moved by
    as much."""
    if stat.num_pushes == 0:
        # RunningStat.push sets the delta's mean to the first value it sees, then moves it as the mean moves.
        stat.mean_delta_array[...] = mean
    else:
        stat.mean_delta_array[...] += mean - stat.mean_array
    stat.sum_sq_diff_delta_array[...] += sum_sq - stat.sum_sq_diff_array
    stat.mean_array[...] = mean
    stat.sum_sq_diff_array[...] = sum_sq
    stat.num_pushes += count
    stat.num_pushes_delta += count


def normalised_as_pushed(pushed: Pushed, rows: np.ndarray, demean: bool, destd: bool, clip: float | None):
    """Each row normalised with the statistics after the rows up to and including it were pushed (what
    RLlib's filter gives, pushing and normalising one observation at a time)."""
    out = x = rows.astype(np.float64, copy=False)
    if demean:
        out = x - pushed.means
    if destd:
        counts = pushed.counts
        # As RunningStat.var and .std: 0 until two values, the variance in float32.
        if counts[0, 0] > 1:
            var = (pushed.sum_sq / (counts - 1)).astype(np.float32)
        else:
            var = np.where(counts > 1, pushed.sum_sq / np.maximum(counts - 1, 1), 0.0).astype(np.float32)
        out = out / (np.sqrt(np.maximum(var, 0, out=var)) + SMALL_NUMBER)
    if clip:
        out = np.minimum(np.maximum(out, -clip), clip)  # np.clip's values without its Python dispatch
    return out.astype(rows.dtype, copy=False)


class MeanStdFilter(RLlibMeanStdFilter):
    """RLlib's MeanStdFilter on a vector env's observations as one batch: its statistics take the whole
    batch in one numpy update and it normalises the batch in a few numpy expressions, where RLlib's pushes
    and normalises env by env (a quarter of an env runner's time with 64 envs on HalfCheetah;
    bench/sampling.py). Same output as RLlib's, to float rounding: each observation normalised with the
    statistics after the envs before it and itself (tests/unit/test_observation_filter.py).

    State, syncing across env runners and checkpoints are RLlib's own, and so is the name: a connector
    pipeline keys each connector's state by its class name, so checkpoints of either restore into both.
    Nested observation spaces (Dict, Tuple) take RLlib's path."""

    def __call__(self, *, rl_module, batch: dict[str, Any], episodes, explore=None, shared_data=None, **kwargs):
        if self._filters is None:
            self._init_new_filters()
        obs_filter = None if self._multi_agent else self._filters[None]
        if obs_filter is None or not isinstance(obs_filter.running_stats, RunningStat):
            return super().__call__(rl_module=rl_module, batch=batch, episodes=episodes, explore=explore,
                                    shared_data=shared_data, **kwargs)  # fmt: skip
        # BatchedEnvRunner hands the step's observations in as a batch and stores what comes out itself;
        # RLlib's loop (and its resets) leaves them in the episodes.
        given = batch.get(Columns.OBS)
        if isinstance(given, np.ndarray):
            batch[Columns.OBS] = self._normalise(obs_filter, given)
            if shared_data is not None:
                shared_data[NORMALISED_OBSERVATIONS] = batch[Columns.OBS]
            return batch
        if not episodes:
            return batch
        normalised = self._normalise(obs_filter, stack_last_observations(episodes))
        for episode, observation in zip(episodes, normalised, strict=True):
            episode.set_observations(at_indices=-1, new_data=observation)
            # The episode's space is the filter's output space (clipped), as RLlib's filter sets it.
            if episode.observation_space is not self.observation_space:
                episode.observation_space = self.observation_space
        batch[Columns.OBS] = normalised
        return batch

    def _normalise(self, obs_filter, observations: np.ndarray) -> np.ndarray:
        if not self._update_stats:  # frozen statistics: RLlib's own normalisation of the batch
            return obs_filter(observations, update=False)
        pushed = push_rows(obs_filter.running_stats, observations)
        if pushed is None:
            return observations.copy()
        merge_moments(obs_filter.buffer, *pushed.moments)  # the same batch into the delta to sync
        return normalised_as_pushed(pushed, observations, obs_filter.demean, obs_filter.destd, obs_filter.clip)


class SampleActions(GetActions):
    """RLlib's GetActions, then its TensorToNumpy, as one connector: the same actions and log-probs as numpy.

    While exploring with RLlib's Gaussian over a Box (TorchDiagGaussian, PPO's default), it samples and
    takes the log-prob in the torch ops torch.distributions.Normal runs for them, from the same generator,
    without building the distribution objects around them (a fifth of an env runner's time with 64
    envs on HalfCheetah went to GetActions and TensorToNumpy; bench/sampling.py). Other distributions,
    acting without exploring, and multi-agent batches take GetActions' own path."""

    def __call__(self, *, rl_module, batch: dict[str, Any], episodes, explore=None, shared_data=None, **kwargs):
        if explore and self._samples_gaussian(rl_module, batch, episodes):
            loc, log_std = batch[Columns.ACTION_DIST_INPUTS].chunk(2, dim=-1)
            scale = log_std.exp()
            with torch.no_grad():
                actions = torch.normal(loc, scale)
                batch[Columns.ACTIONS] = actions
                if Columns.ACTION_LOGP not in batch:
                    batch[Columns.ACTION_LOGP] = gaussian_log_prob(actions, loc, scale)
        else:
            batch = super().__call__(rl_module=rl_module, batch=batch, episodes=episodes, explore=explore,
                                     shared_data=shared_data, **kwargs)  # fmt: skip
        return {key: tensor_to_numpy(value) for key, value in batch.items()}

    @staticmethod
    def _samples_gaussian(rl_module, batch: dict[str, Any], episodes) -> bool:
        return (
            Columns.ACTIONS not in batch
            and isinstance(batch.get(Columns.ACTION_DIST_INPUTS), torch.Tensor)
            and not (episodes and isinstance(episodes[0], MultiAgentEpisode))
            and rl_module.get_exploration_action_dist_cls() is TorchDiagGaussian
        )


_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def gaussian_log_prob(value, loc, scale):
    """TorchDiagGaussian.logp: torch.distributions.Normal.log_prob's expression, summed over the last axis."""
    return (-((value - loc) ** 2) / (2 * scale**2) - scale.log() - _LOG_SQRT_2PI).sum(-1)


def tensor_to_numpy(value):
    """What TensorToNumpy (convert_to_numpy) makes of one value of the batch; a tensor without its tree walk."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.dtype in (torch.float32, torch.int32):
        return value.detach().cpu().numpy()
    return convert_to_numpy(value)


def env_to_module(env=None, spaces=None, device=None, observation_filter: str = "NoFilter") -> list[ConnectorV2]:
    normalise = [MeanStdFilter(multi_agent=False)] if observation_filter == MEAN_STD_FILTER else []
    return [*normalise, StackObservations(device=device)]


def module_to_env(env=None, spaces=None) -> list[ConnectorV2]:
    return [SampleActions()]


def batched_pipelines(observation_filter: str = "NoFilter") -> dict[str, Any]:
    """The `config.env_runners(...)` settings that replace RLlib's default env runner pipelines with these."""
    return {
        "add_default_connectors_to_env_to_module_pipeline": False,
        # A partial of a module-level function: the config is pickled to every env runner.
        "env_to_module_connector": functools.partial(env_to_module, observation_filter=observation_filter),
        "add_default_connectors_to_module_to_env_pipeline": False,
        "module_to_env_connector": module_to_env,
    }
