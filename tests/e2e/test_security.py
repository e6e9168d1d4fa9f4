"""Security on the local cluster: token authentication everywhere, servers on
127.0.0.1 where they can be told to, and no secret anywhere after a full run.

Runs after the other e2e modules of its worker (tests/e2e/conftest.py orders
it), so the bucket, the job list and the logs hold a full run: training,
resume, evaluation and sweeps. The fault tests, on a cluster of their own in
`make test`, run the same scan on theirs (tests/e2e/test_faults.py).
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from controlplane import processes
from controlplane.local.groups import detect_gpus
from tests.conftest import LOCAL_CLUSTER, REPO_ROOT
from tests.e2e.procfs import is_loopback, listening_sockets

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(LOCAL_CLUSTER)]


def is_ray_internal(command: str) -> bool:
    """Ray 2.60's own servers (GCS, raylets, agents, the client server), which bind
    all interfaces whatever --node-ip-address says (docs/operations.md: Security)."""
    return command.startswith("ray::") or "/site-packages/ray/" in command or "-m ray." in command


def token_of(cluster) -> str:
    return Path(cluster.client_env()["RAY_AUTH_TOKEN_PATH"]).read_text().strip()


def http_status(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_jobs_api_and_dashboard_refuse_requests_without_the_token(cluster):
    address = cluster.client_env()["RAY_ADDRESS"]
    token = token_of(cluster)
    for path in ("/api/jobs/", "/api/version", "/nodes?view=summary", "/api/cluster_status"):
        assert http_status(address + path) == 401, path
        assert http_status(address + path, token="not-the-token") in (401, 403), path
        assert http_status(address + path, token=token) == 200, path


def test_ray_job_submit_needs_the_token(cluster, tmp_path):
    ray = str(Path(sys.executable).parent / "ray")
    command = [ray, "job", "submit", "--entrypoint-num-cpus", "0", "--", "python", "-c", "print('hello from a job')"]
    with_token = subprocess.run(command, cwd=tmp_path, env=cluster.client_env(), capture_output=True, text=True)
    assert with_token.returncode == 0, with_token.stdout + with_token.stderr
    assert "hello from a job" in with_token.stdout
    # Same command, without the token (and a HOME without ~/.ray/auth_token).
    bare = {k: v for k, v in cluster.client_env().items() if k not in ("RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")}
    bare["HOME"] = str(tmp_path)
    without = subprocess.run(command, cwd=tmp_path, env=bare, capture_output=True, text=True, timeout=300)
    assert without.returncode != 0
    assert "hello from a job" not in without.stdout


# ---------------------------------------------------------------- listening sockets


def test_dashboard_and_every_s3_port_listen_on_127_0_0_1_only(cluster):
    state = cluster.state.load()
    sockets = listening_sockets(processes.processes_with_marker(state["cluster_id"]))
    assert sockets
    dashboard = [(a, p) for a, p, _, _ in sockets if p == state["dashboard_port"]]
    assert dashboard and all(is_loopback(a) for a, _ in dashboard), dashboard
    s3 = [(a, p) for a, p, pid, _ in sockets if pid == state["pids"]["s3"]]
    assert {p for _, p in s3} >= {state["s3_ports"]["s3.port"]}
    assert all(is_loopback(a) for a, _ in s3), s3
    # Whatever else listens beyond loopback is Ray's own (the GCS test below: it takes the token).
    others = [(a, p, c) for a, p, _, c in sockets if not is_loopback(a)]
    assert all(is_ray_internal(c) for _, _, c in others), [(a, p, c[:120]) for a, p, c in others]


def test_gcs_refuses_a_request_without_the_token_on_every_address(cluster):
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    port = cluster.state.load()["gcs_port"]
    addresses = {"127.0.0.1"}
    try:
        addresses.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    for address in addresses:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(grpc.insecure_channel(f"{address}:{port}"))
        request = gcs_service_pb2.GetAllNodeInfoRequest()
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetAllNodeInfo(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, address
        reply = stub.GetAllNodeInfo(request, timeout=30, metadata=(("authorization", f"Bearer {token_of(cluster)}"),))
        assert len(reply.node_info_list) >= 3, address


# ---------------------------------------------------------------- no secret anywhere


def secrets_of(cluster) -> dict[str, bytes]:
    env = cluster.client_env()
    return {"S3 secret key": env["AWS_SECRET_ACCESS_KEY"].encode(), "Ray token": token_of(cluster).encode()}


def find_secrets(cluster, secrets: dict[str, bytes]) -> list[str]:
    """Every place one of `secrets` is found: objects in the bucket, job records
    (metadata, runtime_env, entrypoint) and logs of every job the head knows,
    and every file in the state folder and Ray's temp folder (Ray's own logs,
    the job drivers' logs among them), but the secrets' own 0600 files."""
    env = cluster.client_env()
    found = []
    s3 = cluster.s3()
    for key in cluster.keys():
        body = s3.get_object(Bucket=env["RL_BUCKET"], Key=key)["Body"].read()
        found += [f"{what} in s3://{env['RL_BUCKET']}/{key}" for what, secret in secrets.items() if secret in body]
    client = cluster.jobs()
    for job in client.list_jobs():
        record = repr(job).encode()
        logs = client.get_job_logs(job.submission_id).encode()
        found += [f"{what} in job record {job.submission_id}" for what, secret in secrets.items() if secret in record]
        found += [f"{what} in job logs {job.submission_id}" for what, secret in secrets.items() if secret in logs]
    root = cluster.state.root
    ray_dir = Path(os.path.realpath(cluster.state.ray_link))
    for folder in (root, ray_dir):
        for path in folder.rglob("*"):
            if path in own_secret_files(cluster) or path.is_relative_to(cluster.state.s3_data):
                continue
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            found += [f"{what} in file {path}" for what, secret in secrets.items() if secret in data]
    return found


def own_secret_files(cluster) -> set[Path]:
    root = cluster.state.root
    return {cluster.state.env_file, cluster.state.auth_token, root / "s3-credentials.json"}


def test_no_secret_in_any_object_job_record_job_log_or_state_file(cluster):
    # Runs before the faults and the down/up test (tests/e2e/conftest.py): the head still
    # knows every job of this test run, training, resume and evaluation included.
    entrypoints = " ".join(job.entrypoint for job in cluster.jobs().list_jobs())
    expected = ["jobs.train", "jobs.evaluate", "jobs.sweep"] + (["--gpu-fallback cpu"] if not detect_gpus() else [])
    for module in expected:
        assert module in entrypoints, f"expected a full run before the scan: no {module} job"
    assert any("/trials/" in key for key in cluster.keys()), "expected a full run (train and sweeps) in the bucket"
    for path in own_secret_files(cluster):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert find_secrets(cluster, secrets_of(cluster)) == []


def test_the_scan_finds_a_secret_planted_in_a_training_jobs_output(cluster):
    """The scan above can fail: the spine's training job carries a random token in its
    experiment name, as a leaked secret would be printed. The scan finds it in that job's
    logs, in Ray's logs (the job driver's log file) and in the bucket (experiment.yaml)."""
    from tests.e2e.test_local_spine import TRAINED

    assert TRAINED, "needs the spine's training run (tests/e2e/test_local_spine.py)"
    planted = TRAINED["name"].encode()
    found = find_secrets(cluster, {"planted": planted})
    assert any(place.startswith("planted in job logs") for place in found), found
    assert any(place.startswith("planted in file") and "job-driver-" in place for place in found), found
    assert any(place.startswith("planted in s3://") for place in found), found


def test_repository_files_hold_no_secret(cluster):
    secrets = secrets_of(cluster)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    for name in listed.stdout.split():
        path = REPO_ROOT / name
        if path.is_file():
            data = path.read_bytes()
            for what, secret in secrets.items():
                assert secret not in data, f"{what} found in {name}"
