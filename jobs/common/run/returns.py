"""The mean return of the last N episodes, from per-iteration results.

Ray 2.60's `env_runners/episode_return_mean` is the mean over the episodes
that ended in that iteration only, whatever `metrics_num_episodes_for_smoothing`
says (checked here with 0 and 1 remote env runners: one iteration reported 128.0
from its single episode). A stop criterion judged on 1-3 episodes ends runs on a
lucky streak, so stop criteria, progress lines and sweep metrics use this window
instead: each iteration's mean weighted by its episode count, newest first,
until N episodes are covered.
"""

from __future__ import annotations

import math
from typing import Any


class ReturnWindow:
    def __init__(self, episodes: int, history: list[list[float]] | None = None):
        self.episodes = episodes
        # [mean return, episode count] per iteration, oldest first; only what the window still needs.
        self.history: list[list[float]] = [list(entry) for entry in history or []]

    def add(self, result: dict[str, Any]) -> float | None:
        runners = result.get("env_runners", {})
        mean, count = runners.get("episode_return_mean"), runners.get("num_episodes") or 0
        if count and mean is not None and math.isfinite(float(mean)):
            self.history.append([float(mean), int(count)])
        return self.mean()

    def mean(self) -> float | None:
        total, covered, needed = 0.0, 0, 0
        for mean, count in reversed(self.history):
            take = min(count, self.episodes - covered)
            total += mean * take
            covered += take
            needed += 1
            if covered >= self.episodes:
                break
        del self.history[: len(self.history) - needed]
        return total / covered if covered else None
