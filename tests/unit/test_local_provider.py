"""The local provider's start-up decisions, without starting Ray."""

import pytest

from controlplane.errors import ClusterError
from controlplane.local.provider import LocalProvider
from controlplane.ports import free_port
from controlplane.state import StateDir


def provider(tmp_path, monkeypatch, failures: int):
    made = LocalProvider(StateDir(tmp_path / ".cluster"), dashboard_port=free_port())
    calls = []

    def start_all(state):
        calls.append(state["cluster_id"])
        if len(calls) <= failures:
            raise ClusterError("gpu-workers failed to start: it exited during start-up")

    made_dirs = []

    def mkdtemp(prefix):
        # Ray temp dirs of failed attempts are kept for diagnosis: keep them inside tmp_path.
        path = tmp_path / f"{prefix}{len(made_dirs)}"
        path.mkdir()
        made_dirs.append(path)
        return str(path)

    spec = made._spec_from_overlay()  # rendered (kustomize, in a temp dir) before mkdtemp is replaced
    monkeypatch.setattr(made, "_spec_from_overlay", lambda: spec)
    monkeypatch.setattr("controlplane.local.provider.tempfile.mkdtemp", mkdtemp)
    monkeypatch.setattr(made, "start", start_all)
    monkeypatch.setattr(made, "wait_until_ready", lambda state, restarted=(): None)
    monkeypatch.setattr(made, "show_status", lambda state: 0)
    return made, calls


def test_a_failed_start_is_retried_once_from_scratch(tmp_path, monkeypatch, capsys):
    made, calls = provider(tmp_path, monkeypatch, failures=1)
    assert made.up() == 0
    assert len(calls) == 2 and calls[0] != calls[1]  # a fresh cluster id (and ports, temp dirs)
    assert "starting once more" in capsys.readouterr().out
    assert made.state_dir.env_file.exists()


def test_two_failed_starts_report_the_error_and_leave_nothing_recorded(tmp_path, monkeypatch):
    made, calls = provider(tmp_path, monkeypatch, failures=2)
    with pytest.raises(ClusterError, match="exited during start-up"):
        made.up()
    assert len(calls) == 2
    assert made.state_dir.load() is None and not made.state_dir.env_file.exists()
