"""The cluster in containers (PROVIDER=docker), end to end, on a Docker Engine of the tests' own.

The tests start their own dockerd (data root ~/.cache/ray-rl/docker-tests, or
$RL_TEST_DOCKER_ROOT, kept so that the next run's build is cached; its own exec
root, pidfile and socket) and stop it by PID at the end. `make images-local`
builds the images into it (from scratch on a fresh machine), with a user's
cluster secrets in its environment, as after `source .cluster/env`. Then:
what the images hold (uid 1000, the pinned Python/Ray/torch, `jobs/` imports,
no key or token in any layer of the saved images), then `make cluster-up
PROVIDER=docker` of tests/e2e/overlays/autoscale: the local overlay with a
cpu-workers group of 0 to 2 nodes and a 10 s idle timeout, scaled by Ray's own
autoscaler on the host (groups, markers, token, `.cluster/env`, loopback-only
ports); a sweep whose trials need both nodes (the group grows to two containers,
every trial finishes, and back at zero after the idle timeout, as `make
cluster-status` shows); PPO on CartPole through the Jobs API to a return of 450
with its checkpoint in S3, evaluation from that S3 URI; the worker container
killed mid-training and the job healing itself on a node the autoscaler brings; a
node removed the way the autoscaler removes one (its preStop hook drains it)
while sweep trials run on it, losing no finished iteration; and cluster-down
leaving no container, network or volume but the S3 data.

A machine without Docker fails these tests, saying what is missing (.ci/run
installs it); they are never skipped in silence.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane import processes
from controlplane.clusterspec import ClusterSpec
from controlplane.containers import images as image_build
from controlplane.containers.autoscaler import load_cluster
from controlplane.containers.daemon import Engine, OwnDaemon, cache_dir
from controlplane.containers.nodes import CLUSTER_LABEL, ROLE_LABEL, SCALING_LOG, STATE_LABEL
from controlplane.ports import free_port
from controlplane.state import StateDir
from tests.conftest import REPO_ROOT, SECOND
from tests.e2e.conftest import CLIENT_ENV, Cluster, job_id_of
from tests.e2e.joblog import ours

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(1800), pytest.mark.xdist_group(SECOND)]

RUN = uuid.uuid4().hex[:6]
PPO = "jobs/experiments/ppo-cartpole.yaml"
# cpu-workers: 0 to 2 nodes of 2 CPUs, idle for 10 s before they go.
OVERLAY = "tests/e2e/overlays/autoscale"
NAMES = image_build.ImageNames.from_env()


def docker_missing() -> str | None:
    """Why this machine cannot run the container tests, or None."""
    needs = "tests/e2e/test_containers.py needs a Docker Engine of its own"
    if not shutil.which("dockerd") or not shutil.which("docker"):
        return f"{needs}: `dockerd`/`docker` are missing (Debian: apt-get install docker.io; .ci/run installs them)"
    if os.geteuid() != 0:
        return f"{needs}, and starting dockerd needs root (run the tests as root, as CI does)"
    if not shutil.which("debootstrap"):
        return f"{needs} and debootstrap to build the images' base: apt-get install debootstrap (.ci/run does)"
    return None


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """One test session at a time on the tests' engine (another one waits here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="module")  # stopped before the fault tests that follow in the same worker
def docker_engine() -> Iterator[Engine]:
    problem = docker_missing()
    if problem:
        pytest.fail(problem, pytrace=False)
    own = OwnDaemon(Path(os.environ.get("RL_TEST_DOCKER_ROOT") or cache_dir() / "docker-tests"))
    with exclusive(own.root / "session.lock"):
        own.start()
        try:
            yield own.engine
        finally:
            left = own.engine.docker("ps", "--all", "--quiet", check=False).stdout.split()
            if left:
                own.engine.docker("rm", "--force", "--volumes", *left, check=False)
            own.stop()


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> StateDir:
    """The cluster's state folder; its S3 keys and Ray token exist before the images are built."""
    state = StateDir(tmp_path_factory.mktemp("docker-cluster") / ".cluster")
    state.s3_credentials()
    state.ensure_auth_token()
    return state


