"""Training metrics for Prometheus: what a run is doing, next to Ray's own metrics.

Each iteration sets a few gauges through Ray's metrics API (`ray.util.metrics`),
which every node's metrics agent exports with Ray's own on its
`--metrics-export-port` (Prometheus finds them through the dashboard's
`/api/prometheus/sd`, or, on Kubernetes, the pods' scrape annotations). Ray
prefixes each name with `ray_`. The Grafana dashboard in k8s/monitoring/ plots
them with Ray's node, GPU and object-store metrics; a test checks that every
metric it queries is really exported by a running cluster.
"""

from __future__ import annotations

from jobs.common.run.loop import Observer
from jobs.common.run.state import RunState

# name (without Ray's `ray_` prefix) -> description
GAUGES = {
    "rl_episode_return_mean": "Mean return of the last N episodes (the run's stop criterion)",
    "rl_episode_len_mean": "Mean episode length in the last iteration",
    "rl_env_steps_per_second": "Env steps sampled per second in the last iteration",
    "rl_iteration_seconds": "Wall time of the last training iteration (sampling and learner update)",
    "rl_env_steps_total": "Env steps sampled over the run's lifetime, across resumes",
    "rl_iteration": "Training iterations done, across resumes",
}


_gauges: dict = {}


def gauges() -> dict:
    """One Gauge per name and process (a reused sweep-trial actor runs many trials)."""
    from ray.util.metrics import Gauge

    if not _gauges:
        _gauges.update({name: Gauge(name, description=text, tag_keys=("run",)) for name, text in GAUGES.items()})
    return _gauges


class RayMetrics(Observer):
    """Sets the gauges after every iteration, tagged with the run's name."""

    def __init__(self, run_name: str):
        self.tags = {"run": run_name}
        self.gauges = gauges()

    def iteration_done(self, state: RunState, seconds: float, result: dict) -> None:
        sampled = (result.get("env_runners") or {}).get("num_env_steps_sampled")
        values = {
            "rl_episode_return_mean": state.episode_return_mean,
            "rl_episode_len_mean": state.episode_len_mean,
            "rl_env_steps_per_second": sampled / seconds if sampled and seconds > 0 else None,
            "rl_iteration_seconds": seconds,
            "rl_env_steps_total": state.env_steps,
            "rl_iteration": state.iteration,
        }
        for name, value in values.items():
            if value is not None:
                self.gauges[name].set(float(value), tags=self.tags)
