"""The check before submission: the contract between `make train|sweep|evaluate` and the entrypoints.

Every entrypoint in CHECKED (`python -m jobs.<name> ...`) takes `--check`: run on the client with the
cluster's settings (`.cluster/env`), it validates what the job would validate first (the experiment or
sweep file, storage, bucket and credentials, the plan against the worker groups, the run's lease) and
exits 0, or writes `error: <message>` (possibly several lines) to stderr and exits non-zero; it starts
no Ray and writes nothing but the lease of the submission id in RL_JOB_SUBMISSION_ID. controlplane/
submit.py runs it beside its Jobs API check and submits only after it passed.
"""

from __future__ import annotations

from collections.abc import Sequence

# The entrypoints that honour `--check`.
CHECKED = ("jobs.train", "jobs.sweep", "jobs.evaluate")
ERROR_PREFIX = "error: "  # what jobs.common.errors.exits_cleanly writes before a UserError's message


def check_command(entrypoint: Sequence[str], python: str) -> list[str] | None:
    """`<python> -m jobs.<name> <args> --check` for an entrypoint `python -m jobs.<name> <args>` of CHECKED;
    None for any other entrypoint (it is submitted unchecked)."""
    if len(entrypoint) < 3 or entrypoint[0] not in ("python", "python3") or entrypoint[1] != "-m":
        return None
    if entrypoint[2] not in CHECKED:
        return None
    return [python, "-m", *entrypoint[2:], "--check"]


def failure_message(stdout: str, stderr: str) -> str:
    """What a failed check said: its `error: ` lines and what follows them (a message may span lines),
    without the prefix; else its last lines (Ray's own logs come first)."""
    lines = (stderr.strip() or stdout.strip()).splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith(ERROR_PREFIX)), max(0, len(lines) - 20))
    return "\n".join(lines[first:]).removeprefix(ERROR_PREFIX)
