"""Fault injection: kill a worker node mid-sweep, the head mid-sweep, a worker
node mid-training and the S3 server mid-training, once each (plus the storage
faults against a stand-alone S3 server), and report what the run did.

Runs the chaos tests (tests/e2e/test_faults.py and test_storage_faults.py, on
a throw-away local cluster or S3 server they start and stop) with FAULT_REPORT
set; each test appends one row. Prints a table and writes bench/out/faults.json:

  fault      what was done to the run
  result     the test's verdict: passed, or FAILED: <the assertion> (ERROR in
             setup: ..., SKIPPED: ...); a test that failed before writing its
             row still gets one, from pytest's own report
  recover_s  from the fault to the run finishing again ("-": the run stops by
             design, or the test failed first)
  lost       what the fault cost, as measured (before the test asserted on it):
             finished trials re-run and trials left unfinished, iterations since
             the last checkpoint, checkpoints missing or incomplete in the bucket;
             "not measured" when the test failed before measuring
  outcome    what the run did

Exit status: pytest's (non-zero when any fault test failed).

    make bench-faults
    .venv/bin/python -m bench.faults -k storage      # a subset (pytest's -k)
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.common import run_tests_with_outcomes, write_json
from bench.reporting import NOT_MEASURED, PASSED, merge
from controlplane.state import REPO_ROOT
from jobs.common.reports.tables import table

COLUMNS = ["fault", "result", "recover_s", "lost", "outcome"]
BLANK = {"fault": None, "outcome": "-", "recover_s": None, "lost": NOT_MEASURED}


def cells(rows: list[dict]) -> list[list[str]]:
    return [["-" if row.get(key) is None else row[key] for key in COLUMNS] for row in rows]


def failed(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["result"] != PASSED]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="keyword", help="only the fault tests pytest's -k selects")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "faults.json")
    args = parser.parse_args(argv)

    pytest_args = ["-m", "chaos", "tests/e2e"] + (["-k", args.keyword] if args.keyword else [])
    rows, outcomes, status = run_tests_with_outcomes(pytest_args, "FAULT_REPORT")
    rows = merge(rows, outcomes, BLANK, name_field="fault")
    print("\n" + table(COLUMNS, cells(rows)))
    if failed(rows):
        print(f"\n{len(failed(rows))} of {len(rows)} fault tests did not pass: their rows show what was measured")
    write_json(args.out, "faults", datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), rows, tests_exit_status=status)
    return status or (1 if failed(rows) else 0)


if __name__ == "__main__":
    sys.exit(main())
