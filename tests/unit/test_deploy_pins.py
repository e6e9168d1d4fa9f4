"""cluster.yaml and the images: schema-valid, linted, and following the one Ray pin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from tests.conftest import REPO_ROOT
from tests.unit.test_pins import pins

RAY = pins()["ray"]


def launcher_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_the_launcher_schema_in_the_ray_wheel():
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(launcher_config(), schema)


def test_cluster_yaml_has_the_three_groups_and_no_keys():
    config = launcher_config()
    types = config["available_node_types"]
    assert types["head"]["resources"]["CPU"] == 0 and "driver_slots" in types["head"]["resources"]
    assert types["cpu-workers"]["resources"]["cpu_group"] and types["gpu-workers"]["resources"]["gpu_group"]
    assert types["gpu-workers"]["resources"]["GPU"] >= 1
    for node_type in types.values():
        assert "IamInstanceProfile" in node_type["node_config"]  # object storage without keys
    text = (REPO_ROOT / "cluster.yaml").read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in text and "AWS_ACCESS_KEY_ID" not in text
    # What jobs may ask of each group is derived from the node types (controlplane/vm.py), never written here.
    assert "RL_WORKER_GROUPS" not in text


def test_image_tags_follow_the_ray_pin_everywhere():
    config = launcher_config()
    images = [config["docker"]["head_image"], config["docker"]["worker_image"]]
    images += [t["docker"]["worker_image"] for t in config["available_node_types"].values() if "docker" in t]
    images += re.findall(r"newTag: (\S+)", (REPO_ROOT / "k8s/base/kustomization.yaml").read_text())
    assert images
    for image in images:
        assert image.rsplit(":", 1)[-1].startswith(f"{RAY}-py311-"), image
    dockerfile = (REPO_ROOT / "docker/Dockerfile").read_text()
    # The base is an argument (make images-local builds on a stand-in); users get rayproject/ray by default.
    assert "ARG BASE_IMAGE=rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${VARIANT}" in dockerfile
    # The code goes onto the dependency stage (make images-local passes an image of it, built before).
    assert re.findall(r"^FROM .*", dockerfile, flags=re.M) == ["FROM ${BASE_IMAGE} AS deps", "FROM ${DEPS_IMAGE}"]
    assert "ARG DEPS_IMAGE=deps\n" in dockerfile
    for name in ("Dockerfile", "base-local.Dockerfile", "seaweedfs-local.Dockerfile"):
        assert "2.60" not in (REPO_ROOT / "docker" / name).read_text()  # versions come from the pins
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "--build-arg RAY_VERSION=$(RAY_VERSION)" in makefile


def test_dockerfiles_pass_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    for name in ("Dockerfile", "base-local.Dockerfile", "seaweedfs-local.Dockerfile"):
        result = subprocess.run([str(hadolint), str(REPO_ROOT / "docker" / name)], capture_output=True, text=True)
        assert result.returncode == 0, name + ": " + result.stdout + result.stderr


def test_image_runs_as_non_root_and_ships_only_what_jobs_need():
    dockerfile = (REPO_ROOT / "docker/Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.M)
    assert users and all(not user.startswith(("0", "root")) for user in users)
    rules = [line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert rules[0] == "*"  # everything is excluded, then only these come back:
    assert [rule for rule in rules if rule.startswith("!")] == ["!requirements.lock", "!jobs/", "!docker/wheels/"]
    # The wheelhouse is bind-mounted for the install step only: never copied into a layer.
    for name in ("Dockerfile", "base-local.Dockerfile"):
        text = (REPO_ROOT / "docker" / name).read_text()
        assert "--mount=type=bind,source=docker/wheels" in text
        assert not re.search(r"^(COPY|ADD)\b.*wheels", text, flags=re.M)
