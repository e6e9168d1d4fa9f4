"""k8s/: every overlay renders with kustomize, every object validates (Kubernetes
schemas in strict mode, KubeRay v1.7.0 CRDs with unknown fields as errors, and
the KubeRay v1.7.0 operator's own rules, controlplane/kuberay/operator_rules.py),
and the rendered objects obey the project's policies."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from controlplane.clusterspec import overlay_names
from controlplane.errors import ClusterError
from controlplane.kuberay import crds, manifests, operator_rules
from tests.conftest import REPO_ROOT
from tests.unit.test_pins import pins

KUSTOMIZATIONS = ["k8s/base", *(f"k8s/overlays/{name}" for name in overlay_names()), "tests/e2e/overlays/autoscale"]
RAYJOBS = sorted(path.stem for path in (REPO_ROOT / "k8s" / "jobs").glob("*.yaml"))
KUBERNETES_VERSION = "1.35.0"
RAY = pins()["ray"]


def render(path: str) -> list[dict]:
    assert shutil.which("kubectl"), "kubectl (with its built-in kustomize) is needed to render k8s/"
    return manifests.objects(manifests.render(path))


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def rendered(request):
    return request.param, render(request.param)


def containers(obj: dict) -> list[tuple[str, dict, dict]]:
    """(where, pod spec, container) for every container of a workload, RayCluster or RayJob."""
    found = []
    if obj["kind"] in ("RayCluster", "RayJob"):
        cluster = obj["spec"] if obj["kind"] == "RayCluster" else obj["spec"]["rayClusterSpec"]
        specs = [("head", cluster["headGroupSpec"]["template"]["spec"])]
        specs += [(g["groupName"], g["template"]["spec"]) for g in cluster.get("workerGroupSpecs", [])]
        if obj["kind"] == "RayJob":  # KubeRay's own submitter pod has no securityContext: each job brings one
            specs.append(("submitter", obj["spec"]["submitterPodTemplate"]["spec"]))
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


def test_every_ray_object_passes_the_kuberay_operators_own_rules(rendered):
    path, objects = rendered
    ray_objects = [obj for obj in objects if obj["kind"] in ("RayCluster", "RayJob")]
    assert ray_objects
    for obj in ray_objects:
        assert operator_rules.validate(obj) == [], path


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


def test_no_manifest_writes_what_jobs_may_ask_of_the_groups_by_hand(rendered):
    """RL_WORKER_GROUPS is derived from the RayCluster (controlplane/clusterspec.py), never a copy in its env."""
    _, objects = rendered
    cluster = next(obj for obj in objects if obj["kind"] == "RayCluster")
    for where, _, container in containers(cluster):
        assert "RL_WORKER_GROUPS" not in {e["name"] for e in container.get("env", [])}, where


def assert_non_root_with_requests_equal_to_limits(obj: dict) -> None:
    found = containers(obj)
    assert found or obj["kind"] not in ("RayCluster", "RayJob", "Deployment")
    for where, pod, container in found:
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], where


def test_pods_are_non_root_with_requests_equal_to_limits(rendered):
    _, objects = rendered
    for obj in objects:
        assert_non_root_with_requests_equal_to_limits(obj)


@pytest.mark.parametrize("name", RAYJOBS)
def test_every_rayjob_pod_is_non_root_the_submitter_included(name):
    job = yaml.safe_load((REPO_ROOT / "k8s" / "jobs" / f"{name}.yaml").read_text())
    assert_non_root_with_requests_equal_to_limits(job)
    submitter = job["spec"]["submitterPodTemplate"]["spec"]
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert submitter["securityContext"]["runAsUser"] == 1000
    assert submitter["containers"][0]["image"] == head["containers"][0]["image"]  # same Ray as the cluster
    assert submitter["automountServiceAccountToken"] is False
    # KubeRay runs it as the pod of a batch/v1 Job: valid as one, in strict mode.
    submitter_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": job["metadata"]["namespace"]},
        "spec": {"template": job["spec"]["submitterPodTemplate"]},
    }
    kubernetes_validate.validate(submitter_job, KUBERNETES_VERSION, strict=True)


def test_dev_shm_is_sized_for_ray(rendered):
    _, objects = rendered
    cluster = next(obj for obj in objects if obj["kind"] == "RayCluster")
    for where, pod, container in containers(cluster):
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"], where
        volume = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert volume["emptyDir"]["medium"] == "Memory" and volume["emptyDir"]["sizeLimit"], where


def test_no_secret_values_inline_and_no_exposed_dashboard(rendered):
    path, objects = rendered
    secrets = [obj for obj in objects if obj["kind"] == "Secret"]
    # The only Secret: the dev overlay's (and those built on it), generated from its git-ignored env file;
    # rendered here from the committed example, whose values are placeholders.
    with_s3_server = any(obj["kind"] == "Deployment" and obj["metadata"]["name"] == "seaweedfs" for obj in objects)
    assert with_s3_server == (path != "k8s/base" and not path.endswith("gpu"))
    assert [s["metadata"]["name"] for s in secrets] == (["ray-rl-s3-credentials"] if with_s3_server else [])
    for secret in secrets:
        values = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
        assert set(values) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert all(value.startswith("<written by make cluster-up") for value in values.values()), values.keys()
    for obj in objects:
        text = json.dumps(obj, separators=(",", ":"))
        assert obj["kind"] == "Secret" or 'SECRET_ACCESS_KEY":"' not in text
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


def test_every_rayjob_is_generated():
    from controlplane.kuberay import rayjobs

    assert RAYJOBS == sorted(rayjobs.JOBS)


@pytest.mark.parametrize("name", RAYJOBS)
def test_rayjob_manifests_are_generated_from_the_overlays_and_valid(name):
    from controlplane.kuberay import rayjobs

    committed = (REPO_ROOT / "k8s" / "jobs" / f"{name}.yaml").read_text()
    assert committed == rayjobs.render(name), "k8s/jobs is stale: run python -m controlplane.kuberay.rayjobs"
    job = yaml.safe_load(committed)
    assert crds.validate(job) == []
    assert operator_rules.validate(job) == []  # the RayJob rules, its rayClusterSpec through the RayCluster ones
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


def dev_overlay_copy(tmp_path, env_file: str | None) -> Path:
    """k8s/ copied under tmp_path, with the dev overlay's credentials file as given (None: absent)."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "k8s", root / "k8s", ignore=shutil.ignore_patterns("s3-credentials.env"))
    if env_file is not None:
        (root / "k8s/overlays/dev/s3-credentials.env").write_text(env_file)
    return root


