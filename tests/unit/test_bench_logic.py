"""The benchmarks' logic, without a cluster: both sides of a comparison are
judged alike, and a failed fault test still shows as a row."""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap

import pytest

from bench import faults as faults_bench
from bench import plain_rllib_ppo, plain_tune_sweep, ppo_cartpole, reporting
from bench import sweeps as sweeps_bench
from bench.common import run_tests_with_outcomes
from jobs import train as train_entrypoint
from jobs.common.reports.outcome import SweepOutcome
from jobs.common.run.returns import ReturnWindow
from jobs.common.schema.experiment import Stop, load_experiment
from jobs.common.schema.sweep import load_sweep
from jobs.train import progress_line
from tests.conftest import REPO_ROOT

# --------------------------------------------------------------------------
# bench/ppo_cartpole.py and bench/plain_rllib_ppo.py
# --------------------------------------------------------------------------


def test_ppo_runs_three_seeds_by_default():
    assert ppo_cartpole.parse_args([]).seeds == [0, 1, 2]


def test_both_ppo_runs_get_the_same_target_window_and_caps():
    judge = ppo_cartpole.Judge(max_env_steps=123_000, max_seconds=456.0)
    runs = ppo_cartpole.entrypoints(seed=7, name="bench-x-s7", judge=judge)
    ours, plain = runs[ppo_cartpole.OURS], runs[ppo_cartpole.PLAIN]

    args = train_entrypoint.parse_args(ours[3:])
    experiment = load_experiment(REPO_ROOT / args.config, train_entrypoint.overrides_from(args)).experiment
    baseline = plain_rllib_ppo.parse_args(plain[3:])

    assert experiment.seed == baseline.seed == 7
    assert experiment.metrics_smoothing_episodes == baseline.window == judge.window
    assert experiment.stop.episode_return_mean == baseline.target == judge.target == 450
    assert experiment.stop.env_steps == baseline.max_env_steps == 123_000
    assert experiment.stop.time_s == baseline.max_seconds == 456.0
    assert experiment.stop.iterations is None


class FakeAlgo:
    """algo.train() from a list of (episode returns, env steps this iteration)."""

    def __init__(self, iterations: list[tuple[list[float], int]]):
        self.iterations = list(iterations)
        self.steps = 0

    def train(self) -> dict:
        returns, steps = self.iterations.pop(0)
        self.steps += steps
        runners = {"num_episodes": len(returns)}
        if returns:
            runners["episode_return_mean"] = sum(returns) / len(returns)
        return {"env_runners": runners, "num_env_steps_sampled_lifetime": self.steps}


class Clock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_the_baseline_is_judged_on_the_mean_of_the_last_n_episodes_not_one_iterations_mean():
    # 19 poor episodes, then one iteration whose single episode scores 500: RLlib's
    # per-iteration mean says 500; the last 20 episodes say 42.
    history = [([20.0] * 19, 1000), ([500.0], 1000)] + [([480.0] * 5, 1000)] * 4
    lines: list[str] = []
    last = plain_rllib_ppo.train_until(FakeAlgo(history), Stop(episode_return_mean=450), 20, Clock(0.1), lines.append)

    window, algo = ReturnWindow(20), FakeAlgo(history)
    expected = [window.add(algo.train()) for _ in history]
    assert expected[1] == pytest.approx((19 * 20 + 500) / 20)  # the lucky iteration: 44.0, not 500
    assert last["iterations"] == 6 and last["return"] == pytest.approx(expected[5]) and expected[5] >= 450
    assert [ppo_cartpole.PROGRESS.search(line) is not None for line in lines] == [True] * 6 + [False]
    assert lines[-1].startswith("stopped: episode_return_mean")


def test_the_baseline_stops_at_the_caps_by_the_experiments_rule():
    stop = Stop(episode_return_mean=450, env_steps=3000, time_s=1000.0)
    by_steps = plain_rllib_ppo.train_until(FakeAlgo([([10.0], 1000)] * 5), stop, 20, Clock(0.1), lambda _: None)
    assert (by_steps["iterations"], by_steps["reason"]) == (3, "env_steps 3000 >= 3000")
    stop = Stop(episode_return_mean=450, env_steps=10**9, time_s=5.0)
    by_time = plain_rllib_ppo.train_until(FakeAlgo([([10.0], 1000)] * 50), stop, 20, Clock(1.0), lambda _: None)
    assert by_time["reason"].startswith("time") and by_time["time_s"] >= 5.0


