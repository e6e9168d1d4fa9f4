"""PNG figures of learning curves: one set-up for runs and sweeps alike."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator


def import_in_background() -> None:
    """Import matplotlib on a thread now: a run draws its figure after its last iteration,
    where the import (0.5-0.7 s) would delay the `checkpoint:` line; while it trains, the
    driver only waits."""
    threading.Thread(target=_import_pyplot, name="import-matplotlib", daemon=True).start()


def _import_pyplot() -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes
    import matplotlib.pyplot  # noqa: F401


@contextlib.contextmanager
def learning_curve_figure(title: str, target: float | None, out: io.BytesIO, size=(6, 3.5)) -> Iterator[object]:
    """Axes for return against env steps; on exit, the figure is written to `out` as PNG.

    `target` draws the stop criterion as a dashed line.
    """
    _import_pyplot()
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=size, dpi=100)
    try:
        yield axes
        if target is not None:
            axes.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"stop at {target:g}")
        axes.set_xlabel("env steps")
        axes.set_ylabel("episode return (mean)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(loc="best")
        figure.tight_layout()
        figure.savefig(out, format="png")
    finally:
        plt.close(figure)
