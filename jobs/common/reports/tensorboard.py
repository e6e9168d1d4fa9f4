"""TensorBoard event files for every run, kept with the run in storage.

Each iteration adds scalars (the return and episode length behind the progress
line, PPO's losses, entropy and KL, env-runner and learner throughput) to an
event file written locally by tensorboardX; the file is uploaded to
`<run>/tensorboard/` with every checkpoint and at the end, through the same
retrying writer as checkpoints. `make tensorboard NAME=...` syncs those files
from the bucket and serves them on 127.0.0.1.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from jobs.common.run.loop import Observer
from jobs.common.run.state import RunState
from jobs.common.schema import dotted
from jobs.common.storage import layout
from jobs.common.storage import objects as storage

# tag -> where in RLlib 2.60's result (new API stack) it is.
RESULT_SCALARS = {
    "losses/policy_loss": ("learners", "default_policy", "policy_loss"),
    "losses/vf_loss": ("learners", "default_policy", "vf_loss"),
    "losses/total_loss": ("learners", "default_policy", "total_loss"),
    "policy/entropy": ("learners", "default_policy", "entropy"),
    "policy/kl": ("learners", "default_policy", "mean_kl_loss"),
    "episodes/len_mean": ("env_runners", "episode_len_mean"),
    "episodes/per_iteration": ("env_runners", "num_episodes"),
    "throughput/env_steps_sampled": ("env_runners", "num_env_steps_sampled"),
    "throughput/env_steps_trained": ("learners", "__all_modules__", "num_env_steps_trained"),
}


def scalars(state: RunState, result: dict[str, Any], seconds: float) -> dict[str, float]:
    """The finite numbers worth plotting for one iteration."""
    found: dict[str, float] = {
        "return/episode_return_mean": state.return_or_nan,
        "time/iteration_s": seconds,
    }
    for tag, path in RESULT_SCALARS.items():
        value = dotted.get(result, path)
        if isinstance(value, int | float):
            found[tag] = float(value)
    sampled = found.get("throughput/env_steps_sampled")
    if sampled is not None and seconds > 0:
        found["throughput/env_steps_per_s"] = sampled / seconds
    trained = found.get("throughput/env_steps_trained")
    if trained is not None and seconds > 0:
        found["throughput/samples_trained_per_s"] = trained / seconds
    return {tag: value for tag, value in found.items() if math.isfinite(value)}


def summary_writer_class():
    """tensorboardX's SummaryWriter, without torch where torch is not imported yet: tensorboardX's
    writer imports torch when it is installed, only to accept torch tensors (these scalars are
    floats), and a training job's driver would pay 1.3 CPU-seconds for it."""
    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError: tensorboardX copes
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class TensorBoardLog(Observer):
    """Event files for one run (a training run or a sweep trial), uploaded with its checkpoints."""

    def __init__(self, run: layout.RunFolder):
        SummaryWriter = summary_writer_class()  # noqa: N806 - a class

        self.run = run
        self.local = Path(tempfile.mkdtemp(prefix="rl-tensorboard-"))
        self.writer = SummaryWriter(logdir=str(self.local), flush_secs=3600)

    def iteration_done(self, state: RunState, seconds: float, result: dict[str, Any]) -> None:
        for tag, value in scalars(state, result, seconds).items():
            self.writer.add_scalar(tag, value, global_step=state.env_steps)

    def before_checkpoint(self, state: RunState) -> None:
        self.upload()

    def upload(self) -> None:
        # tensorboardX writes events from a queue in a thread of its own, and flush() does not wait
        # for that queue: an upload before a checkpoint can miss the last events (the next has them).
        self.writer.flush()
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            storage.write_bytes(f"{self.run.tensorboard}/{path.name}", path.read_bytes())

    def close(self) -> None:
        self.writer.close()  # drains that queue: the last upload has every event
        self.upload()
