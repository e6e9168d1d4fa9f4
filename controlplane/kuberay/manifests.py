"""Rendering k8s/ with kustomize (kubectl's built-in), once, as text or objects.

Some files an overlay reads hold keys and are never committed (git-ignored): the dev
overlay's Secret is generated from k8s/overlays/dev/s3-credentials.env, which
`make cluster-up PROVIDER=kuberay` writes, and `kubectl apply -k` stops without it.
Each such file has a committed `<name>.example` beside it with placeholder values.
`render` reads the examples in their place, in a copy of k8s/: what it returns
(dry runs, the generated RayJobs, tests) never needs, nor shows, the real keys.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from controlplane.errors import ClusterError
from controlplane.state import REPO_ROOT

# Local, git-ignored files the overlays read (relative to the repository root).
LOCAL_FILES = ("k8s/overlays/dev/s3-credentials.env",)
DEV_S3_ENV_FILE = REPO_ROOT / LOCAL_FILES[0]
EXAMPLE_SUFFIX = ".example"


def kustomize(path: str, root: Path = REPO_ROOT) -> str:
    """`kubectl kustomize <path>` in root, as it is: what `kubectl apply -k` would apply."""
    try:
        result = subprocess.run(["kubectl", "kustomize", path], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise ClusterError("kubectl (with its built-in kustomize) is needed to render k8s/") from None
    if result.returncode != 0:
        raise ClusterError(f"kustomize could not render {path}: {result.stderr.strip()}")
    return result.stdout


def render(path: str) -> str:
    """`kubectl kustomize <path>`, local key files read from their examples.

    `path` is relative to the repository root (k8s/overlays/dev) or a folder elsewhere. A folder in
    the repository is rendered in a copy of k8s/ and of itself, at the same places, so that its
    references into k8s/ (`resources: [../../k8s/overlays/local]`) read the examples too; a folder
    outside the repository is rendered where it is."""
    target = Path(path) if Path(path).is_absolute() else REPO_ROOT / path
    try:
        relative = target.resolve().relative_to(REPO_ROOT)
    except ValueError:
        return kustomize(str(target), target)
    with tempfile.TemporaryDirectory(prefix="ray-rl-k8s-") as tmp:
        local = {Path(name).name for name in LOCAL_FILES}
        skip = lambda _, names: [n for n in names if n in local]  # noqa: E731
        shutil.copytree(REPO_ROOT / "k8s", Path(tmp) / "k8s", ignore=skip)
        if relative.parts[0] != "k8s":
            shutil.copytree(REPO_ROOT / relative, Path(tmp) / relative, ignore=skip)
        for name in LOCAL_FILES:
            shutil.copyfile(REPO_ROOT / (name + EXAMPLE_SUFFIX), Path(tmp) / name)
        return kustomize(str(relative), Path(tmp))


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))
