"""The RayCluster object is the cluster: every overlay's groups are Ray's own translation of it
(KubeRay's rules), every provider and the capacity check read them from it, and a change in one
place of an overlay changes what all of them see, with nothing else edited."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

from controlplane import vm
from controlplane.clusterspec import RAY_HEAD_TYPE, ClusterSpec, overlay_names, quantity
from controlplane.containers import autoscaler
from controlplane.containers.nodes import node_command
from controlplane.containers.provider import DockerProvider, initial_workers
from controlplane.kuberay import manifests
from controlplane.kuberay.provider import KubeRayProvider
from controlplane.local import raynodes
from controlplane.local.groups import fixed_nodes
from controlplane.local.provider import LocalProvider
from controlplane.state import StateDir
from tests.conftest import REPO_ROOT
from tests.unit.test_containers import FakeEngine

OVERLAYS = ["k8s/base", *(f"k8s/overlays/{name}" for name in overlay_names()), "tests/e2e/overlays/autoscale"]


def raycluster_of(path: str) -> dict:
    return manifests.find(manifests.objects(manifests.render(path)), "RayCluster")


@pytest.mark.parametrize("path", OVERLAYS)
def test_every_overlays_groups_are_rays_own_translation_of_its_raycluster(path):
    obj = raycluster_of(path)
    spec = ClusterSpec.from_object(obj, source=path)
    translated = _derive_autoscaling_config_from_ray_cr(json.loads(json.dumps(obj)))
    assert spec.autoscaling_config == translated
    for group in spec.groups:
        node_type = translated["available_node_types"][RAY_HEAD_TYPE if group.is_head else group.name]
        assert dict(group.resources) == node_type["resources"], group.name
        if not group.is_head:
            assert (group.min_replicas, group.max_replicas) == (node_type["min_workers"], node_type["max_workers"])
            assert group.idle_timeout_s == node_type.get("idle_timeout_s")
    # And by KubeRay's table, read off the manifest without Ray: rayStartParams, else the Ray container's
    # limits; replicas times numOfHosts.
    expected = {}
    for worker in obj["spec"]["workerGroupSpecs"]:
        params = worker.get("rayStartParams", {})
        limits = worker["template"]["spec"]["containers"][0]["resources"]["limits"]
        cpus = int(params["num-cpus"]) if "num-cpus" in params else math.ceil(quantity(limits["cpu"]))
        gpus = int(params["num-gpus"]) if "num-gpus" in params else math.ceil(quantity(limits.get("nvidia.com/gpu", 0)))
        hosts = worker.get("numOfHosts", 1)
        expected[worker["groupName"]] = {"cpus": cpus, "gpus": gpus, "max_nodes": worker["maxReplicas"] * hosts}
        group = spec.group(worker["groupName"])
        assert group.min_replicas == worker["minReplicas"] * hosts
        assert group.memory_bytes == int(quantity(limits["memory"]))
    assert {name: shape for name, shape in spec.capacity().items() if name != "head"} == expected
    assert spec.capacity()["head"] == {"cpus": 0, "gpus": 0, "max_nodes": 1}  # the head takes no training work


def test_the_local_overlay_is_sized_for_one_machine_and_autoscales_its_cpu_group():
    spec = ClusterSpec.from_overlay()  # the default: k8s/overlays/local
    assert spec.source == "k8s/overlays/local"
    cpu = spec.group("cpu-workers")
    assert cpu.min_replicas < cpu.max_replicas  # PROVIDER=docker grows and shrinks it without anyone choosing
    assert spec.raycluster["spec"]["autoscalerOptions"]["version"] == "v2"
    assert sum(g.cpus * g.max_replicas for g in spec.workers) <= 2 * (os.cpu_count() or 2) + 4


def test_an_overlay_that_is_not_there_is_refused_naming_the_ones_that_are(tmp_path):
    from controlplane.errors import ClusterError

    with pytest.raises(ClusterError, match=r"OVERLAY='nope' is neither one of k8s/overlays \(dev, gpu, local\)"):
        ClusterSpec.from_overlay("nope")
    with pytest.raises(ClusterError, match="neither one of k8s/overlays"):
        ClusterSpec.from_overlay(str(tmp_path))  # a folder without a kustomization.yaml


def test_a_raycluster_ray_cannot_read_is_refused_naming_the_overlay():
    from controlplane.errors import ClusterError

    obj = raycluster_of("k8s/overlays/local")
    group = obj["spec"]["workerGroupSpecs"][0]
    del group["template"]["spec"]["containers"][0]["resources"]
    group["rayStartParams"].pop("num-cpus", None)
    with pytest.raises(ClusterError, match="my-overlay: Ray cannot read the RayCluster's groups.*CPU"):
        ClusterSpec.from_object(obj, source="my-overlay")


def test_cluster_yaml_node_types_are_the_gpu_overlays_groups_field_by_field():
    spec = ClusterSpec.from_overlay(vm.VM_OVERLAY)
    config = vm.load_config()
    assert vm.differences_from(spec, config) == []
    # Each field that differs is named, with both values.
    config["available_node_types"]["cpu-workers"]["max_workers"] = 12
    config["available_node_types"]["gpu-workers"]["resources"]["GPU"] = 2
    del config["available_node_types"]["gpu-workers"]["idle_timeout_s"]
    config["upscaling_speed"] = 1.0
    assert vm.differences_from(spec, config) == [
        "available_node_types.cpu-workers.max_workers: 12 != 16",
        "available_node_types.gpu-workers.idle_timeout_s: None != 300.0",
        "available_node_types.gpu-workers.resources.GPU: 2 != 1",
        "upscaling_speed: 1.0 != 1000",
    ]
    # What jobs may ask of the VM cluster comes from the same node types.
    assert vm.worker_groups(vm.load_config()) == {
        name: {k: float(v) if k != "max_nodes" else v for k, v in shape.items()}
        for name, shape in spec.capacity().items()
        if name != "head"
    }


def test_the_group_shapes_are_written_in_the_manifests_only():
    """No provider keeps CPUs, GPUs, custom resources or driver slots of its own."""
    for path in ("controlplane/local/groups.py", "controlplane/local/provider.py", "controlplane/containers/nodes.py",
                 "controlplane/containers/provider.py"):  # fmt: skip
        text = (REPO_ROOT / path).read_text()
        for fact in ("driver_slots", "cpu_group", "gpu_group", "DRIVER_SLOTS", "GROUP_CAPACITY", "num_cpus="):
            assert fact not in text, f"{path} holds {fact!r}"
    for path in ("cluster.yaml", *map(str, (REPO_ROOT / "k8s").rglob("*.yaml"))):
        text = (REPO_ROOT / path).read_text()
        generated = text.startswith("# Generated by")  # k8s/jobs: RayJobs made from the overlays
        assert generated or "RL_WORKER_GROUPS" not in text or path.endswith("raycluster.yaml"), path


# ---------------------------------------------------------------------------------------------
# One edit of an overlay, seen by every provider and the capacity check
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def k8s_copy(tmp_path):
    """A copy of k8s/ outside the repository (its dev keys file from the example), to edit an overlay of."""
    shutil.copytree(REPO_ROOT / "k8s", tmp_path / "k8s")
    for name in manifests.LOCAL_FILES:
        shutil.copyfile(REPO_ROOT / (name + manifests.EXAMPLE_SUFFIX), tmp_path / name)
    return tmp_path / "k8s"


def edit_local_overlay(k8s: Path, path: str, value) -> str:
    """Replace one value of the local overlay's RayCluster patch, as a user would in an editor."""
    overlay = k8s / "overlays" / "local" / "kustomization.yaml"
    document = yaml.safe_load(overlay.read_text())
    patch = document["patches"][0]
    operations = yaml.safe_load(patch["patch"])
    found = [op for op in operations if op["path"] == path]
    assert len(found) == 1, path
    found[0]["value"] = value
    patch["patch"] = yaml.safe_dump(operations)
    overlay.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(overlay.parent)


