from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CARTPOLE = REPO_ROOT / "jobs" / "experiments" / "ppo-cartpole.yaml"

# `make test` runs four pytest-xdist workers, one per group below, each in the order
# tests/e2e/conftest.py gives it. The machine has two cores, but Ray and Docker spend much of a test
# waiting (node start-up, health checks, polls, an S3 outage): with two workers a fifth of the CPU
# time went unused. "local-cluster": the unit tests first, then the spine, GPU placement and
# preemption on that worker's session cluster, its secret scan last. "sweeps" and "faults": each on a
# local cluster of its own (the faults kill its nodes and head), each scanned for secrets with the
# same scan at its end (the faults also before the head kill), the faults followed by the
# independent cluster-down check. "containers": their own dockerd and cluster. The S3 fault tests
# (no cluster) go to whichever worker is free. The unit tests never run beside their worker's
# cluster tests: some start, signal and kill processes of their own.
CLUSTER_GROUPS = {
    **{f"tests/e2e/{module}.py": "local-cluster"
       for module in ("test_gpu_scaling", "test_load", "test_local_spine", "test_preemption", "test_security")},
    "tests/e2e/test_sweeps.py": "sweeps",
    **{f"tests/e2e/{module}.py": "faults" for module in ("test_faults", "test_teardown")},
}  # fmt: skip
GROUPS = {**CLUSTER_GROUPS, "tests/e2e/test_containers.py": "containers"}


def shares_cluster(module: str, other: str) -> bool:
    """Whether `other`'s tests run on the same session cluster as `module`'s: always in one process
    (`pytest` without -n), else when both are in the same group."""
    import os

    return "PYTEST_XDIST_WORKER" not in os.environ or GROUPS.get(module) == GROUPS.get(other)


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
