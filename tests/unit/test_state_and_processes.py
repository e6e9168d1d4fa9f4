"""The state folder's files, and stopping exactly the processes we started."""

import os
import stat
import sys
import time

from controlplane import processes
from controlplane.state import StateDir


def test_env_file_is_private_and_round_trips(tmp_path):
    state = StateDir(tmp_path / ".cluster")
    state.write_env({"RAY_ADDRESS": "http://127.0.0.1:8265", "WITH_SPACE": "a b'c"}, header="hello\nworld")
    mode = stat.S_IMODE(os.stat(state.env_file).st_mode)
    assert mode == 0o600
    text = state.env_file.read_text()
    assert text.startswith("# hello\n# world\n")
    assert "export RAY_ADDRESS=http://127.0.0.1:8265" in text
    assert state.read_env() == {"RAY_ADDRESS": "http://127.0.0.1:8265", "WITH_SPACE": "a b'c"}


def test_secrets_are_generated_once_and_private(tmp_path):
    state = StateDir(tmp_path / ".cluster")
    token_path = state.ensure_auth_token()
    token = token_path.read_text()
    assert len(token) == 64 and state.ensure_auth_token().read_text() == token
    assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600
    first = state.s3_credentials()
    assert state.s3_credentials() == first
    assert first["secret_access_key"] and first["access_key_id"]


def test_stop_groups_stops_a_process_and_its_children(tmp_path):
    marker = f"test-{os.getpid()}-{time.time_ns()}"
    env = {**os.environ, processes.MARKER_VAR: marker}
    # A parent that ignores SIGTERM, with a child: both must go.
    script = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    pid = processes.start_in_own_session([sys.executable, "-c", script], env, tmp_path / "log")
    deadline = time.monotonic() + 10
    while len(processes.processes_with_marker(marker)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(processes.processes_with_marker(marker)) == 2
    processes.stop_groups([pid], grace_s=0.5)
    assert processes.processes_with_marker(marker) == []
    assert not processes.is_alive(pid)


def test_marker_search_finds_escaped_processes_only(tmp_path):
    marker = f"test-escaped-{time.time_ns()}"
    env = {**os.environ, processes.MARKER_VAR: marker}
    pid = processes.start_in_own_session([sys.executable, "-c", "import time; time.sleep(60)"], env, tmp_path / "log")
    other = processes.start_in_own_session(
        [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), tmp_path / "log2"
    )
    try:
        deadline = time.monotonic() + 10
        while not processes.processes_with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes.processes_with_marker(marker) == [pid]
        processes.kill_pids(processes.processes_with_marker(marker))
        assert processes.processes_with_marker(marker) == []
        assert processes.is_alive(other)
    finally:
        processes.stop_groups([pid, other], grace_s=0.1)
