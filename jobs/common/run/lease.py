"""One run per experiment (or sweep) at a time: a lease on its folder in storage.

`<folder>/lease.json` names the job that writes the folder. It is taken with a conditional
write (S3's If-None-Match / If-Match, which AWS S3 and SeaweedFS honour; an exclusive create
under a lock file on a local disk), so that of two runs starting at once exactly one gets it;
renewed every RENEW_S while the run goes on; removed when the run ends.

Whether a lease still blocks is asked of the Jobs API first (the dashboard's, from a client;
the GCS's job table, from a driver on the cluster):

    its job is PENDING or RUNNING             held
    its job ended (succeeded, failed, stopped) free: the next run takes it over and says so
    its job is unknown to this cluster        held while renewed in the last UNKNOWN_JOB_S
                                              (a submission on its way, or a run of another
                                              cluster sharing the bucket), free after
    the Jobs API cannot be asked              held while renewed in the last STALE_S

A driver killed with SIGKILL leaves its lease behind, but Ray marks its job FAILED: the next
run is not blocked. `make train` and `make sweep` take the lease in their check before
submission, for the submission id they then submit with, so that the second of two
submissions at once is refused before it is submitted; the job's driver then finds the lease
its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import socket
import string
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from jobs.common.errors import UserError
from jobs.common.storage import objects as storage

LEASE_FILE = "lease.json"
RENEW_S = 10.0
STALE_S = 45.0
UNKNOWN_JOB_S = 20.0
# Set by `make train|sweep` for their check: the submission id the job will have.
SUBMISSION_ID_VAR = "RL_JOB_SUBMISSION_ID"
LIVE = ("PENDING", "RUNNING")
ENDED = ("SUCCEEDED", "FAILED", "STOPPED")


def new_submission_id() -> str:
    """An id of Ray's own form (`raysubmit_` and 16 letters and digits), chosen before submitting."""
    alphabet = string.ascii_letters + string.digits
    return "raysubmit_" + "".join(secrets.choice(alphabet) for _ in range(16))


def current_job_id() -> str:
    """This run's job: the submission id it is submitted with (the check before submission knows it from
    RL_JOB_SUBMISSION_ID; a driver reads it from the job config Ray gives it), else this process."""
    if os.environ.get(SUBMISSION_ID_VAR):
        return os.environ[SUBMISSION_ID_VAR]
    config = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if config:
        with contextlib.suppress(ValueError, AttributeError):
            found = json.loads(config).get("metadata", {}).get("job_submission_id")
            if found:
                return found
    return f"process {os.getpid()} on {socket.gethostname()}"


@dataclass
class Lease:
    job_id: str
    host: str
    taken_at: str
    renewed_at: float  # Unix seconds
    # Whom this lease was taken over from, for the job's own log (the check before submission takes it).
    took_over: str | None = None

    def to_json(self) -> bytes:
        return json.dumps({**asdict(self), "renewed": _iso(self.renewed_at)}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Lease | None:
        try:
            record = json.loads(data)
            return cls(
                str(record["job_id"]),
                str(record["host"]),
                str(record["taken_at"]),
                float(record["renewed_at"]),
                record.get("took_over"),
            )
        except (ValueError, KeyError, TypeError):
            return None  # not ours, or cut short: it blocks nobody

    def age_s(self) -> float:
        return max(0.0, time.time() - self.renewed_at)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------
# Conditional reads and writes of the lease object
# --------------------------------------------------------------------------


class Conflict(Exception):
    """Someone else wrote the lease since we read it."""


class S3LeaseStore:
    """The lease as an S3 object, changed only if it is still what we read (its ETag)."""

    def __init__(self, uri: str):
        location = storage.S3Location.parse(uri)
        self.uri, self.bucket, self.key = uri, location.bucket, location.key
        self.client = storage.s3_client()

    def read(self) -> tuple[bytes | None, str | None]:
        import botocore.exceptions

        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except botocore.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise
        return found["Body"].read(), found["ETag"]

    def write(self, data: bytes, version: str | None) -> str:
        """Create (version None: only if absent) or replace (only if still at `version`); the new version."""
        import botocore.exceptions

        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        except botocore.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise Conflict() from None
            raise

    def delete(self, version: str) -> None:
        data, current = self.read()
        if current == version:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)


class FileLeaseStore:
    """The lease as a file; a lock file beside it makes read-compare-write one step."""

    def __init__(self, path: str):
        self.uri = path
        self.path = Path(path)

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def read(self) -> tuple[bytes | None, str | None]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, None
        return data, f"{hashlib.sha256(data).hexdigest()[:16]}:{self.path.stat().st_mtime_ns}"

    def write(self, data: bytes, version: str | None) -> str:
        with self._locked():
            if self.read()[1] != version:
                raise Conflict()
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temporary.write_bytes(data)
            os.replace(temporary, self.path)
            return self.read()[1]

    def delete(self, version: str) -> None:
        with self._locked():
            if self.read()[1] == version:
                self.path.unlink(missing_ok=True)


def store_for(folder_uri: str):
    uri = storage.join(folder_uri, LEASE_FILE)
    return S3LeaseStore(uri) if storage.is_s3(uri) else FileLeaseStore(uri)


# --------------------------------------------------------------------------
# Whose job is it, and is it still going
# --------------------------------------------------------------------------


def job_status(job_id: str) -> str | None:
    """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED as this cluster's Jobs API has it; "UNKNOWN" where the
    cluster has no such job; None where there is no cluster to ask."""
    address = os.environ.get("RAY_ADDRESS", "")
    try:
        if address.startswith(("http://", "https://")):
            return _status_from_jobs_api(address, job_id)
        if address and address != "auto":
            return _status_from_gcs(address, job_id)
    except Exception:  # noqa: BLE001 - unreachable or refused: the lease's age decides
        return None
    return None


