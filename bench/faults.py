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

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import write_json  # noqa: E402


def main() -> int:
    out = REPO_ROOT / "bench" / "out" / "faults.json"
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as handle:
        report = Path(handle.name)
    env = {**os.environ, "FAULT_REPORT": str(report)}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "chaos", "tests/e2e", "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        env=env,
    )
    rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    report.unlink()
    width = max([len(r["fault"]) for r in rows] + [5])
    header = f"{'fault':<{width}}  {'recover_s':>9}  {'lost':<30}  outcome"
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        print(f"{row['fault']:<{width}}  {row['recover_s']:>9}  {row['lost']:<30}  {row['outcome']}")
    write_json(out, "faults", datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), rows, tests_exit_status=tests.returncode)
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main())
