"""The KubeRay operator's own checks on RayCluster and RayJob specs, applied offline.

The API server stores whatever the CRD schemas allow (crds.py checks that). The KubeRay
operator then validates every RayCluster and RayJob again before it creates a single pod, and
what its rules refuse stays an object with a warning event and no pods. This module applies those
rules to a manifest, so that a spec the operator would refuse fails a unit test instead of a
deployment.

Source: github.com/ray-project/kuberay at tag v1.7.0 (the release pinned in
k8s/operator/helm.yaml, whose CRDs are in ../shared/kuberay/crds):

- ray-operator/controllers/ray/utils/validation.go: ValidateRayClusterMetadata,
  ValidateRayClusterStatus, ValidateRayClusterUpgradeOptions, ValidateRayClusterSpec and the
  helpers it calls (validateRayGroupResources, validateRayGroupLabels,
  validateWorkerGroupIdleTimeout, validateWorkerGroupPriority, validateGcsFaultToleranceBackend,
  validateNetworkPolicy, validateTLSOptions, validateCollectorOptions), ValidateRayJobMetadata,
  ValidateRayJobStatus, ValidateRayJobSpec and validateDeletionConfiguration,
  validateLegacyDeletionPolicies, validateDeletionRules, validateDeletionCondition,
  validateTTLConsistency;
- utils/util.go (IsAutoscalingEnabled, IsAutoscalingV2Enabled, IsGCSFaultToleranceEnabled,
  IsAuthEnabled, EnvVarExists/EnvVarByName) and utils/constant.go (name lengths, annotation keys);
- pkg/webhooks/v1/raycluster_webhook.go: validateWorkerGroups (group names unique);
- pkg/features/features.go: the default feature gates (FEATURE_GATES below);
- controllers/ray/rayjob_controller.go and common/job.go: what the operator does with a RayJob's
  submitterPodTemplate (used as given, first container = submitter, run as a batch/v1 Job).

The stored copy of validation.go that was ported is the one whose rules match the v1.7.0 CRDs
field for field (networkPolicy, tlsOptions, historyServerOptions, gcsFaultToleranceOptions
backend/storage, workerGroupSpecs[].priority, preRunningDeadlineSeconds, deletion conditions on
jobDeploymentStatus, authOptions.enableK8sTokenAuth/secretName); the tag's own commit was not among
the stored versions. Written by hand from what the rules say: facts carried over, no code.

Differences from the operator, on purpose:
- The operator stops at its first error; here every rule runs and all errors come back, each
  phrased as the operator phrases it (naming the group or field).
- Rules behind feature gates that are off by default in v1.7.0 (network policy, mTLS, history
  server, embedded RocksDB GCS storage) report the gate, as the operator does; their inner checks
  on operator-managed volume names, mount paths and collector env vars are not ported.
- Three rules come from what the operator does rather than from validation.go, and say so in
  their message: the submitter pod template runs as a batch/v1 Job (restartPolicy Never or
  OnFailure, at least one container), and submissionMode must be a mode the controller knows
  (the CRD has no enum for it).
KubeRay v1.7.0 has no rule against `ray.io/` keys in a group's `labels` (its docs use
`ray.io/accelerator-type`): labels are checked for Kubernetes syntax only, as here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

# The KubeRay release these rules were ported from. A unit test holds it to the pinned operator
# (k8s/operator/helm.yaml): bumping the pin means reading the new release's rules first.
PORTED_FROM_VERSION = "1.7.0"

# pkg/features/features.go at that release: the gates' defaults (the Helm install sets none).
FEATURE_GATES: dict[str, bool] = {
    "RayClusterStatusConditions": True,
    "RayJobDeletionPolicy": True,
    "RayMultiHostIndexing": True,
    "RayServiceIncrementalUpgrade": True,
    "RayCronJob": False,
    "SidecarSubmitterRestart": False,
    "RayClusterNetworkPolicy": False,
    "GCSFaultToleranceEmbeddedStorage": False,
    "RayClusterMTLS": False,
    "RayClusterHistoryServer": False,
    "KubernetesWAS": False,
}

# utils/constant.go
MAX_RAYCLUSTER_NAME_LENGTH = 53  # 63 - len("-serve-svc")
MAX_RAYJOB_NAME_LENGTH = MAX_RAYCLUSTER_NAME_LENGTH - 6  # the cluster is named <rayjob>-<5 chars>
FT_ENABLED_ANNOTATION = "ray.io/ft-enabled"
EXTERNAL_STORAGE_NS_ANNOTATION = "ray.io/external-storage-namespace"
ORIGINATED_FROM_CRD_LABEL = "ray.io/originated-from-crd"
CLUSTER_SELECTOR_KEY = "ray.io/cluster"
RAY_REDIS_ADDRESS = "RAY_REDIS_ADDRESS"
REDIS_PASSWORD = "REDIS_PASSWORD"
REDIS_USERNAME = "REDIS_USERNAME"
RAY_ENABLE_AUTOSCALER_V2 = "RAY_enable_autoscaler_v2"
KUBERAY_GEN_AUTOSCALER_START_CMD = "KUBERAY_GEN_AUTOSCALER_START_CMD"
RAY_GCS_STORAGE, RAY_GCS_STORAGE_PATH = "RAY_gcs_storage", "RAY_gcs_storage_path"
TLS_ENV_VARS = ("RAY_USE_TLS", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")
MIN_RAY_FOR_TOKEN_AUTH = "2.52.0"
MIN_RAY_FOR_K8S_TOKEN_AUTH = "2.55.0"
MIN_RAY_FOR_GROUP_PRIORITY = "2.56.0"

# apis/ray/v1/rayjob_types.go: the modes the RayJob controller acts on.
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
DELETION_ORDER = ("DeleteWorkers", "DeleteCluster", "DeleteSelf")  # TTLs must not decrease along it


# --------------------------------------------------------------------------- Kubernetes name syntax
# k8s.io/apimachinery/pkg/util/validation, as the operator calls it.

_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def is_dns1035_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.fullmatch(value):
        errors.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character (regex used for validation is "
            "'[a-z]([-a-z0-9]*[a-z0-9])?')"
        )
    return errors


def is_dns1123_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.fullmatch(value):
        errors.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
            "start and end with an alphanumeric character (regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    return errors


def is_qualified_name(value: str) -> list[str]:
    """A label key: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters."""
    parts = value.split("/")
    errors: list[str] = []
    if len(parts) > 2:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix):
            errors.append(
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character"
            )
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if name and not _QUALIFIED_NAME.fullmatch(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character (regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
    return errors


def is_valid_label_value(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _LABEL_VALUE.fullmatch(value):
        errors.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
            "must start and end with an alphanumeric character"
        )
    return errors


def _parse_generic_version(text: str) -> tuple[int, ...] | None:
    """k8s.io/apimachinery/pkg/util/version.ParseGeneric: at least "X.Y", a leading "v" and a suffix allowed."""
    match = re.fullmatch(r"\s*v?([0-9]+(?:\.[0-9]+)*)(.*)", text, flags=re.S)
    if not match or len(match.group(1).split(".")) < 2:
        return None
    return tuple(int(part) for part in match.group(1).split("."))


def _older(version: tuple[int, ...], minimum: str) -> bool:
    floor = tuple(int(p) for p in minimum.split("."))
    width = max(len(version), len(floor))
    return version + (0,) * (width - len(version)) < floor + (0,) * (width - len(floor))


# --------------------------------------------------------------------------- helpers (utils/util.go)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(template: Any) -> list[dict[str, Any]]:
    return _list(_dict(_dict(template).get("spec")).get("containers"))


def _env(container: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [e for e in _list(container.get("env")) if isinstance(e, dict)]


def _env_var(name: str, env: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in env if e.get("name") == name), None)


def is_autoscaling_enabled(spec: Mapping[str, Any] | None) -> bool:
    return bool(spec) and spec.get("enableInTreeAutoscaling") is True


def is_autoscaling_v2_enabled(spec: Mapping[str, Any] | None) -> bool:
    """Only an explicit `autoscalerOptions.version: v2` counts (not the Ray version's default)."""
    return bool(spec) and _dict(spec.get("autoscalerOptions")).get("version") == "v2"


def _v2_env_enabled(head_env: list[dict[str, Any]]) -> bool:
    variable = _env_var(RAY_ENABLE_AUTOSCALER_V2, head_env)
    return variable is not None and variable.get("value") in ("1", "true")


def is_gcs_fault_tolerance_enabled(spec: Mapping[str, Any], annotations: Mapping[str, str]) -> bool:
    return (
        str(annotations.get(FT_ENABLED_ANNOTATION, "")).lower() == "true"
        or spec.get("gcsFaultToleranceOptions") is not None
    )


def is_auth_enabled(spec: Mapping[str, Any]) -> bool:
    return _dict(spec.get("authOptions")).get("mode") == "token"


def is_k8s_auth_enabled(auth_options: Any) -> bool:
    return _dict(auth_options).get("enableK8sTokenAuth") is True


def is_tls_enabled(spec: Mapping[str, Any]) -> bool:
    return _dict(spec.get("tlsOptions")).get("enabled") is True


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------- RayCluster


def validate_raycluster_metadata(metadata: Mapping[str, Any]) -> list[str]:
    """ValidateRayClusterMetadata."""
    name = str(metadata.get("name", ""))
    if len(name) > MAX_RAYCLUSTER_NAME_LENGTH:
        return [f"RayCluster name should be no more than {MAX_RAYCLUSTER_NAME_LENGTH} characters"]
    if errors := is_dns1035_label(name):
        return [f"RayCluster name should be a valid DNS1035 label: {errors}"]
    return []


def validate_raycluster_status(status: Mapping[str, Any]) -> list[str]:
    """ValidateRayClusterStatus: Suspending and Suspended are never both true."""
    true = {c.get("type") for c in _list(status.get("conditions")) if isinstance(c, dict) and c.get("status") == "True"}
    if {"RayClusterSuspending", "RayClusterSuspended"} <= true:
        return [
            "invalid RayCluster State: rayv1.RayClusterSuspending and rayv1.RayClusterSuspended conditions "
            "should not be both true"
        ]
    return []


def validate_upgrade_strategy(spec: Mapping[str, Any], created_by: str = "RayCluster") -> list[str]:
    """ValidateRayClusterUpgradeOptions; created_by is the CRD that creates the RayCluster."""
    kind = _dict(spec.get("upgradeStrategy")).get("type")
    if kind is None:
        return []
    if kind not in ("Recreate", "None"):
        return [
            f"The RayCluster spec is invalid: Spec.UpgradeStrategy.Type value {kind} is invalid, "
            "valid options are Recreate or None"
        ]
    if created_by in ("RayJob", "RayService"):
        return [f"upgradeStrategy cannot be set when RayCluster is created by {created_by}"]
    return []


def validate_worker_group_names(spec: Mapping[str, Any]) -> list[str]:
    """raycluster_webhook.go validateWorkerGroups: a group's name is its identity (pods, labels, scaling)."""
    seen: set[str] = set()
    errors = []
    for index, group in enumerate(_list(spec.get("workerGroupSpecs"))):
        name = _dict(group).get("groupName")
        if name in seen:
            errors.append(f"spec.workerGroupSpecs[{index}]: worker group names must be unique (groupName {name!r})")
        seen.add(name)
    return errors


def _group_resources(group: str, start: Mapping[str, Any], resources: Any) -> list[str]:
    """validateRayGroupResources: Ray resources in rayStartParams or in `resources`, never both."""
    if any(start.get(key) for key in ("num-cpus", "num-gpus", "memory", "resources")) and _dict(resources):
        return [
            f"resource fields should not be set in both rayStartParams and Resources for {group} group; "
            "please use only one"
        ]
    return []


def _group_labels(group: str, start: Mapping[str, Any], labels: Any) -> list[str]:
    """validateRayGroupLabels: no rayStartParams['labels']; label keys and values in Kubernetes syntax."""
    if "labels" in start:
        return [
            f"rayStartParams['labels'] is not supported for {group} group; please use the top-level Labels field "
            "instead"
        ]
    errors = []
    for key, value in _dict(labels).items():
        errors += [f"invalid label key for {group} group: '{key}', error: {e}" for e in is_qualified_name(str(key))]
        errors += [
            f"invalid label value for key '{key}' in {group} group: '{value}', error: {e}"
            for e in is_valid_label_value(str(value))
        ]
    return ["; ".join(errors)] if errors else []


def _idle_timeout(group: Mapping[str, Any], spec: Mapping[str, Any], head_env: list[dict[str, Any]]) -> list[str]:
    """validateWorkerGroupIdleTimeout: per-group idle timeouts are an autoscaler v2 feature."""
    timeout, name = group.get("idleTimeoutSeconds"), group.get("groupName")
    if timeout is None:
        return []
    if isinstance(timeout, int) and timeout < 0:
        return [f"worker group {name}: idleTimeoutSeconds must be non-negative, got {timeout}"]
    if is_autoscaling_v2_enabled(spec) or _v2_env_enabled(head_env):
        return []
    return [
        f"worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not enabled. Please set "
        f".spec.autoscalerOptions.version to 'v2' (or set {RAY_ENABLE_AUTOSCALER_V2} environment variable to "
        "'true' in the head pod if using KubeRay < 1.4.0)"
    ]


def _priority(group: Mapping[str, Any], spec: Mapping[str, Any], head_env: list[dict[str, Any]]) -> list[str]:
    """validateWorkerGroupPriority: Ray >= 2.56 and autoscaler v2."""
    priority, name = group.get("priority"), group.get("groupName")
    if not priority:
        return []
    ray_version = str(spec.get("rayVersion") or "")
    if not ray_version:
        return [
            f"worker group {name}: priority is set, but RayVersion was not specified. Ray version "
            f"{MIN_RAY_FOR_GROUP_PRIORITY} or later is required"
        ]
    parsed = _parse_generic_version(ray_version)
    if parsed is None:
        return [f"worker group {name}: priority is set, but RayVersion format is invalid: {ray_version}"]
    if _older(parsed, MIN_RAY_FOR_GROUP_PRIORITY):
        return [
            f"worker group {name}: priority is set, but minimum Ray version is {MIN_RAY_FOR_GROUP_PRIORITY}, "
            f"got {ray_version}"
        ]
    if is_autoscaling_v2_enabled(spec) or _v2_env_enabled(head_env):
        return []
    return [
        f"worker group {name}: priority is set to {priority}, but autoscaler v2 is not enabled. Priority is only "
        "supported with autoscaler v2 enabled"
    ]


def _worker_groups(spec: Mapping[str, Any], head_env: list[dict[str, Any]]) -> list[str]:
    autoscaling = is_autoscaling_enabled(spec)
    errors: list[str] = []
    for group in _list(spec.get("workerGroupSpecs")):
        group = _dict(group)
        name = group.get("groupName")
        if not _containers(group.get("template")):
            errors.append("workerGroupSpec should have at least one container")
            continue
        low, high = _int(group.get("minReplicas")), _int(group.get("maxReplicas"))
        # With autoscaling the autoscaler adjusts the bounds; without it both are needed.
        if not autoscaling and (group.get("minReplicas") is None or group.get("maxReplicas") is None):
            errors.append(f"worker group {name} must set both minReplicas and maxReplicas when autoscaling is disabled")
        if low is not None and low < 0:
            errors.append(f"worker group {name} has negative minReplicas {low}")
        if high is not None and high < 0:
            errors.append(f"worker group {name} has negative maxReplicas {high}")
        if low is not None and high is not None and low > high:
            errors.append(f"worker group {name} has minReplicas {low} greater than maxReplicas {high}")
        start = _dict(group.get("rayStartParams"))
        errors += _group_resources(str(name), start, group.get("resources"))
        errors += _group_labels(str(name), start, group.get("labels"))
        errors += _idle_timeout(group, spec, head_env)
        errors += _priority(group, spec, head_env)
    return errors


def _gcs_backend(options: Mapping[str, Any], head: Mapping[str, Any], gates: Mapping[str, bool]) -> list[str]:
    """validateGcsFaultToleranceBackend (operator-managed volume names and mount paths not ported)."""
    if (options.get("backend") or "redis") != "rocksdb":
        if options.get("storage") is not None:
            return [
                "cannot set GcsFaultToleranceOptions.Storage when backend is 'redis' - it only applies to the "
                "'rocksdb' backend"
            ]
        return []
    if not gates.get("GCSFaultToleranceEmbeddedStorage"):
        return [
            "the embedded RocksDB GCS fault tolerance backend (GcsFaultToleranceOptions.Backend: 'rocksdb') requires "
            "the GCSFaultToleranceEmbeddedStorage feature gate to be enabled"
        ]
    for field, label in (
        ("redisAddress", "RedisAddress"),
        ("redisUsername", "RedisUsername"),
        ("redisPassword", "RedisPassword"),
        ("externalStorageNamespace", "ExternalStorageNamespace"),
    ):
        if options.get(field):
            return [f"cannot set GcsFaultToleranceOptions.{label} when backend is 'rocksdb'"]
    storage = _dict(options.get("storage"))
    if storage.get("claimName") and (
        storage.get("size") is not None or storage.get("storageClassName") is not None or storage.get("accessModes")
    ):
        return [
            "GcsFaultToleranceOptions.Storage.ClaimName is mutually exclusive with size, storageClassName, and "
            "accessModes"
        ]
    env = _env(head)
    if _env_var(RAY_GCS_STORAGE, env) or _env_var(RAY_GCS_STORAGE_PATH, env):
        return [
            f"cannot set `{RAY_GCS_STORAGE}` or `{RAY_GCS_STORAGE_PATH}` env var in head Pod when the embedded GCS "
            "FT backend is used - these are managed by KubeRay"
        ]
    return []


def _gcs_fault_tolerance(
    spec: Mapping[str, Any], annotations: Mapping[str, str], head: Mapping[str, Any], gates: Mapping[str, bool]
) -> list[str]:
    options = spec.get("gcsFaultToleranceOptions")
    head_start = _dict(_dict(spec.get("headGroupSpec")).get("rayStartParams"))
    env = _env(head)
    errors = []
    if annotations.get(FT_ENABLED_ANNOTATION) and options is not None:
        errors.append(
            f"{FT_ENABLED_ANNOTATION} annotation and GcsFaultToleranceOptions are both set. Please use only "
            "GcsFaultToleranceOptions to configure GCS fault tolerance"
        )
    if not is_gcs_fault_tolerance_enabled(spec, annotations) and _env_var(RAY_REDIS_ADDRESS, env):
        errors.append(
            f"{RAY_REDIS_ADDRESS} is set which implicitly enables GCS fault tolerance, but GcsFaultToleranceOptions "
            "is not set. Please set GcsFaultToleranceOptions to enable GCS fault tolerance"
        )
    if options is not None:
        if head_start.get("redis-password"):
            errors.append(
                "cannot set `redis-password` in rayStartParams when GcsFaultToleranceOptions is enabled - use "
                "GcsFaultToleranceOptions.RedisPassword instead"
            )
        if _env_var(REDIS_PASSWORD, env):
            errors.append(
                "cannot set `REDIS_PASSWORD` env var in head Pod when GcsFaultToleranceOptions is enabled - use "
                "GcsFaultToleranceOptions.RedisPassword instead"
            )
        if _env_var(RAY_REDIS_ADDRESS, env):
            errors.append(
                "cannot set `RAY_REDIS_ADDRESS` env var in head Pod when GcsFaultToleranceOptions is enabled - use "
                "GcsFaultToleranceOptions.RedisAddress instead"
            )
        if annotations.get(EXTERNAL_STORAGE_NS_ANNOTATION):
            errors.append(
                f"cannot set `{EXTERNAL_STORAGE_NS_ANNOTATION}` annotation when GcsFaultToleranceOptions is enabled "
                "- use GcsFaultToleranceOptions.ExternalStorageNamespace instead"
            )
        errors += _gcs_backend(_dict(options), head, gates)
    if head_start.get("redis-username") or _env_var(REDIS_USERNAME, env):
        errors.append(
            "cannot set redis username in rayStartParams or environment variables - use "
            "GcsFaultToleranceOptions.RedisUsername instead"
        )
    return errors


def _autoscaling(spec: Mapping[str, Any], head: Mapping[str, Any], gates: Mapping[str, bool]) -> list[str]:
    groups = [_dict(g) for g in _list(spec.get("workerGroupSpecs"))]
    head_pod = _dict(_dict(_dict(spec.get("headGroupSpec")).get("template")).get("spec"))
    options = _dict(spec.get("autoscalerOptions"))
    env = _env(head)
    errors = []
    if not gates.get("RayJobDeletionPolicy"):
        errors += [
            f"worker group {g.get('groupName')} can be suspended only when the RayJobDeletionPolicy feature gate is "
            "enabled"
            for g in groups
            if g.get("suspend") is True
        ]
    if not is_autoscaling_enabled(spec):
        variable = _env_var(RAY_ENABLE_AUTOSCALER_V2, env)
        if variable is not None and variable.get("value") in ("1", "true"):
            errors.append(
                f"environment variable {RAY_ENABLE_AUTOSCALER_V2} cannot be set to '{variable.get('value')}' when "
                "enableInTreeAutoscaling is false. Please set enableInTreeAutoscaling: true to use autoscaler v2"
            )
    else:
        errors += [
            f"worker group {g.get('groupName')} cannot be suspended with Autoscaler enabled"
            for g in groups
            if g.get("suspend") is True
        ]
        if options.get("version") is not None and _env_var(RAY_ENABLE_AUTOSCALER_V2, env):
            errors.append(
                f"both .spec.autoscalerOptions.version and head Pod env var {RAY_ENABLE_AUTOSCALER_V2} are set, "
                "please only use the former"
            )
        if is_autoscaling_v2_enabled(spec):
            # Autoscaler v2 replaces a failed Ray pod instead of restarting it in place.
            if head_pod.get("restartPolicy") not in (None, "", "Never"):
                errors.append("restartPolicy for head Pod should be Never or unset when using autoscaler V2")
            for g in groups:
                if _dict(_dict(g.get("template")).get("spec")).get("restartPolicy") not in (None, "", "Never"):
                    errors.append(
                        f"restartPolicy for worker group {g.get('groupName')} should be Never or unset when using "
                        "autoscaler V2"
                    )
    idle = _int(options.get("idleTimeoutSeconds"))
    if idle is not None and idle < 0:
        errors.append(f"autoscalerOptions.idleTimeoutSeconds must be non-negative, got {idle}")
    if _env_var(KUBERAY_GEN_AUTOSCALER_START_CMD, [e for e in _list(options.get("env")) if isinstance(e, dict)]):
        errors.append(
            f"autoscalerOptions.env must not contain {KUBERAY_GEN_AUTOSCALER_START_CMD}: it is managed by KubeRay "
            "and injected automatically into the autoscaler container"
        )
    return errors


def _history_server(spec: Mapping[str, Any], gates: Mapping[str, bool]) -> list[str]:
    options = spec.get("historyServerOptions")
    if options is None:
        return []
    if not gates.get("RayClusterHistoryServer"):
        return ["RayClusterHistoryServer feature gate is not enabled"]
    collector = _dict(options).get("collectorOptions")
    if collector is None:
        return ["historyServerOptions.collectorOptions must be set"]
    if not _dict(collector).get("image"):
        return ["historyServerOptions.collectorOptions.image must be set"]
    return []


def _auth(spec: Mapping[str, Any]) -> list[str]:
    auth = spec.get("authOptions")
    if not is_auth_enabled(spec):
        if is_k8s_auth_enabled(auth):
            return ["authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to 'token'"]
        return []
    ray_version = str(spec.get("rayVersion") or "")
    if not ray_version:
        return [
            "authOptions.mode is 'token' but RayVersion was not specified. Ray version "
            f"{MIN_RAY_FOR_TOKEN_AUTH} or later is required"
        ]
    parsed = _parse_generic_version(ray_version)
    if parsed is None:
        return [f"authOptions.mode is 'token' but RayVersion format is invalid: {ray_version}"]
    if _older(parsed, MIN_RAY_FOR_TOKEN_AUTH):
        return [f"authOptions.mode is 'token' but minimum Ray version is {MIN_RAY_FOR_TOKEN_AUTH}, got {ray_version}"]
    if is_k8s_auth_enabled(auth):
        if _older(parsed, MIN_RAY_FOR_K8S_TOKEN_AUTH):
            return [
                f"authOptions.enableK8sTokenAuth is enabled but minimum Ray version is {MIN_RAY_FOR_K8S_TOKEN_AUTH}, "
                f"got {ray_version}"
            ]
        if _dict(auth).get("secretName"):
            return ["authOptions.enableK8sTokenAuth is enabled and authOptions.secretName is also set"]
    return []


def _network_policy(spec: Mapping[str, Any], gates: Mapping[str, bool]) -> list[str]:
    """The feature gate, then validateNetworkPolicy: rules only where the mode denies that direction."""
    policy = spec.get("networkPolicy")
    if policy is None:
        return []
    if not gates.get("RayClusterNetworkPolicy"):
        return ["spec.networkPolicy requires the RayClusterNetworkPolicy feature gate to be enabled"]
    policy = _dict(policy)
    mode = policy.get("mode") or "DenyAll"

    def direction(rules: Mapping[str, Any], where: str) -> list[str]:
        if mode == "DenyAllEgress" and rules.get("ingressRules"):
            return [f"{where}.ingressRules cannot be set when mode is {mode!r} (ingress is not restricted)"]
        if mode == "DenyAllIngress" and rules.get("egressRules"):
            return [f"{where}.egressRules cannot be set when mode is {mode!r} (egress is not restricted)"]
        return []

    errors = direction(_dict(policy.get("head")), "networkPolicy.head")
    errors += direction(_dict(policy.get("worker")), "networkPolicy.worker")
    names = set()
    for group in _list(spec.get("workerGroupSpecs")):
        name = str(_dict(group).get("groupName", ""))
        if problems := is_dns1123_label(name):
            errors.append(
                f"worker group name {name!r} must be a valid DNS1123 label when networkPolicy is enabled (it is "
                f"embedded in the NetworkPolicy name): {problems}"
            )
        names.add(name)
    for entry in _list(policy.get("workerGroups")):
        entry = _dict(entry)
        errors += direction(entry, f"networkPolicy.workerGroups[{entry.get('groupName')!r}]")
        if entry.get("groupName") not in names:
            errors.append(
                f"networkPolicy.workerGroups[{entry.get('groupName')!r}] does not match any group name in "
                "workerGroupSpecs"
            )
    return errors


def _tls(spec: Mapping[str, Any], head: Mapping[str, Any], gates: Mapping[str, bool]) -> list[str]:
    """The feature gate, then validateTLSOptions' env checks (operator-managed volume names not ported)."""
    if spec.get("tlsOptions") is None:
        return []
    if not gates.get("RayClusterMTLS"):
        return ["spec.tlsOptions requires the RayClusterMTLS feature gate to be enabled"]
    if not is_tls_enabled(spec):
        return []
    errors = [
        f"cannot set {name} environment variable in head Pod when tlsOptions is set - the operator manages TLS "
        "configuration automatically"
        for name in TLS_ENV_VARS
        if _env_var(name, _env(head))
    ]
    for group in _list(spec.get("workerGroupSpecs")):
        containers = _containers(_dict(group).get("template"))
        if containers:
            errors += [
                f"cannot set {name} environment variable in worker group {_dict(group).get('groupName')!r} when "
                "tlsOptions is set - the operator manages TLS configuration automatically"
                for name in TLS_ENV_VARS
                if _env_var(name, _env(containers[0]))
            ]
    autoscaler_env = [e for e in _list(_dict(spec.get("autoscalerOptions")).get("env")) if isinstance(e, dict)]
    errors += [
        f"cannot set {name} environment variable in autoscalerOptions.env when tlsOptions is set - the operator "
        "manages TLS configuration for the autoscaler automatically"
        for name in TLS_ENV_VARS
        if _env_var(name, autoscaler_env)
    ]
    return errors


def validate_raycluster_spec(
    spec: Mapping[str, Any],
    annotations: Mapping[str, str] | None = None,
    feature_gates: Mapping[str, bool] | None = None,
) -> list[str]:
    """ValidateRayClusterSpec (plus the webhook's unique group names), every rule, all errors."""
    annotations = annotations or {}
    gates = FEATURE_GATES | dict(feature_gates or {})
    head_group = _dict(spec.get("headGroupSpec"))
    head_containers = _containers(head_group.get("template"))
    if not head_containers:
        return ["headGroupSpec should have at least one container"]
    head = _dict(head_containers[0])  # the Ray container is the first one
    head_start = _dict(head_group.get("rayStartParams"))
    errors = _group_resources("Head", head_start, head_group.get("resources"))
    errors += _group_labels("Head", head_start, head_group.get("labels"))
    errors += validate_worker_group_names(spec)
    errors += _worker_groups(spec, _env(head))
    errors += _gcs_fault_tolerance(spec, annotations, head, gates)
    errors += _autoscaling(spec, head, gates)
    errors += _history_server(spec, gates)
    errors += _auth(spec)
    errors += _network_policy(spec, gates)
    errors += _tls(spec, head, gates)
    return errors


def validate_raycluster(obj: Mapping[str, Any], feature_gates: Mapping[str, bool] | None = None) -> list[str]:
    """What the operator checks on a RayCluster before it creates any pod: metadata, status, spec."""
    metadata = _dict(obj.get("metadata"))
    spec = _dict(obj.get("spec"))
    created_by = _dict(metadata.get("labels")).get(ORIGINATED_FROM_CRD_LABEL, "RayCluster")
    errors = validate_raycluster_metadata(metadata)
    errors += validate_raycluster_status(_dict(obj.get("status")))
    errors += validate_upgrade_strategy(spec, created_by if created_by in ("RayJob", "RayService") else "RayCluster")
    errors += validate_raycluster_spec(spec, _dict(metadata.get("annotations")), feature_gates)
    return errors


# --------------------------------------------------------------------------- RayJob


def validate_rayjob_metadata(metadata: Mapping[str, Any]) -> list[str]:
    """ValidateRayJobMetadata: the RayCluster it creates is named <rayjob>-<5 chars>."""
    name = str(metadata.get("name", ""))
    if len(name) > MAX_RAYJOB_NAME_LENGTH:
        return [
            f"The RayJob metadata is invalid: RayJob name should be no more than {MAX_RAYJOB_NAME_LENGTH} characters"
        ]
    if errors := is_dns1035_label(name):
        return [f"The RayJob metadata is invalid: RayJob name should be a valid DNS1035 label: {errors}"]
    return []


def validate_rayjob_status(spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[str]:
    """ValidateRayJobStatus."""
    if status.get("jobDeploymentStatus") == "Waiting" and spec.get("submissionMode", "K8sJobMode") != "InteractiveMode":
        return [
            "The RayJob status is invalid: JobDeploymentStatus cannot be `Waiting` when SubmissionMode is not "
            "InteractiveMode"
        ]
    return []


def _legacy_deletion_policies(spec: Mapping[str, Any], strategy: Mapping[str, Any]) -> list[str]:
    """validateLegacyDeletionPolicies: onSuccess and onFailure."""
    selector_mode = bool(_dict(spec.get("clusterSelector")))
    on_success, on_failure = strategy.get("onSuccess"), strategy.get("onFailure")
    if on_success is None or on_failure is None:
        return [
            "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set when using the legacy "
            "deletion policy fields of DeletionStrategy"
        ]
    success, failure = _dict(on_success).get("policy"), _dict(on_failure).get("policy")
    if success is None:
        return [
            "the DeletionPolicyType field of DeletionStrategy.OnSuccess cannot be unset when DeletionStrategy is "
            "enabled"
        ]
    if failure is None:
        return [
            "the DeletionPolicyType field of DeletionStrategy.OnFailure cannot be unset when DeletionStrategy is "
            "enabled"
        ]
    if selector_mode:
        if success in ("DeleteCluster", "DeleteWorkers"):
            return [f"the ClusterSelector mode doesn't support DeletionStrategy={success} on success"]
        if failure in ("DeleteCluster", "DeleteWorkers"):
            return [f"the ClusterSelector mode doesn't support DeletionStrategy={failure} on failure"]
    if "DeleteWorkers" in (success, failure) and is_autoscaling_enabled(spec.get("rayClusterSpec")):
        return ["DeletionStrategy=DeleteWorkers currently does not support RayCluster with autoscaling enabled"]
    if spec.get("shutdownAfterJobFinishes") is True and "DeleteNone" in (success, failure):
        return [
            "The RayJob spec is invalid: shutdownAfterJobFinshes is set to 'true' while deletion policy is 'DeleteNone'"
        ]
    return []


def _deletion_rules(spec: Mapping[str, Any], rules: list[Any]) -> list[str]:
    """validateDeletionRules, validateDeletionCondition and validateTTLConsistency."""
    selector_mode = bool(_dict(spec.get("clusterSelector")))
    autoscaling = is_autoscaling_enabled(spec.get("rayClusterSpec"))
    by_condition: dict[tuple[str, str], dict[str, int]] = {}
    errors = []
    for index, rule in enumerate(rules):
        rule = _dict(rule)
        condition = _dict(rule.get("condition"))
        policy = rule.get("policy")
        job_status, deployment_status = condition.get("jobStatus"), condition.get("jobDeploymentStatus")
        ttl = _int(condition.get("ttlSeconds")) or 0
        if job_status is not None and deployment_status is not None:
            errors.append(f"deletionRules[{index}]: cannot set both JobStatus and JobDeploymentStatus at the same time")
            continue
        if job_status is None and deployment_status is None:
            errors.append(f"deletionRules[{index}]: exactly one of JobStatus and JobDeploymentStatus must be set")
            continue
        if ttl < 0:
            errors.append(f"deletionRules[{index}]: TTLSeconds must be non-negative")
            continue
        if selector_mode and policy in ("DeleteCluster", "DeleteWorkers"):
            errors.append(
                f"deletionRules[{index}]: DeletionPolicyType '{policy}' not supported when ClusterSelector is set"
            )
            continue
        if autoscaling and policy == "DeleteWorkers":
            errors.append(
                f"deletionRules[{index}]: DeletionPolicyType 'DeleteWorkers' not supported with autoscaling enabled"
            )
            continue
        key = ("JobStatus", job_status) if job_status is not None else ("JobDeploymentStatus", deployment_status)
        ttls = by_condition.setdefault(key, {})
        if policy in ttls:
            errors.append(
                f"deletionRules[{index}]: duplicate rule for DeletionPolicyType '{policy}' and {key[0]} '{key[1]}'"
            )
            continue
        ttls[policy] = ttl
    for (kind, value), ttls in by_condition.items():
        previous: tuple[str, int] | None = None
        for policy in DELETION_ORDER:
            if policy not in ttls:
                continue
            if previous is not None and ttls[policy] < previous[1]:
                errors.append(
                    f"for {kind} '{value}': {policy} TTL ({ttls[policy]}) must be >= {previous[0]} TTL ({previous[1]})"
                )
            previous = (policy, ttls[policy])
    return errors


def _deletion_configuration(spec: Mapping[str, Any], gates: Mapping[str, bool]) -> list[str]:
    """validateDeletionConfiguration: TTL needs shutdown; a deletionStrategy is legacy or rules, not both."""
    shutdown = spec.get("shutdownAfterJobFinishes") is True
    ttl = _int(spec.get("ttlSecondsAfterFinished")) or 0
    if not shutdown and ttl > 0:
        return [
            "The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes set to false cannot have "
            "TTLSecondsAfterFinished"
        ]
    strategy = spec.get("deletionStrategy")
    if strategy is None:
        return []
    if not gates.get("RayJobDeletionPolicy"):
        return ["RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy"]
    strategy = _dict(strategy)
    legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
    rules = _list(strategy.get("deletionRules"))
    if rules and shutdown:
        return [
            "The RayJob spec is invalid: spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are "
            "mutually exclusive"
        ]
    if rules and legacy:
        return [
            "The RayJob spec is invalid: Cannot use both legacy onSuccess/onFailure fields and deletionRules "
            "simultaneously"
        ]
    if legacy:
        return _legacy_deletion_policies(spec, strategy)
    if rules:
        return _deletion_rules(spec, rules)
    return [
        "The RayJob spec is invalid: DeletionStrategy requires either BOTH onSuccess and onFailure, OR the "
        "deletionRules field (cannot be empty)"
    ]


def _runtime_env_yaml(text: Any) -> list[str]:
    """The operator reads runtimeEnvYAML into a map; anything else is refused."""
    if not text:
        return []
    try:
        value = yaml.safe_load(str(text))
    except yaml.YAMLError as err:
        return [f"failed to unmarshal RuntimeEnvYAML: {text}: {err}"]
    if value is not None and not isinstance(value, dict):
        return [f"failed to unmarshal RuntimeEnvYAML: {text}: a mapping is needed, got {type(value).__name__}"]
    return []


def _submitter(spec: Mapping[str, Any]) -> list[str]:
    """Not in validation.go: what the RayJob controller does with submitterPodTemplate in K8sJobMode.

    The template is used as given (KubeRay fills in only the command and env of its first
    container) as the pod template of a batch/v1 Job, which the Job API refuses unless
    restartPolicy is Never or OnFailure; an unset restartPolicy defaults to Always.
    """
    template = spec.get("submitterPodTemplate")
    if template is None or spec.get("submissionMode", "K8sJobMode") != "K8sJobMode":
        return []
    errors = []
    if not _containers(template):
        errors.append("submitterPodTemplate should have at least one container (the first one is the submitter)")
    policy = _dict(_dict(template).get("spec")).get("restartPolicy")
    if policy not in ("Never", "OnFailure"):
        errors.append(
            f"submitterPodTemplate.spec.restartPolicy is {policy or 'unset (Always)'}: the submitter runs as a "
            "batch/v1 Job, whose pods need restartPolicy Never or OnFailure"
        )
    return errors


def validate_rayjob_spec(
    spec: Mapping[str, Any],
    annotations: Mapping[str, str] | None = None,
    feature_gates: Mapping[str, bool] | None = None,
) -> list[str]:
    """ValidateRayJobSpec, every rule, all errors; the rayClusterSpec goes through the RayCluster spec rules."""
    annotations = annotations or {}
    gates = FEATURE_GATES | dict(feature_gates or {})
    mode = spec.get("submissionMode", "K8sJobMode")
    suspend = spec.get("suspend") is True
    shutdown = spec.get("shutdownAfterJobFinishes") is True
    selector = _dict(spec.get("clusterSelector"))
    cluster = spec.get("rayClusterSpec")
    backoff = _int(spec.get("backoffLimit"))
    errors = []
    if mode not in SUBMISSION_MODES:
        errors.append(
            f"submissionMode {mode!r} is not one the RayJob controller acts on: {', '.join(SUBMISSION_MODES)}"
        )
    if suspend and not shutdown:
        errors.append(
            "The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes set to false is not allowed to be "
            "suspended"
        )
    ttl = _int(spec.get("ttlSecondsAfterFinished"))
    if ttl is not None and ttl < 0:
        errors.append("The RayJob spec is invalid: TTLSecondsAfterFinished must be a non-negative integer")
    errors += _deletion_configuration(spec, gates)
    if suspend and selector:
        errors.append("The RayJob spec is invalid: the ClusterSelector mode doesn't support the suspend operation")
    if cluster is None and not selector:
        errors.append("The RayJob spec is invalid: one of RayClusterSpec or ClusterSelector must be set")
    if selector:
        if not selector.get(CLUSTER_SELECTOR_KEY):
            errors.append("cluster name in ClusterSelector should not be empty")
        if mode == "SidecarMode":
            errors.append("ClusterSelector is not supported in SidecarMode")
        if backoff is not None and backoff > 0:
            errors.append("The RayJob spec is invalid: BackoffLimit is incompatible with ClusterSelector mode")
    if mode == "InteractiveMode" and backoff is not None and backoff > 0:
        errors.append("The RayJob spec is invalid: BackoffLimit is incompatible with InteractiveMode")
    if mode == "SidecarMode":
        if spec.get("submitterPodTemplate") is not None:
            errors.append("Currently, SidecarMode doesn't support SubmitterPodTemplate")
        if spec.get("submitterConfig") is not None:
            errors.append("Currently, SidecarMode doesn't support SubmitterConfig")
        head_pod = _dict(_dict(_dict(_dict(cluster).get("headGroupSpec")).get("template")).get("spec"))
        if head_pod.get("restartPolicy") not in (None, "", "Never"):
            errors.append("restartPolicy for head Pod should be Never or unset when using SidecarMode")
    if cluster is not None:
        if is_k8s_auth_enabled(_dict(cluster).get("authOptions")):
            errors.append("The RayJob spec is invalid: K8s token auth mode is currently not supported for RayJob")
        errors += [
            f"The RayJob spec is invalid: {e}" for e in validate_raycluster_spec(_dict(cluster), annotations, gates)
        ]
        # The RayCluster a RayJob creates is labelled as created by it (ValidateRayClusterUpgradeOptions).
        errors += validate_upgrade_strategy(_dict(cluster), created_by="RayJob")
    errors += _runtime_env_yaml(spec.get("runtimeEnvYAML"))
    deadline = _int(spec.get("activeDeadlineSeconds"))
    if deadline is not None and deadline <= 0:
        errors.append("The RayJob spec is invalid: activeDeadlineSeconds must be a positive integer")
    pre_running = _int(spec.get("preRunningDeadlineSeconds"))
    if pre_running is not None and pre_running <= 0:
        errors.append("The RayJob spec is invalid: preRunningDeadlineSeconds must be a positive integer")
    if backoff is not None and backoff < 0:
        errors.append("The RayJob spec is invalid: backoffLimit must be a positive integer")
    errors += _submitter(spec)
    return errors


def validate_rayjob(obj: Mapping[str, Any], feature_gates: Mapping[str, bool] | None = None) -> list[str]:
    """What the operator checks on a RayJob before it creates its cluster: metadata, status, spec."""
    metadata = _dict(obj.get("metadata"))
    spec = _dict(obj.get("spec"))
    errors = validate_rayjob_metadata(metadata)
    errors += validate_rayjob_status(spec, _dict(obj.get("status")))
    errors += validate_rayjob_spec(spec, _dict(metadata.get("annotations")), feature_gates)
    return errors


def validate(obj: Mapping[str, Any], feature_gates: Mapping[str, bool] | None = None) -> list[str]:
    """The operator's rules for a RayCluster or a RayJob, as `<Kind>/<name>: <error>` lines."""
    kind = obj.get("kind")
    checks = {"RayCluster": validate_raycluster, "RayJob": validate_rayjob}
    if kind not in checks:
        raise ValueError(f"no KubeRay operator rules for kind {kind!r} (only RayCluster and RayJob)")
    name = _dict(obj.get("metadata")).get("name")
    return [f"{kind}/{name}: {error}" for error in checks[kind](obj, feature_gates)]
