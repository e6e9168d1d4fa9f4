from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CARTPOLE = REPO_ROOT / "jobs" / "experiments" / "ppo-cartpole.yaml"


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
