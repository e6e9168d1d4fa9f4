"""Rebuild a sweep's report from storage alone (no Ray cluster needed).

    python -m jobs.sweep_report --name cartpole-seed [--storage s3://bucket/prefix]

Writes `<storage>/<name>/report/` (summary.txt, trials.csv,
learning_curves.png, best.json) and prints the summary; the last two lines
are `report: <uri>` and `best_checkpoint: <uri>`, as at the end of a sweep.
"""

from __future__ import annotations

import argparse
import sys

from jobs.common import storage
from jobs.common.errors import exits_cleanly
from jobs.common.sweep_report import build_report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.sweep_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the sweep's name (its folder in storage)")
    parser.add_argument("--storage", help="s3://bucket/prefix or a local directory (default: $RL_STORAGE_URI)")
    return parser.parse_args(argv)


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    storage_uri = storage.resolve_storage(args.storage)
    storage.check_storage_reachable(storage_uri)
    report = build_report(storage_uri, args.name)
    print(report.summary)
    print(f"report: {report.uri}")
    print(f"best_checkpoint: {report.best_checkpoint or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
