"""Rendering k8s/ with kustomize (kubectl's built-in), once, as text or objects."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from controlplane.errors import ClusterError
from controlplane.state import REPO_ROOT


def render(path: str) -> str:
    """`kubectl kustomize <path>` (path relative to the repository root)."""
    try:
        result = subprocess.run(["kubectl", "kustomize", path], cwd=REPO_ROOT, capture_output=True, text=True)
    except FileNotFoundError:
        raise ClusterError("kubectl (with its built-in kustomize) is needed to render k8s/") from None
    if result.returncode != 0:
        raise ClusterError(f"kustomize could not render {path}: {result.stderr.strip()}")
    return result.stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))
