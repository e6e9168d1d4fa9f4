"""The processes that train freeze what they built out of the full garbage collections' way
(jobs/common/rllib/heap.py): the trainer's algorithm and every remote env runner, once per process."""

import gc

import pytest

from jobs.common.rllib import heap
from jobs.common.rllib.env_runner import BatchedEnvRunner
from jobs.common.rllib.heap import build_algo
from tests.unit.test_batched_env_runner import config_for


@pytest.fixture
def unfrozen(monkeypatch):
    gc.unfreeze()
    monkeypatch.setattr(heap, "_frozen", False)
    yield
    gc.unfreeze()


class Config:
    """A config whose algorithm is a few thousand container objects, as the collector tracks them."""

    def build_algo(self):
        return {"modules": [[index] for index in range(5000)]}


def test_build_algo_returns_the_algorithm_with_what_it_built_frozen(unfrozen):
    assert gc.get_freeze_count() == 0
    algo = build_algo(Config())
    assert len(algo["modules"]) == 5000
    assert gc.get_freeze_count() >= 5000
    # What is made afterwards is collected as before.
    before = gc.get_freeze_count()
    later = [[index] for index in range(100)]
    assert gc.get_freeze_count() == before and gc.is_tracked(later)
    # Once per process: a second build's objects stay collectable.
    build_algo(Config())
    assert gc.get_freeze_count() == before


def test_a_remote_env_runner_freezes_what_it_was_built_with_a_local_one_does_not(unfrozen):
    local = BatchedEnvRunner(config=config_for("CartPole-v1", 2))  # in the trainer's (or a trial's) process
    local.stop()
    assert gc.get_freeze_count() == 0
    remote = BatchedEnvRunner(config=config_for("CartPole-v1", 2), worker_index=1)
    try:
        assert gc.get_freeze_count() > 10_000  # torch, RLlib and the module, all alive as long as the runner
    finally:
        remote.stop()
