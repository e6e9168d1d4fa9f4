"""The learner benchmark's phase breakdown: where one update's time goes, timed inside the learner."""

import json
import subprocess
import sys
import time

import pytest

from bench import learner_phases
from tests.conftest import REPO_ROOT


class Metrics:
    def reduce(self):
        time.sleep(0.01)
        return {"reduced": True}


class Learner:
    """Learner.update's shape in Ray 2.60: _check_is_built first, metrics.reduce last."""

    device = "cpu"

    def __init__(self):
        self.metrics = Metrics()

    def _check_is_built(self):
        return True

    def _make_batch_if_necessary(self, training_data):
        time.sleep(0.02)
        return "batch"

    def _update(self, batch):
        time.sleep(0.005)
        return {}

    def update(self, steps):
        self._check_is_built()
        self._make_batch_if_necessary(None)
        for _ in range(steps):
            self._update(None)
        time.sleep(0.01)
        return self.metrics.reduce()


def test_phases_are_timed_on_the_instance_and_the_wrappers_come_off():
    learner = Learner()
    learner_phases.install(learner)
    started = time.perf_counter()
    assert learner.update(4) == {"reduced": True}  # the wrapped methods still return what they returned
    driver_s = time.perf_counter() - started + 0.05  # as if shipping the episodes took 50 ms
    clock = learner_phases.collect(learner)
    phases = learner_phases.breakdown(driver_s, clock)

    assert phases["sgd_step_count"] == 4
    assert 0.02 <= phases["sgd_steps_s"] < 0.05
    assert 0.02 <= phases["episodes_to_batch_s"] < 0.04
    assert 0.02 <= phases["rest_in_learner_s"] < 0.04  # the 10 ms after the steps and the 10 ms reduce
    assert phases["outside_learner_s"] == pytest.approx(0.05, abs=0.002)
    parts = sum(phases[f"{phase}_s"] for phase in learner_phases.PHASES)
    assert parts == pytest.approx(phases["update_s"], abs=0.001)
    # Nothing is left on the instance, and the class was never touched.
    assert {"_update", "_make_batch_if_necessary", "_check_is_built"}.isdisjoint(vars(learner))
    assert "reduce" not in vars(learner.metrics)
    assert Learner._update.__qualname__ == "Learner._update"


def test_an_update_the_wrappers_did_not_see_is_an_error_not_a_zero():
    learner = Learner()
    learner_phases.install(learner)
    with pytest.raises(RuntimeError, match="the learner's update was not seen"):
        learner_phases.collect(learner)


def test_the_phase_table_gives_seconds_and_shares():
    phases = learner_phases.breakdown(
        2.0,
        {"update": 1.5, "episodes_to_batch": 0.25, "sgd_steps": 1.0, "sgd_step_count": 40,
         "started": 0.0, "ended": 1.5},
    )  # fmt: skip
    assert phases["rest_in_learner_s"] == 0.25 and phases["outside_learner_s"] == 0.5
    assert phases["ms_per_sgd_step"] == 25.0
    (row,) = learner_phases.phase_rows([{"variant": "gpu learner", "phases": phases}, {"variant": "no phases"}])
    assert row == ["gpu learner", "2.000", "0.250 (12%)", "1.000 (50%)", "25.0", "0.250 (12%)", "0.500 (25%)"]
    assert len(row) == len(learner_phases.PHASE_COLUMNS)


def test_the_learner_benchmark_breaks_a_real_cpu_update_into_phases(tmp_path):
    """bench.learner_throughput on a small CartPole batch with a real RLlib learner actor."""
    out = tmp_path / "learner.json"
    command = [
        sys.executable, "-m", "bench.learner_throughput", "--experiment", "jobs/experiments/ppo-cartpole.yaml",
        "--iterations", "5", "--warmup", "1", "--cpu-learner-cpus", "1", "--out", str(out),
        "--set", "training.train_batch_size=2000", "--set", "training.minibatch_size=500",
        "--set", "training.num_epochs=3",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Where an update's time goes" in done.stdout
    record = json.loads(out.read_text())
    assert record["variants_not_run"] == [] and record["failed_variants"] == []
    assert [path.name for path in tmp_path.iterdir()] == ["learner.json"]  # written whole, renamed onto it
    (row,) = record["rows"]
    phases = row["phases"]
    # 2,000 samples (the runner rounds up to whole fragments) in minibatches of 500: 4 or 5 steps an epoch.
    assert 12 <= phases["sgd_step_count"] <= 15
    assert row["sgd_steps_per_update"] == phases["sgd_step_count"]
    for phase in learner_phases.PHASES:
        assert phases[f"{phase}_s"] > 0, phase
    parts = sum(phases[f"{phase}_s"] for phase in learner_phases.PHASES)
    assert parts == pytest.approx(phases["update_s"], abs=0.001)
    assert phases["sgd_steps_s"] > phases["episodes_to_batch_s"]
