"""What a finished training run leaves beside its checkpoints: progress.csv
(one row per iteration, across resumes) and learning_curve.png."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from jobs.common import checkpoints, storage

COLUMNS = ("iteration", "env_steps", "episode_return_mean", "train_time_s")


def load_progress(experiment_uri: str) -> list[dict[str, Any]]:
    data = storage.read_bytes(storage.join(experiment_uri, "progress.csv"))
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


def save_progress(experiment_uri: str, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    checkpoints.write_bytes(storage.join(experiment_uri, "progress.csv"), buffer.getvalue().encode())


def learning_curve_png(rows: list[dict[str, Any]], title: str, target: float | None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    axes.plot([r["env_steps"] for r in rows], [r["episode_return_mean"] for r in rows], marker=".", label="return")
    if target is not None:
        axes.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"stop at {target:g}")
    axes.set_xlabel("env steps")
    axes.set_ylabel("episode return (mean)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def summary_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"  {key.ljust(width)}  {value}" for key, value in rows)
