"""Last of the end-to-end run (tests/e2e/conftest.py orders it after the faults):
`cluster-down` leaves nothing behind, judged by the kernel, not by the rule
`down` itself applies (the marker in each process's environment).

Before `down`, the cluster's footprint is read from /proc: every process
started since cluster-up that holds a file, folder or socket of the cluster
(its state folder, Ray's temp folder, its listening ports). After `down`,
none of those processes may be alive, none of those ports may still be
bound, and Ray's temp folder must be gone; the S3 data stays.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.e2e import procfs

pytestmark = pytest.mark.e2e


def footprint(cluster) -> tuple[dict[int, str], set[int], Path]:
    state = cluster.state.load()
    assert state, "the cluster is not up: nothing to check"
    ray_dir = Path(state["ray_temp_dir"]).resolve()
    roots = (str(ray_dir), str(cluster.state.root.resolve()))
    started_since = procfs.pids() - cluster.pids_before_up - {os.getpid()}
    held = {
        pid: procfs.command_line(pid)
        for pid in started_since
        if any(path.startswith(roots) for path in procfs.open_paths(pid))
    }
    ports = {port for _, port, _, _ in procfs.listening_sockets(set(held))}
    return held, ports, ray_dir


def test_cluster_down_leaves_no_process_port_or_temp_folder(cluster):
    processes, ports, ray_dir = footprint(cluster)
    # The footprint is real: the head, two worker nodes and the S3 server, their ports, Ray's folder.
    assert len(processes) >= 4, processes
    assert {cluster.state.load()["dashboard_port"], cluster.state.load()["gcs_port"]} <= ports
    assert ray_dir.is_dir()

    down = cluster.control("down", timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr

    deadline = time.monotonic() + 10  # a killed process takes a moment to be reaped
    while time.monotonic() < deadline and set(processes) & procfs.pids():
        time.sleep(0.2)
    alive = {pid: command for pid, command in processes.items() if pid in procfs.pids()}
    assert not alive, f"still running after cluster-down: {alive}"
    bound = {port for _, port, _, _ in procfs.listening_sockets() if port in ports}
    assert not bound, f"ports of the cluster still listening after cluster-down: {sorted(bound)}"
    assert not ray_dir.exists(), f"Ray's temp folder {ray_dir} is still there"
    assert not cluster.state.env_file.exists() and not cluster.state.state_file.exists()
    assert cluster.state.s3_data.is_dir() and any(cluster.state.s3_data.iterdir()), "the S3 data must stay"
