import ast
import functools
from pathlib import Path

import pytest

from controlplane.state import REPO_ROOT

CARTPOLE = REPO_ROOT / "jobs" / "experiments" / "ppo-cartpole.yaml"

# `make test` runs two pytest-xdist workers. Each module says which one it belongs to with xdist's
# own marker in its `pytestmark`, `pytest.mark.xdist_group(...)`, and runs whole in that worker, in the
# order tests/e2e/conftest.py gives it. LOCAL_CLUSTER: the unit tests (no marker needed), then the
# tests on that worker's session cluster, the secret scan after them. SECOND: the container tests (their
# own dockerd and cluster), then the fault tests on a local cluster of their own (they kill its nodes
# and head), their own secret scan, and last the independent cluster-down check. The two weigh about
# the same, and Ray and Docker spend much of a test waiting (node start-up, health checks, an S3
# outage), so they overlap well on two cores. The unit tests never run beside the session cluster's
# tests: some start, signal and kill processes of their own. A module with no marker is spread over
# both, test by test.
LOCAL_CLUSTER = "local-cluster"
SECOND = "containers-then-faults"


@functools.cache
def module_group(module: str) -> str | None:
    """The xdist_group named in a test module's `pytestmark` (read from its source: xdist's scheduler,
    which runs in the controller, sees node ids, not collected items)."""
    if module.startswith("tests/unit/"):
        return LOCAL_CLUSTER
    path = REPO_ROOT / module
    if not path.is_file():
        return None
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            for call in ast.walk(node.value):
                if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "xdist_group":
                    return ast.literal_eval(_group_argument(call))
    return None


def _group_argument(call: ast.Call) -> ast.expr:
    argument = call.args[0] if call.args else next(k.value for k in call.keywords if k.arg == "name")
    # The names above, or a literal.
    if isinstance(argument, ast.Name):
        return ast.Constant({"LOCAL_CLUSTER": LOCAL_CLUSTER, "SECOND": SECOND}[argument.id])
    return argument


def pytest_xdist_make_scheduler(config, log):
    """xdist's loadgroup, by module (pytest 9 ignores the group suffix xdist 3.8 adds to node ids)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return module_group(module) or nodeid

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