def test_follow_times_the_first_line_at_the_target_on_either_sides_lines():
    lines = [
        "resumed from nothing",
        progress_line(1, 4000, math.nan, 1.0, 1.0),
        progress_line(2, 8000, 449.9, 1.0, 2.0),
        progress_line(3, 12000, 450.0, 1.0, 3.0),
        progress_line(4, 16000, 470.0, 1.0, 4.0),
    ]
    result = ppo_cartpole.follow(lines, 450.0, Clock(1.0), started=0.0)
    assert result == {
        "reached": True,
        "iterations": 3,
        "env_steps": 12000,
        "return": 450.0,
        "train_s": 3.0,
        "wall_to_450_s": 1.0,
    }
    missed = ppo_cartpole.follow(lines[:3], 450.0, Clock(1.0), started=0.0)
    assert missed["reached"] is False and missed["iterations"] == 2 and "wall_to_450_s" not in missed


def test_ppo_summary_counts_seeds_that_reached_and_takes_medians_over_them():
    rows = [
        {"run": "a", "seed": 0, "reached": True, "wall_to_450_s": 10.0, "train_s": 5.0, "env_steps": 100},
        {"run": "a", "seed": 1, "reached": True, "wall_to_450_s": 30.0, "train_s": 7.0, "env_steps": 300},
        {"run": "a", "seed": 2, "reached": False, "train_s": 600.0, "env_steps": 300000},
        {"run": "b", "seed": 0, "reached": False, "train_s": 600.0, "env_steps": 1},
    ]
    assert ppo_cartpole.summary(rows) == [
        {
            "run": "a",
            "reached": "2/3",
            "median_wall_to_450_s": 20.0,
            "median_train_s": 6.0,
            "median_env_steps": 200,
        },
        {
            "run": "b",
            "reached": "0/1",
            "median_wall_to_450_s": None,
            "median_train_s": None,
            "median_env_steps": None,
        },
    ]


# --------------------------------------------------------------------------
# bench/sweeps.py and bench/plain_tune_sweep.py
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["seed", "asha"])
def test_the_plain_sweep_searches_our_space_and_judges_by_our_stop(name):
    ours = load_sweep(REPO_ROOT / plain_tune_sweep.SWEEP_FILES[name])
    plain = plain_tune_sweep.plain_search(name, ours)
    assert plain.dimensions == ours.dimensions
    assert plain.trial_count == ours.trial_count() and plain.num_samples == ours.spec.num_samples
    assert plain.env == ours.base_experiment.env
    assert plain.window == ours.base_experiment.metrics_smoothing_episodes == 20
    assert plain.stop == {"episode_return_mean": 195, "env_steps": 60000}
    if name == "asha":
        s = ours.spec.scheduler
        assert plain.scheduler == {
            "time_attr": s.time_attr,
            "grace_period": s.grace_period,
            "max_t": s.max_t,
            "reduction_factor": s.reduction_factor,
            "brackets": s.brackets,
        }
    else:
        assert plain.scheduler is None and ours.spec.scheduler.type == "asha"


def test_a_plain_trial_judges_returns_as_ours_do():
    state: dict = {}
    results = [
        {"env_runners": {"num_episodes": 0}, "num_env_steps_sampled_lifetime": 1000},
        {"env_runners": {"num_episodes": 19, "episode_return_mean": 20.0}, "num_env_steps_sampled_lifetime": 2000},
        {"env_runners": {"num_episodes": 1, "episode_return_mean": 500.0}, "num_env_steps_sampled_lifetime": 3000},
        {"env_runners": {"num_episodes": 20, "episode_return_mean": 200.0}, "num_env_steps_sampled_lifetime": 4000},
    ]
    seen = [plain_tune_sweep.judge(state, r, window=20, target=195) for r in results]
    assert math.isnan(seen[0]["episode_return_mean"]) and math.isnan(seen[0]["env_steps_to_solve"])
    assert seen[2]["episode_return_mean"] == pytest.approx(44.0)  # not the lucky single episode's 500
    assert seen[2]["env_steps"] == 3000 and math.isnan(seen[2]["env_steps_to_solve"])
    assert seen[3] == {"episode_return_mean": 200.0, "env_steps": 4000, "env_steps_to_solve": 4000}

    class Algorithm:
        pass

    algorithm, result = Algorithm(), dict(results[3])
    plain_tune_sweep.add_judged_metrics(algorithm=algorithm, metrics_logger=None, result=result, window=20, target=195)
    assert result["episode_return_mean"] == 200.0 and result["env_steps_to_solve"] == 4000


