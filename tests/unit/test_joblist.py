"""`make jobs`: one line per Ray job."""

from types import SimpleNamespace

from controlplane.joblist import describe, rows


def job(submission_id, status, start, end, entrypoint, message=""):
    return SimpleNamespace(
        submission_id=submission_id,
        job_id=None,
        status=SimpleNamespace(value=status),
        start_time=start,
        end_time=end,
        entrypoint=entrypoint,
        message=message,
    )


def test_entrypoint_is_shortened_to_module_file_and_flags():
    text = describe("python -m jobs.train --config jobs/experiments/ppo-cartpole.yaml --name x --set a=1")
    assert text == "jobs.train ppo-cartpole.yaml --name x --set a=1"
    assert len(describe("python -m jobs.sweep " + "--set k=v " * 40)) == 60


def test_rows_oldest_first_with_times_and_the_failure_message():
    table = rows(
        [
            job("raysubmit_b", "FAILED", 5_000, 9_000, "python -m jobs.train", "Job failed\nTraceback ..."),
            job("raysubmit_a", "SUCCEEDED", 1_000, 31_000, "python -m jobs.sweep --config jobs/sweeps/s.yaml"),
        ]
    )
    assert table == [
        ("raysubmit_a", "SUCCEEDED", "30s", "jobs.sweep s.yaml", ""),
        ("raysubmit_b", "FAILED", "4s", "jobs.train", "Job failed"),
    ]
