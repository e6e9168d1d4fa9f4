"""User-facing failures: one clear message, a non-zero exit, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

# Exit status for bad input (argparse uses 2 for usage errors too).
EXIT_BAD_INPUT = 2
# Exit status when storage fails mid-run (unreachable, bucket gone, keys revoked).
EXIT_STORAGE = 3


class UserError(Exception):
    """A problem with what the user gave us (a file, a flag, the environment).

    The message must name the input, what was wrong with it and what would work.
    """

    exit_status = EXIT_BAD_INPUT


class StorageError(UserError):
    """S3 failed us: `transient` when the server is unreachable or overloaded
    (worth retrying), otherwise the bucket or the credentials are wrong."""

    exit_status = EXIT_STORAGE

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def exits_cleanly(main: Callable[..., int | None]) -> Callable[..., int]:
    """Turn UserError into `error: <message>` on stderr and its exit status (2, or 3 for storage): what the
    check before submission reports (jobs/checks.py)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            return err.exit_status
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            return 130

    return wrapper