def seen_by_every_provider(overlay: str, tmp_path: Path, monkeypatch) -> dict:
    """What each provider would run and publish for `overlay`, without starting anything."""
    for name in ("RL_IMAGE", "RL_IMAGE_TAG", "RL_S3_IMAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("controlplane.local.groups.detect_gpus", lambda: 0)
    seen = {}

    local = LocalProvider(StateDir(tmp_path / "local"), overlay=overlay)
    spec = local._spec_from_overlay()
    local._spec = spec
    seen["local nodes"] = {g.name: 1 for g in local.groups}
    seen["local cpu-workers --num-cpus"] = next(
        arg for arg in raynodes.node_command(spec.group("cpu-workers"), temp_dir=tmp_path, gcs_port=1)
        if arg.startswith("--num-cpus=")
    )  # fmt: skip
    seen["local RL_WORKER_GROUPS"] = spec.capacity(fixed_nodes(spec))

    docker = DockerProvider(StateDir(tmp_path / "docker"), dashboard_port=28265, overlay=overlay)
    docker._engine = FakeEngine()
    state = docker.new_state()
    docker.state_dir.save(state)
    docker.start(state)
    docker.write_client_settings(state)
    seen["docker RL_WORKER_GROUPS"] = json.loads(docker.state_dir.read_env()["RL_WORKER_GROUPS"])
    node_env = (docker.state_dir.root / "containers" / "cpu-workers.env").read_text()
    seen["docker nodes' RL_WORKER_GROUPS"] = json.loads(node_env.split("RL_WORKER_GROUPS=")[1].splitlines()[0])
    seen["docker first workers"] = initial_workers(docker.spec)
    config = autoscaler.autoscaling_config(docker.state_dir.root)
    seen["autoscaler"] = {name: (t["min_workers"], t["max_workers"], t["resources"]["CPU"])
                          for name, t in config["available_node_types"].items()}  # fmt: skip
    docker_node = node_command(docker.spec.group("cpu-workers"))
    seen["docker cpu-workers"] = [arg for arg in docker_node if arg.startswith("--num-cpus")]

    kuberay = KubeRayProvider(StateDir(tmp_path / "kuberay"), overlay=overlay, api=object())
    seen["kuberay RL_WORKER_GROUPS"] = kuberay.worker_groups()
    seen["env file"] = docker.state_dir.env_file
    return seen


def plan_fits(env_file: Path, workers: int) -> subprocess.CompletedProcess:
    """The pre-submission check of `make train WORKERS=<workers>` against the cluster's env file."""
    env = {**os.environ, **StateDir(env_file.parent).read_env(), "RL_STORAGE_URI": "file:///nonexistent/rl"}
    command = [sys.executable, "-m", "jobs.train", "--config", "jobs/experiments/ppo-cartpole.yaml"]
    return subprocess.run([*command, "--num-workers", str(workers), "--check"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_max_replicas_edited_in_the_overlay_is_what_every_provider_and_the_capacity_check_see(
    k8s_copy, tmp_path, monkeypatch
):
    overlay = str(k8s_copy / "overlays" / "local")
    before = seen_by_every_provider(overlay, tmp_path / "before", monkeypatch)
    edit_local_overlay(k8s_copy, "/spec/workerGroupSpecs/0/maxReplicas", 3)
    after = seen_by_every_provider(overlay, tmp_path / "after", monkeypatch)

    for key in ("docker RL_WORKER_GROUPS", "docker nodes' RL_WORKER_GROUPS", "kuberay RL_WORKER_GROUPS"):
        assert (before[key]["cpu-workers"]["max_nodes"], after[key]["cpu-workers"]["max_nodes"]) == (2, 3), key
    assert (before["autoscaler"]["cpu-workers"], after["autoscaler"]["cpu-workers"]) == ((1, 2, 2), (1, 3, 2))
    # The local provider runs each group as one fixed node: a larger maximum changes nothing there.
    assert before["local nodes"] == after["local nodes"] == {"head": 1, "cpu-workers": 1, "gpu-workers": 1}
    # 4 env runners + 1 learner need 5 CPUs of cpu-workers: more than 2 nodes x 2 CPUs, not than 3 x 2.
    refused, accepted = plan_fits(before["env file"], 4), plan_fits(after["env file"], 4)
    assert refused.returncode != 0 and "cpu-workers at most 4 CPUs (2 node(s) x 2)" in refused.stderr, refused.stderr
    assert accepted.returncode == 0, accepted.stderr


def test_a_group_resized_or_switched_off_in_the_overlay_changes_every_provider(k8s_copy, tmp_path, monkeypatch):
    overlay = str(k8s_copy / "overlays" / "local")
    edit_local_overlay(k8s_copy, "/spec/workerGroupSpecs/1/maxReplicas", 0)
    edit_local_overlay(
        k8s_copy,
        "/spec/workerGroupSpecs/0/template/spec/containers/0/resources",
        {"requests": {"cpu": "3", "memory": "6Gi"}, "limits": {"cpu": "3", "memory": "6Gi"}},
    )
    seen = seen_by_every_provider(overlay, tmp_path, monkeypatch)
    assert seen["local nodes"] == {"head": 1, "cpu-workers": 1}  # no gpu-workers node at all
    assert seen["local cpu-workers --num-cpus"] == "--num-cpus=3" and seen["docker cpu-workers"] == ["--num-cpus=3"]
    for key in ("local RL_WORKER_GROUPS", "docker RL_WORKER_GROUPS", "kuberay RL_WORKER_GROUPS"):
        assert seen[key]["gpu-workers"]["max_nodes"] == 0, key
        assert seen[key]["cpu-workers"]["cpus"] == 3, key
    assert seen["autoscaler"]["gpu-workers"][:2] == (0, 0) and seen["autoscaler"]["cpu-workers"][2] == 3
