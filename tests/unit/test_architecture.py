"""The layering the README promises: bench -> controlplane -> jobs, nothing runs back up, and no
module imports another that (through any chain) imports it back, lazily or not."""

import ast
import graphlib
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGES = ("jobs", "controlplane", "bench")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project's modules that `name` imports anywhere in its body (function-level imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            # `from package import module` names a module, not an attribute.
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {target for target in targets if target in known and target != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_module_imports_itself_back_through_a_chain(graph):
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import circle: {' -> '.join(err.args[1])}")


@pytest.mark.parametrize(("lower", "upper"), [("jobs", "controlplane"), ("jobs", "bench"), ("controlplane", "bench")])
def test_a_lower_layer_never_imports_a_higher_one(graph, lower, upper):
    upward = sorted(f"{name} -> {target}" for name, targets in graph.items() if name.split(".")[0] == lower
                    for target in targets if target.split(".")[0] == upper)  # fmt: skip
    assert not upward, upward


def test_the_scan_sees_lazy_imports(graph):
    """The storage write path imports its retry policy; a scan that missed it would pass anything."""
    assert "jobs.common.storage.retry" in graph["jobs.common.storage.objects"]
    assert "jobs.common.cluster.plans" in graph["jobs.common.cluster.fits"]
