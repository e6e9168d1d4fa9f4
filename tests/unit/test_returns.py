"""The return window: the mean of the last N episodes, not of one iteration's few."""

from jobs.common.run.returns import ReturnWindow


def result(mean, episodes):
    return {"env_runners": {"episode_return_mean": mean, "num_episodes": episodes}}


def test_mean_of_the_last_n_episodes_weighted_by_episode_count():
    window = ReturnWindow(episodes=10)
    assert window.add(result(20.0, 8)) == 20.0
    # 2 episodes of 200 and the newest 8 of the earlier 8... only 8 exist: 8 x 20 + 2 x 200 over 10.
    assert window.add(result(200.0, 2)) == (8 * 20 + 2 * 200) / 10
    # A lucky single episode does not carry the mean on its own.
    assert window.add(result(500.0, 1)) == (1 * 500 + 2 * 200 + 7 * 20) / 10


def test_iterations_without_episodes_change_nothing_and_old_ones_are_dropped():
    window = ReturnWindow(episodes=4)
    window.add(result(10.0, 4))
    window.add(result(float("nan"), 0))
    assert window.mean() == 10.0
    window.add(result(30.0, 4))
    assert window.mean() == 30.0
    assert window.history == [[30.0, 4]]


def test_window_resumes_from_saved_history():
    first = ReturnWindow(episodes=6)
    first.add(result(10.0, 3))
    first.add(result(40.0, 3))
    resumed = ReturnWindow(episodes=6, history=first.history)
    assert resumed.mean() == 25.0
    assert ReturnWindow(episodes=6).mean() is None
