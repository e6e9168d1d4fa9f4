"""Processes we start, and stopping exactly those.

Each server runs in its own session (process group), so a raylet's helpers
(dashboard agent, runtime-env agent, workers) go down with it. Every process
also carries a marker in its environment, inherited by all its children, so
that `down` can find and stop anything of ours that escaped its group, and
nothing else: never `pkill`, never `ray stop`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

MARKER_VAR = "RL_CLUSTER_ID"


def start_in_own_session(cmd: list[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None) -> int:
    """Start `cmd` detached in a new session; its output goes to `log_path`. Returns the PID (= PGID)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            cmd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
            close_fds=True,
        )
    return process.pid


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def processes_with_marker(marker: str) -> list[int]:
    """PIDs whose environment holds MARKER_VAR=marker (Linux /proc)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and is_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_groups(pgids: Iterable[int], grace_s: float = 5.0) -> None:
    """SIGTERM every group, wait up to `grace_s`, then SIGKILL what is left.

    Raylets and GCS may ignore SIGTERM for many seconds; their state lives in
    S3 anyway, so a short grace is enough.
    """
    pgids = [p for p in pgids if p]
    for pgid in pgids:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_group_alive(p) for p in pgids):
        _reap()
        time.sleep(0.1)
    for pgid in pgids:
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
    # SIGKILL is not instant: wait (bounded) until the groups are really gone.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_group_alive(p) for p in pgids):
        _reap()
        time.sleep(0.05)
    _reap()


def kill_pids(pids: Iterable[int], wait_s: float = 5.0) -> None:
    """SIGKILL each PID and wait (bounded) until it is gone."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(is_alive(pid) for pid in pids):
        _reap()
        time.sleep(0.05)
    _reap()


def _reap() -> None:
    """Collect exited children of this process so they do not linger as zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def venv_executable(name: str, install_hint: str) -> str:
    """A command from this Python's environment (the .venv), else from PATH."""
    import shutil
    import sys

    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"the `{name}` command is missing: {install_hint}")
    return found