def test_dev_overlay_without_its_credentials_file_fails_naming_the_file(tmp_path):
    # What a hand-run `kubectl apply -k k8s/overlays/dev` renders first: nothing is applied.
    with pytest.raises(ClusterError, match=r"k8s/overlays/dev/s3-credentials\.env: no such file or directory"):
        manifests.kustomize("k8s/overlays/dev", dev_overlay_copy(tmp_path, None))
    # The overlay itself says what to create, and the example to start from is committed.
    text = (REPO_ROOT / "k8s/overlays/dev/kustomization.yaml").read_text()
    assert "cp k8s/overlays/dev/s3-credentials.env.example k8s/overlays/dev/s3-credentials.env" in text
    assert (REPO_ROOT / "k8s/overlays/dev/s3-credentials.env.example").is_file()


def test_dev_overlay_with_a_credentials_file_generates_the_secret_every_pod_reads(tmp_path):
    root = dev_overlay_copy(tmp_path, "AWS_ACCESS_KEY_ID=rl0123\nAWS_SECRET_ACCESS_KEY=s3cr3t-value\n")
    objects = manifests.objects(manifests.kustomize("k8s/overlays/dev", root))
    secret = manifests.find(objects, "Secret", "ray-rl-s3-credentials")
    assert secret["metadata"]["namespace"] == "ray-rl"  # beside the pods that read it
    values = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert values == {"AWS_ACCESS_KEY_ID": "rl0123", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    # Every reference to the Secret, in any object of the overlay, names a key the Secret has.
    references = re.findall(r'"secretKeyRef": \{"key": "(\w+)", "name": "ray-rl-s3-credentials"', json.dumps(objects))
    assert references and set(references) <= set(values)
    # SeaweedFS (which needs the keys) runs in the namespace the ConfigMap's endpoint names.
    seaweedfs = manifests.find(objects, "Deployment", "seaweedfs")
    assert seaweedfs["metadata"]["namespace"] == "ray-rl"
    assert ".ray-rl.svc" in manifests.find(objects, "ConfigMap", "ray-rl-s3")["data"]["AWS_ENDPOINT_URL"]


def test_dev_overlay_credentials_file_missing_a_key_fails_naming_the_key(tmp_path):
    root = dev_overlay_copy(tmp_path, "AWS_ACCESS_KEY_ID=rl0123\nAWS_SECRET_KEY=typo\n")
    with pytest.raises(ClusterError, match=r"data\.AWS_SECRET_ACCESS_KEY` is missing"):
        manifests.kustomize("k8s/overlays/dev", root)


def test_the_credentials_file_is_never_committed_nor_uploaded():
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "k8s/overlays/dev/s3-credentials.env"], cwd=REPO_ROOT, check=False
    )
    assert ignored.returncode == 0, "k8s/overlays/dev/s3-credentials.env must be git-ignored"
    # `ray job submit --working-dir .` honours .gitignore; the image takes jobs/ and the lock only.
    rules = [line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert rules[0] == "*" and not [rule for rule in rules if rule.startswith("!k8s")]


def test_the_head_gives_running_jobs_time_to_checkpoint_before_it_goes(rendered):
    """Preemption (jobs/common/run/preemption.py): the head's preStop stops every running job,
    `ray job stop` waits PREEMPTION_GRACE_S for its driver to checkpoint, and the pod's grace
    period outlasts both."""
    from jobs.common.run.preemption import PREEMPTION_GRACE_S

    _, objects = rendered
    cluster = next(obj for obj in objects if obj["kind"] == "RayCluster")
    pod = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    head = pod["containers"][0]
    env = {item["name"]: item.get("value") for item in head["env"]}
    assert env["RAY_JOB_STOP_WAIT_TIME_S"] == str(PREEMPTION_GRACE_S)
    assert head["lifecycle"]["preStop"]["exec"]["command"] == ["python", "-m", "jobs.common.run.preemption",
                                                               "--stop-running-jobs"]  # fmt: skip
    assert pod["terminationGracePeriodSeconds"] > PREEMPTION_GRACE_S


def test_every_worker_drains_its_node_before_it_goes(rendered):
    """Preemption on a worker: the preStop hook drains the node (trials checkpoint and are restarted
    elsewhere), and the grace period outlasts the hook's wait."""
    from jobs.common.run.preemption import DRAIN_WAIT_S

    _, objects = rendered
    cluster = next(obj for obj in objects if obj["kind"] == "RayCluster")
    for group in cluster["spec"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        worker = pod["containers"][0]
        hook = ["python", "-m", "jobs.common.run.preemption", "--drain-this-node"]
        assert worker["lifecycle"]["preStop"]["exec"]["command"] == hook, group["groupName"]
        assert pod["terminationGracePeriodSeconds"] > DRAIN_WAIT_S, group["groupName"]


def test_every_head_listens_where_the_providers_and_hooks_look(rendered):
    """The GCS and dashboard ports of jobs/common/cluster/ports.py (the docker provider's containers,
    the preStop hook, the port-forwards) are the ones each head declares."""
    from jobs.common.cluster.ports import DASHBOARD_PORT, GCS_PORT

    _, objects = rendered
    for cluster in (obj for obj in objects if obj["kind"] == "RayCluster"):
        head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        ports = {port["name"]: port["containerPort"] for port in head["ports"]}
        assert (ports["gcs"], ports["dashboard"]) == (GCS_PORT, DASHBOARD_PORT), ports
