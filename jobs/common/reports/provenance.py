"""What a run leaves in storage besides its checkpoints: the driver's log and
`run.json`, enough to run it again.

The driver's output (its own lines and the actors' lines Ray forwards) is
teed into memory while it runs; at the end of the job, also when it fails or
is stopped, it is written to `<run>/driver.log` with every secret the driver
can see replaced by `***` (the S3 keys, the Ray token). `run.json` records
the git commit and whether the tree was dirty (the client passes them at
submission: the uploaded working dir has no .git), the resolved experiment,
the versions of Ray, torch, gymnasium and MuJoCo, the image tag when in a
container, the cluster's worker groups, the seed and how the run ended.
`python -m jobs.train --rerun NAME` runs it again from run.json alone.
"""

from __future__ import annotations

import io
import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from jobs.common.cluster.capacity import CAPACITY_ENV_VAR
from jobs.common.storage import layout
from jobs.common.storage import objects as storage

GIT_COMMIT_VAR = "RL_GIT_COMMIT"
GIT_DIRTY_VAR = "RL_GIT_DIRTY"
IMAGE_VAR = "RL_IMAGE"
SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "RAY_AUTH_TOKEN")


def secrets_in_reach() -> list[str]:
    """Every secret this process could print: the S3 keys and the Ray token."""
    found = [os.environ[name] for name in SECRET_VARS if os.environ.get(name)]
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    try:
        found.append(Path(token_path).read_text().strip())
    except OSError:
        pass
    return [secret for secret in found if len(secret) >= 8]


def scrub(text: str, secrets: list[str] | None = None) -> str:
    for secret in sorted(secrets if secrets is not None else secrets_in_reach(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _Tee(io.TextIOBase):
    def __init__(self, stream: TextIO, copy: io.StringIO):
        self.stream, self.copy = stream, copy

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()


class DriverLog:
    """Tees stdout and stderr from `start()` on; `text()` is what was printed, scrubbed."""

    def __init__(self) -> None:
        self.copy = io.StringIO()

    def start(self) -> DriverLog:
        sys.stdout = _Tee(sys.stdout, self.copy)
        sys.stderr = _Tee(sys.stderr, self.copy)
        return self

    def text(self) -> str:
        return scrub(self.copy.getvalue())

    def write_to(self, uri: str) -> None:
        """What was printed so far, scrubbed, to `uri` (a run's or a sweep's driver.log)."""
        storage.write_bytes(uri, self.text().encode())


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("ray", "torch", "gymnasium", "mujoco"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def run_record(experiment: dict[str, Any], outcome: dict[str, Any], started: datetime) -> dict[str, Any]:
    groups = os.environ.get(CAPACITY_ENV_VAR)
    dirty = os.environ.get(GIT_DIRTY_VAR)
    return {
        "git": {"commit": os.environ.get(GIT_COMMIT_VAR), "dirty": None if dirty is None else dirty == "1"},
        "experiment": experiment,
        "seed": experiment.get("seed"),
        "versions": versions(),
        "image": os.environ.get(IMAGE_VAR),
        "worker_groups": json.loads(groups) if groups else None,
        "job": os.environ.get("RAY_JOB_SUBMISSION_ID") or os.environ.get("RAY_SUBMISSION_ID"),
        "command": sys.argv,
        "started": started.isoformat(timespec="seconds"),
        "ended": datetime.now(UTC).isoformat(timespec="seconds"),
        **outcome,
    }


def keep(run: layout.RunFolder, log: DriverLog, record: dict[str, Any]) -> None:
    """Write driver.log and run.json beside the run (scrubbed), with the checkpoints' retries."""
    log.write_to(run.driver_log)
    storage.write_bytes(run.run_record, scrub(json.dumps(record, indent=2, default=str)).encode())
