"""RunState is latest.json: round trips, damaged pointers, and the one training loop."""

import json
import math
from pathlib import Path

import pytest

from jobs.common.errors import UserError
from jobs.common.run import loop
from jobs.common.run.state import VERSION, RunState, read_pointer
from jobs.common.schema.experiment import parse_experiment
from jobs.common.storage import checkpoints, layout


class FakeAlgorithm:
    """What the loop needs of an RLlib Algorithm: train() results and save_to_path()."""

    def __init__(self, returns, steps_per_iteration=1000, restored_steps=0):
        self.returns = list(returns)
        self.steps = restored_steps  # RLlib restores an algorithm's lifetime counters with its checkpoint
        self.per_iteration = steps_per_iteration
        self.saved = []

    def train(self):
        self.steps += self.per_iteration
        ret = self.returns.pop(0)
        episodes = {"episode_return_mean": ret, "num_episodes": 10, "episode_len_mean": ret}
        runners = {"num_env_steps_sampled": self.per_iteration, **(episodes if ret is not None else {})}
        return {"num_env_steps_sampled_lifetime": self.steps, "env_runners": runners}

    def save_to_path(self, path):
        Path(path, layout.POLICY_PATH).mkdir(parents=True)
        self.saved.append(Path(path).name)


def experiment(**stop):
    raw = {"name": "exp", "env": "CartPole-v1", "stop": stop, "checkpoint": {"every_n_iterations": 2}}
    return parse_experiment({**raw, "metrics_smoothing_episodes": 10}).experiment


def test_round_trip_keeps_every_field():
    state = RunState(
        iteration=4,
        env_steps=8000,
        time_s=3.5,
        episode_return_mean=120.5,
        episode_len_mean=120.5,
        return_window=[[120.5, 10]],
        solved_at=6000,
        finished=True,
        stop_reason="iterations 4 >= 4",
        checkpoint="s3://b/p/exp/checkpoint_000004",
        trial_id="abc",
    )
    again = RunState.from_json(state.to_json(), "latest.json")
    assert {k: v for k, v in vars(again).items() if k != "written_at"} == {
        k: v for k, v in vars(state).items() if k != "written_at"
    }
    assert json.loads(state.to_json())["version"] == VERSION


def test_pointer_written_before_versioning_still_reads():
    old = {"iteration": 2, "env_steps": 4000, "episode_return_mean": None, "time_s": 1.0, "return_window": []}
    old |= {"finished": False, "stop_reason": None, "checkpoint": "s3://b/x/checkpoint_000002", "written_at": "t"}
    assert RunState.from_json(json.dumps(old), "latest.json").iteration == 2


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"checkpoint": "s3://', "not JSON"),
        ("[1, 2]", "a JSON object was expected"),
        ('{"iteration": "two"}', "iteration"),
        ('{"iteration": -1}', "iteration"),
        ('{"iteration": 1, "checkpont": "x"}', "checkpont"),
        ('{"version": 99, "iteration": 1}', "version 99"),
    ],
)
def test_a_damaged_pointer_is_one_message_naming_the_object(tmp_path, text, problem):
    run = layout.experiment(str(tmp_path), "exp")
    Path(run.uri).mkdir()
    Path(run.pointer).write_text(text)
    with pytest.raises(UserError) as caught:
        read_pointer(run)
    message = str(caught.value)
    assert message.startswith(f"{run.pointer} is damaged") and problem in message
    assert "delete it" in message and "\n" not in message


def test_a_pointer_to_a_vanished_checkpoint_names_the_newest_complete_one(tmp_path):
    run = layout.experiment(str(tmp_path), "exp")
    algo = FakeAlgorithm([])
    for iteration in (2, 4):
        checkpoints.save(algo, run, RunState(iteration=iteration), "env: CartPole-v1\n")
    Path(run.checkpoint(6)).mkdir()  # half-written: no experiment, no policy
    Path(run.pointer).write_text(RunState(iteration=8, checkpoint=run.checkpoint(8)).to_json().decode())
    with pytest.raises(UserError) as caught:
        read_pointer(run)
    message = str(caught.value)
    assert f"its checkpoint {run.checkpoint(8)} is not in storage" in message
    assert message.endswith(f"newest complete checkpoint: {run.checkpoint(4)}")


