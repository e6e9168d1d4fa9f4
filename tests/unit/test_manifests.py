"""k8s/: every overlay renders with kustomize, every object validates (Kubernetes
schemas in strict mode, KubeRay v1.7.0 CRDs with unknown fields as errors), and
the rendered objects obey the project's policies."""

from __future__ import annotations

import json
import re
import shutil

import kubernetes_validate
import pytest
import yaml

from controlplane.kuberay import crds, manifests
from tests.conftest import REPO_ROOT
from tests.unit.test_pins import pins

KUSTOMIZATIONS = ["k8s/base", "k8s/overlays/dev", "k8s/overlays/gpu"]
KUBERNETES_VERSION = "1.35.0"
RAY = pins()["ray"]


def render(path: str) -> list[dict]:
    assert shutil.which("kubectl"), "kubectl (with its built-in kustomize) is needed to render k8s/"
    return manifests.objects(manifests.render(path))


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def rendered(request):
    return request.param, render(request.param)


def containers(obj: dict) -> list[tuple[str, dict, dict]]:
    """(where, pod spec, container) for every container of a workload or RayCluster."""
    found = []
    if obj["kind"] == "RayCluster":
        specs = [("head", obj["spec"]["headGroupSpec"]["template"]["spec"])]
        specs += [(g["groupName"], g["template"]["spec"]) for g in obj["spec"].get("workerGroupSpecs", [])]
    elif obj["kind"] == "Deployment":
        specs = [(obj["metadata"]["name"], obj["spec"]["template"]["spec"])]
    else:
        specs = []
    for where, pod in specs:
        found += [(where, pod, container) for container in pod["containers"]]
    return found


