"""Reading a job's output as `ray job submit` streams it."""

from __future__ import annotations

import re


def job_lines(output: str) -> list[str]:
    """The job's own output: the lines between Ray's banner and its closing lines."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Running entrypoint for job"))
    end = next((i for i in range(len(lines) - 1, start, -1) if "WebSocket closed for job" in lines[i]), len(lines))
    return [line for line in lines[start + 1 : end] if line.strip()]


def ours(lines: list[str]) -> list[str]:
    """Drop Ray's own log lines (timestamps, actor-prefixed lines)."""
    return [line for line in lines if not re.match(r"^(\d{4}-\d\d-\d\d |\[\d{4}-|\x1b\[3\dm\(|\()", line)]


def env_steps_of(progress_line: str) -> int:
    return int(re.search(r"env_steps\s+([\d,]+)", progress_line).group(1).replace(",", ""))
