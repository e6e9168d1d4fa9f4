"""The KubeRay v1.7.0 operator's rules (controlplane/kuberay/operator_rules.py), one planted
mistake at a time: each case takes a shipped manifest that passes every rule (checked first),
breaks one thing, and expects the error that names it. Without the rule, the shipped manifest
would pass and the case would fail."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import yaml

from controlplane.kuberay import manifests, operator_rules
from tests.conftest import REPO_ROOT

Mutation = Callable[[dict], None]


@pytest.fixture(scope="module")
def shipped() -> dict[str, dict]:
    """The objects the cases start from, each one valid as shipped."""
    objects = {
        "dev": manifests.find(manifests.objects(manifests.render("k8s/overlays/dev")), "RayCluster"),
        "gpu": manifests.find(manifests.objects(manifests.render("k8s/overlays/gpu")), "RayCluster"),
    }
    for name in ("train-ppo-cartpole", "train-ppo-halfcheetah"):
        objects[name] = yaml.safe_load((REPO_ROOT / "k8s" / "jobs" / f"{name}.yaml").read_text())
    for obj in objects.values():
        assert operator_rules.validate(obj) == []
    return objects


# --------------------------------------------------------------------------- paths into a RayCluster spec


def cluster_spec(obj: dict) -> dict:
    return obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]


def head_pod(obj: dict) -> dict:
    return cluster_spec(obj)["headGroupSpec"]["template"]["spec"]


def head_env(obj: dict) -> list[dict]:
    return head_pod(obj)["containers"][0].setdefault("env", [])


def group(obj: dict, name: str = "cpu-workers") -> dict:
    return next(g for g in cluster_spec(obj)["workerGroupSpecs"] if g["groupName"] == name)


def autoscaler(obj: dict) -> dict:
    return cluster_spec(obj)["autoscalerOptions"]


def put(path: str, value) -> Mutation:
    """Set spec.<path> (dots, no lists) to value; None deletes it."""

    def mutate(obj: dict) -> None:
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)

    return mutate


def steps(*mutations: Mutation) -> Mutation:
    def mutate(obj: dict) -> None:
        for mutation in mutations:
            mutation(obj)

    return mutate


NO_SHUTDOWN = steps(put("spec.shutdownAfterJobFinishes", False), put("spec.ttlSecondsAfterFinished", 0))
SELECTOR_ONLY = steps(put("spec.rayClusterSpec", None), put("spec.submitterPodTemplate", None))
GATES_ON = {gate: True for gate in operator_rules.FEATURE_GATES}


def rule(deletion: dict) -> Mutation:
    return steps(NO_SHUTDOWN, put("spec.deletionStrategy", deletion))


# (id, object to start from, mistake, feature gates, what the error must say)
CASES: list[tuple[str, str, Mutation, dict | None, str]] = [
    # ---------------------------------------------------------------- autoscaler (validateWorkerGroupIdleTimeout, ...)
    ("idle-timeout-needs-v2", "dev", lambda o: autoscaler(o).pop("version"), None,
     "worker group cpu-workers: idleTimeoutSeconds is set, but autoscaler v2 is not enabled"),
    ("idle-timeout-needs-v2-not-v1", "dev", lambda o: autoscaler(o).update(version="v1"), None,
     "worker group gpu-workers: idleTimeoutSeconds is set, but autoscaler v2 is not enabled"),
    ("idle-timeout-negative", "dev", lambda o: group(o).update(idleTimeoutSeconds=-1), None,
     "worker group cpu-workers: idleTimeoutSeconds must be non-negative, got -1"),
    ("v2-version-and-env-both", "dev", lambda o: head_env(o).append({"name": "RAY_enable_autoscaler_v2", "value": "1"}),
     None, "both .spec.autoscalerOptions.version and head Pod env var RAY_enable_autoscaler_v2 are set"),
    ("v2-env-without-autoscaling", "dev",
     steps(put("spec.enableInTreeAutoscaling", False),
           lambda o: head_env(o).append({"name": "RAY_enable_autoscaler_v2", "value": "true"})),
     None, "environment variable RAY_enable_autoscaler_v2 cannot be set to 'true' when enableInTreeAutoscaling is"),
    ("v2-head-restart-policy", "dev", lambda o: head_pod(o).update(restartPolicy="Always"), None,
     "restartPolicy for head Pod should be Never or unset when using autoscaler V2"),
    ("v2-worker-restart-policy", "gpu", lambda o: group(o, "gpu-workers")["template"]["spec"].update(
        restartPolicy="OnFailure"), None,
     "restartPolicy for worker group gpu-workers should be Never or unset when using autoscaler V2"),
    ("autoscaler-idle-timeout-negative", "dev", lambda o: autoscaler(o).update(idleTimeoutSeconds=-5), None,
     "autoscalerOptions.idleTimeoutSeconds must be non-negative, got -5"),
    ("autoscaler-start-cmd-env", "dev",
     lambda o: autoscaler(o).update(env=[{"name": "KUBERAY_GEN_AUTOSCALER_START_CMD", "value": "ray"}]), None,
     "autoscalerOptions.env must not contain KUBERAY_GEN_AUTOSCALER_START_CMD"),
    ("priority-needs-v2", "dev", steps(lambda o: autoscaler(o).update(version="v1"),
                                       lambda o: group(o).pop("idleTimeoutSeconds"),
                                       lambda o: group(o, "gpu-workers").pop("idleTimeoutSeconds"),
                                       lambda o: group(o).update(priority=5)), None,
     "worker group cpu-workers: priority is set to 5, but autoscaler v2 is not enabled"),
    ("priority-needs-ray-2.56", "dev", steps(put("spec.rayVersion", "2.55.0"), lambda o: group(o).update(priority=5)),
     None, "worker group cpu-workers: priority is set, but minimum Ray version is 2.56.0, got 2.55.0"),
    # ---------------------------------------------------------------- groups and replicas
    ("group-names-unique", "dev", lambda o: group(o, "gpu-workers").update(groupName="cpu-workers"), None,
     "spec.workerGroupSpecs[1]: worker group names must be unique"),
    ("head-has-a-container", "dev", lambda o: head_pod(o).update(containers=[]), None,
     "headGroupSpec should have at least one container"),
    ("worker-has-a-container", "dev", lambda o: group(o)["template"]["spec"].update(containers=[]), None,
     "workerGroupSpec should have at least one container"),
    ("min-and-max-without-autoscaling", "dev",
     steps(put("spec.enableInTreeAutoscaling", False), lambda o: group(o).pop("maxReplicas")), None,
     "worker group cpu-workers must set both minReplicas and maxReplicas when autoscaling is disabled"),
    ("min-replicas-negative", "dev", lambda o: group(o).update(minReplicas=-1), None,
     "worker group cpu-workers has negative minReplicas -1"),
    ("max-replicas-negative", "dev", lambda o: group(o).update(maxReplicas=-1), None,
     "worker group cpu-workers has negative maxReplicas -1"),
    ("min-above-max", "dev", lambda o: group(o).update(minReplicas=3), None,
     "worker group cpu-workers has minReplicas 3 greater than maxReplicas 2"),
    ("suspend-with-autoscaling", "dev", lambda o: group(o).update(suspend=True), None,
     "worker group cpu-workers cannot be suspended with Autoscaler enabled"),
    ("suspend-needs-deletion-policy-gate", "dev", lambda o: group(o).update(suspend=True),
     {"RayJobDeletionPolicy": False},
     "worker group cpu-workers can be suspended only when the RayJobDeletionPolicy feature gate is enabled"),
    # ---------------------------------------------------------------- rayStartParams, resources, labels
    ("head-resources-twice", "dev", lambda o: cluster_spec(o)["headGroupSpec"].update(resources={"driver_slots": "4"}),
     None, "resource fields should not be set in both rayStartParams and Resources for Head group"),
    ("worker-resources-twice", "dev", lambda o: group(o).update(resources={"cpu_group": "1000"}), None,
     "resource fields should not be set in both rayStartParams and Resources for cpu-workers group"),
    ("labels-in-ray-start-params", "dev", lambda o: group(o)["rayStartParams"].update(labels="tier=cpu"), None,
     "rayStartParams['labels'] is not supported for cpu-workers group"),
    ("head-labels-in-ray-start-params", "dev",
     lambda o: cluster_spec(o)["headGroupSpec"]["rayStartParams"].update(labels="tier=head"), None,
     "rayStartParams['labels'] is not supported for Head group"),
    ("label-key-syntax", "dev", lambda o: group(o).update(labels={"bad key!": "x"}), None,
     "invalid label key for cpu-workers group: 'bad key!'"),
    ("label-value-syntax", "dev", lambda o: group(o, "gpu-workers").update(labels={"tier": "-gpu-"}), None,
     "invalid label value for key 'tier' in gpu-workers group: '-gpu-'"),
    # ---------------------------------------------------------------- metadata, status, upgrade strategy
    ("cluster-name-length", "dev", put("metadata.name", "r" * 54), None,
     "RayCluster name should be no more than 53 characters"),
    ("cluster-name-dns1035", "dev", put("metadata.name", "Ray_RL"), None,
     "RayCluster name should be a valid DNS1035 label"),
    ("cluster-status-suspending-and-suspended", "dev",
     put("status", {"conditions": [{"type": "RayClusterSuspending", "status": "True"},
                                   {"type": "RayClusterSuspended", "status": "True"}]}), None,
     "RayClusterSuspending and rayv1.RayClusterSuspended conditions should not be both true"),
    ("upgrade-strategy-type", "dev", put("spec.upgradeStrategy", {"type": "Rolling"}), None,
     "Spec.UpgradeStrategy.Type value Rolling is invalid"),
    ("upgrade-strategy-on-a-rayjob-cluster", "dev",
     steps(put("spec.upgradeStrategy", {"type": "Recreate"}),
           lambda o: o["metadata"]["labels"].update({"ray.io/originated-from-crd": "RayJob"})), None,
     "upgradeStrategy cannot be set when RayCluster is created by RayJob"),
    # ---------------------------------------------------------------- authentication
    ("token-auth-needs-ray-version", "dev", put("spec.rayVersion", None), None,
     "authOptions.mode is 'token' but RayVersion was not specified"),
    ("token-auth-needs-ray-2.52", "dev", put("spec.rayVersion", "2.51.0"), None,
     "authOptions.mode is 'token' but minimum Ray version is 2.52.0, got 2.51.0"),
    ("token-auth-ray-version-format", "dev", put("spec.rayVersion", "latest"), None,
     "authOptions.mode is 'token' but RayVersion format is invalid: latest"),
    ("k8s-auth-needs-token-mode", "dev", put("spec.authOptions", {"mode": "disabled", "enableK8sTokenAuth": True}),
     None, "authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to 'token'"),
    ("k8s-auth-and-secret-name", "dev",
     put("spec.authOptions", {"mode": "token", "enableK8sTokenAuth": True, "secretName": "mine"}), None,
     "authOptions.enableK8sTokenAuth is enabled and authOptions.secretName is also set"),
    # ---------------------------------------------------------------- GCS fault tolerance (gpu overlay: Redis)
    ("ft-annotation-and-options", "gpu", lambda o: o["metadata"].update(annotations={"ray.io/ft-enabled": "true"}),
     None, "ray.io/ft-enabled annotation and GcsFaultToleranceOptions are both set"),
    ("ft-redis-password-param", "gpu",
     lambda o: cluster_spec(o)["headGroupSpec"]["rayStartParams"].update({"redis-password": "$REDIS_PASSWORD"}), None,
     "cannot set `redis-password` in rayStartParams when GcsFaultToleranceOptions is enabled"),
    ("ft-redis-password-env", "gpu", lambda o: head_env(o).append({"name": "REDIS_PASSWORD", "value": "x"}), None,
     "cannot set `REDIS_PASSWORD` env var in head Pod when GcsFaultToleranceOptions is enabled"),
    ("ft-redis-address-env", "gpu", lambda o: head_env(o).append({"name": "RAY_REDIS_ADDRESS", "value": "r:6379"}),
     None, "cannot set `RAY_REDIS_ADDRESS` env var in head Pod when GcsFaultToleranceOptions is enabled"),
    ("redis-address-without-ft", "dev", lambda o: head_env(o).append({"name": "RAY_REDIS_ADDRESS", "value": "r:6379"}),
     None, "RAY_REDIS_ADDRESS is set which implicitly enables GCS fault tolerance, but GcsFaultToleranceOptions"),
    ("ft-external-storage-annotation", "gpu",
     lambda o: o["metadata"].update(annotations={"ray.io/external-storage-namespace": "ns"}), None,
     "cannot set `ray.io/external-storage-namespace` annotation when GcsFaultToleranceOptions is enabled"),
    ("redis-username-param", "gpu",
     lambda o: cluster_spec(o)["headGroupSpec"]["rayStartParams"].update({"redis-username": "ray"}), None,
     "cannot set redis username in rayStartParams or environment variables"),
    ("ft-storage-with-redis", "gpu", put("spec.gcsFaultToleranceOptions.storage", {"size": "1Gi"}), None,
     "cannot set GcsFaultToleranceOptions.Storage when backend is 'redis'"),
    ("ft-rocksdb-needs-gate", "gpu", put("spec.gcsFaultToleranceOptions.backend", "rocksdb"), None,
     "requires the GCSFaultToleranceEmbeddedStorage feature gate to be enabled"),
    ("ft-rocksdb-no-redis-address", "gpu", put("spec.gcsFaultToleranceOptions.backend", "rocksdb"), GATES_ON,
     "cannot set GcsFaultToleranceOptions.RedisAddress when backend is 'rocksdb'"),
    # ---------------------------------------------------------------- gated features: history server, network, TLS
    ("history-server-needs-gate", "dev", put("spec.historyServerOptions", {"collectorOptions": {"image": "c"}}), None,
     "RayClusterHistoryServer feature gate is not enabled"),
    ("history-server-collector", "dev", put("spec.historyServerOptions", {}), GATES_ON,
     "historyServerOptions.collectorOptions must be set"),
    ("network-policy-needs-gate", "dev", put("spec.networkPolicy", {"mode": "DenyAll"}), None,
     "spec.networkPolicy requires the RayClusterNetworkPolicy feature gate to be enabled"),
    ("network-policy-rules-match-mode", "dev",
     put("spec.networkPolicy", {"mode": "DenyAllEgress", "head": {"ingressRules": [{}]}}), GATES_ON,
     "networkPolicy.head.ingressRules cannot be set when mode is 'DenyAllEgress'"),
    ("network-policy-known-group", "dev", put("spec.networkPolicy", {"workerGroups": [{"groupName": "tpu-workers"}]}),
     GATES_ON, "networkPolicy.workerGroups['tpu-workers'] does not match any group name in workerGroupSpecs"),
    ("network-policy-group-name-dns1123", "dev",
     steps(put("spec.networkPolicy", {"mode": "DenyAll"}), lambda o: group(o).update(groupName="CPU_workers")),
     GATES_ON, "worker group name 'CPU_workers' must be a valid DNS1123 label when networkPolicy is enabled"),
    ("tls-needs-gate", "dev", put("spec.tlsOptions", {"enabled": True}), None,
     "spec.tlsOptions requires the RayClusterMTLS feature gate to be enabled"),
    ("tls-env-managed-by-operator", "dev",
     steps(put("spec.tlsOptions", {"enabled": True}),
           lambda o: head_env(o).append({"name": "RAY_USE_TLS", "value": "1"})),
     GATES_ON, "cannot set RAY_USE_TLS environment variable in head Pod when tlsOptions is set"),
    # ---------------------------------------------------------------- RayJob: the rayClusterSpec goes through the above
    ("rayjob-cluster-spec-rules", "train-ppo-cartpole", lambda o: autoscaler(o).pop("version"), None,
     "The RayJob spec is invalid: worker group cpu-workers: idleTimeoutSeconds is set, but autoscaler v2 is not"),
    ("rayjob-annotations-reach-cluster-rules", "train-ppo-halfcheetah",
     lambda o: o["metadata"].update(annotations={"ray.io/ft-enabled": "true"}), None,
     "The RayJob spec is invalid: ray.io/ft-enabled annotation and GcsFaultToleranceOptions are both set"),
    ("rayjob-no-k8s-token-auth", "train-ppo-cartpole",
     put("spec.rayClusterSpec.authOptions", {"mode": "token", "enableK8sTokenAuth": True}), None,
     "K8s token auth mode is currently not supported for RayJob"),
    ("rayjob-no-upgrade-strategy", "train-ppo-cartpole", put("spec.rayClusterSpec.upgradeStrategy", {"type": "None"}),
     None, "upgradeStrategy cannot be set when RayCluster is created by RayJob"),
    # ---------------------------------------------------------------- RayJob metadata and status
    ("rayjob-name-length", "train-ppo-cartpole", put("metadata.name", "t" * 48), None,
     "RayJob name should be no more than 47 characters"),
    ("rayjob-name-dns1035", "train-ppo-cartpole", put("metadata.name", "Train_PPO"), None,
     "RayJob name should be a valid DNS1035 label"),
    ("rayjob-status-waiting", "train-ppo-cartpole", put("status", {"jobDeploymentStatus": "Waiting"}), None,
     "JobDeploymentStatus cannot be `Waiting` when SubmissionMode is not InteractiveMode"),
    # ---------------------------------------------------------------- submission modes
    ("submission-mode-known", "train-ppo-cartpole", put("spec.submissionMode", "K8sMode"), None,
     "submissionMode 'K8sMode' is not one the RayJob controller acts on"),
    ("interactive-no-backoff", "train-ppo-cartpole", put("spec.submissionMode", "InteractiveMode"), None,
     "BackoffLimit is incompatible with InteractiveMode"),
    ("sidecar-no-submitter-template", "train-ppo-cartpole", put("spec.submissionMode", "SidecarMode"), None,
     "Currently, SidecarMode doesn't support SubmitterPodTemplate"),
    ("sidecar-no-submitter-config", "train-ppo-cartpole",
     steps(put("spec.submissionMode", "SidecarMode"), put("spec.submitterPodTemplate", None),
           put("spec.submitterConfig", {"backoffLimit": 1})), None,
     "Currently, SidecarMode doesn't support SubmitterConfig"),
    ("sidecar-head-restart-policy", "train-ppo-cartpole",
     steps(put("spec.submissionMode", "SidecarMode"), put("spec.submitterPodTemplate", None),
           lambda o: head_pod(o).update(restartPolicy="OnFailure")), None,
     "restartPolicy for head Pod should be Never or unset when using SidecarMode"),
    ("cluster-spec-or-selector", "train-ppo-cartpole", SELECTOR_ONLY, None,
     "one of RayClusterSpec or ClusterSelector must be set"),
    ("selector-names-a-cluster", "train-ppo-cartpole", steps(SELECTOR_ONLY, put("spec.clusterSelector", {"a": "b"})),
     None, "cluster name in ClusterSelector should not be empty"),
    ("selector-no-backoff", "train-ppo-cartpole", steps(SELECTOR_ONLY, put("spec.clusterSelector", {
        "ray.io/cluster": "ray-rl"})), None, "BackoffLimit is incompatible with ClusterSelector mode"),
    ("selector-not-in-sidecar-mode", "train-ppo-cartpole",
     steps(SELECTOR_ONLY, put("spec.clusterSelector", {"ray.io/cluster": "ray-rl"}),
           put("spec.submissionMode", "SidecarMode")), None, "ClusterSelector is not supported in SidecarMode"),
    ("selector-no-suspend", "train-ppo-cartpole",
     steps(SELECTOR_ONLY, put("spec.clusterSelector", {"ray.io/cluster": "ray-rl"}), put("spec.suspend", True)), None,
     "the ClusterSelector mode doesn't support the suspend operation"),
    # ---------------------------------------------------------------- shutdown, TTL, deadlines, backoff
    ("suspend-needs-shutdown", "train-ppo-cartpole", steps(NO_SHUTDOWN, put("spec.suspend", True)), None,
     "a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended"),
    ("ttl-needs-shutdown", "train-ppo-cartpole", put("spec.shutdownAfterJobFinishes", False), None,
     "a RayJob with shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished"),
    ("ttl-non-negative", "train-ppo-cartpole", put("spec.ttlSecondsAfterFinished", -1), None,
     "TTLSecondsAfterFinished must be a non-negative integer"),
    ("active-deadline-positive", "train-ppo-cartpole", put("spec.activeDeadlineSeconds", 0), None,
     "activeDeadlineSeconds must be a positive integer"),
    ("pre-running-deadline-positive", "train-ppo-cartpole", put("spec.preRunningDeadlineSeconds", -10), None,
     "preRunningDeadlineSeconds must be a positive integer"),
    ("backoff-limit-non-negative", "train-ppo-cartpole", put("spec.backoffLimit", -1), None,
     "backoffLimit must be a positive integer"),
    ("runtime-env-yaml-is-a-mapping", "train-ppo-cartpole", put("spec.runtimeEnvYAML", "- env_vars\n"), None,
     "failed to unmarshal RuntimeEnvYAML"),
    ("runtime-env-yaml-parses", "train-ppo-cartpole", put("spec.runtimeEnvYAML", "env_vars: [\n"), None,
     "failed to unmarshal RuntimeEnvYAML"),
    # ---------------------------------------------------------------- deletion strategy and rules
    ("deletion-strategy-needs-gate", "train-ppo-cartpole",
     rule({"deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED"}}]}),
     {"RayJobDeletionPolicy": False}, "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy"),
    ("deletion-rules-exclude-shutdown", "train-ppo-cartpole",
     put("spec.deletionStrategy",
         {"deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED"}}]}),
     None, "spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are mutually exclusive"),
    ("deletion-rules-or-legacy", "train-ppo-cartpole",
     rule({"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteCluster"},
           "deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED"}}]}), None,
     "Cannot use both legacy onSuccess/onFailure fields and deletionRules simultaneously"),
    ("deletion-strategy-not-empty", "train-ppo-cartpole", rule({}), None,
     "DeletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field"),
    ("legacy-deletion-both-set", "train-ppo-cartpole", rule({"onSuccess": {"policy": "DeleteCluster"}}), None,
     "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set"),
    ("legacy-deletion-policy-set", "train-ppo-cartpole",
     rule({"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {}}), None,
     "the DeletionPolicyType field of DeletionStrategy.OnFailure cannot be unset"),
    ("legacy-delete-workers-autoscaling", "train-ppo-cartpole",
     rule({"onSuccess": {"policy": "DeleteWorkers"}, "onFailure": {"policy": "DeleteCluster"}}), None,
     "DeletionStrategy=DeleteWorkers currently does not support RayCluster with autoscaling enabled"),
    ("legacy-delete-none-with-shutdown", "train-ppo-cartpole",
     put("spec.deletionStrategy", {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteNone"}}),
     None, "shutdownAfterJobFinshes is set to 'true' while deletion policy is 'DeleteNone'"),
    ("deletion-rule-delete-workers-autoscaling", "train-ppo-cartpole",
     rule({"deletionRules": [{"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED"}}]}), None,
     "deletionRules[0]: DeletionPolicyType 'DeleteWorkers' not supported with autoscaling enabled"),
    ("deletion-rule-unique", "train-ppo-cartpole",
     rule({"deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED"}},
                             {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 5}}]}),
     None, "deletionRules[1]: duplicate rule for DeletionPolicyType 'DeleteCluster' and JobStatus 'SUCCEEDED'"),
    ("deletion-rule-ttl-order", "train-ppo-cartpole",
     rule({"deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED", "ttlSeconds": 60}},
                             {"policy": "DeleteSelf", "condition": {"jobStatus": "FAILED", "ttlSeconds": 10}}]}),
     None, "for JobStatus 'FAILED': DeleteSelf TTL (10) must be >= DeleteCluster TTL (60)"),
    ("deletion-rule-one-condition", "train-ppo-cartpole",
     rule({"deletionRules": [{"policy": "DeleteCluster",
                              "condition": {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"}}]}), None,
     "deletionRules[0]: cannot set both JobStatus and JobDeploymentStatus at the same time"),
    ("deletion-rule-some-condition", "train-ppo-cartpole",
     rule({"deletionRules": [{"policy": "DeleteCluster", "condition": {"ttlSeconds": 5}}]}), None,
     "deletionRules[0]: exactly one of JobStatus and JobDeploymentStatus must be set"),
    ("deletion-rule-ttl-non-negative", "train-ppo-cartpole",
     rule({"deletionRules": [{"policy": "DeleteSelf", "condition": {"jobStatus": "FAILED", "ttlSeconds": -1}}]}),
     None, "deletionRules[0]: TTLSeconds must be non-negative"),
    # ---------------------------------------------------------------- the submitter pod (a batch/v1 Job's pod)
    ("submitter-restart-policy-set", "train-ppo-cartpole", put("spec.submitterPodTemplate.spec.restartPolicy", None),
     None, "submitterPodTemplate.spec.restartPolicy is unset (Always): the submitter runs as a batch/v1 Job"),
    ("submitter-restart-policy-not-always", "train-ppo-cartpole",
     put("spec.submitterPodTemplate.spec.restartPolicy", "Always"), None,
     "submitterPodTemplate.spec.restartPolicy is Always"),
    ("submitter-has-a-container", "train-ppo-cartpole", put("spec.submitterPodTemplate.spec.containers", []), None,
     "submitterPodTemplate should have at least one container"),
]  # fmt: skip


@pytest.mark.parametrize(("start", "mistake", "gates", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_names_the_mistake_planted_in_a_shipped_manifest(shipped, start, mistake, gates, expected):
    obj = copy.deepcopy(shipped[start])
    assert expected not in "\n".join(operator_rules.validate(obj, gates))  # not there before the mistake
    mistake(obj)
    errors = operator_rules.validate(obj, gates)
    assert any(expected in error for error in errors), errors
    kind, name = obj["kind"], obj["metadata"]["name"]
    assert all(error.startswith(f"{kind}/{name}: ") for error in errors)


def test_case_ids_are_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("start", "fix"),
    [
        # The two ways KubeRay accepts per-group idle timeouts: the field (shipped), or the env var of KubeRay < 1.4.
        (
            "dev",
            steps(
                lambda o: autoscaler(o).pop("version"),
                lambda o: head_env(o).append({"name": "RAY_enable_autoscaler_v2", "value": "true"}),
            ),
        ),
        # Without per-group idle timeouts, autoscaler v1 is accepted too.
        (
            "dev",
            steps(
                lambda o: autoscaler(o).update(version="v1"),
                lambda o: group(o).pop("idleTimeoutSeconds"),
                lambda o: group(o, "gpu-workers").pop("idleTimeoutSeconds"),
            ),
        ),
        # Group priorities with autoscaler v2 on Ray >= 2.56; rules-based deletion without shutdown.
        ("gpu", lambda o: group(o, "gpu-workers").update(priority=10)),
        (
            "train-ppo-cartpole",
            rule({"deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED"}}]}),
        ),
        ("train-ppo-cartpole", put("spec.submitterPodTemplate.spec.restartPolicy", "OnFailure")),
    ],
    ids=["v2-by-env-var", "v1-without-group-timeouts", "priority-with-v2", "deletion-rules", "submitter-on-failure"],
)
def test_what_the_operator_accepts_passes(shipped, start, fix):
    obj = copy.deepcopy(shipped[start])
    fix(obj)
    assert operator_rules.validate(obj) == []


def test_only_rayclusters_and_rayjobs_have_operator_rules():
    with pytest.raises(ValueError, match="only RayCluster and RayJob"):
        operator_rules.validate({"kind": "RayService", "metadata": {"name": "x"}})


@pytest.mark.parametrize(
    ("check", "value", "valid"),
    [
        (operator_rules.is_dns1035_label, "ray-rl", True),
        (operator_rules.is_dns1035_label, "1ray", False),
        (operator_rules.is_dns1035_label, "r" * 64, False),
        (operator_rules.is_dns1123_label, "1ray", True),
        (operator_rules.is_dns1123_label, "Ray", False),
        (operator_rules.is_qualified_name, "ray.io/accelerator-type", True),
        (operator_rules.is_qualified_name, "tier", True),
        (operator_rules.is_qualified_name, "/tier", False),
        (operator_rules.is_qualified_name, "a/b/c", False),
        (operator_rules.is_qualified_name, "Example.com/tier", False),
        (operator_rules.is_valid_label_value, "", True),
        (operator_rules.is_valid_label_value, "A100_80GB", True),
        (operator_rules.is_valid_label_value, "v" * 64, False),
    ],
)
def test_kubernetes_name_syntax(check, value, valid):
    assert (check(value) == []) is valid


def test_the_rules_are_those_of_the_pinned_operator():
    """One KubeRay version: the chart k8s/operator/helm.yaml installs, whose CRDs the schemas are
    (crds.py reads it there), and the release these rules were ported from."""
    from controlplane.kuberay import crds

    pinned = yaml.safe_load((REPO_ROOT / "k8s" / "operator" / "helm.yaml").read_text())["version"]
    assert crds.KUBERAY_VERSION == str(pinned)
    assert operator_rules.PORTED_FROM_VERSION == crds.KUBERAY_VERSION, (
        f"k8s/operator/helm.yaml pins KubeRay {pinned}, the operator rules are "
        f"v{operator_rules.PORTED_FROM_VERSION}'s: port the new release's validation.go before bumping the pin"
    )
