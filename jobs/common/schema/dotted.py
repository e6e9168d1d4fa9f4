"""Nested mappings addressed by dotted paths (`training.lr` -> ("training", "lr")).

The one walker for experiment files, sweep files, overrides, Tune configs and
report rows: everything else reads and writes nested keys through here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

Path = tuple[str, ...]


class NotASection(ValueError):
    """A value stands where the path needs a mapping to descend into."""

    def __init__(self, path: Path, value: Any):
        super().__init__(f"'{'.'.join(path)}' is not a section (it holds {value!r})")
        self.path = path
        self.value = value


def split(key: str) -> Path:
    return tuple(str(key).split("."))


def get(tree: Any, path: Path, default: Any = None) -> Any:
    """The value at `path`, or `default` where any part is missing."""
    node = tree
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_value(tree: dict[str, Any], path: Path, value: Any, *, replace: bool = False) -> None:
    """Set `path` to `value`, creating sections on the way. A non-mapping in
    the way is an error, or is replaced by a section when `replace`."""
    node = tree
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None or (replace and not isinstance(child, dict)):
            child = node[part] = {}
        if not isinstance(child, dict):
            raise NotASection(path[: depth + 1], child)
        node = child
    node[path[-1]] = value


def pop(tree: dict[str, Any], path: Path) -> tuple[bool, Any]:
    """Remove `path`: (True, its value), or (False, None) where it is absent."""
    parent = get(tree, path[:-1]) if len(path) > 1 else tree
    if not isinstance(parent, dict) or path[-1] not in parent:
        return False, None
    return True, parent.pop(path[-1])


def leaves(
    tree: Mapping[str, Any], is_section: Callable[[Path], bool], prefix: Path = ()
) -> Iterator[tuple[Path, Any]]:
    """(path, value) for every value, descending into the mappings that
    `is_section` names. Dotted keys (`training.lr: ...`) are split as they go."""
    for key, value in tree.items():
        path = prefix + split(key)
        if isinstance(value, Mapping) and is_section(path):
            yield from leaves(value, is_section, path)
        else:
            yield path, value


def copy(data: Any) -> Any:
    """A deep copy of plain YAML/JSON data."""
    if isinstance(data, Mapping):
        return {k: copy(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [copy(v) for v in data]
    return data
