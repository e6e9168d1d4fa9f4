"""KubeRay CRD schemas, and validating custom resources against them offline.

The KubeRay release is pinned once, in k8s/operator/helm.yaml (the chart the
kuberay provider installs). The CRDs come from $KUBERAY_CRDS_DIR (default:
../shared/kuberay/crds beside the repository); where that folder is absent
they are fetched once from that release into .cache/. The API server prunes fields a CRD does
not declare, silently: here an undeclared field is an error.
"""

from __future__ import annotations

import functools
import os
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from controlplane.state import REPO_ROOT

OPERATOR_PIN = REPO_ROOT / "k8s" / "operator" / "helm.yaml"
# The operator's Helm chart: repo, chart, version, release, namespace.
OPERATOR = yaml.safe_load(OPERATOR_PIN.read_text())
KUBERAY_VERSION = str(OPERATOR["version"])
CRDS_ENV_VAR = "KUBERAY_CRDS_DIR"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
RELEASE_URL = "https://raw.githubusercontent.com/ray-project/kuberay/v{version}/ray-operator/config/crd/bases/{file}"


def crds_dir() -> Path:
    configured = os.environ.get(CRDS_ENV_VAR)
    if configured:
        return Path(configured)
    shared = REPO_ROOT.parent / "shared" / "kuberay" / "crds"
    if shared.is_dir():
        return shared
    cache = REPO_ROOT / ".cache" / f"kuberay-crds-v{KUBERAY_VERSION}"
    for file in CRD_FILES.values():
        target = cache / file
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            url = RELEASE_URL.format(version=KUBERAY_VERSION, file=file)
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a pinned https URL
                target.write_bytes(response.read())
    return cache


@functools.cache  # read-only; each CRD is a 1-2 MB YAML file (libyaml's loader: 0.2 s, not 3)
def schema_for(kind: str, version: str = "v1") -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((crds_dir() / CRD_FILES[kind]).read_text(), Loader=loader)  # noqa: S506 - a safe loader
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return served["schema"]["openAPIV3Schema"]
    raise KeyError(f"{kind} {version} is not in the KubeRay v{KUBERAY_VERSION} CRD")


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not declare (what the API server would prune)."""
    problems: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return problems
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                problems += unknown_fields(item, properties[key], where)
            elif isinstance(additional, dict):
                problems += unknown_fields(item, additional, where)
            elif properties is not None or additional is False:
                problems.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems += unknown_fields(item, schema["items"], f"{path}[{index}]")
    return problems


def validate(resource: dict[str, Any]) -> list[str]:
    """Schema errors plus undeclared fields, as readable lines."""
    import jsonschema

    kind = resource["kind"]
    schema = schema_for(kind, resource["apiVersion"].split("/")[-1])
    validator = jsonschema.Draft7Validator(schema)
    name = f"{kind}/{resource.get('metadata', {}).get('name')}"
    problems = [
        f"{name}: {'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(resource)
    ]
    problems += [f"{name}: unknown field {field}" for field in unknown_fields(resource, schema)]
    return problems