@pytest.mark.parametrize(
    "cpus_per_node, group_cpus, runners, concurrent",
    [(2, 2, 1, 1), (1, 1, 0, 1), (16, 16, 2, 5), (4, 8, 2, 2)],
)
def test_a_plain_trial_fits_one_cpu_group_node_and_the_group_bounds_concurrency(
    cpus_per_node, group_cpus, runners, concurrent
):
    assert plain_tune_sweep.env_runners_that_fit(cpus_per_node) == runners
    assert plain_tune_sweep.concurrent_trials(group_cpus, runners) == concurrent


def test_plain_trials_ask_for_the_cpu_group_only_and_rllibs_defaults_are_what_we_say():
    from ray.rllib.algorithms.ppo import PPO, PPOConfig

    defaults = PPOConfig()
    assert defaults.num_env_runners == plain_tune_sweep.RLLIB_PPO_ENV_RUNNERS
    assert defaults.train_batch_size == plain_tune_sweep.RLLIB_PPO_TRAIN_BATCH
    assert defaults.num_cpus_for_main_process == plain_tune_sweep.RLLIB_MAIN_PROCESS_CPUS

    search = dataclasses.replace(plain_tune_sweep.plain_search("asha"), dimensions=[])
    config = plain_tune_sweep.ppo_config(search, env_runners=1)
    bundles = PPO.default_resource_request(config).bundles
    assert len(bundles) == 2 and all(bundle.get("cpu_group", 0) > 0 for bundle in bundles), bundles
    assert sum(bundle["CPU"] for bundle in bundles) == 2
    assert config.callbacks_on_train_result is not None


def test_only_trials_that_met_their_stop_or_were_stopped_by_the_scheduler_are_done():
    stop = {"episode_return_mean": 195, "env_steps": 60000}
    trials = [
        {
            "trial_id": "solved",
            "metrics": {"episode_return_mean": 196.0, "env_steps": 9000, "env_steps_to_solve": 9000},
        },
        {"trial_id": "capped", "metrics": {"episode_return_mean": 20.0, "env_steps": 60000}},
        {"trial_id": "asha", "metrics": {"episode_return_mean": 20.0, "env_steps": 2000}},
        {"trial_id": "cut", "metrics": {"episode_return_mean": 150.0, "env_steps": 30000}},
        {"trial_id": "nan", "metrics": {"episode_return_mean": math.nan, "env_steps": 1000}},
        {"trial_id": "broken", "metrics": {"episode_return_mean": 10.0, "env_steps": 1000}, "error": True},
        {"trial_id": "queued", "metrics": {}},
    ]
    counts = plain_tune_sweep.classify(trials, {"asha", "solved"}, stop, planned=9)
    assert counts == {
        "finished": 2,
        "stopped_by_scheduler": 1,
        "cut_by_time_budget": 2,
        "errors": 1,
        "no_result": 1 + 2,  # "queued", and two the searcher never made
        "done": 3,
        "best_env_steps": 9000,
    }


