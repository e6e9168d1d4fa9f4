"""BatchedEnvRunner (jobs/common/rllib/env_runner.py) returns what RLlib's own SingleAgentEnvRunner returns
from the same seed and config, round after round: the same episode chunks (steps, observations, actions,
rewards, model outputs, done flags, where each starts and how rounds continue them), with episodes ending
mid-round (CartPole's terminations, Pendulum's time limit), with and without the observation filter, and
the same episode metrics. In-process, without Ray."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from bench.sampling import rllib_filter_pipeline
from jobs.common.rllib.env_runner import BatchedEnvRunner, unvalidated_distributions
from jobs.common.rllib.ppo import build_ppo_config
from jobs.common.schema.experiment import parse_experiment

FLAKY = "ray-rl-test/Flaky-v0"


class Flaky(gym.Env):
    """Ten-step episodes of a counter; the envs' 25th step in all raises once per test (`Flaky.failures`)."""

    steps_taken = 0
    failures = 1

    def __init__(self):
        self.observation_space = gym.spaces.Box(-100.0, 100.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        Flaky.steps_taken += 1
        if Flaky.steps_taken == 25 and Flaky.failures:
            Flaky.failures -= 1
            raise RuntimeError("the simulator crashed")
        self.t += 1
        observation = np.array([self.t, float(action)], dtype=np.float32)
        return observation, 1.0 + action, self.t >= 10, False, {}


gym.register(id=FLAKY, entry_point=Flaky)

COLUMNS = ("obs", "actions", "rewards", "action_logp", "action_dist_inputs", "weights_seq_no")


def config_for(env: str, num_envs: int, observation_filter: str = "NoFilter"):
    experiment = parse_experiment(
        {"name": "t", "env": env, "seed": 5, "stop": {"iterations": 1},
         "env_runners": {"num_env_runners": 0, "num_envs_per_env_runner": num_envs,
                         "observation_filter": observation_filter},
         "training": {"train_batch_size": 256, "minibatch_size": 64},
         "model": {"fcnet_hiddens": [16, 16]}}
    ).experiment  # fmt: skip
    return build_ppo_config(experiment, use_groups=False)


def chunk_record(episode) -> dict:
    return {
        "len": len(episode),
        "t_started": episode.t_started,
        "terminated": bool(episode.is_terminated),
        "truncated": bool(episode.is_truncated),
        "obs": episode.get_observations(),
        "actions": episode.get_actions(),
        "rewards": episode.get_rewards(),
        "action_logp": episode.get_extra_model_outputs("action_logp"),
        "action_dist_inputs": episode.get_extra_model_outputs("action_dist_inputs"),
        "weights_seq_no": episode.get_extra_model_outputs("weights_seq_no"),
        # The lookback a continuing chunk carries from the round before.
        "lookback_obs": episode.get_observations(-1, neg_index_as_lookback=True) if episode.t_started else None,
    }


def sample_rounds(runner_cls, config, rounds: int, steps: int):
    """Each round's chunks, which chunk of the round before each one continues, and the final metrics."""
    runner = runner_cls(config=config)  # seeds torch and numpy from the config's seed
    try:
        records, continues, previous_ids = [], [], []
        for _ in range(rounds):
            episodes = runner.sample(num_timesteps=steps)
            records.append([chunk_record(episode) for episode in episodes])
            continues.append([previous_ids.index(e.id_) if e.id_ in previous_ids else None for e in episodes])
            previous_ids = [episode.id_ for episode in episodes]
        metrics = runner.get_metrics()
        return records, continues, metrics
    finally:
        runner.stop()


def assert_same_chunks(ours, theirs, exact: bool = True):
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs, strict=True):
        assert {k: mine[k] for k in ("len", "t_started", "terminated", "truncated")} == \
            {k: other[k] for k in ("len", "t_started", "terminated", "truncated")}  # fmt: skip
        for key in COLUMNS:
            assert np.asarray(mine[key]).dtype == np.asarray(other[key]).dtype, key
            if exact:
                np.testing.assert_array_equal(mine[key], other[key], err_msg=key)
            else:
                np.testing.assert_allclose(mine[key], other[key], rtol=1e-5, atol=1e-6, err_msg=key)
        if other["lookback_obs"] is not None:
            np.testing.assert_allclose(mine["lookback_obs"], other["lookback_obs"], rtol=0 if exact else 1e-5)


