"""The build gate: one job at a time places its actors; a dead holder loses it.

The scenarios run in a Python process of their own with its own small Ray: the
end-to-end tests in this pytest process talk to a token-authenticated
cluster, and Ray fixes its auth settings at import, so a local Ray started
here would inherit the wrong ones.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

SCENARIOS = "tests.unit.build_gate_scenarios"


@pytest.fixture(scope="module")
def outcomes() -> dict:
    """Both scenarios, in one process: one small Ray started, not two."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = subprocess.run(
        [sys.executable, "-m", SCENARIOS, "second-waits", "lease-expires"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_second_job_waits_until_the_first_has_placed_its_actors(outcomes):
    outcome = outcomes["second-waits"]
    (a, a_in, a_out), (b, b_in, _) = sorted(outcome["inside"], key=lambda row: row[1])
    assert (a, b) == ("job a", "job b") and b_in >= a_out
    assert "waiting for job a (pid" in outcome["printed"]


def test_a_holder_that_stops_renewing_loses_the_gate_after_its_lease(outcomes):
    waited = outcomes["lease-expires"]["waited_s"]
    assert 0.5 <= waited < 10