def test_both_sweep_rows_count_done_trials_by_the_same_rule():
    record = SweepOutcome(sweep="bench-x-seed", trials=20, report="s3://b/x/report", best_trial="abc_00001",
                          best_checkpoint="s3://b/x/trials/abc_00001/checkpoint_000010", planned=20,
                          counts={"finished": 11, "stopped early": 7, "error": 2}, best_metric="env_steps_to_solve",
                          best_value=12000.0)  # fmt: skip
    ours = sweeps_bench.ours_row(0, record, 120.0, planned=20, scheduler="asha")
    assert (ours["done"], ours["cut_by_time_budget"], ours["not_done"]) == (18, 0, 2)
    assert ours["done_per_min"] == 9.0 and ours["best_steps"] == 12000

    plain_line = {
        "planned": 216,
        "finished": 3,
        "stopped_by_scheduler": 27,
        "cut_by_time_budget": 4,
        "errors": 1,
        "no_result": 181,
        "done": 30,
        "best_env_steps": None,
        "scheduler": "asha",
    }
    plain = sweeps_bench.plain_row(0, ["noise", "plain: " + json.dumps(plain_line)], 300.0, planned=216)
    assert (plain["done"], plain["cut_by_time_budget"], plain["not_done"]) == (30, 4, 182)
    assert plain["done_per_min"] == 6.0 and plain["best_steps"] is None and plain["scheduler"] == "asha"

    lost = sweeps_bench.plain_row(1, ["Traceback ..."], 5.0, planned=20)
    assert lost["done"] is None and lost["done_per_min"] is None and lost["exit_status"] == 1


def test_the_output_says_where_the_searches_differ():
    seed = load_sweep(REPO_ROOT / plain_tune_sweep.SWEEP_FILES["seed"])
    notes = sweeps_bench.differences(seed, plain_tune_sweep.plain_search("seed", seed), budget_s=None)
    assert any("ours stops laggards with asha" in n and "the baseline does not" in n for n in notes), notes
    assert not any("time budget" in n for n in notes)

    asha = load_sweep(REPO_ROOT / plain_tune_sweep.SWEEP_FILES["asha"])
    notes = sweeps_bench.differences(asha, plain_tune_sweep.plain_search("asha", asha), budget_s=300.0)
    assert not any("stops laggards" in n for n in notes), notes
    assert any("300 s time budget" in n and "cut, not done" in n for n in notes), notes
    assert any("1,000 env steps in ours and 4,000 in the baseline" in n for n in notes), notes


# --------------------------------------------------------------------------
# bench/faults.py, bench/reporting.py
# --------------------------------------------------------------------------


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_reported_row_keeps_what_was_measured_when_the_assert_then_fails(tmp_path, monkeypatch):
    report = tmp_path / "rows.jsonl"
    monkeypatch.setenv("FAULT_REPORT", str(report))
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/e2e/test_faults.py::test_x[a b] (call)")
    with pytest.raises(AssertionError):
        with reporting.reported_row("FAULT_REPORT", fault="f", lost=reporting.NOT_MEASURED) as row:
            row["lost"] = "2 finished trials re-run"
            assert 2 == 0, "finished trials ran again"
    with reporting.reported_row("FAULT_REPORT", fault="g", lost=reporting.NOT_MEASURED) as row:
        row["lost"] = "0 checkpoints"
    failed, passed = read_rows(report)
    assert failed["test"] == "tests/e2e/test_faults.py::test_x[a b]"
    assert failed["lost"] == "2 finished trials re-run"
    assert failed["result"].startswith("FAILED: AssertionError: finished trials ran again")
    assert passed["result"] == "passed" and passed["lost"] == "0 checkpoints"


def test_merge_marks_failed_tests_and_gives_a_row_to_tests_that_wrote_none():
    rows = [
        {"test": "t::a", "fault": "A", "lost": "0", "result": "passed"},
        {"test": "t::b", "fault": "B", "lost": "3 trials unfinished", "result": "FAILED: AssertionError: 3 == 0"},
        {"test": "t::d", "fault": "D", "lost": "0"},  # a test that records at its end (no result of its own)
    ]
    outcomes = [
        {"test": "t::a", "when": "call", "outcome": "passed", "message": ""},
        {"test": "t::b", "when": "call", "outcome": "failed", "message": "AssertionError: 3 == 0"},
        {"test": "t::c", "when": "setup", "outcome": "failed", "message": "RuntimeError: no cluster"},
        {"test": "t::d", "when": "call", "outcome": "passed", "message": ""},
        {"test": "t::d", "when": "teardown", "outcome": "failed", "message": "OSError: leaked"},
        {"test": "t::e", "when": "setup", "outcome": "skipped", "message": "no GPU"},
    ]
    merged = reporting.merge(rows, outcomes, {"fault": None, "lost": "not measured"}, name_field="fault")
    assert [(r["fault"], r["result"], r["lost"]) for r in merged] == [
        ("A", "passed", "0"),
        ("B", "FAILED: AssertionError: 3 == 0", "3 trials unfinished"),
        ("c", "ERROR in setup: RuntimeError: no cluster", "not measured"),
        ("D", "ERROR in teardown: OSError: leaked", "0"),
        ("e", "SKIPPED: no GPU", "not measured"),
    ]