def test_every_object_validates_against_kubernetes_or_kuberay_schemas(rendered):
    path, objects = rendered
    kinds = {obj["kind"] for obj in objects}
    assert "RayCluster" in kinds
    for obj in objects:
        if obj["apiVersion"].startswith("ray.io/"):
            assert crds.validate(obj) == [], f"{path}: {obj['kind']}"
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_unknown_fields_in_a_raycluster_are_caught():
    cluster = next(obj for obj in render("k8s/base") if obj["kind"] == "RayCluster")
    cluster["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3  # typo: the API server would drop it silently
    cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    problems = crds.validate(cluster)
    assert any("unknown field spec.workerGroupSpecs[0].maxReplica" in p for p in problems)
    assert any("imagePullPolicyy" in p for p in problems)


def test_head_takes_no_work_and_groups_advertise_their_resources(rendered):
    _, objects = rendered
    cluster = next(obj for obj in objects if obj["kind"] == "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["rayStartParams"]
    assert head["num-cpus"] == "0" and head["num-gpus"] == "0"
    assert "driver_slots" in head["resources"]
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert "cpu_group" in groups["cpu-workers"]["rayStartParams"]["resources"]
    assert "gpu_group" in groups["gpu-workers"]["rayStartParams"]["resources"]
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cluster["spec"]["authOptions"]["mode"] == "token"
    assert cluster["spec"]["rayVersion"] == RAY
    for group in groups.values():
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"] or group["maxReplicas"] == 0


def test_gpu_limits_equal_the_gpus_ray_is_told_about(rendered):
    _, objects = rendered
    cluster = next(obj for obj in objects if obj["kind"] == "RayCluster")
    for group in cluster["spec"]["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        limit = int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
        assert int(group["rayStartParams"].get("num-gpus", "0")) == limit, group["groupName"]
        if limit:
            tolerations = group["template"]["spec"]["tolerations"]
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_worker_group_capacity_published_to_jobs_matches_the_specs(rendered):
    _, objects = rendered
    cluster = next(obj for obj in objects if obj["kind"] == "RayCluster")
    expected = {}
    for group in cluster["spec"]["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        expected[group["groupName"]] = {
            "cpus": int(limits["cpu"]),
            "gpus": int(limits.get("nvidia.com/gpu", 0)),
            "max_nodes": group["maxReplicas"],
        }
    for where, _, container in containers(cluster):
        published = next(e["value"] for e in container["env"] if e["name"] == "RL_WORKER_GROUPS")
        assert json.loads(published) == expected, where


def test_pods_are_non_root_with_requests_equal_to_limits(rendered):
    _, objects = rendered
    for obj in objects:
        for where, pod, container in containers(obj):
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            resources = container["resources"]
            assert resources["requests"] == resources["limits"], where


def test_dev_shm_is_sized_for_ray(rendered):
    _, objects = rendered
    cluster = next(obj for obj in objects if obj["kind"] == "RayCluster")
    for where, pod, container in containers(cluster):
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"], where
        volume = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert volume["emptyDir"]["medium"] == "Memory" and volume["emptyDir"]["sizeLimit"], where


def test_no_secret_values_inline_and_no_exposed_dashboard(rendered):
    _, objects = rendered
    assert not [obj for obj in objects if obj["kind"] == "Secret"], "Secrets are created by cluster-up, not committed"
    for obj in objects:
        text = json.dumps(obj)
        assert 'SECRET_ACCESS_KEY": "' not in text.replace(" ", "")
        for _, _, container in containers(obj):
            for variable in container.get("env", []):
                if "KEY" in variable["name"] or "TOKEN" in variable["name"]:
                    assert "valueFrom" in variable and "value" not in variable, variable["name"]
        if obj["kind"] == "Service":
            assert obj["spec"].get("type", "ClusterIP") == "ClusterIP"
        if obj["kind"] == "RayCluster":
            assert obj["spec"]["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"


def test_image_tags_follow_the_ray_pin(rendered):
    _, objects = rendered
    for obj in objects:
        for where, _, container in containers(obj):
            if "ray-rl" in container["image"]:
                assert container["image"].split(":")[1].startswith(f"{RAY}-py311-"), where


def test_network_policy_admits_only_ray_pods_and_the_operator():
    policy = next(obj for obj in render("k8s/base") if obj["kind"] == "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"] == {"matchLabels": {"ray.io/cluster": "ray-rl"}}
    sources = [rule["from"][0] for rule in policy["spec"]["ingress"]]
    assert {"podSelector": {"matchLabels": {"ray.io/cluster": "ray-rl"}}} in sources
    assert len(sources) == 2


@pytest.mark.parametrize("name", ["train-ppo-cartpole", "train-ppo-halfcheetah", "sweep-cartpole-asha"])
def test_rayjob_manifests_are_generated_from_the_overlays_and_valid(name):
    from controlplane.kuberay import rayjobs

    committed = (REPO_ROOT / "k8s" / "jobs" / f"{name}.yaml").read_text()
    assert committed == rayjobs.render(name), "k8s/jobs is stale: run python -m controlplane.kuberay.rayjobs"
    job = yaml.safe_load(committed)
    assert crds.validate(job) == []
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0 and spec["backoffLimit"] >= 0
    module, config = re.match(r"^python -m (jobs\.train|jobs\.sweep) --config (\S+)", spec["entrypoint"]).groups()
    assert (REPO_ROOT / config).is_file(), f"{name} runs {module} on a file that does not exist: {config}"
    assert "AWS_" not in spec["runtimeEnvYAML"]  # credentials never travel with a job


def test_gpu_overlay_keeps_gcs_state_in_redis_with_the_password_by_reference():
    gpu = next(obj for obj in render("k8s/overlays/gpu") if obj["kind"] == "RayCluster")
    options = gpu["spec"]["gcsFaultToleranceOptions"]
    assert re.match(r"^[\w.-]+:\d+$", options["redisAddress"])
    assert "value" not in options["redisPassword"]
    assert options["redisPassword"]["valueFrom"]["secretKeyRef"] == {"name": "ray-rl-redis", "key": "password"}
    # dev: no Redis; a restarted head starts empty and jobs resume from S3 when resubmitted.
    dev = next(obj for obj in render("k8s/overlays/dev") if obj["kind"] == "RayCluster")
    assert "gcsFaultToleranceOptions" not in dev["spec"]
