"""How every run makes its environment: the Gymnasium env, its continuous actions rescaled and clipped
inside the env, the same way for training, sweep trials and evaluation.

The policy acts in [-1, 1] on every dimension of a bounded Box action space; the env maps that onto
the space's bounds and clips: what RLlib's default `normalize_actions` does
(ray.rllib.utils.spaces.space_utils.unsquash_action), but in numpy on the whole batch instead of per
env and action in RLlib's module-to-env connector, which deep-copied, unbatched and tree-mapped every
action (a fifth of an env runner's time on MuJoCo with 32 envs; bench/throughput.py). So RLlib's own
normalising and clipping are off (`normalize_actions=False, clip_actions=False`).

Env runners get a vector env of their own (RLlib's `vector_entry_point` mode): Gymnasium's sync
vector env, the action mapping once per step for all its envs (UnitVectorActions), and no per-step
infos: nothing in PPO reads them, yet the vector env merged every env's info dict into arrays each
step, RLlib split them back into dicts and stored and shipped them with the episodes (on HalfCheetah
4 % of an env runner's time, a quarter of the bytes it sends and 40 of the 45 ms it took to pickle
them). jobs.evaluate steps one env (make_env) with the same mapping (UnitActions) and its infos.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

# Tune's env registry holds the creator; env runners, learners and trial actors fetch it by this name.
PREFIX = "ray-rl/"
# What RLlib adds to the creator's context where it asks for a vector env (gym_env_vectorize_mode).
NUM_ENVS = "num_envs"


class UnitBounds:
    """The map from [-1, 1] onto a bounded Box's bounds, then a clip to them, on one action or a batch."""

    def __init__(self, space: gym.spaces.Box):
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.identity = bool(np.all(self.low == -1.0) and np.all(self.high == 1.0))
        self.dtype = space.dtype
        # What the policy acts in.
        self.unit_space = gym.spaces.Box(-1.0, 1.0, space.shape, dtype=space.dtype)

    @staticmethod
    def applies_to(space: gym.Space) -> bool:
        if not isinstance(space, gym.spaces.Box):
            return False
        return bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))

    def to_env(self, action):
        if not self.identity:
            action = self.low + (np.asarray(action) + 1.0) * (self.high - self.low) / 2.0
        return np.clip(action, self.low, self.high).astype(self.dtype, copy=False)


class UnitActions(gym.ActionWrapper):
    """One env's actions in [-1, 1] (the space the policy sees), mapped onto the env's bounds, then clipped."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.bounds = UnitBounds(env.action_space)
        self.action_space = self.bounds.unit_space

    def action(self, action):
        return self.bounds.to_env(action)


class UnitVectorActions(gym.vector.VectorActionWrapper):
    """UnitActions for a vector env: the whole batch of actions in one numpy expression."""

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        self.bounds = UnitBounds(env.single_action_space)
        self.single_action_space = self.bounds.unit_space
        self.action_space = batch_space(self.single_action_space, env.num_envs)

    def actions(self, actions):
        return self.bounds.to_env(actions)


class CopiedVectorActions(gym.vector.VectorActionWrapper):
    """A copy of the batch of actions for the envs: the env runner stores the rows of the array it steps
    the envs with in its episodes, and an env that changed its action in place would change them too
    (UnitVectorActions makes its own copy)."""

    def actions(self, actions):
        return copy.deepcopy(actions)


class NoInfos(gym.Wrapper):
    """An env that returns empty info dicts from reset and step (see the module's docstring for why
    training drops them)."""

    def reset(self, **kwargs):
        observation, _ = self.env.reset(**kwargs)
        return observation, {}

    def step(self, action):
        observation, reward, terminated, truncated, _ = self.env.step(action)
        return observation, reward, terminated, truncated, {}


def make_env(env_id: str, env_config: dict[str, Any] | None = None, **kwargs) -> gym.Env:
    """`gym.make(env_id)`, its actions in [-1, 1] where the action space is a bounded Box."""
    env = gym.make(env_id, **dict(env_config or {}), **kwargs)
    return UnitActions(env) if UnitBounds.applies_to(env.action_space) else env


def make_vector_env(env_id: str, num_envs: int, env_config: dict[str, Any] | None = None) -> gym.vector.VectorEnv:
    """`num_envs` copies of `gym.make(env_id, **env_config)` in Gymnasium's sync vector env, without infos,
    their actions in [-1, 1] where the action space is a bounded Box. (Not `gym.make_vec`: it would take
    env_config's keys that share a name with its own parameters, such as `vector_kwargs`, for itself.)"""
    config = dict(env_config or {})
    envs = gym.vector.SyncVectorEnv([lambda: NoInfos(gym.make(env_id, **config)) for _ in range(num_envs)])
    if UnitBounds.applies_to(envs.single_action_space):
        return UnitVectorActions(envs)
    return CopiedVectorActions(envs)


def create(env_id: str, context: dict[str, Any]) -> gym.Env | gym.vector.VectorEnv:
    """The creator RLlib calls: a vector env where its context asks for `num_envs` (env runners), else one env."""
    env_config = dict(context)
    if NUM_ENVS in env_config:
        return make_vector_env(env_id, int(env_config.pop(NUM_ENVS)), env_config)
    return make_env(env_id, env_config)


def registered(env_id: str) -> str:
    """Register `env_id`'s creator with Tune (idempotent) and return the name RLlib's config takes."""
    from ray.tune.registry import register_env

    name = PREFIX + env_id
    register_env(name, lambda context: create(env_id, context))
    return name
