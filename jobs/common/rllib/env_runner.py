"""The env runner every experiment samples with: RLlib's SingleAgentEnvRunner, its loop over the vector
env kept batched.

RLlib's loop turns each step of its vector env into one call per env: it unbatches observations and
actions, builds a dict of model outputs per env, adds the step to the env's episode and runs the
`on_episode_step` callbacks, and its env-to-module connectors then read each episode's last observation
back (and a MeanStdFilter writes it again). This runner keeps each step as the batched arrays it came in,
runs the connectors on that batch (connectors.py), and writes an env's steps into its episode only when
the episode ends or the round of sampling does: a reset and a segment's last step by RLlib's own
`add_env_reset`/`add_env_step`, the steps before it with one `extend` per buffer. What it returns is what
RLlib's loop returns from the same seed: the same episode chunks, steps, model outputs, continuations and
metrics (tests/unit/test_batched_env_runner.py). While it samples, torch.distributions skip their
argument checks (unvalidated_distributions). On HalfCheetah with 64 envs an env runner's round of 8,192
steps took 11-17 % less time than RLlib's loop with the same pipelines (bench/sampling.py,
docs/benchmarks.md).

It runs no episode callbacks, so it takes RLlib's loop wherever that loop serves something it does not:
sampling whole episodes (`num_episodes`), random actions, nested observation spaces, and experiments
with RLlib callbacks, which see each episode step by step. Its timers are logged once per round
(RoundTimers): the pipelines', the forward pass's and the env step's seconds per call, as RLlib's are,
and the Prometheus count of env step tries,
but not each connector's apart nor RLlib's `env_to_module_sum_episodes_length_in/out`, which sum the
episodes' lengths (these come from resets only).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.env.env_errors import StepFailedRecreateEnvError
from ray.rllib.env.env_runner import ENV_STEP_FAILURE, NUM_ENV_STEP_FAILURES_LIFETIME
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer
from ray.rllib.utils.metrics import (
    CONNECTOR_PIPELINE_TIMER,
    ENV_STEP_TIMER,
    ENV_TO_MODULE_CONNECTOR,
    MODULE_TO_ENV_CONNECTOR,
    RLMODULE_INFERENCE_TIMER,
    WEIGHTS_SEQ_NO,
)

from jobs.common.rllib.connectors import NORMALISED_OBSERVATIONS
from jobs.common.rllib.heap import freeze_built_objects
from jobs.common.rllib.inference import policy_forward

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def unvalidated_distributions():
    """torch.distributions without their argument checks (a positive scale, samples in the support) while
    the runner samples: on every step they cost as much as RLlib's whole module-to-env pipeline does without
    them. The learner, in the same process or not, keeps them: the default comes back afterwards."""
    default = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(default)


def extend(buffer: InfiniteLookbackBuffer, items: list) -> None:
    """`buffer.extend(items)`: one list extend where the buffer is still a list (an episode being sampled
    into), where InfiniteLookbackBuffer.extend calls its `append` once per item."""
    if buffer.finalized:
        buffer.extend(items)
    else:
        buffer.data.extend(items)


class RoundTimers:
    """Seconds per call of what the runner times on every step (the connector pipelines, the forward pass),
    added up over a round and logged once at its end as the mean per call, under RLlib's keys and with
    `log_time`'s reduction. RLlib logs each call, with each connector timed apart and the episodes' lengths
    summed twice: a dozen metric updates per vector step, as long as the pipelines' own work here."""

    def __init__(self):
        self._timers: dict[tuple[str, ...], _Timer] = {}

    def time(self, *key: str) -> _Timer:
        timer = self._timers.get(key)
        if timer is None:
            timer = self._timers[key] = _Timer()
        return timer

    def calls(self, *key: str) -> int:
        timer = self._timers.get(key)
        return timer.calls if timer else 0

    def log(self, metrics) -> None:
        for key, timer in self._timers.items():
            metrics.log_value(key, timer.seconds / timer.calls, reduce="ema")


