"""A real local cluster for the end-to-end tests: Ray head + CPU group + GPU
group + SeaweedFS, started with `python -m controlplane up` in a temporary
state folder on free ports, and stopped by PID afterwards, also on failure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane import processes
from controlplane.polling import wait_for
from controlplane.ports import free_port
from controlplane.state import StateDir
from jobs.common.reports.outcome import EvaluationOutcome, SweepOutcome, TrainOutcome
from jobs.common.storage import layout
from tests.conftest import REPO_ROOT, module_group
from tests.e2e import procfs

# What `source .cluster/env` gives a user of the local or docker cluster, each set (the Ray token by its path only).
CLIENT_ENV = {
    "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "RL_BUCKET", "RL_STORAGE_URI", "RL_WORKER_GROUPS", "CLUSTER_STATE_DIR",
}  # fmt: skip


@dataclass
class Cluster:
    state: StateDir
    env: dict[str, str]

    def control(self, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "controlplane", *args],
            cwd=REPO_ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def train(self, *args: str, config: str = "jobs/experiments/ppo-cartpole.yaml", **kwargs):
        """`python -m controlplane submit -- python -m jobs.train --config ... <args>`."""
        return self.control("submit", "--", "python", "-m", "jobs.train", "--config", config, *args, **kwargs)

    def client_env(self) -> dict[str, str]:
        """What a user has after `source .cluster/env`."""
        return {**self.env, **self.state.read_env()}

    def s3(self):
        import boto3

        env = self.client_env()
        return boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, prefix: str = "") -> list[str]:
        bucket = self.client_env()["RL_BUCKET"]
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def read(self, uri: str) -> bytes | None:
        """An object of the cluster's bucket by its s3:// URI (None where there is none)."""
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        try:
            return self.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3().exceptions.NoSuchKey:
            return None

    def prefix(self, name: str) -> str:
        """The key prefix of an experiment's or sweep's folder in the bucket, ending in '/'."""
        return self.client_env()["RL_STORAGE_URI"].split("/", 3)[3] + f"/{name}/"

    def object(self, key: str) -> bytes:
        """An object of the cluster's bucket by its key (it must be there)."""
        return self.s3().get_object(Bucket=self.client_env()["RL_BUCKET"], Key=key)["Body"].read()

    def wait_for_job(self, job_id: str, timeout: float = 900) -> str:
        """The job's final status (SUCCEEDED, FAILED or STOPPED), once it has one."""
        client = self.jobs()

        def ended() -> str | None:
            status = str(client.get_job_status(job_id))
            return status if status in ("SUCCEEDED", "FAILED", "STOPPED") else None

        return wait_for(f"job {job_id} to end", ended, timeout_s=timeout, every_s=1)

    def wait_for_checkpoint(self, name: str, iteration: int, job_id: str | None = None, timeout: float = 600) -> dict:
        """latest.json of run `name` once it points at `iteration` or later; with `job_id`, failing at
        once (with the job's logs) if that job ends first."""
        key = self.prefix(name) + "latest.json"

        def checkpointed() -> dict | None:
            if key in self.keys(self.prefix(name)):
                latest = json.loads(self.object(key))
                if latest["iteration"] >= iteration:
                    return latest
            if job_id:
                status = str(self.jobs().get_job_status(job_id))
                assert status in ("PENDING", "RUNNING"), self.jobs().get_job_logs(job_id)[-3000:]
            return None

        return wait_for(f"run {name}'s checkpoint at iteration {iteration}", checkpointed, timeout_s=timeout)

    def train_outcome(self, name: str) -> TrainOutcome:
        """The training run's record (jobs/common/reports/outcome.py): what its job left, never a log line."""
        data = self.read(layout.experiment(self.client_env()["RL_STORAGE_URI"], name).outcome)
        assert data, f"run {name} left no outcome.json"
        return TrainOutcome.from_json(data)

    def sweep_outcome(self, name: str) -> SweepOutcome:
        data = self.read(layout.sweep(self.client_env()["RL_STORAGE_URI"], name).outcome)
        assert data, f"sweep {name} left no outcome.json"
        return SweepOutcome.from_json(data)

    def evaluation_outcome(self, checkpoint: str) -> EvaluationOutcome:
        data = self.read(layout.Checkpoint(checkpoint).evaluation.result)
        assert data, f"no evaluation of {checkpoint}"
        return EvaluationOutcome.from_json(data)

    def jobs(self):
        env = self.client_env()
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": env["RAY_AUTH_TOKEN_PATH"]})
        from ray.job_submission import JobSubmissionClient

        # The token as a header too: Ray reads RAY_AUTH_MODE once, when first imported, and a
        # test module may have imported it before the lines above ran.
        token = Path(env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        return JobSubmissionClient(env["RAY_ADDRESS"], headers={"authorization": f"Bearer {token}"})


def job_id_of(output: str) -> str:
    found = re.findall(r"Job '(raysubmit_\w+)'", output)
    assert found, f"no job id in:\n{output[-2000:]}"
    return found[0]


# The unit tests come first. On the session cluster of the "local-cluster" worker (tests/conftest.py)
# the security scan runs once the bucket, the jobs and the logs hold a full run (training, resume,
# evaluation, the GPU stand-in, sweeps) and before anything restarts the head (a restarted head
# forgets every earlier job and its logs); then the spine's cluster down/up. The fault tests run on
# a cluster of their own in the other worker, scan it for secrets last (test_faults.py), and after
# them comes the independent check that cluster-down leaves nothing behind (test_teardown.py).
LAST = (
    "tests/e2e/test_security.py",
    "tests/e2e/test_faults.py",
    "tests/e2e/test_local_spine.py::test_cluster_down_stops_everything_and_the_bucket_survives_a_restart",
    "tests/e2e/test_teardown.py",
)


def order(nodeid: str) -> int:
    if nodeid.startswith("tests/unit/"):
        return -1
    return next((i + 1 for i, module in enumerate(LAST) if nodeid.startswith(module)), 0)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: order(item.nodeid))
    # The xdist groups (tests/conftest.py) go by module: a module on the session's cluster without its
    # group would have its tests spread over the workers, each starting a cluster of its own.
    using = {item.nodeid.split("::")[0] for item in items if "cluster" in item.fixturenames}
    if strays := sorted(module for module in using if module_group(module) is None):
        raise pytest.UsageError(
            f"{strays} use the `cluster` fixture: give each `pytest.mark.xdist_group(LOCAL_CLUSTER)` (or SECOND, "
            "tests/conftest.py) in its pytestmark"
        )


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster") / ".cluster"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_", "RL_"))},
        "CLUSTER_STATE_DIR": str(root),
        "DASHBOARD_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    cluster = Cluster(state=StateDir(root), env=env)
    # What ran before cluster-up: the teardown test judges what is left against it.
    cluster.pids_before_up = procfs.pids()
    started = cluster.control("up", timeout=300)
    markers = set()
    try:
        state = cluster.state.load()
        if state:
            markers.add(state["cluster_id"])
        assert started.returncode == 0, started.stdout + started.stderr
        cluster.up_output = started.stdout
        cluster.markers = markers
        yield cluster
    finally:
        state = cluster.state.load()
        footprint = None
        if state:
            markers.add(state["cluster_id"])
            # Still up (a run of some of the tests only): judged as tests/e2e/test_teardown.py judges
            # it, by the kernel, not by the marker `down` goes by.
            footprint = procfs.cluster_footprint(cluster)
        down = cluster.control("down", timeout=120)
        # Whatever `down` missed, by our marker only: never other Ray processes. Then fail
        # loudly: a down that leaves processes behind is a bug, not something to tidy up.
        leftovers = [pid for marker in markers for pid in processes.processes_with_marker(marker)]
        processes.kill_pids(leftovers)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not leftovers, f"cluster-down left processes of the cluster running: {leftovers}"
        if footprint:
            procfs.assert_nothing_left(*footprint)