TESTS = """
import os
import pytest
from bench.reporting import NOT_MEASURED, append_row, reported_row


def test_passes_and_records():
    append_row("FAULT_REPORT", {"fault": "kept", "lost": "0"})


def test_fails_after_measuring():
    with reported_row("FAULT_REPORT", fault="measured", lost=NOT_MEASURED) as row:
        row["lost"] = "1 iterations"
        assert row["lost"] == "0 iterations"


def test_fails_before_recording():
    assert 1 == 2
    append_row("FAULT_REPORT", {"fault": "never", "lost": "0"})


@pytest.fixture
def broken():
    raise RuntimeError("the cluster did not start")


def test_setup_fails(broken):
    pass


def test_skipped():
    pytest.skip("not here")
"""


def test_the_fault_bench_shows_failed_tests_as_failed_rows(tmp_path, monkeypatch, capsys):
    """bench.common runs pytest with bench.reporting's plugin; bench.faults prints every test, failed ones too."""
    module = tmp_path / "test_fake_faults.py"
    module.write_text(textwrap.dedent(TESTS))
    rows, outcomes, status = run_tests_with_outcomes([str(module)], "FAULT_REPORT")
    assert status == 1

    monkeypatch.setattr(faults_bench, "run_tests_with_outcomes", lambda args, var: (rows, outcomes, status))
    out = tmp_path / "faults.json"
    assert faults_bench.main(["--out", str(out)]) == 1
    printed = capsys.readouterr().out
    written = {row["fault"]: row for row in json.loads(out.read_text())["rows"]}
    assert list(written) == ["kept", "measured", "test_fails_before_recording", "test_setup_fails", "test_skipped"]
    assert written["kept"]["result"] == "passed"
    assert written["measured"]["lost"] == "1 iterations"
    assert written["measured"]["result"].startswith("FAILED: AssertionError")
    assert written["test_fails_before_recording"]["result"].startswith("FAILED: ")
    assert written["test_fails_before_recording"]["lost"] == reporting.NOT_MEASURED
    assert written["test_setup_fails"]["result"] == "ERROR in setup: RuntimeError: the cluster did not start"
    assert written["test_skipped"]["result"].startswith("SKIPPED")
    assert "4 of 5 fault tests did not pass" in printed
    for fault in written:
        assert fault in printed


# --------------------------------------------------------------------------
# bench/machine_limit.py, bench/throughput.py and bench/halfcheetah.py
# --------------------------------------------------------------------------


def test_the_limit_samples_the_batch_on_every_core_then_learns():
    from bench.machine_limit import Limit

    limit = Limit(steps_per_s_per_core=20_000.0, update_s=1.5, cores=2, batch=16_000)
    assert limit.sample_s == pytest.approx(0.4)  # 16,000 steps at 20,000/s on each of 2 cores
    assert limit.iteration_s == pytest.approx(1.9)


def test_the_throughput_summary_leaves_out_the_warm_up_and_compares_each_iteration_with_its_own_limit():
    from bench import throughput

    def row(iteration, seconds, per_core, limit_s, limit_rate):
        return {"iteration": iteration, "iteration_s": seconds, "sample_s": 0.5, "learn_s": seconds - 0.5,
                "other_s": 0.0, "steps_per_s": 16_384 / seconds, "sample_steps_per_s_per_core": per_core,
                "limit_s": limit_s, "x_limit": seconds / limit_s, "limit_steps_per_s_per_core": limit_rate,
                "sampling_percent_of_limit": 100 * per_core / limit_rate, "limit_update_s": limit_s - 0.4}  # fmt: skip

    # The machine slows down between iterations 1 and 3: each iteration against the limit measured beside it.
    rows = [row("warm-up", 9.0, 1_000.0, 2.0, 20_000.0), row(1, 2.0, 16_000.0, 1.6, 20_000.0),
            row(2, 2.6, 13_000.0, 2.0, 16_000.0), row(3, 3.0, 12_000.0, 2.4, 14_000.0)]  # fmt: skip
    summary = throughput.summary(rows)
    assert summary["iteration_s"] == 2.6  # the warm-up's 9 s would make it 2.8
    assert summary["x_limit"] == pytest.approx(1.25)  # the median of 1.25, 1.3, 1.25 (medians alone: 2.6 / 2.0)
    assert summary["sampling_vs_one_core"] == pytest.approx(0.8125)  # the median of 80 %, 81.25 %, 85.7 %
    assert summary["limit_iteration_s"] == 2.0


