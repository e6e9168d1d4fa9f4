"""`env_runners.observation_filter: MeanStdFilter`: RLlib's MeanStdFilter in front of the env runners'
pipeline, its statistics in every checkpoint, and jobs.evaluate normalising with them (frozen) as the
policy saw its observations in training. The checkpoints come from a real (small) training in a
process of its own (observation_filter_scenario.py)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from ray.rllib.connectors.env_to_module import EnvToModulePipeline
from ray.rllib.utils.filter import RunningStat

from jobs.common.errors import UserError
from jobs.common.rllib import connectors
from jobs.common.schema.experiment import parse_experiment
from jobs.common.storage import layout
from jobs.evaluate import observation_normaliser, play
from tests.conftest import REPO_ROOT


def experiment(**top):
    return parse_experiment({"name": "t", "env": "CartPole-v1", "stop": {"iterations": 1}, **top}).experiment


def test_the_filter_is_off_unless_set_and_rllibs_old_top_level_key_still_sets_it():
    assert experiment().env_runners.observation_filter == "NoFilter"
    assert experiment(observation_filter="MeanStdFilter").env_runners.observation_filter == "MeanStdFilter"
    with pytest.raises(UserError, match=r"'env_runners.observation_filter' = 'MeanStd'"):
        experiment(env_runners={"observation_filter": "MeanStd"})


def test_the_env_runners_pipeline_normalises_before_it_stacks():
    filtered = [type(piece).__name__ for piece in connectors.env_to_module(observation_filter="MeanStdFilter")]
    assert filtered == ["MeanStdFilter", "StackObservations"]
    assert [type(piece).__name__ for piece in connectors.env_to_module()] == ["StackObservations"]


def test_batched_statistics_equal_rllibs_pushed_one_observation_at_a_time():
    rng = np.random.default_rng(0)
    rows = [rng.normal(loc=3.0, scale=2.0, size=(n, 5)) for n in (1, 7, 64, 64)]
    ours, theirs = RunningStat((5,)), RunningStat((5,))
    for batch in rows:
        connectors.push_rows(ours, batch)
        for row in batch:
            theirs.push(row)
    assert ours.num_pushes == theirs.num_pushes == 136 and ours.num_pushes_delta == theirs.num_pushes_delta
    for key in ("mean_array", "mean_delta_array", "sum_sq_diff_array", "sum_sq_diff_delta_array"):
        np.testing.assert_allclose(getattr(ours, key), getattr(theirs, key), rtol=1e-10, err_msg=key)


def test_the_batched_filter_normalises_as_rllibs_does_one_observation_at_a_time_and_keeps_its_state():
    import gymnasium as gym
    from ray.rllib.connectors.env_to_module import MeanStdFilter as RLlibMeanStdFilter

    space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    ours, theirs = connectors.MeanStdFilter(), RLlibMeanStdFilter()
    for piece in (ours, theirs):
        piece.input_observation_space = space
    theirs.get_state()  # makes RLlib's filter's statistics, which this test pushes into one row at a time
    rng = np.random.default_rng(1)
    # From the first observation on (no statistics yet), a batch of one, and values far off the mean.
    batches = [rng.normal(loc=5.0, scale=4.0, size=(n, 3)) for n in (64, 1, 64, 64)]
    batches[-1][2] = 1_000.0
    for batch in batches:
        normalised = ours(rl_module=None, batch={"obs": batch.copy()}, episodes=[])["obs"]
        one_at_a_time = np.stack([theirs._filters[None](row) for row in batch])
        np.testing.assert_allclose(normalised, one_at_a_time, rtol=1e-7, atol=1e-9)
    assert np.abs(normalised).max() == 10.0  # clipped, as RLlib clips
    # Same state (RLlib's format, under RLlib's name), so checkpoints and runner syncs read both.
    ours_stats, theirs_stats = (RunningStat.from_state(piece.get_state()[None]["running_stats"][0])
                                for piece in (ours, theirs))  # fmt: skip
    np.testing.assert_allclose(ours_stats.mean, theirs_stats.mean, rtol=1e-10)
    np.testing.assert_allclose(ours_stats.std, theirs_stats.std, rtol=1e-6)
    assert type(ours).__name__ == "MeanStdFilter"
    # The driver merges its runners' statistics with RLlib's merge_states, ours and RLlib's alike.
    driver = connectors.MeanStdFilter()
    driver.input_observation_space = space
    merged = RunningStat.from_state(
        driver.merge_states([ours.get_state(), theirs.get_state()])[None]["running_stats"][0]
    )
    assert merged.n == 2 * sum(len(batch) for batch in batches)
    np.testing.assert_allclose(merged.mean, np.concatenate(batches * 2).mean(axis=0), rtol=1e-10)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("filter-checkpoints")
    done = subprocess.run([sys.executable, "-m", "tests.unit.observation_filter_scenario", str(folder)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_evaluate_normalises_with_the_checkpoints_statistics_and_leaves_them_as_they_are(checkpoints):
    import gymnasium as gym

    checkpoint = checkpoints["MeanStdFilter"]
    state = EnvToModulePipeline.from_checkpoint(layout.Checkpoint(checkpoint).env_to_module).get_state()
    stats = RunningStat.from_state(state["MeanStdFilter"][None]["running_stats"][0])
    assert stats.n >= 400  # every observation of two iterations of 200 steps went through the filter
    space = gym.make("CartPole-v1").observation_space
    normalise = observation_normaliser(checkpoint, space)
    observation = np.array([0.5, -0.3, 0.05, 0.4], dtype=np.float32)
    expected = np.clip((observation - stats.mean) / (stats.std + 1e-8), -10.0, 10.0)
    for _ in range(3):  # the same each time: evaluation does not move the statistics
        np.testing.assert_allclose(normalise(observation), expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(expected, observation, atol=1e-3)


def test_evaluate_feeds_the_policy_every_observation_normalised(checkpoints, monkeypatch):
    import jobs.evaluate

    seen = []

    def spied(checkpoint, space):
        normalise = observation_normaliser(checkpoint, space)
        return lambda observation: seen.append(observation) or normalise(observation)

    monkeypatch.setattr(jobs.evaluate, "observation_normaliser", spied)
    played = play(checkpoints["MeanStdFilter"], "CartPole-v1", {}, episodes=2, max_frames=0,
                  observation_filter="MeanStdFilter")  # fmt: skip
    assert len(played["returns"]) == 2 and len(seen) == sum(played["lengths"])
    seen.clear()
    play(checkpoints["NoFilter"], "CartPole-v1", {}, episodes=1, max_frames=0)
    assert seen == []  # not where the experiment did not normalise


def test_a_checkpoint_without_statistics_is_refused_by_name(checkpoints):
    import gymnasium as gym

    refused = r"normalises observations, but .*env_to_module_connector holds no MeanStdFilter"
    with pytest.raises(UserError, match=refused):
        observation_normaliser(checkpoints["NoFilter"], gym.make("CartPole-v1").observation_space)