# The image names (the Makefile exports them from REGISTRY/TAG) and the build cache's place go through.
KEPT = ("RL_IMAGE", "RL_IMAGE_TAG", "RL_S3_IMAGE", "RL_CACHE_DIR")


def base_env(engine: Engine) -> dict[str, str]:
    """No cluster, storage or engine of the caller's: only this test's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in KEPT or not k.startswith(("AWS_", "RAY_", "RL_", "DOCKER_", "CLUSTER_STATE_DIR"))
    }
    return {**env, "DOCKER_HOST": engine.host, "PYTHONUNBUFFERED": "1"}


def secrets_of(state: StateDir) -> dict[str, str]:
    """Every secret a build on this machine could leak: this cluster's, and the repo's own .cluster's."""
    found = {}
    for name, root in (("test", state.root), ("repo", REPO_ROOT / ".cluster")):
        credentials = root / "s3-credentials.json"
        if credentials.exists():
            keys = json.loads(credentials.read_text())
            found[f"{name} S3 secret key"] = keys["secret_access_key"]
            found[f"{name} S3 access key id"] = keys["access_key_id"]
        if (root / "auth_token").exists():
            found[f"{name} Ray token"] = (root / "auth_token").read_text().strip()
    return found


@pytest.fixture(scope="module")
def built(docker_engine, state) -> dict[str, float]:
    """`make images-local` into the tests' engine, with the cluster's secrets in its environment."""
    keys = state.s3_credentials()
    env = {
        **base_env(docker_engine),
        "AWS_ACCESS_KEY_ID": keys["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": keys["secret_access_key"],
        "RAY_AUTH_TOKEN": state.auth_token.read_text().strip(),
        "CLUSTER_STATE_DIR": str(state.root),
    }
    started = time.monotonic()
    result = subprocess.run(
        ["make", "images-local"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    print(result.stdout[-1500:])
    print(f"make images-local: {time.monotonic() - started:.0f}s")
    return {"build_s": time.monotonic() - started}


class Needles:
    """The secrets searched for in a stream of bytes, across chunk boundaries."""

    def __init__(self, secrets: dict[str, str]):
        self.needles = {label: value.encode() for label, value in secrets.items()}
        self.overlap = max(len(n) for n in self.needles.values())
        self.hits: set[str] = set()
        self.bytes = 0

    def search(self, data: bytes, where: str) -> None:
        self.hits |= {f"{label} in {where}" for label, needle in self.needles.items() if needle in data}

    def stream(self, handle, where: str) -> None:
        tail = b""
        while chunk := handle.read(16 << 20):
            window = tail + chunk
            self.search(window, where)
            tail = window[-self.overlap :]
            self.bytes += len(chunk)


def scan_images(engine: Engine, refs: list[str], secrets: dict[str, str]) -> dict:
    """Every layer of the images and their configs, searched for the secrets.

    What `docker save` would hold, read where the engine keeps it: on overlay2, each
    layer is a folder (GraphDriver's UpperDir and LowerDirs), so every file's bytes,
    every path and every link target of every layer are searched, with the image
    configs (environment, labels, history with each build step's command). Reading
    the folders takes a fraction of `docker save`'s time; other drivers are saved."""
    needles = Needles(secrets)
    inspected = json.loads(engine.docker("image", "inspect", *refs).stdout)
    history = [engine.docker("history", "--no-trunc", "--format", "{{json .}}", ref).stdout for ref in refs]
    needles.search(json.dumps(inspected).encode() + "".join(history).encode(), "the image configs and history")
    layers = []
    for image in inspected:
        driver = image["GraphDriver"]
        if driver["Name"] != "overlay2":
            return scan_saved_images(engine, refs, needles)
        for folder in [driver["Data"]["UpperDir"], *filter(None, driver["Data"].get("LowerDir", "").split(":"))]:
            if folder not in layers:
                layers.append(folder)
    for layer in layers:
        for root, folders, files in os.walk(layer):
            for name in folders + files:
                path = os.path.join(root, name)
                needles.search(path.encode(errors="surrogateescape"), f"a path in layer {layer}")
                if os.path.islink(path):
                    needles.search(os.readlink(path).encode(errors="surrogateescape"), f"a link in {path}")
                elif name in files and os.path.isfile(path):
                    with open(path, "rb") as handle:
                        needles.stream(handle, path)
    return {"layers": len(layers), "bytes": needles.bytes, "hits": sorted(needles.hits)}


def scan_saved_images(engine: Engine, refs: list[str], needles: Needles) -> dict:
    """`docker save` the images and search every file of it (each layer tar, each config)."""
    layers = 0
    save = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE, env=engine.env())
    with tarfile.open(fileobj=save.stdout, mode="r|") as saved:
        for member in saved:
            if member.isfile():
                layers += member.name.endswith("layer.tar")
                needles.stream(saved.extractfile(member), member.name)
    assert save.wait() == 0
    return {"layers": layers, "bytes": needles.bytes, "hits": sorted(needles.hits)}


@pytest.fixture(scope="module")
def docker_cluster(docker_engine, built, state) -> Iterator[Cluster]:
    env = {
        **base_env(docker_engine),
        "PROVIDER": "docker",
        "OVERLAY": OVERLAY,
        "CLUSTER_STATE_DIR": str(state.root),
        "DASHBOARD_PORT": str(free_port()),
    }
    cluster = Cluster(state=state, env=env)
    started = time.monotonic()
    up = cluster.control("up", timeout=400)
    cluster.up_s = time.monotonic() - started
    try:
        assert up.returncode == 0, (up.stdout + up.stderr)[-5000:]
        cluster.up_output = up.stdout
        yield cluster
    finally:
        cluster.control("down", timeout=300)
        left = docker_engine.docker("ps", "-aq", f"--filter=label={STATE_LABEL}={state.root}", check=False)
        if left.stdout.split():
            docker_engine.docker("rm", "--force", "--volumes", *left.stdout.split(), check=False)


def run_in_image(engine: Engine, image: str, script: str) -> str:
    result = engine.docker("run", "--rm", "--network=none", image, "bash", "-c", script, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# ------------------------------------------------------------------ the images


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_image_runs_as_uid_1000_with_the_pinned_python_ray_torch_and_jobs_import(docker_engine, built, variant):
    image = NAMES.project(variant)
    assert docker_engine.docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip() == "1000:100"
    script = (
        "id -u; id -g; echo $HOME; "
        "python -c 'import sys, ray, torch; print(*sys.version_info[:2]); print(ray.__version__); "
        "print(torch.__version__, torch.version.cuda)'; "
        "python -c 'import jobs.train, jobs.sweep, jobs.evaluate; print(\"jobs import\")'"
    )
    uid, gid, home, python, ray, torch, imported = run_in_image(docker_engine, image, script).splitlines()[-7:]
    pins = NAMES.pins
    assert (uid, gid, home) == ("1000", "100", "/home/ray")
    assert python == "3 11" and ray == pins.ray and imported == "jobs import"
    torch_version, cuda = torch.split()
    if variant == "cpu":
        assert (torch_version, cuda) == (f"{pins.torch}+cpu", "None")  # the CPU build, from the local wheel
    else:
        assert torch_version.split("+")[0] == pins.torch and cuda != "None"  # the CUDA build (PyPI's: +cu130)
    labels = json.loads(docker_engine.docker("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout)
    assert labels["org.ray-rl.base"] == NAMES.base  # built FROM the stand-in base, unchanged Dockerfile


def test_no_key_or_token_in_any_layer_of_the_saved_images(docker_engine, built, state):
    """Built with the cluster's keys and token in the environment (and the repo's own .cluster, if any,
    on disk): every layer of every image, and each image's config and history, searched for them."""
    refs = [NAMES.project("cpu"), NAMES.project("gpu"), NAMES.base, NAMES.s3_local]
    # A control the scan must find: the lock's torch pin, in the copy of requirements.lock in the image.
    control = f"torch=={NAMES.pins.torch}\n"
    started = time.monotonic()
    result = scan_images(docker_engine, refs, {**secrets_of(state), "control": control})
    seconds = time.monotonic() - started
    print(f"scanned {result['layers']} layers, {result['bytes'] / 1024**3:.1f} GiB in {seconds:.0f}s")
    assert result["layers"] >= 5 and result["bytes"] > 1024**3
    found = [hit for hit in result["hits"] if hit.startswith("control in ")]
    assert found, "the scan did not find the control: it searched nothing"
    assert [hit for hit in result["hits"] if hit not in found] == []


# ------------------------------------------------------------------ the cluster


def status_rows(cluster: Cluster) -> tuple[dict[str, list[str]], dict[str, list[str]], str]:
    """`make cluster-status`: the groups table (GROUP NODES MIN MAX ...) and the ALIVE nodes, by group."""
    status = cluster.control("status")
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:4] == ["GROUP", "NODES", "MIN", "MAX"])
    groups = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        groups[line.split()[0]] = line.split()
    alive = {}
    for line in lines:
        if line.startswith("  ") and " ALIVE " in line:
            alive.setdefault(line.split()[0], []).append(line)
    return groups, alive, status.stdout


def worker_containers(engine: Engine, cluster: Cluster, group: str = "cpu-workers") -> list[str]:
    recorded = cluster.state.load()
    return engine.docker("ps", "--format", "{{.Names}}", f"--filter=label={CLUSTER_LABEL}={recorded['cluster_id']}",
                         f"--filter=label={ROLE_LABEL}={group}").stdout.split()  # fmt: skip


def test_cluster_up_runs_the_overlays_raycluster_with_markers_token_and_the_local_providers_client_env(
    docker_cluster, docker_engine
):
    cluster = docker_cluster
    print(f"cluster-up to ready: {cluster.up_s:.1f}s")
    spec = ClusterSpec.from_overlay(OVERLAY)
    assert f"groups from {OVERLAY}" in cluster.up_output and "cpu-workers: 0-2 x (2 CPU" in cluster.up_output
    groups, alive, _ = status_rows(cluster)
    # Each group: nodes now, min and max, from the overlay; the CPU group starts empty (minReplicas 0).
    assert groups["head"][1:4] == ["1", "1", "1"]
    assert groups["cpu-workers"][1:4] == ["0", "0", "2"]
    assert groups["gpu-workers"][1:4] == ["0", "0", "1"]
    assert set(alive) == {"head"} and alive["head"][0].split()[2:4] == ["0", "0"]
    env = cluster.state.read_env()
    assert oct(cluster.state.env_file.stat().st_mode & 0o777) == "0o600"
    assert set(env) == CLIENT_ENV and all(env.values()), env.keys()
    assert env["RAY_ADDRESS"] == f"http://127.0.0.1:{cluster.env['DASHBOARD_PORT']}" and env["RAY_AUTH_MODE"] == "token"
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    runtimes = docker_engine.info().get("Runtimes") or {}
    expected = spec if "nvidia" in runtimes else spec.with_gpus_available(0, "no NVIDIA runtime")[0]
    assert json.loads(env["RL_WORKER_GROUPS"]) == expected.capacity()  # max replicas x per-node shape

    recorded = cluster.state.load()
    ids = docker_engine.docker("ps", "-q", f"--filter=label={CLUSTER_LABEL}={recorded['cluster_id']}").stdout.split()
    assert len(ids) == 2  # S3 and the head: no worker until demand comes
    secrets = secrets_of(cluster.state)
    for container in json.loads(docker_engine.docker("inspect", *ids).stdout):
        role = container["Config"]["Labels"][ROLE_LABEL]
        # Published on 127.0.0.1 only: S3, and the head's Jobs API and GCS (for the autoscaler on the host).
        bindings = [b for port in (container["HostConfig"]["PortBindings"] or {}).values() for b in port]
        assert all(b["HostIp"] == "127.0.0.1" for b in bindings), bindings
        assert len(bindings) == {"head": 2, "s3": 1}[role]
        # No secret on a command line, in a label or a mount path; the token comes read-only.
        visible = json.dumps([container["Config"]["Cmd"], container["Args"], container["Config"]["Labels"]])
        assert not [label for label, value in secrets.items() if value in visible]
        if role == "head":
            token = [m for m in container["Mounts"] if m["Destination"] == "/run/secrets/ray/auth_token"]
            assert token and not token[0]["RW"]
            assert docker_engine.docker("exec", container["Id"], "id", "-u").stdout.strip() == "1000"
            assert container["HostConfig"]["Memory"] == spec.head.memory_limit_bytes  # the pod's limits
    # Ray's autoscaler runs on the host (it needs the engine; no container has the Docker socket).
    autoscaler_pid = recorded["pids"]["autoscaler"]
    assert Path(f"/proc/{autoscaler_pid}").exists()
    assert not [c for c in json.loads(docker_engine.docker("inspect", *ids).stdout)
                if any("docker.sock" in m["Source"] for m in c["Mounts"])]  # fmt: skip
    # What listens on the host for this cluster: docker-proxy on 127.0.0.1, nothing on other addresses.
    published = {int(env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]), int(cluster.env["DASHBOARD_PORT"])}
    published.add(recorded["gcs_port"])
    listening = host_listening()
    assert {port for _, port in listening} >= published
    assert all(address == "127.0.0.1" for address, port in listening if port in published), listening
    files = cluster.state.root / "containers"
    assert oct(files.stat().st_mode & 0o777) == "0o700"
    assert all(oct(f.stat().st_mode & 0o777) in ("0o600", "0o400") for f in files.iterdir())


def test_the_cpu_group_grows_for_a_sweeps_trials_and_shrinks_back_to_zero_when_idle(docker_cluster, docker_engine):
    """Two trials of 2 CPUs each: one whole cpu-workers node each. Ray's autoscaler adds two containers
    while they wait, every trial finishes, and 10 s after they are done the group is empty again."""
    cluster = docker_cluster
    name = f"docker-scale-{RUN}"
    args = ("--name", name, "--set", "num_samples=1", "--set", "scheduler={type: fifo}", "--set", "best=null",
            "--set", "search_space.model.fcnet_activation={grid_search: [relu]}", "--set", "stop.env_steps=20000",
            "--set", "stop.episode_return_mean=null", "--set", "resources_per_trial={cpus: 2, gpus: 0}")  # fmt: skip
    submitted = cluster.control("submit", "--no-wait", "--", "python", "-m", "jobs.sweep",
                                "--config", "jobs/sweeps/cartpole-seed.yaml", *args)  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = job_id_of(submitted.stdout)
    most = 0
    started = time.monotonic()
    while (status := str(cluster.jobs().get_job_status(job_id))) in ("PENDING", "RUNNING"):
        most = max(most, len(worker_containers(docker_engine, cluster)))
        assert time.monotonic() - started < 300, cluster.jobs().get_job_logs(job_id)[-3000:]
        time.sleep(0.5)
    logs = cluster.jobs().get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-3000:]
    assert most == 2, f"the group grew to {most} containers"
    assert any(line.startswith(f"sweep {name}: 2 of 2 trials 2 finished") for line in ours(logs.splitlines())), logs
    # Placed by group: the trials' demand asked for the CPU group, which had no node when they were submitted.
    scaling = (cluster.state.root / SCALING_LOG).read_text()
    ups = [line for line in scaling.splitlines() if " scale-up   cpu-workers +1 " in line]
    assert len(ups) == 2 and all("cpu_group" in line for line in ups), scaling
    finished = time.monotonic()
    while worker_containers(docker_engine, cluster):
        assert time.monotonic() - finished < 90, scaling
        time.sleep(0.5)
    gone_s = time.monotonic() - finished
    groups, alive, _ = status_rows(cluster)
    assert groups["cpu-workers"][1:4] == ["0", "0", "2"] and "cpu-workers" not in alive
    downs = [line for line in (cluster.state.root / SCALING_LOG).read_text().splitlines() if " scale-down " in line]
    assert len(downs) == 2 and all("idleTimeoutSeconds 10" in line for line in downs), downs
    print(f"sweep: the group grew to 2 containers; back at 0 containers {gone_s:.0f}s after the job ended")


def host_listening() -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the host (IPv4 and IPv6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":
                continue
            address, port = local.split(":")
            if len(address) == 8:
                text = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                text = "::" if int(address, 16) == 0 else address
            found.append((text, int(port, 16)))
    return found


def test_ppo_to_450_through_the_jobs_api_with_the_checkpoint_in_s3_then_evaluated_from_its_uri(
    docker_cluster, tmp_path
):
    cluster = docker_cluster
    started = time.monotonic()
    trained = cluster.train("--name", f"docker-ppo-{RUN}", timeout=900)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-4000:]
    record = cluster.train_outcome(f"docker-ppo-{RUN}")
    assert record.episode_return_mean >= 450 and record.stopped.startswith("episode_return_mean"), record
    checkpoint = record.checkpoint
    objects = cluster.keys(checkpoint.split("/", 3)[3] + "/")
    assert len(objects) >= 10, f"the checkpoint is not in the bucket: {checkpoint}"
    trained_s = time.monotonic() - started

    evaluated = cluster.control("evaluate", "--checkpoint", checkpoint, "--output-dir", str(tmp_path), timeout=600)
    assert evaluated.returncode == 0, (evaluated.stdout + evaluated.stderr)[-4000:]
    mean = cluster.evaluation_outcome(checkpoint).mean_return
    assert mean >= 450, evaluated.stdout[-2000:]
    assert list(tmp_path.rglob("episode-0.gif"))
    print(f"PPO to 450: {trained_s:.0f}s; evaluation: {time.monotonic() - started - trained_s:.0f}s (mean {mean})")


def scaled_up_since(cluster: Cluster, lines_before: int) -> list[str]:
    lines = (cluster.state.root / SCALING_LOG).read_text().splitlines()[lines_before:]
    return [line for line in lines if " scale-up   cpu-workers +1 " in line]


def scaling_lines(cluster: Cluster) -> int:
    log = cluster.state.root / SCALING_LOG
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_worker_container_killed_mid_training_the_job_heals_itself_on_a_node_the_autoscaler_brings(
    docker_cluster, docker_engine
):
    """The container holding the run's one trainer actor killed: the job rebuilds it from the latest
    checkpoint by itself, on a node Ray's autoscaler adds for it, and finishes with exit 0."""
    cluster = docker_cluster
    name = f"docker-kill-{RUN}"
    args = ("--config", PPO, "--name", name, "--set", "checkpoint.every_n_iterations=2")
    submitted = cluster.control("submit", "--no-wait", "--", "python", "-m", "jobs.train", *args)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = job_id_of(submitted.stdout)
    cluster.wait_for_checkpoint(name, iteration=2, job_id=job_id)

    workers = worker_containers(docker_engine, cluster)
    assert workers, "the training job runs on no cpu-workers container"
    before = scaling_lines(cluster)
    docker_engine.docker("kill", *workers)  # the trainer actor: env runner and learner in one
    killed_at = time.monotonic()
    assert cluster.wait_for_job(job_id, timeout=600) == "SUCCEEDED", cluster.jobs().get_job_logs(job_id)[-4000:]
    lines = ours(cluster.jobs().get_job_logs(job_id).splitlines())
    recovered = [line for line in lines if line.startswith("recovered from ")]
    assert len(recovered) == 1, lines[-30:]
    assert re.search(rf"resumed from s3://\S+/{name}/checkpoint_\d+ at iteration \d+$", recovered[0]), recovered
    assert cluster.train_outcome(name).recovered == 1
    assert scaled_up_since(cluster, before), "the rebuilt actor got no node from the autoscaler"
    # The GCS was told at once that the killed container's node is gone (not after its health checks
    # failed): the rebuilt actor was never placed on it.
    lost = [line for line in (cluster.state.root / SCALING_LOG).read_text().splitlines() if " lost " in line]
    assert {name for name in workers if any(name in line for line in lost)} == set(workers), lost
    print(f"killed; the job healed itself on a new node and trained to the end in {time.monotonic() - killed_at:.0f}s")


def test_a_node_removed_while_sweep_trials_run_on_it_loses_no_finished_iteration(docker_cluster, docker_engine):
    """A node taken away as the autoscaler (or KubeRay's operator) takes one: its preStop hook
    (`python -m jobs.common.run.preemption --drain-this-node`, as the manifests run it) drains it through
    Ray's drain API; each trial on it checkpoints the iteration it is on; then the container goes. The
    trials wait again, the autoscaler brings a node, and they go on from those checkpoints. max_failures
    is 0: a failure that Tune counted would end a trial in ERROR."""
    cluster = docker_cluster
    name = f"docker-drain-{RUN}"
    # 150 iterations a trial: the removal comes after the first progress line that shows both trials running
    # with a return (the sweep prints one every 10 s), and must find both still running; 60 iterations took
    # 10 s a trial on 2 cores, so a trial could end before its first such line. Each checkpoint comes within
    # a second or two; what is left after the resume only has to show that the trials go on from there. No
    # periodic checkpoint: the drain's is the one the resume starts from.
    args = ("--name", name, "--set", "num_samples=1", "--set", "scheduler={type: fifo}", "--set", "max_failures=0",
            "--set", "search_space.model.fcnet_activation={grid_search: [relu]}", "--set", "stop.env_steps=150000",
            "--set", "stop.episode_return_mean=null", "--set", "best=null",
            "--set", "overrides={checkpoint: {every_n_iterations: 1000}}")  # fmt: skip
    submitted = cluster.control("submit", "--no-wait", "--", "python", "-m", "jobs.sweep",
                                "--config", "jobs/sweeps/cartpole-seed.yaml", *args)  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = job_id_of(submitted.stdout)
    client = cluster.jobs()
    deadline = time.monotonic() + 300
    while not re.search(r"\| 2 running \| .* \| best episode_return_mean \d", client.get_job_logs(job_id)):
        assert time.monotonic() < deadline, client.get_job_logs(job_id)[-3000:]
        assert str(client.get_job_status(job_id)) in ("PENDING", "RUNNING"), client.get_job_logs(job_id)[-3000:]
        time.sleep(0.5)

    containers = load_cluster(cluster.state.root)
    group = containers.spec.group("cpu-workers")
    workers = [c["name"] for c in containers.containers() if c["role"] == "cpu-workers"]
    before = scaling_lines(cluster)
    removals = [threading.Thread(target=containers.remove_node, args=(name_, group)) for name_ in workers]
    for removal in removals:
        removal.start()
    removed_at = time.monotonic()
    pattern = r"trial (\w+): preempted \(node draining, \d+ s before it goes\): checkpoint (\S+) at iteration (\d+)"
    while len(saved := re.findall(pattern, client.get_job_logs(job_id))) < 2:
        assert time.monotonic() - removed_at < 60, client.get_job_logs(job_id)[-3000:]
        time.sleep(0.5)
    saved_s = time.monotonic() - removed_at
    for trial_id, checkpoint, iteration in saved:
        # The checkpoint of the iteration each trial was on, through the normal path (its pointer names it).
        # Read now, not after the removals end: a trial resumed on the autoscaler's new node meanwhile can
        # finish its run and point at its last checkpoint before then.
        assert checkpoint.endswith(f"/trials/{trial_id}/checkpoint_{int(iteration):06d}")
        pointer = json.loads(cluster.object(cluster.prefix(name) + f"trials/{trial_id}/latest.json"))
        assert (pointer["checkpoint"], pointer["iteration"]) == (checkpoint, int(iteration))
    for removal in removals:
        removal.join(timeout=180)

    assert cluster.wait_for_job(job_id, timeout=600) == "SUCCEEDED", client.get_job_logs(job_id)[-4000:]
    logs = client.get_job_logs(job_id)
    for trial_id, checkpoint, iteration in saved:
        assert f"trial {trial_id}: resumed from {checkpoint} at iteration {iteration}" in logs, [
            line for line in logs.splitlines() if "resumed from" in line or "preempted" in line
        ]
    assert any(line.startswith(f"sweep {name}: 2 of 2 trials 2 finished") for line in ours(logs.splitlines())), logs[
        -3000:
    ]
    assert scaled_up_since(cluster, before), "the waiting trials got no node from the autoscaler"
    print(f"removed {len(workers)} node(s): both trials checkpointed {saved_s:.1f}s after; resumed on a new node")


def test_a_dead_autoscaler_shows_in_cluster_status_and_cluster_up_starts_it_again(docker_cluster):
    cluster = docker_cluster
    pid = cluster.state.load()["pids"]["autoscaler"]
    processes.stop_groups([pid], grace_s=1.0)
    status = cluster.control("status")
    assert status.returncode == 1 and "Ray's autoscaler (v2): DOWN" in status.stdout, status.stdout
    assert "DOWN: autoscaler (run `make cluster-up PROVIDER=docker` to repair)" in status.stdout
    repaired = cluster.control("up", timeout=300)
    assert repaired.returncode == 0 and "repaired: autoscaler back" in repaired.stdout, repaired.stdout
    again = cluster.state.load()["pids"]["autoscaler"]
    assert again != pid and processes.is_alive(again)
    assert cluster.control("status").returncode == 0


def test_cluster_down_removes_every_container_network_and_volume_and_keeps_the_s3_data(docker_cluster, docker_engine):
    cluster = docker_cluster
    recorded = cluster.state.load()
    label = f"label={CLUSTER_LABEL}={recorded['cluster_id']}"
    assert docker_engine.docker("network", "ls", "-q", f"--filter={label}").stdout.split()
    down = cluster.control("down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "S3 data kept" in down.stdout, down.stdout
    assert docker_engine.docker("ps", "-aq", f"--filter={label}").stdout.split() == []
    assert docker_engine.docker("network", "ls", "-q", f"--filter={label}").stdout.split() == []
    # The tests' engine ran nothing else: nothing at all is left on it.
    assert docker_engine.docker("ps", "-aq").stdout.split() == []
    assert docker_engine.docker("volume", "ls", "-q").stdout.split() == []
    networks = docker_engine.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert set(networks) <= {"host", "none", "bridge"}, networks
    assert not (cluster.state.root / "containers").exists() and not cluster.state.env_file.exists()
    data = [p for p in cluster.state.s3_data.rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert sum(p.stat().st_size for p in data) > 100_000, data  # the checkpoints' volume files


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
