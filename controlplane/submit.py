"""Submitting jobs: check first, then plain `ray job submit`.

Before anything is submitted, the entrypoint is run here with `--check`
(the same validation the job does on the cluster: experiment file, storage,
bucket, credentials) while the Jobs API is asked for its version with the
token. Only then is `ray job submit` run, printed first so that it can be
copied, with its output streamed; its exit status is ours.

No credentials go into the submission: the job inherits them from the
cluster's nodes, as pods get them from a Secret.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from controlplane.errors import ClusterError
from controlplane.state import REPO_ROOT, StateDir
from jobs.checks import check_command, failure_message
from jobs.common.cluster.placement import CAPACITY_ENV_VAR, GROUP_RESOURCES, HEAD_GROUP
from jobs.common.errors import UserError
from jobs.common.reports.provenance import GIT_COMMIT_VAR, GIT_DIRTY_VAR
from jobs.common.run.lease import SUBMISSION_ID_VAR, new_submission_id


def load_cluster_env(state_dir: StateDir) -> dict[str, str]:
    """The env file's settings, over this process's environment."""
    if not state_dir.env_file.exists():
        raise ClusterError(
            f"no cluster is up: {state_dir.env_file} does not exist; run `make cluster-up` "
            "(or point CLUSTER_STATE_DIR at the cluster's state folder)"
        )
    variables = state_dir.read_env()
    os.environ.update(variables)
    return variables


def check_jobs_api(address: str) -> None:
    """Reach the Jobs API with the token, or say precisely why not."""
    from ray.job_submission import JobSubmissionClient

    try:
        JobSubmissionClient(address)
    except Exception as err:  # noqa: BLE001 - Ray raises several kinds here
        text = str(err)
        if "401" in text or "403" in text or "uthenticat" in text or "token" in text.lower():
            raise ClusterError(
                f"the Ray Jobs API at {address} refused our token; check RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN_PATH (from .cluster/env)"
            ) from None
        raise ClusterError(
            f"cannot reach the Ray Jobs API at {address} ({text.splitlines()[0] if text else type(err).__name__}); "
            "is the cluster up? `make cluster-status`, or `make cluster-up`"
        ) from None


def start_preflight(entrypoint: list[str], env: Mapping[str, str]) -> subprocess.Popen | None:
    """Start the entrypoint's check here (jobs/checks.py has the contract), so that bad input fails before
    submission. With RL_JOB_SUBMISSION_ID in `env`, a run's or sweep's check also takes its lease."""
    check = check_command(entrypoint, sys.executable)
    if check is None:
        return None
    return subprocess.Popen(
        check, cwd=REPO_ROOT, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish_preflight(process: subprocess.Popen | None) -> None:
    """Wait for the check; its error, if any, as ours."""
    if process is None:
        return
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise UserError(f"{failure_message(stdout, stderr)}\n(nothing was submitted)")


def git_provenance() -> dict[str, str]:
    """The commit the submitted tree comes from, and whether it had changes (run.json records both)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True)
    except OSError:
        return {}
    if commit.returncode != 0:
        return {}
    return {GIT_COMMIT_VAR: commit.stdout.strip(), GIT_DIRTY_VAR: "1" if status.stdout.strip() else "0"}


def submit_command(
    address: str,
    entrypoint: list[str],
    wait: bool = True,
    worker_groups: str | None = None,
    submission_id: str | None = None,
) -> list[str]:
    """`ray job submit` of `entrypoint`; `worker_groups` (RL_WORKER_GROUPS of the cluster's env file) goes
    with the job, so that its driver checks its plan against the groups on every provider (KubeRay's and
    the cluster launcher's nodes have no such variable of their own)."""
    driver_resources = json.dumps({GROUP_RESOURCES[HEAD_GROUP]: 1})
    cmd = [
        "ray",
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        ".",
        # The driver goes to the head (one driver slot each) and takes no CPU there.
        "--entrypoint-num-cpus",
        "0",
        "--entrypoint-resources",
        driver_resources,
    ]
    env_vars = git_provenance()  # no secret: a commit hash and a flag
    if worker_groups:  # no secret: group names and sizes
        env_vars[CAPACITY_ENV_VAR] = worker_groups
    if env_vars:
        cmd += ["--runtime-env-json", json.dumps({"env_vars": env_vars}, separators=(",", ":"))]
    if submission_id:
        cmd += ["--submission-id", submission_id]
    if not wait:
        cmd.append("--no-wait")
    return cmd + ["--", *entrypoint]


def submit(state_dir: StateDir, entrypoint: list[str], wait: bool = True, capture: list[str] | None = None) -> int:
    env = {**os.environ, **load_cluster_env(state_dir)}
    address = env["RAY_ADDRESS"]
    # The job's id, chosen here: the check takes the run's lease for it (one run of an experiment at a
    # time), so that a second submission of the same experiment is refused before it is submitted.
    submission_id = new_submission_id()
    env[SUBMISSION_ID_VAR] = submission_id
    # The entrypoint's check runs in its own process while this one asks the Jobs API: 0.5 s
    # and 0.7 s side by side rather than one after the other. A Jobs API failure is told first.
    preflight = start_preflight(entrypoint, env)
    try:
        check_jobs_api(address)
    except BaseException:
        if preflight is not None:
            preflight.kill()
            preflight.wait()
        raise
    finish_preflight(preflight)
    cmd = submit_command(address, entrypoint, wait, env.get(CAPACITY_ENV_VAR), submission_id)
    env.pop(SUBMISSION_ID_VAR)
    print("+ " + shlex.join(cmd), flush=True)
    executable = str(Path(sys.executable).parent / "ray")
    process = subprocess.Popen(
        [executable, *cmd[1:]],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if capture is not None:
            capture.append(line.rstrip("\n"))
    return process.wait()
