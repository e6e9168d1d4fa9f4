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

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import run_tests_reporting, write_json  # noqa: E402


def main() -> int:
    out = REPO_ROOT / "bench" / "out" / "faults.json"
    rows, status = run_tests_reporting(["-m", "chaos", "tests/e2e"], "FAULT_REPORT")
    width = max([len(r["fault"]) for r in rows] + [5])
    header = f"{'fault':<{width}}  {'recover_s':>9}  {'lost':<30}  outcome"
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        recover = "-" if row["recover_s"] is None else row["recover_s"]  # "-": the run stops by design
        print(f"{row['fault']:<{width}}  {recover:>9}  {row['lost']:<30}  {row['outcome']}")
    write_json(out, "faults", datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), rows, tests_exit_status=status)
    return status


if __name__ == "__main__":
    sys.exit(main())
