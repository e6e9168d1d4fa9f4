"""Reading the project's YAML files, and saying what is wrong with them.

One loader for experiment and sweep files (a missing file, broken YAML or a
non-mapping is one `UserError` naming the file, the line and the column), and
one formatter that turns pydantic's validation errors into lines naming the
key, the value and what would be accepted.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from jobs.common.errors import UserError


def load_mapping(path: str | Path, what: str, example: str, shape: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping. `what` names it in messages
    ("experiment file"), `example` is a path that would work, `shape` its top keys."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} '{path}' does not exist (try {example})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise UserError(f"{what} '{path}' is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{what} '{path}' cannot be read: {err}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{what} '{path}' must be a YAML mapping ({shape}), got {type(raw).__name__}")
    return raw


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_errors(
    err: ValidationError,
    what: str,
    accepted_at: Callable[[tuple[str, ...], dict], Sequence[str]],
    clean_loc: Callable[[tuple[str, ...]], tuple[str, ...]] = lambda loc: loc,
    also_close_to: Callable[[tuple[str, ...]], Sequence[str]] = lambda loc: (),
) -> str:
    """One line per problem, under a head naming the file (`what`).

    `accepted_at(section, problem)` lists the keys a section takes (for unknown
    keys, with the closest match); `clean_loc` drops pydantic's internal parts
    of a location (union tags); `also_close_to` adds names worth suggesting
    that the schema does not list (the tutorials' old keys).
    """
    lines = []
    for problem in err.errors():
        loc = clean_loc(tuple(str(p) for p in problem["loc"]))
        where = ".".join(loc) or "(top level)"
        kind = problem["type"]
        value = problem.get("input")
        if kind == "extra_forbidden":
            accepted = list(accepted_at(loc[:-1], problem))
            close = difflib.get_close_matches(loc[-1], accepted + list(also_close_to(loc[:-1])), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            section = f"under '{'.'.join(loc[:-1])}'" if loc[:-1] else "at the top level"
            lines.append(f"unknown key '{where}'{hint}; accepted {section}: {', '.join(accepted)}")
        elif kind == "missing":
            lines.append(f"'{where}' is required")
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            expected = str(problem.get("ctx", {}).get("expected_tags", "")).replace("'", "")
            lines.append(f"'{where}': type must be one of {expected}")
        elif kind == "literal_error":
            expected = problem.get("ctx", {}).get("expected", "")
            lines.append(f"'{where}' = {value!r} is not accepted; expected one of {expected}")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"'{where}' = {short(value)}: {message}" if loc else message)
    if len(lines) == 1:
        return f"{what}: {lines[0]}"
    return f"{what} is invalid:" + "".join(f"\n  - {line}" for line in lines)
