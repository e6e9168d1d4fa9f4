"""How every run makes its environment: the Gymnasium env, its continuous actions rescaled and clipped
inside the env, the same way for training, sweep trials and evaluation.

The policy acts in [-1, 1] on every dimension of a bounded Box action space; the env maps that onto
the space's bounds and clips (UnitActions): what RLlib's default `normalize_actions` does
(ray.rllib.utils.spaces.space_utils.unsquash_action), but once per env step in numpy instead of per
env and action in RLlib's module-to-env connector, which deep-copied, unbatched and tree-mapped every
action (a fifth of an env runner's time on MuJoCo with 32 envs; bench/throughput.py). So RLlib's own
normalising and clipping are off (`normalize_actions=False, clip_actions=False`), and jobs.evaluate
steps the same env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

# Tune's env registry holds the creator; env runners, learners and trial actors fetch it by this name.
PREFIX = "ray-rl/"


def make_env(env_id: str, env_config: dict[str, Any] | None = None, **kwargs) -> gym.Env:
    """`gym.make(env_id)`, its actions in [-1, 1] where the action space is a bounded Box."""
    env = gym.make(env_id, **dict(env_config or {}), **kwargs)
    space = env.action_space
    if isinstance(space, gym.spaces.Box) and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
        env = UnitActions(env)
    return env


class UnitActions(gym.ActionWrapper):
    """Actions in [-1, 1] (the space the policy sees), mapped linearly onto the env's bounds, then clipped."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        inner = env.action_space
        self.low, self.high = inner.low.astype(np.float64), inner.high.astype(np.float64)
        self.identity = bool(np.all(self.low == -1.0) and np.all(self.high == 1.0))
        self.action_space = gym.spaces.Box(-1.0, 1.0, inner.shape, dtype=inner.dtype)

    def action(self, action):
        if not self.identity:
            action = self.low + (np.asarray(action) + 1.0) * (self.high - self.low) / 2.0
        return np.clip(action, self.low, self.high).astype(self.env.action_space.dtype, copy=False)


def registered(env_id: str) -> str:
    """Register `env_id`'s creator with Tune (idempotent) and return the name RLlib's config takes."""
    from ray.tune.registry import register_env

    name = PREFIX + env_id
    register_env(name, lambda context: make_env(env_id, dict(context)))
    return name
