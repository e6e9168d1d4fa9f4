from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CARTPOLE = REPO_ROOT / "jobs" / "experiments" / "ppo-cartpole.yaml"

# `make test` runs two pytest-xdist workers, and each group below runs in one worker, in the order
# tests/e2e/conftest.py gives it. "local-cluster": the unit tests, then the tests on that worker's
# session cluster, the secret scan after them. "containers-then-faults": the container tests (their
# own dockerd and cluster), then the fault tests on a local cluster of their own (they kill its nodes
# and head), their own secret scan, and last the independent cluster-down check. The two weigh about
# the same, and Ray and Docker spend much of a test waiting (node start-up, health checks, an S3
# outage), so they overlap well on two cores. The unit tests never run beside the session cluster's
# tests: some start, signal and kill processes of their own.
SECOND = "containers-then-faults"
CLUSTER_GROUPS = {
    **{f"tests/e2e/{module}.py": "local-cluster"
       for module in ("test_gpu_scaling", "test_healing", "test_load", "test_local_spine", "test_preemption",
                      "test_security", "test_sweeps")},
    **{f"tests/e2e/{module}.py": SECOND for module in ("test_faults", "test_teardown")},
}  # fmt: skip
GROUPS = {**CLUSTER_GROUPS, "tests/e2e/test_containers.py": SECOND}


def pytest_xdist_make_scheduler(config, log):
    """xdist's loadgroup, by module (pytest 9 ignores the group suffix xdist 3.8 adds to node ids)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return GROUPS.get(module) or ("local-cluster" if module.startswith("tests/unit/") else nodeid)

    return ByGroup(config, log)


@pytest.fixture(autouse=True)
def _no_stray_cluster_env(monkeypatch):
    """Tests never reach a developer's own cluster through a sourced env file."""
    for name in ("RAY_ADDRESS", "RL_STORAGE_URI", "CLUSTER_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
def write_yaml(tmp_path):
    def write(text: str, name: str = "experiment.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
