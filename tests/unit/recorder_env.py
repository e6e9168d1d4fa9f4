"""A test env that records the action it is stepped with, registered once for every test that steps it
through the project's env makers (jobs/common/rllib/envs.py)."""

import gymnasium as gym
import numpy as np

RECORDER = "ray-rl-test/Recorder-v0"


class Recorder(gym.Env):
    """Records the action it is stepped with; returns infos, as a vector env would merge them."""

    def __init__(self, low, high):
        self.action_space = gym.spaces.Box(np.array(low, dtype=np.float32), np.array(high, dtype=np.float32))
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,))
        self.seen = None

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, dtype=np.float32), {"reset": True}

    def step(self, action):
        self.seen = np.asarray(action)
        return np.zeros(1, dtype=np.float32), 0.0, False, False, {"x_position": 1.0}


gym.register(id=RECORDER, entry_point=Recorder)
