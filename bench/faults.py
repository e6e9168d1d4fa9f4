"""Fault injection: kill a worker node mid-sweep, the head mid-sweep, a worker
node mid-training and the S3 server mid-training, once each (plus the storage
faults against a stand-alone S3 server), and report what the run did.

Runs the chaos tests (tests/e2e/test_faults.py, on a throw-away local cluster
they start and stop) with FAULT_REPORT set; each appends one row. Prints a
table (fault, what the run did, time to recover, what was lost: the target is
nothing in every row) and writes bench/out/faults.json.

    make bench-faults
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.common import run_tests_reporting, write_json
from jobs.common.reports.tables import table

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    out = REPO_ROOT / "bench" / "out" / "faults.json"
    rows, status = run_tests_reporting(["-m", "chaos", "tests/e2e"], "FAULT_REPORT")
    # recover_s "-": the run stops by design (a rerun resumes from storage).
    cells = [[r["fault"], "-" if r["recover_s"] is None else r["recover_s"], r["lost"], r["outcome"]] for r in rows]
    print("\n" + table(["fault", "recover_s", "lost", "outcome"], cells))
    write_json(out, "faults", datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), rows, tests_exit_status=status)
    return status


if __name__ == "__main__":
    sys.exit(main())