@pytest.mark.parametrize(
    ("env", "num_envs", "observation_filter", "steps"),
    [("CartPole-v1", 4, "NoFilter", 100), ("CartPole-v1", 3, "MeanStdFilter", 90),
     ("Pendulum-v1", 3, "NoFilter", 150), ("Pendulum-v1", 2, "MeanStdFilter", 120)],
)  # fmt: skip
def test_batched_runner_returns_what_rllibs_runner_returns_round_after_round(env, num_envs, observation_filter, steps):
    config = config_for(env, num_envs, observation_filter)
    assert config.env_runner_cls is BatchedEnvRunner
    rounds = 6
    ours, our_continues, our_metrics = sample_rounds(BatchedEnvRunner, config, rounds, steps)
    theirs, their_continues, their_metrics = sample_rounds(SingleAgentEnvRunner, config, rounds, steps)
    assert our_continues == their_continues
    ended = 0
    for mine, other in zip(ours, theirs, strict=True):
        assert_same_chunks(mine, other)
        ended += sum(chunk["terminated"] or chunk["truncated"] for chunk in other)
    assert ended >= num_envs  # episodes ended mid-round in every case (Pendulum's limit is 200 steps)
    for key in ("episode_return_mean", "episode_len_mean", "num_episodes", "num_env_steps_sampled",
                "num_env_steps_sampled_lifetime"):  # fmt: skip
        assert float(our_metrics[key]) == pytest.approx(float(their_metrics[key])), key
    # The timers RLlib's loop logs on each step, here logged once per round: seconds per call.
    for timer in (("rlmodule_inference_timer",), ("env_step_timer",),
                  ("env_to_module_connector", "connector_pipeline_timer"),
                  ("module_to_env_connector", "connector_pipeline_timer")):  # fmt: skip
        mine, other = timer_value(our_metrics, timer), timer_value(their_metrics, timer)
        assert 0 < mine < 0.05 and 0 < other < 0.05, (timer, mine, other)


def test_the_prometheus_counts_of_env_steps_and_tries_are_rllibs():
    config = config_for("Pendulum-v1", 4)
    counted = []
    for runner_cls in (BatchedEnvRunner, SingleAgentEnvRunner):
        runner, counts = runner_cls(config=config), {}
        log_env_steps = runner._log_env_steps

        def counting(metric, num_steps, counts=counts, log_env_steps=log_env_steps):
            counts[metric.info["name"]] = counts.get(metric.info["name"], 0) + num_steps
            log_env_steps(metric=metric, num_steps=num_steps)

        runner._log_env_steps = counting
        try:
            for _ in range(3):
                runner.sample(num_timesteps=300)  # Pendulum's episodes end at 200 steps: resets mid-round
        finally:
            runner.stop()
        counted.append(counts)
    ours, theirs = counted
    assert ours == theirs and len(theirs) == 2, (ours, theirs)


def timer_value(metrics: dict, key: tuple[str, ...]) -> float:
    for part in key:
        metrics = metrics[part]
    return float(metrics.peek() if hasattr(metrics, "peek") else metrics)


@pytest.mark.parametrize(("env", "num_envs", "steps"), [("CartPole-v1", 3, 90), ("Pendulum-v1", 4, 160)])
def test_batched_runner_and_filter_return_what_rllibs_runner_and_its_own_filter_return(env, num_envs, steps):
    config = config_for(env, num_envs, "MeanStdFilter")
    ours, our_continues, _ = sample_rounds(BatchedEnvRunner, config, 4, steps)
    rllibs = config_for(env, num_envs, "MeanStdFilter").env_runners(env_to_module_connector=rllib_filter_pipeline)
    theirs, their_continues, _ = sample_rounds(SingleAgentEnvRunner, rllibs, 4, steps)
    assert our_continues == their_continues
    for mine, other in zip(ours, theirs, strict=True):
        assert_same_chunks(mine, other, exact=False)  # the statistics summed in another order