def _status_from_jobs_api(address: str, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    try:
        return str(JobSubmissionClient(address).get_job_status(job_id))
    except RuntimeError as err:
        if "does not exist" in str(err) or "404" in str(err):
            return "UNKNOWN"
        raise


def _status_from_gcs(address: str, job_id: str) -> str:
    """A driver's view: the job table the Jobs API keeps in the GCS (what `ray job status` reads)."""
    from ray._raylet import GcsClient
    from ray.dashboard.modules.job.common import JobInfoStorageClient

    key = f"{JobInfoStorageClient.JOB_DATA_KEY_PREFIX}{job_id}".encode()
    data = GcsClient(address=address).internal_kv_get(key, b"job", timeout=10)
    if not data:
        return "UNKNOWN"
    return str(json.loads(data).get("status", "UNKNOWN"))


def blocking(lease: Lease, status: str | None) -> bool:
    if status in LIVE:
        return True
    if status in ENDED:
        return False
    return lease.age_s() < (UNKNOWN_JOB_S if status == "UNKNOWN" else STALE_S)


class LeaseHeld(UserError):
    pass


def held_message(what: str, lease: Lease, status: str | None, uri: str) -> str:
    state = {
        None: "the Jobs API could not be asked",
        "UNKNOWN": "unknown to this cluster's Jobs API: being submitted, or running on another cluster",
    }.get(status, status)
    return (
        f"{what} is being run by job {lease.job_id} ({state}; since {lease.taken_at}, on {lease.host}, its lease "
        f"{uri} renewed {lease.age_s():.0f} s ago): stop it with `ray job stop {lease.job_id}`, or wait until it ends"
    )


# --------------------------------------------------------------------------
# Taking, keeping and giving back the lease
# --------------------------------------------------------------------------


class HeldLease:
    """A lease this run holds: renewed in the background until released; `check()` raises once it is lost."""

    def __init__(self, store, lease: Lease, version: str, took_over: str | None):
        self.store, self.lease, self.version = store, lease, version
        self.took_over = took_over
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def keep(self) -> HeldLease:
        self._thread = threading.Thread(target=self._renew, name="lease-renewal", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            self.lease.renewed_at = time.time()
            try:
                self.version = self.store.write(self.lease.to_json(), self.version)
            except Conflict:
                data, _ = self.store.read()
                other = Lease.from_json(data) if data else None
                self.lost = f"job {other.job_id}" if other else "someone (the lease is gone)"
                return
            except Exception:  # noqa: BLE001 - storage down: try again at the next renewal
                continue

    def check(self) -> None:
        if self.lost:
            raise UserError(
                f"this run lost its lease {self.store.uri} to {self.lost} (not renewed for {STALE_S:.0f} s): "
                "it stops here and writes nothing more"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.lost:
            return
        with contextlib.suppress(Exception):  # not removed: Ray marks the job ended, the next run takes it over
            self.store.delete(self.version)


def acquire(folder_uri: str, what: str, job_id: str | None = None) -> HeldLease:
    """Take the lease of `folder_uri` for `job_id` (default: this run's job); LeaseHeld, naming the job
    that holds it and how to stop it, when another live run has it."""
    job_id = job_id or current_job_id()
    store = store_for(folder_uri)
    for _ in range(3):
        data, version = store.read()
        current = Lease.from_json(data) if data else None
        # Taken over by the check before submission, on this job's behalf: the job says so too.
        took_over = current.took_over if current is not None and current.job_id == job_id else None
        if current is not None and current.job_id != job_id:
            status = job_status(current.job_id)
            if blocking(current, status):
                raise LeaseHeld(held_message(what, current, status, store.uri))
            why = status.lower() if status in ENDED else f"last renewed {current.age_s():.0f} s ago"
            took_over = f"took over the lease of {what} from job {current.job_id} ({why})"
        now = time.time()
        taken_at = current.taken_at if current is not None and current.job_id == job_id else _iso(now)
        lease = Lease(job_id, socket.gethostname(), taken_at, now, took_over)
        try:
            written = store.write(lease.to_json(), version if data is not None else None)
        except Conflict:
            continue  # another run wrote it meanwhile: read it again
        return HeldLease(store, lease, written, took_over)
    data, _ = store.read()
    current = Lease.from_json(data) if data else None
    raise LeaseHeld(held_message(what, current, job_status(current.job_id), store.uri) if current else
                    f"{what}: its lease {store.uri} keeps changing under this run; try again")  # fmt: skip


def claim_before_submission(folder_uri: str, what: str) -> None:
    """The check before submission: take the lease for the submission id `make train|sweep` is about to
    submit with (RL_JOB_SUBMISSION_ID), so that a second submission is refused before it is submitted;
    a check run by hand (no submission id) only says whether another live run holds it."""
    if os.environ.get(SUBMISSION_ID_VAR):
        acquire(folder_uri, what, os.environ[SUBMISSION_ID_VAR])
    else:
        check_free(folder_uri, what)


def check_free(folder_uri: str, what: str, job_id: str | None = None) -> None:
    """What the check before submission says when it takes no lease: LeaseHeld if another live run has it."""
    store = store_for(folder_uri)
    data, _ = store.read()
    current = Lease.from_json(data) if data else None
    if current is not None and current.job_id != (job_id or current_job_id()):
        status = job_status(current.job_id)
        if blocking(current, status):
            raise LeaseHeld(held_message(what, current, status, store.uri))
