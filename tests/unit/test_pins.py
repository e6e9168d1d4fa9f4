"""One pin per fact: pyproject.toml's pins and requirements.lock agree."""

import re
import tomllib

from tests.conftest import REPO_ROOT


def pins() -> dict[str, str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", requirement)
        assert match, f"pyproject.toml: '{requirement}' must be pinned with =="
        found[match.group(1).lower()] = match.group(3)
    return found


def locked() -> dict[str, str]:
    found = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            found[name.lower().replace("_", "-")] = version
    return found


def test_every_pin_is_in_the_lock_at_the_same_version():
    lock = locked()
    for name, version in pins().items():
        assert lock.get(name.replace("_", "-")) == version, f"{name}: pyproject {version}, lock {lock.get(name)}"


def test_ray_is_pinned_to_2_60_0_and_torch_to_2_13_0():
    assert pins()["ray"] == "2.60.0"
    assert pins()["torch"] == "2.13.0"


def test_the_lock_pins_everything_exactly():
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.!+-]+", line), line


def test_installed_ray_is_the_pinned_one():
    import ray

    assert ray.__version__ == pins()["ray"]
