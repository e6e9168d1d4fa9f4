"""`make train`/`make sweep` before anything is submitted (controlplane/submit.py):
the entrypoint's `--check` runs in its own process while the Jobs API is asked,
its error is ours, a Jobs API failure is told first, and no check is left running."""

from __future__ import annotations

import pytest

from controlplane import submit
from controlplane.errors import ClusterError
from controlplane.ports import free_port
from controlplane.state import StateDir
from jobs.common.errors import UserError

MISSING_SWEEP = ["python", "-m", "jobs.sweep", "--config", "jobs/sweeps/no-such-sweep.yaml"]


def test_the_checks_error_is_ours_and_says_nothing_was_submitted():
    check = submit.start_preflight(MISSING_SWEEP, {})
    with pytest.raises(UserError) as raised:
        submit.finish_preflight(check)
    message = str(raised.value)
    assert "sweep file 'jobs/sweeps/no-such-sweep.yaml' does not exist" in message
    assert message.endswith("(nothing was submitted)")
    assert "Traceback" not in message


def test_only_this_projects_entrypoints_are_checked():
    assert submit.start_preflight(["python", "my_script.py"], {}) is None
    assert submit.start_preflight(["python", "-m", "somebody.else"], {}) is None
    submit.finish_preflight(None)  # nothing to wait for


def test_an_unreachable_jobs_api_is_told_first_and_the_check_is_stopped(tmp_path, monkeypatch, capsys):
    state = StateDir(tmp_path)
    state.env_file.write_text(f"export RAY_ADDRESS=http://127.0.0.1:{free_port()}\n")
    started, start = [], submit.start_preflight

    def recorded(entrypoint, env):
        started.append(start(entrypoint, env))
        return started[-1]

    monkeypatch.setattr(submit, "start_preflight", recorded)
    with pytest.raises(ClusterError, match="cannot reach the Ray Jobs API at http://127.0.0.1:"):
        submit.submit(state, MISSING_SWEEP)
    # The check (which would have failed too) was stopped and reaped, and nothing was submitted.
    assert len(started) == 1 and started[0].returncode is not None
    assert "+ ray job submit" not in capsys.readouterr().out


def test_the_check_before_submission_is_the_documented_contract_of_each_entrypoint():
    from jobs.checks import CHECKED, check_command, failure_message

    assert set(CHECKED) == {"jobs.train", "jobs.sweep", "jobs.evaluate"}
    assert check_command(["python", "-m", "jobs.train", "--config", "x.yaml"], "/py") == [
        "/py", "-m", "jobs.train", "--config", "x.yaml", "--check"
    ]  # fmt: skip
    assert check_command(["python", "-m", "jobs.common.run.preemption"], "/py") is None  # not an entrypoint
    assert check_command(["python", "train.py"], "/py") is None
    ray_log = "2026-12-07 10:00:00,000\tINFO worker.py:1 -- Connecting to existing Ray cluster"
    said = f"{ray_log}\nerror: the plan does not fit this cluster:\n  - 4 env runners need 5 CPUs\n"
    assert failure_message("", said) == "the plan does not fit this cluster:\n  - 4 env runners need 5 CPUs"
