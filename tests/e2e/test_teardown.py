"""Last of the end-to-end run (tests/e2e/conftest.py orders it after the faults):
`cluster-down` leaves nothing behind, judged by the kernel, not by the rule
`down` itself applies (the marker in each process's environment). The session
fixture makes the same check whenever it takes down a cluster still up (a run
of some of the tests only).

Before `down`, the cluster's footprint is read from /proc: every process
started since cluster-up that holds a file, folder or socket of the cluster
(its state folder, Ray's temp folder, its listening ports). After `down`,
none of those processes may be alive, none of those ports may still be
bound, and Ray's temp folder must be gone; the S3 data stays.
"""

from __future__ import annotations

import pytest

from tests.conftest import SECOND
from tests.e2e import procfs

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(SECOND)]


def test_cluster_down_leaves_no_process_port_or_temp_folder(cluster):
    processes, ports, ray_dir = procfs.cluster_footprint(cluster)
    # The footprint is real: the head, two worker nodes and the S3 server, their ports, Ray's folder.
    assert len(processes) >= 4, processes
    assert {cluster.state.load()["dashboard_port"], cluster.state.load()["gcs_port"]} <= ports
    assert ray_dir.is_dir()

    down = cluster.control("down", timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr

    procfs.assert_nothing_left(processes, ports, ray_dir)
    assert not cluster.state.env_file.exists() and not cluster.state.state_file.exists()
    assert cluster.state.s3_data.is_dir() and any(cluster.state.s3_data.iterdir()), "the S3 data must stay"
