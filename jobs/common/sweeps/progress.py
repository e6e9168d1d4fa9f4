"""One line of progress every few seconds while a sweep runs (Tune's own
status tables are turned off): trials done, running, pending, and the best so far."""

from __future__ import annotations

import math
import time

from ray.tune import Callback

from jobs.common.schema import dotted


class SweepProgress(Callback):
    def __init__(self, total: int, metric: str, mode: str, short_names: dict[str, str], every_s: float = 10.0):
        self.total = total
        self.metric = metric
        self.mode = mode
        self.short_names = short_names
        self.every_s = every_s
        self.started = time.monotonic()
        self.last_line = 0.0
        self.last_done = -1

    def _best(self, trials):
        sign = 1 if self.mode == "max" else -1
        best, best_value = None, None
        for trial in trials:
            value = (trial.last_result or {}).get(self.metric)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if best_value is None or sign * value > sign * best_value:
                best, best_value = trial, value
        return best, best_value

    def _config(self, trial) -> str:
        parts = []
        for key, short in self.short_names.items():
            node = dotted.get(trial.config, dotted.split(key))
            value = f"{node:.3g}" if isinstance(node, float) else node
            parts.append(f"{short}={value}")
        return " ".join(parts)

    def line(self, trials) -> str:
        status = [t.status for t in trials]
        done = status.count("TERMINATED")
        errored = status.count("ERROR")
        best, value = self._best(trials)
        best_text = "n/a" if best is None else f"{value:.4g} ({best.trial_id}: {self._config(best)})"
        return (
            f"[{time.monotonic() - self.started:6.1f}s] trials {done + errored}/{self.total} done"
            f" | {status.count('RUNNING')} running | {status.count('PENDING')} pending | {errored} errored"
            f" | best {self.metric} {best_text}"
        )

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        # Every few seconds, and whenever a trial ends (at most once a second).
        changed = done != self.last_done and now - self.last_line >= 1.0
        if now - self.last_line >= self.every_s or changed:
            print(self.line(trials), flush=True)
            self.last_line, self.last_done = now, done

    def on_experiment_end(self, trials, **info):
        print(self.line(trials), flush=True)