def test_the_loop_checkpoints_on_its_interval_and_at_the_end(tmp_path):
    run = layout.experiment(str(tmp_path), "exp")
    algo = FakeAlgorithm([10.0, 20.0, 30.0, 40.0, 50.0])
    state = RunState()
    reason = loop.run(algo, experiment(iterations=5), state, run, loop.Observer())
    assert reason == "iterations 5 >= 5"
    assert algo.saved == ["checkpoint_000002", "checkpoint_000004", "checkpoint_000005"]
    latest = read_pointer(run)
    assert (latest.iteration, latest.env_steps, latest.finished) == (5, 5000, True)
    assert latest.checkpoint == run.checkpoint(5)


def test_a_resumed_run_carries_its_counters_and_return_window_on(tmp_path):
    run = layout.experiment(str(tmp_path), "exp")
    first = RunState()
    loop.run(FakeAlgorithm([100.0, 100.0]), experiment(iterations=2), first, run, loop.Observer())
    resumed = read_pointer(run)
    seen = []

    class Record(loop.Observer):
        def iteration_done(self, state, seconds, result):
            seen.append((state.iteration, state.env_steps, state.episode_return_mean))

    # A new algorithm whose lifetime counter starts from zero again.
    loop.run(FakeAlgorithm([200.0]), experiment(iterations=3), resumed, run, Record())
    # Ten episodes at 200 fill the window of ten alone; steps add to the earlier run's.
    assert seen == [(3, 3000, 200.0)]


def test_a_restored_algorithms_own_lifetime_counter_is_not_counted_twice(tmp_path):
    """RLlib restores `num_env_steps_sampled_lifetime` with the checkpoint: a resumed run (a
    training job, a trial back from a drained node) must not add it to its own count again."""
    run = layout.experiment(str(tmp_path), "exp")
    loop.run(FakeAlgorithm([100.0, 100.0]), experiment(iterations=2), RunState(), run, loop.Observer())
    resumed = read_pointer(run)
    loop.run(FakeAlgorithm([200.0], restored_steps=2000), experiment(iterations=3), resumed, run, loop.Observer())
    assert (resumed.iteration, resumed.env_steps) == (3, 3000)


def test_iterations_without_episodes_leave_the_return_unknown_and_the_run_going(tmp_path):
    state = RunState()
    with pytest.raises(IndexError):  # the fake ran out of results: no NaN return ever stopped the run
        loop.run(
            FakeAlgorithm([None, None]),
            experiment(episode_return_mean=150.0),
            state,
            layout.RunFolder(str(tmp_path)),
            loop.Observer(),
        )
    assert state.iteration == 2 and state.episode_return_mean is None and math.isnan(state.return_or_nan)


def test_already_done_judges_the_state_by_the_experiment_it_is_resumed_under():
    state = RunState(iteration=5, env_steps=5000, time_s=1.0, checkpoint="x")
    assert loop.already_done(experiment(iterations=5), state) == "iterations 5 >= 5"
    assert loop.already_done(experiment(iterations=10), state) is None
    assert loop.already_done(experiment(iterations=1), RunState()) is None


def test_sigterm_ends_the_run_after_the_iteration_in_flight_with_a_checkpoint_of_it(tmp_path):
    import os
    import signal

    from jobs.common.run.preemption import StopRequest

    class PreemptedAt(FakeAlgorithm):
        def train(self):
            result = super().train()
            if self.steps == 3000:  # iteration 3 is in flight when the signal comes
                os.kill(os.getpid(), signal.SIGTERM)
            return result

    previous = signal.getsignal(signal.SIGTERM)
    try:
        run = layout.experiment(str(tmp_path), "exp")
        state = RunState()
        algo = PreemptedAt([10.0] * 10)
        reason = loop.run(algo, experiment(iterations=10), state, run, loop.Observer(), StopRequest().install())
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert reason == "preempted (SIGTERM)"
    # Checkpoint every 2: iteration 3 would have been lost; it is the latest instead, and not finished.
    assert algo.saved == ["checkpoint_000002", "checkpoint_000003"]
    latest = read_pointer(run)
    assert (latest.iteration, latest.finished) == (3, False)
    assert loop.already_done(experiment(iterations=10), latest) is None
