"""User-facing failures: one clear message, a non-zero exit, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

# Exit status for bad input (argparse uses 2 for usage errors too).
EXIT_BAD_INPUT = 2


class UserError(Exception):
    """A problem with what the user gave us (a file, a flag, the environment).

    The message must name the input, what was wrong with it and what would work.
    """


def exits_cleanly(main: Callable[..., int | None]) -> Callable[..., int]:
    """Turn UserError into `error: <message>` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            return 130

    return wrapper