def test_the_sampling_bench_compares_each_variant_with_the_limit_run_turn_about():
    from bench.sampling import rows_for

    rows = rows_for({"limit": [0.30, 0.32, 0.31], "ours": [0.40, 0.42, 0.41]}, steps=8_192)
    assert [row["variant"] for row in rows] == ["limit", "ours"]
    assert rows[0]["percent_of_limit"] == 100
    assert rows[1]["round_s"] == 0.41 and rows[1]["percent_of_limit"] == pytest.approx(100 * 0.31 / 0.41)
    assert rows[1]["env_steps_per_s"] == pytest.approx(8_192 / 0.41)


def test_env_runner_cores_count_every_runner_or_the_one_in_process():
    from bench.throughput import env_runner_cores

    experiment = load_experiment(REPO_ROOT / "jobs/experiments/ppo-halfcheetah-cpu.yaml").experiment
    assert env_runner_cores(experiment) == 2
    in_process = load_experiment(REPO_ROOT / "jobs/experiments/ppo-cartpole.yaml").experiment
    assert in_process.env_runners.num_env_runners == 0 and env_runner_cores(in_process) == 1


def test_halfcheetah_keeps_every_finished_run_when_a_later_one_fails(tmp_path, monkeypatch):
    from bench import halfcheetah

    out = tmp_path / "halfcheetah.json"
    done = []

    def one_run(contender, seed, args):
        if done:
            raise KeyboardInterrupt  # a run of hours stopped by hand
        done.append(contender)
        stopped = "episode_return_mean 1510.0 >= 1500"
        return {"contender": contender, "seed": seed, "reached": True, "exit_status": 0, "time_s": 60.0,
                "env_steps": 50_000, "last_return": 1_510.0, "stopped": stopped}  # fmt: skip

    monkeypatch.setattr(halfcheetah, "one_run", one_run)
    with pytest.raises(KeyboardInterrupt):
        halfcheetah.main(["--only", "ours", "rllib", "--seeds", "0", "--out", str(out)])
    record = json.loads(out.read_text())
    assert [row["contender"] for row in record["rows"]] == ["ours"]
    assert record["target"] == 1500.0 and record["window"] == 20 and record["max_env_steps"] == 2_000_000


def test_halfcheetah_judges_sb3_by_the_experiments_stop_rule():
    from bench import halfcheetah

    stop = halfcheetah._stop(halfcheetah.parse_args(["--max-env-steps", "1000", "--max-minutes", "1"]))
    assert stop.reason(iteration=3, env_steps=999, ret=1_499.0, time_s=59.0) is None
    assert stop.reason(iteration=3, env_steps=999, ret=1_500.0, time_s=59.0).startswith("episode_return_mean")
    assert stop.reason(iteration=3, env_steps=1_000, ret=0.0, time_s=1.0).startswith("env_steps")
    assert stop.reason(iteration=3, env_steps=1, ret=0.0, time_s=60.0).startswith("time 60s")


def test_the_limit_compared_is_the_mean_of_the_one_before_and_the_one_after_the_run():
    from bench.machine_limit import Limit

    before = Limit(steps_per_s_per_core=30_000.0, update_s=1.0, cores=2, batch=16_000)
    after = Limit(steps_per_s_per_core=20_000.0, update_s=2.0, cores=2, batch=16_000)
    mean = Limit.mean([before, after])
    assert (mean.steps_per_s_per_core, mean.update_s, mean.cores, mean.batch) == (25_000.0, 1.5, 2, 16_000)
    assert mean.iteration_s == pytest.approx(16_000 / 50_000 + 1.5)