class _Timer:
    """A context manager adding up the seconds and calls of what runs inside it (a class, where
    contextlib's generator-based ones cost a few microseconds a step each)."""

    __slots__ = ("seconds", "calls", "_started")

    def __init__(self):
        self.seconds, self.calls, self._started = 0.0, 0, 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc_info) -> None:
        self.seconds += time.perf_counter() - self._started
        self.calls += 1


class Step:
    """One step of the vector env as it came: every field batched over the envs."""

    __slots__ = ("observations", "actions", "rewards", "terminateds", "truncateds", "outputs", "resets")

    def __init__(self, observations, actions, rewards, terminateds, truncateds, outputs, resets):
        self.observations, self.actions, self.rewards = observations, actions, rewards
        self.terminateds, self.truncateds, self.outputs, self.resets = terminateds, truncateds, outputs, resets


class BatchedEnvRunner(SingleAgentEnvRunner):
    """SingleAgentEnvRunner whose `sample(num_timesteps=...)` keeps each vector-env step batched (see the
    module's docstring); everything else is RLlib's."""

    def __init__(self, *args, **kwargs):
        # Which envs Gymnasium resets on the next step (their episode ended on the last); set by every reset.
        self._resetting: np.ndarray | None = None
        super().__init__(*args, **kwargs)
        if (self.worker_index or 0) > 0:
            # A remote runner's process is its own: what it was built with lives as long as it does, out of
            # the full collections' way (heap.py).
            freeze_built_objects()

    def _reset_envs_and_episodes(self, explore: bool):
        super()._reset_envs_and_episodes(explore)
        self._resetting = np.zeros(self.num_envs, dtype=bool)

    def _sample(self, *, num_timesteps=None, num_episodes=None, explore: bool, random_actions: bool = False,
                force_reset: bool = False):  # fmt: skip
        if num_timesteps is None or random_actions or self.module is None or not self._keeps_batches():
            return super()._sample(num_timesteps=num_timesteps, num_episodes=num_episodes, explore=explore,
                                   random_actions=random_actions, force_reset=force_reset)  # fmt: skip
        with unvalidated_distributions():
            return self._sample_batched(num_timesteps, explore, force_reset)

    def _sample_batched(self, num_timesteps: int, explore: bool, force_reset: bool):
        # The module only infers here: in eval mode for good, where RLlib's forward passes switch it to eval
        # and back to train on every call.
        if self.module.training:
            self.module.eval()
        if force_reset or self._needs_initial_reset:
            self._reset_envs_and_episodes(explore)
        # Steps not yet in the episodes, and where each env's start in them.
        steps: list[Step] = []
        starts = [0] * self.num_envs
        done_episodes = []
        ts = 0
        timers = RoundTimers()
        forward = self._module_forward(explore)
        while ts < num_timesteps:
            to_env = self._forward(forward, self._cached_to_module, explore, ts, timers)
            self._cached_to_module = None
            actions = to_env.pop(Columns.ACTIONS)
            actions_for_env = to_env.pop(Columns.ACTIONS_FOR_ENV, actions)
            results = self._step_envs(actions_for_env, timers)
            if results == ENV_STEP_FAILURE:
                # As RLlib's loop does: the envs were made again; start over from a reset, keeping the
                # episodes that had ended.
                ts, steps, starts = 0, [], [0] * self.num_envs
                self._reset_envs_and_episodes(explore)
                continue
            observations, rewards, terminateds, truncateds, _ = results
            observations = np.asarray(observations)
            self._shared_data.pop(NORMALISED_OBSERVATIONS, None)
            with timers.time(ENV_TO_MODULE_CONNECTOR, CONNECTOR_PIPELINE_TIMER):
                self._cached_to_module = self._env_to_module(
                    rl_module=self.module,
                    batch={Columns.OBS: observations},
                    episodes=self._ongoing_episodes,
                    explore=explore,
                    shared_data=self._shared_data,
                    metrics=None,  # timed here, logged once per round
                )
            # The episodes keep what the module saw: the filter's output where the experiment has one.
            stored = self._shared_data.pop(NORMALISED_OBSERVATIONS, observations)
            resets = self._resetting
            steps.append(Step(stored, actions, np.asarray(rewards), np.asarray(terminateds), np.asarray(truncateds),
                              to_env, resets))  # fmt: skip
            # An env that ended its episode on the last step was reset on this one (Gymnasium's
            # next-step autoreset): its action went nowhere and the step does not count.
            ts += self.num_envs - int(np.count_nonzero(resets))
            ended = np.logical_or(terminateds, truncateds)
            for env_index in np.flatnonzero(ended):
                episode = self._write_steps(env_index, steps, starts[env_index])
                starts[env_index] = len(steps)
                done_episodes.append(episode.to_numpy() if self.episodes_to_numpy else episode)
                self._new_episode(env_index, self._ongoing_episodes)
            self._resetting = ended

        for env_index in range(self.num_envs):
            self._write_steps(env_index, steps, starts[env_index])
        timers.log(self.metrics)
        if tries := timers.calls(ENV_STEP_TIMER):
            self._log_env_steps(metric=self._metrics_num_try_env_step, num_steps=tries)
        return self._finish_round(done_episodes, ts)

    def _step_envs(self, actions, timers: RoundTimers):
        """RLlib's `_try_env_step`, its timer kept in the round's timers and its count of tries added once
        per round: RLlib logs both on each step (together about 60 microseconds a step between MuJoCo
        steps, 2 % of a round: 357.6 against 349.6 ms on HalfCheetah). A failed step is handled as RLlib
        handles it (its except branch, written again here since RLlib's sits inside the method this
        replaces): counted, then the envs made again (the caller starts over from a reset) or, where the
        experiment does not restart them, an error."""
        try:
            with timers.time(ENV_STEP_TIMER):
                return self.env.step(actions)
        except Exception as error:
            self.metrics.log_value(NUM_ENV_STEP_FAILURES_LIFETIME, 1, reduce="lifetime_sum")
            if not self.config.restart_failed_sub_environments:
                logger.exception("An env step failed; config.fault_tolerance(restart_failed_sub_environments=True) "
                                 "would make the envs again: %s", error)  # fmt: skip
                raise RuntimeError from error
            if not isinstance(error, StepFailedRecreateEnvError):
                logger.exception("An env step failed; making the envs again: %s", error)
            self.make_env()
            return ENV_STEP_FAILURE

    def _keeps_batches(self) -> bool:
        """Whether this runner's loop serves the experiment: Box observations (one array per step), and no
        RLlib callbacks, which would watch episodes step by step."""
        if not isinstance(self.env.single_observation_space, gym.spaces.Box):
            return False
        config = self.config
        if any(
            getattr(config, f"callbacks_{which}", None)
            for which in ("on_episode_start", "on_episode_step", "on_episode_end", "on_episode_created")
        ):
            return False
        return all(type(callback) is RLlibCallback for callback in self._callbacks)

    def _forward(self, forward, to_module: dict[str, Any], explore: bool, ts: int, timers: RoundTimers):
        """The module's forward pass (`forward`, _module_forward's) and the module-to-env connectors, as
        RLlib's loop runs them."""
        runners = self.config.num_env_runners or 1
        with timers.time(RLMODULE_INFERENCE_TIMER):
            if explore:
                # RLlib's estimate of the global env steps: this runner's lifetime count times the runners.
                global_steps = (self.num_env_steps_sampled_lifetime // runners + ts) * runners
                to_env = forward(to_module, t=global_steps)
            else:
                to_env = forward(to_module)
        with timers.time(MODULE_TO_ENV_CONNECTOR, CONNECTOR_PIPELINE_TIMER):
            return self._module_to_env(
                rl_module=self.module,
                batch=to_env,
                episodes=self._ongoing_episodes,
                explore=explore,
                shared_data=self._shared_data,
                metrics=None,
            )

    def _module_forward(self, explore: bool):
        """The module's `forward_exploration` or `forward_inference`, for a round. RLlib's default PPO module
        over an MLP runs its policy's layers directly (inference.py), unless the env runners' modules are
        compiled. Otherwise TorchRLModule's switch the module to eval mode and back on every call, a walk
        over all its layers (a tenth of the forward pass here); this runner keeps it in eval mode for the
        round, so where the module has TorchRLModule's own, their `_forward_*` bodies, which RLlib's docs
        name as the methods to override."""
        direct = None if self.config.torch_compile_worker else policy_forward(self.module)
        if direct is not None:
            return direct
        name = "forward_exploration" if explore else "forward_inference"
        method = getattr(self.module, name)
        if getattr(method, "__func__", None) is getattr(TorchRLModule, name) and not self.module.training:
            return getattr(self.module, "_" + name)
        return method

    def _write_steps(self, env_index: int, steps: list[Step], start: int):
        """Env `env_index`'s steps from `start` on, into its ongoing episode. Returns the episode.

        A reset goes in by RLlib's `add_env_reset`, and so does a segment's last step by `add_env_step`
        (which sets the episode's done flags and times); the steps before it are appended to the episode's
        buffers in one `extend` each, what `add_env_step` would append one at a time."""
        episode = self._ongoing_episodes[env_index]
        space = self._env_to_module.observation_space
        if space is not None and episode.observation_space is not space:
            # The observations are the connectors' output (a filter clips them to its bounds).
            episode.observation_space = space
        segment = steps[start:]
        if segment and (segment[0].resets[env_index] or not episode.is_reset):
            episode.add_env_reset(observation=segment[0].observations[env_index], infos={})
            segment = segment[1:]
        if not segment:
            return episode
        *bulk, last = segment
        if bulk:
            extend(episode.observations, [step.observations[env_index] for step in bulk])
            extend(episode.actions, [step.actions[env_index] for step in bulk])
            extend(episode.rewards, [step.rewards[env_index] for step in bulk])
            extend(episode.infos, [{} for _ in bulk])
            outputs = {key: [step.outputs[key][env_index] for step in bulk] for key in last.outputs}
            outputs[WEIGHTS_SEQ_NO] = [self._weights_seq_no] * len(bulk)
            for key, values in outputs.items():
                if key in episode.extra_model_outputs:
                    extend(episode.extra_model_outputs[key], values)
                else:
                    episode.extra_model_outputs[key] = InfiniteLookbackBuffer(values)
            episode.t += len(bulk)
        outputs = {key: value[env_index] for key, value in last.outputs.items()}
        outputs[WEIGHTS_SEQ_NO] = self._weights_seq_no
        episode.add_env_step(
            observation=last.observations[env_index],
            action=last.actions[env_index],
            reward=last.rewards[env_index],
            infos={},
            terminated=bool(last.terminateds[env_index]),
            truncated=bool(last.truncateds[env_index]),
            extra_model_outputs=outputs,
        )
        return episode

    def _finish_round(self, done_episodes: list, ts: int) -> list:
        """The end of RLlib's loop: the episodes that ended, then the ongoing ones cut into chunks to return
        and continuations to sample into next round, and the sampling metrics."""
        self._done_episodes_for_metrics.extend(done_episodes)
        continuations = [episode.cut(len_lookback_buffer=self.config.episode_lookback_horizon)
                         for episode in self._ongoing_episodes]  # fmt: skip
        chunks = []
        for episode in self._ongoing_episodes:
            if episode.t == 0:  # just started: nothing in it yet
                continue
            episode.validate()
            self._ongoing_episodes_for_metrics[episode.id_].append(episode)
            chunks.append(episode.to_numpy() if self.episodes_to_numpy else episode)
        self._ongoing_episodes = continuations
        self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=ts)
        self._increase_sampled_metrics(ts, len(done_episodes))
        return done_episodes + chunks
