"""The env runners' own pipelines, vector env and env runner (jobs/common/rllib/connectors.py, envs.py,
env_runner.py) sample exactly what RLlib's defaults would: the same observations, actions, log-probs and
rewards from the same seed, on discrete and on bounded continuous actions; the envs reach their own
bounds and give no step infos. In-process, without Ray."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.connectors.common import TensorToNumpy
from ray.rllib.connectors.module_to_env import GetActions
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.utils.spaces.space_utils import unsquash_action

from jobs.common.rllib import envs
from jobs.common.rllib.connectors import SampleActions, StackObservations
from jobs.common.rllib.ppo import build_ppo_config
from jobs.common.schema.experiment import parse_experiment
from tests.unit.recorder_env import RECORDER


def experiment(env: str, num_envs: int):
    return parse_experiment(
        {"name": "t", "env": env, "seed": 3, "stop": {"iterations": 1},
         "env_runners": {"num_env_runners": 0, "num_envs_per_env_runner": num_envs},
         "training": {"train_batch_size": 256, "minibatch_size": 64},
         "model": {"fcnet_hiddens": [16, 16]}}
    ).experiment  # fmt: skip


def with_rllib_defaults(config):
    """The same config with RLlib's own env runner, its default pipelines and its own sync vector env."""
    return config.env_runners(
        env_runner_cls=SingleAgentEnvRunner,
        add_default_connectors_to_env_to_module_pipeline=True,
        env_to_module_connector=None,
        add_default_connectors_to_module_to_env_pipeline=True,
        module_to_env_connector=None,
        gym_env_vectorize_mode="sync",
    )


def sampled(config, steps: int) -> list[dict[str, np.ndarray]]:
    runner = config.env_runner_cls(config=config)  # seeds torch and numpy from the config's seed
    try:
        episodes = runner.sample(num_timesteps=steps, random_actions=False)
        return [
            {"obs": episode.get_observations(), "actions": episode.get_actions(), "rewards": episode.get_rewards(),
             "logp": episode.get_extra_model_outputs("action_logp"),
             "dist": episode.get_extra_model_outputs("action_dist_inputs"), "infos": episode.get_infos()}
            for episode in episodes
        ]  # fmt: skip
    finally:
        runner.stop()


@pytest.mark.parametrize(("env", "num_envs"), [("CartPole-v1", 4), ("Pendulum-v1", 3)])
def test_our_pipelines_sample_what_rllibs_defaults_sample_from_the_same_seed(env, num_envs):
    config = build_ppo_config(experiment(env, num_envs), use_groups=False)
    assert config.gym_env_vectorize_mode == "vector_entry_point"
    assert not config.add_default_connectors_to_env_to_module_pipeline
    ours = sampled(config, 300)
    defaults = sampled(with_rllib_defaults(build_ppo_config(experiment(env, num_envs), use_groups=False)), 300)
    assert len(ours) == len(defaults) >= num_envs
    for mine, theirs in zip(ours, defaults, strict=True):
        for key in ("obs", "actions", "rewards", "logp", "dist"):
            assert mine[key].dtype == theirs[key].dtype, key
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
        assert all(info == {} for info in mine["infos"])  # ours drop step infos; RLlib's keep Pendulum's {}


def test_observations_of_nested_spaces_are_batched_as_rllib_batches_them():
    class Episode:
        def __init__(self, observation):
            self.observation = observation

        def get_observations(self, index):
            return self.observation

    nested = [Episode({"position": np.full(2, i, dtype=np.float64), "flag": np.int64(i)}) for i in range(3)]
    batch = StackObservations()(rl_module=None, batch={}, episodes=nested)["obs"]
    assert batch["position"].shape == (3, 2) and str(batch["position"].dtype) == "torch.float32"
    assert batch["flag"].tolist() == [0, 1, 2]


