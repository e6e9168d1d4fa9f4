"""What a training run leaves beside its checkpoints: progress.csv (one row
per iteration, across resumes) and learning_curve.png."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from jobs.common.reports.plots import learning_curve_figure
from jobs.common.storage import layout
from jobs.common.storage import objects as storage

COLUMNS = ("iteration", "env_steps", "episode_return_mean", "train_time_s")


def load_progress(run: layout.RunFolder) -> list[dict[str, Any]]:
    data = storage.read_bytes(run.progress)
    if not data:
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(data.decode())):
        rows.append(
            {
                "iteration": int(row["iteration"]),
                "env_steps": int(row["env_steps"]),
                "episode_return_mean": float(row["episode_return_mean"] or math.nan),
                "train_time_s": float(row["train_time_s"]),
            }
        )
    return rows


def save_progress(run: layout.RunFolder, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    storage.write_bytes(run.progress, buffer.getvalue().encode())


def learning_curve_png(rows: list[dict[str, Any]], title: str, target: float | None) -> bytes:
    out = io.BytesIO()
    with learning_curve_figure(title, target, out) as axes:
        steps = [r["env_steps"] for r in rows]
        axes.plot(steps, [r["episode_return_mean"] for r in rows], marker=".", label="return")
    return out.getvalue()