def test_after_an_env_fails_the_batched_runner_starts_over_as_rllibs_runner_does():
    config = config_for(FLAKY, 3).fault_tolerance(restart_failed_sub_environments=True)
    results = []
    for runner_cls in (BatchedEnvRunner, SingleAgentEnvRunner):
        Flaky.steps_taken, Flaky.failures = 0, 1
        results.append(sample_rounds(runner_cls, config, 3, 30))
        assert Flaky.failures == 0  # the env did fail, in the first round
    (ours, our_continues, _), (theirs, their_continues, _) = results
    assert our_continues == their_continues
    for mine, other in zip(ours, theirs, strict=True):
        assert_same_chunks(mine, other)
    # The round the env failed in still returned its 30 steps, from the envs made again.
    assert sum(chunk["len"] for chunk in ours[0]) >= 30


@pytest.mark.parametrize("runner_cls", [BatchedEnvRunner, SingleAgentEnvRunner])
def test_an_env_that_fails_stops_the_runner_where_it_is_not_made_again(runner_cls):
    config = config_for(FLAKY, 3).fault_tolerance(restart_failed_sub_environments=False)
    Flaky.steps_taken, Flaky.failures = 0, 1
    runner = runner_cls(config=config)
    try:
        with pytest.raises(RuntimeError) as raised:
            runner.sample(num_timesteps=30)
        assert "the simulator crashed" in str(raised.value.__cause__)
        assert runner.metrics.peek("num_env_step_failures") == 1
    finally:
        runner.stop()


def test_batched_runner_stores_the_filters_output_in_its_episodes():
    config = config_for("Pendulum-v1", 2, "MeanStdFilter")
    runner = BatchedEnvRunner(config=config)
    try:
        episodes = runner.sample(num_timesteps=200)
        observations = np.concatenate([episode.get_observations() for episode in episodes])
        raw_bound = runner.env.single_observation_space.high
        # Normalised: within the filter's clip and no longer on the env's scale (Pendulum's speed runs to 8).
        assert np.all(np.abs(observations) <= 10.0)
        assert np.abs(observations).max(axis=0)[2] < raw_bound[2]
        assert episodes[0].observation_space == runner._env_to_module.observation_space
    finally:
        runner.stop()


STEPS_SEEN = []


class StepCounter(RLlibCallback):
    def on_episode_step(self, **kwargs):
        STEPS_SEEN.append(1)


@pytest.mark.parametrize("how", ["function", "class"])
def test_batched_runner_takes_rllibs_loop_where_callbacks_watch_episodes_step_by_step(how):
    STEPS_SEEN.clear()
    steps_seen = STEPS_SEEN
    config = config_for("CartPole-v1", 2)
    if how == "function":
        config.callbacks(on_episode_step=lambda **kwargs: steps_seen.append(1))
    else:
        config.callbacks(callbacks_class=StepCounter)
    runner = BatchedEnvRunner(config=config)
    try:
        runner.sample(num_timesteps=40)
    finally:
        runner.stop()
    assert len(steps_seen) >= 40  # RLlib's loop calls it for every env step; the batched one never


def test_batched_runner_takes_rllibs_loop_for_whole_episodes_and_random_actions():
    config = config_for("CartPole-v1", 2)
    runner = BatchedEnvRunner(config=config)
    try:
        episodes = runner.sample(num_episodes=3)
        assert len(episodes) >= 3 and all(episode.is_done for episode in episodes)
        assert sum(len(e) for e in runner.sample(num_timesteps=50, random_actions=True)) >= 50
    finally:
        runner.stop()


def test_distributions_are_unchecked_only_while_the_runner_samples():
    checked = torch.distributions.Distribution._validate_args
    seen = []
    config = config_for("Pendulum-v1", 2)
    runner = BatchedEnvRunner(config=config)
    try:
        forward = runner._forward  # the forward pass and the module-to-env pipeline, on every step

        def watched(*args, **kwargs):
            seen.append(torch.distributions.Distribution._validate_args)
            return forward(*args, **kwargs)

        runner._forward = watched
        runner.sample(num_timesteps=20)
    finally:
        runner.stop()
    assert seen and not any(seen)
    assert torch.distributions.Distribution._validate_args == checked  # the learner keeps its checks
    with pytest.raises(RuntimeError), unvalidated_distributions():
        raise RuntimeError("a failed step")
    assert torch.distributions.Distribution._validate_args == checked
