"""The one retry policy for every write to storage.

A write that fails is retried while the S3 server is unreachable or busy, for up to
$RL_STORAGE_RETRY_S seconds (default 180), with a line per retry. After each failure S3 is
asked what is wrong: a deleted bucket or revoked keys stop the write at once with a message
naming which. jobs/common/storage/objects.py writes every object through `retrying`; Tune's
own writes (a sweep's experiment state) go through a pyarrow filesystem whose retry settings
cover the same budget (`objects.tune_filesystem`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from jobs.common.errors import StorageError
from jobs.common.storage.reachability import check_storage_reachable

RETRY_ENV_VAR = "RL_STORAGE_RETRY_S"
DEFAULT_RETRY_S = 180.0
MAX_BACKOFF_S = 15.0

T = TypeVar("T")


def retry_budget_s() -> float:
    text = os.environ.get(RETRY_ENV_VAR)
    try:
        return max(0.0, float(text)) if text else DEFAULT_RETRY_S
    except ValueError:
        raise StorageError(f"{RETRY_ENV_VAR}='{text}' is not a number of seconds (e.g. 180)") from None


def retrying(action: Callable[[], T], what: str, uri: str, budget_s: float | None = None) -> T:
    """Run a storage write; on failure, ask S3 what is wrong: retry an outage, stop on anything else."""
    budget_s = retry_budget_s() if budget_s is None else budget_s
    deadline = time.monotonic() + budget_s
    delay = 1.0
    attempt = 1
    while True:
        try:
            return action()
        except OSError as err:  # pyarrow's S3 errors are OSErrors
            failure = _diagnose(uri, err)
            if not failure.transient:
                raise failure from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageError(
                    f"{what}: storage still failing after {budget_s:.0f}s of retries ({failure}); "
                    f"rerun the same command to resume once S3 is back ({RETRY_ENV_VAR} sets the wait)",
                    transient=True,
                ) from None
            wait = min(delay, left)
            print(
                f"storage: {what} failed (attempt {attempt}: {_first_line(failure)}); "
                f"retrying in {wait:.0f}s, giving up in {left:.0f}s",
                flush=True,
            )
            time.sleep(wait)
            delay = min(delay * 2, MAX_BACKOFF_S)
            attempt += 1


def _diagnose(uri: str, err: OSError) -> StorageError:
    """What S3 says is wrong now. If it answers fine, the failure was a blip: retry."""
    try:
        check_storage_reachable(uri)
    except StorageError as failure:
        return failure
    return StorageError(f"{_first_line(err)}", transient=True)


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
