"""Rows that tests report to a benchmark, and what pytest said of each test.

A benchmark that runs tests (bench/faults.py) names a file in an environment
variable; each test appends one JSON row to it, tagged with the test's node id.

Two things keep a failed test from dropping its row:

- `reported_row` (a context manager around the test's body) writes the row in
  a `finally`: what the test measured before it failed stays in the row, and
  its `result` becomes `FAILED: <the assertion>`.
- This module is also a pytest plugin (`pytest -p bench.reporting`, which
  `bench.common.run_tests_reporting` passes): with BENCH_TEST_OUTCOMES set,
  it appends each test's own result (passed, failed, error, skipped) to that
  file. `merge` joins the two, one row per test at least: a test that failed
  before it wrote any row gets a row saying so, and a row of a test that
  pytest failed later (in teardown, or after recording) says FAILED too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator

OUTCOMES_ENV_VAR = "BENCH_TEST_OUTCOMES"
PASSED = "passed"
NOT_MEASURED = "not measured"


def current_test() -> str | None:
    """The running test's node id (`tests/e2e/test_faults.py::test_x[param]`), or None outside pytest."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    return re.sub(r" \((setup|call|teardown)\)$", "", current) if current else None


def append_row(report_var: str, row: dict) -> None:
    """One JSON line in the file `report_var` names (nothing when it is unset)."""
    path = os.environ.get(report_var)
    if not path:
        return
    with open(path, "a") as report:
        report.write(json.dumps({"test": current_test(), **row}) + "\n")


def failure(err: BaseException, prefix: str = "FAILED") -> str:
    """`FAILED: AssertionError: <first line>`, short enough for a table cell."""
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return f"{prefix}: {shorten(text)}"


def shorten(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


@contextlib.contextmanager
def reported_row(report_var: str, **fields) -> Iterator[dict]:
    """A row the test fills in as it measures; written whatever happens.

    Set the measured fields before asserting on them: a failed assertion then
    leaves them in the row, and `result` says FAILED with the assertion.
    """
    row = {**fields, "result": PASSED}
    try:
        yield row
    except BaseException as err:  # pytest.fail() and pytest.skip() raise BaseException subclasses
        row["result"] = "SKIPPED" if type(err).__name__ == "Skipped" else failure(err)
        raise
    finally:
        append_row(report_var, row)


# --------------------------------------------------------------------------
# The pytest plugin: each test's own result
# --------------------------------------------------------------------------


def pytest_runtest_logreport(report) -> None:
    path = os.environ.get(OUTCOMES_ENV_VAR)
    if not path or (report.when != "call" and report.outcome == "passed"):
        return
    with open(path, "a") as outcomes:
        outcomes.write(
            json.dumps(
                {"test": report.nodeid, "when": report.when, "outcome": report.outcome, "message": _message(report)}
            )
            + "\n"
        )


def _message(report) -> str:
    if report.outcome == "passed":
        return ""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (file, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return str(crash.message)
    text = getattr(report, "longreprtext", "") or str(longrepr or "")
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    return errors[0] if errors else (text.strip().splitlines() or [""])[-1]


def results_by_test(outcomes: list[dict]) -> dict[str, str]:
    """Node id -> `passed`, `FAILED: ...`, `ERROR in setup: ...` or `SKIPPED: ...`, in the order the tests ran."""
    results: dict[str, str] = {}
    for entry in outcomes:
        test, when, outcome, message = entry["test"], entry["when"], entry["outcome"], shorten(entry["message"])
        if outcome == "passed":
            results.setdefault(test, PASSED)
        elif outcome == "skipped":
            if results.get(test, PASSED) == PASSED:
                results[test] = f"SKIPPED: {message}"
        elif not results.get(test, "").startswith(("FAILED", "ERROR")):
            results[test] = f"FAILED: {message}" if when == "call" else f"ERROR in {when}: {message}"
    return results


def merge(rows: list[dict], outcomes: list[dict], blank: dict, name_field: str) -> list[dict]:
    """The tests' rows with pytest's verdict on each test; a row (`blank`, named
    after the test in `name_field`) for every test that ran and wrote none.
    Rows keep the order the tests ran in."""
    results = results_by_test(outcomes)
    by_test: dict[str | None, list[dict]] = {}
    for row in rows:
        by_test.setdefault(row.get("test"), []).append(dict(row))
    merged = []
    for test, result in results.items():
        test_rows = by_test.pop(test, [])
        if not test_rows:
            merged.append({**blank, "test": test, name_field: test.split("::")[-1], "result": result})
            continue
        for row in test_rows:
            own = row.get("result", PASSED)
            # pytest's verdict wins unless the row already carries the assertion that failed.
            row["result"] = own if own != PASSED and result != PASSED else result
            merged.append(row)
    for leftover in by_test.values():  # rows of tests pytest did not report on (no plugin): as written
        merged += [{**row, "result": row.get("result", "unknown")} for row in leftover]
    return merged
