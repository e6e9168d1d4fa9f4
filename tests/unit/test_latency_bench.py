"""bench/latency.py's breakdown, from timestamped lines as `make train` / `make sweep` print them and the
command's end."""

from bench.latency import Line, sweep_breakdown, train_breakdown, underused


def test_train_breakdown_splits_the_command_into_its_phases():
    lines = [
        Line(0.1, "+ python -m jobs.train --config x --check"),
        Line(5.0, "+ ray job submit --address http://127.0.0.1:8265 -- python -m jobs.train --config x"),
        Line(6.0, "Job submission server address: http://127.0.0.1:8265"),
        Line(7.0, "-- Running entrypoint for job raysubmit_abc:"),
        Line(8.0, "note: something the job printed first"),
        Line(20.0, "iter    1 | env_steps     2,000 | return   22.0 | iter_time  2.00s | train_time     2.0s"),
        Line(21.0, "iter    2 | env_steps     4,000 | return   40.0 | iter_time  1.00s | train_time     3.0s"),
        Line(22.5, "(TrainerActor pid=12) a warning from the actor"),
        Line(24.0, "summary:"),
    ]
    phases = train_breakdown(lines, ended=25.0, job_time="build 9.5s, train 3.1s, shutdown 1.0s, report 0.4s")
    assert phases["before_submission_s"] == 5.0
    assert phases["submission_to_driver_s"] == 3.0
    assert phases["driver_to_built_s"] == 10.0  # 20.0 - 2.0 (the first iteration's own time) - 8.0
    assert phases["training_s"] == 3.0
    assert phases["checkpoint_report_shutdown_s"] == 4.0
    assert phases["total_s"] == 25.0 and phases["iterations"] == 2
    assert phases["driver_job_time"] == "build 9.5s, train 3.1s, shutdown 1.0s, report 0.4s"


def test_sweep_breakdown_reads_the_sweeps_own_progress_lines():
    report = "[{:6.1f}s] trials {}/4 done | {} running | {} pending | 0 errored | best episode_return_mean n/a"
    lines = [
        Line(3.0, report.format(0.0, 0, 1, 3)),
        Line(43.0, report.format(40.0, 2, 2, 0)),
        Line(63.0, report.format(60.0, 4, 0, 0)),
    ]
    result = sweep_breakdown(lines, end=65.0)
    assert result == {"total_s": 65.0, "tune_s": 60.0, "trials": 4, "trials_per_min": 4.0}


def test_underused_is_the_share_of_the_span_with_a_cpu_idle_while_trials_wait():
    # Two CPUs. 0-10: one trial while three wait (underused); 10-30: two; 30-40: the last one alone
    # (nothing left to start: not underused).
    intervals = [(0.0, 20.0), (10.0, 30.0), (20.0, 40.0), (20.0, 30.0)]
    assert underused(intervals, cpus=2) == 0.25
    assert underused([(0.0, 10.0), (0.0, 10.0)], cpus=2) == 0.0
    assert underused([], cpus=2) is None


def test_against_checks_out_the_commit_beside_this_tree_and_removes_it():
    import subprocess

    import pytest

    from bench.latency import REPO_ROOT, checkout

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    with checkout("HEAD") as (short, folder):
        assert short == head.stdout.strip()
        assert (folder / "jobs" / "train.py").is_file() and (folder / "controlplane").is_dir()
    assert not folder.exists()
    with pytest.raises(SystemExit, match="--against no-such-rev: not a commit"):
        with checkout("no-such-rev"):
            pass
