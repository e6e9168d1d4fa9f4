"""Load: 20 training jobs submitted at once, and a sweep of 500 short trials.

Runs the load tests (tests/e2e/test_load.py, on a throw-away local cluster they
start and stop) with LOAD_REPORT set; each appends one row of figures: jobs
queued, running and finished; the sweep's wall time and its driver's peak RSS.
Prints a table and writes bench/out/load.json.

    make bench-load
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from bench.common import run_tests_reporting, write_json
from controlplane.state import REPO_ROOT
from jobs.common.reports.tables import table


def main() -> int:
    rows, status = run_tests_reporting(["-m", "slow", "tests/e2e/test_load.py"], "LOAD_REPORT")
    print("\n" + table(["load", "figures"], [[r["load"], r["figures"]] for r in rows]))
    out = REPO_ROOT / "bench" / "out" / "load.json"
    write_json(out, "load", datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), rows, tests_exit_status=status)
    return status


if __name__ == "__main__":
    sys.exit(main())