@pytest.mark.parametrize(("low", "high"), [([-1, -1], [1, 1]), ([-2, 0], [2, 10])])
def test_the_env_runners_vector_env_maps_each_envs_actions_as_rllibs_normalize_actions_would(low, high):
    vector = envs.create(RECORDER, {"low": low, "high": high, envs.NUM_ENVS: 3})
    assert vector.num_envs == 3
    assert vector.single_action_space == gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    _, infos = vector.reset(seed=0)
    assert infos == {}
    recorders = [env.unwrapped for env in vector.unwrapped.envs]
    rng = np.random.default_rng(0)
    for step in range(20):
        actions = rng.normal(0, 2, size=(3, 2)).astype(np.float32)
        actions[0] = [5.0, -5.0] if step == 0 else actions[0]  # beyond [-1, 1]: clipped to the bounds
        _, _, _, _, infos = vector.step(actions)
        assert infos == {}
        for recorder, action in zip(recorders, actions, strict=True):
            expected = unsquash_action(action, recorder.action_space)
            assert np.allclose(recorder.seen, expected, atol=1e-5), (action, recorder.seen, expected)


def test_one_env_still_comes_from_the_same_creator_where_no_vector_is_asked_for():
    env = envs.create("Pendulum-v1", {})
    assert isinstance(env, gym.Env) and env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
    assert isinstance(envs.create("CartPole-v1", {envs.NUM_ENVS: 2}), gym.vector.VectorEnv)


class InPlaceClipper(gym.Env):
    """An unbounded action space, and an env that clips the action it is given in place."""

    action_space = gym.spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,))

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        np.clip(action, -0.5, 0.5, out=action)
        return np.zeros(1, dtype=np.float32), 0.0, False, False, {}


def test_an_env_that_changes_its_action_in_place_leaves_the_batch_the_runner_stores_alone():
    gym.register(id="ray-rl-test/InPlaceClipper-v0", entry_point=InPlaceClipper)
    vector = envs.create("ray-rl-test/InPlaceClipper-v0", {envs.NUM_ENVS: 2})
    vector.reset(seed=0)
    actions = np.array([[3.0, -3.0], [0.1, 0.2]], dtype=np.float32)
    sent = actions.copy()
    vector.step(actions)
    np.testing.assert_array_equal(actions, sent)


def test_env_config_keys_reach_each_env_not_the_vector_env():
    vector = envs.create("CartPole-v1", {"max_episode_steps": 3, envs.NUM_ENVS: 2})
    vector.reset(seed=0)
    for _ in range(2):
        _, _, _, truncated, _ = vector.step(np.zeros(2, dtype=np.int64))
        assert not truncated.any()
    _, _, terminated, truncated, _ = vector.step(np.zeros(2, dtype=np.int64))
    assert (truncated | terminated).all()  # the third step of each env ends it


@pytest.mark.parametrize("env", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("explore", [True, False])
def test_sample_actions_gives_what_rllibs_get_actions_then_tensor_to_numpy_give_from_the_same_generator(env, explore):
    config = build_ppo_config(experiment(env, 4), use_groups=False)
    runner = config.env_runner_cls(config=config)
    try:
        module = runner.module
        observations = torch.randn(64, *runner.env.single_observation_space.shape)
        with torch.no_grad():
            outputs = module.forward_exploration({Columns.OBS: observations})
        # Spread out, as a trained policy's are (an untrained Gaussian has all its log-stds at 0).
        outputs[Columns.ACTION_DIST_INPUTS] += torch.randn_like(outputs[Columns.ACTION_DIST_INPUTS])

        def run(connectors, seed=7):
            torch.manual_seed(seed)
            batch = {key: value.clone() for key, value in outputs.items()}
            for connector in connectors:
                batch = connector(rl_module=module, batch=batch, episodes=runner._ongoing_episodes, explore=explore)
            return batch

        ours, theirs = run([SampleActions()]), run([GetActions(), TensorToNumpy()])
        other_seed = run([SampleActions()], seed=8)
    finally:
        runner.stop()
    assert set(ours) == set(theirs) == {Columns.ACTION_DIST_INPUTS, Columns.ACTIONS, Columns.ACTION_LOGP}
    for key, value in theirs.items():
        assert isinstance(ours[key], np.ndarray) and ours[key].dtype == value.dtype, key
        np.testing.assert_array_equal(ours[key], value, err_msg=key)
    # Exploring, the actions are sampled (another seed, other actions); else the distribution's mode.
    assert np.array_equal(other_seed[Columns.ACTIONS], ours[Columns.ACTIONS]) is not explore
