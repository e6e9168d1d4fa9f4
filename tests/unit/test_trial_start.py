"""Where a (re)started sweep trial continues from (jobs/common/sweeps/trial.py choose_start)."""

from jobs.common.run.state import RunState
from jobs.common.sweeps.trial import choose_start


def pointer(trial_id: str, iteration: int) -> RunState:
    return RunState(trial_id=trial_id, iteration=iteration, checkpoint=f"s3://b/s/trials/{trial_id}/{iteration}")


def test_a_new_trial_starts_from_scratch():
    assert choose_start(None, None, "a") is None


def test_own_pointer_alone_or_tunes_checkpoint_alone():
    assert choose_start(pointer("a", 4), None, "a") == pointer("a", 4)
    assert choose_start(None, pointer("a", 2), "a") == pointer("a", 2)


def test_the_newer_of_tune_and_the_own_pointer_wins():
    # Tune's experiment state lags when the driver dies: the pointer is newer.
    assert choose_start(pointer("a", 6), pointer("a", 4), "a").iteration == 6
    # The pointer is never behind Tune, but if it were, Tune's newer checkpoint would win.
    assert choose_start(pointer("a", 2), pointer("a", 4), "a").iteration == 4


def test_a_checkpoint_of_another_trial_is_pbts_exploit_and_wins_even_if_older():
    chosen = choose_start(pointer("a", 10), pointer("b", 5), "a")
    assert chosen.trial_id == "b" and chosen.iteration == 5
