"""Where one learner update's time goes, phase by phase (for bench/learner_throughput.py).

For one extra update, after the timed ones, timing wrappers go on the learner
actor's own instance (instance attributes shadow RLlib's methods; the class is
left alone) and come off again afterwards. Learner.update itself cannot be
wrapped so: Ray's actor runs the class's method, not an instance attribute. Its
span is from its first call (self._check_is_built()) to the end of its last
(self.metrics.reduce()), Learner.update's code in Ray 2.60.

  episodes_to_batch   Learner._make_batch_if_necessary: the learner connectors
                      (GAE, with the value function's forward pass) and the
                      batch's copy to the learner's device
  sgd_steps           every Learner._update call: forward, loss, backward,
                      optimizer step (sgd_step_count of them)
  rest_in_learner     the rest of Learner.update: minibatch slicing, metrics
                      logging, before/after-update hooks, the metrics' reduce
  outside_learner     the driver's clock less Learner.update: episodes shipped
                      to the actor, the results shipped back, the group's calls

On a GPU each phase ends with torch.cuda.synchronize(), so that kernels queued
in one phase are not billed to the next. That stall is why the phases are taken
on an update of their own and never on the timed ones.
"""

from __future__ import annotations

import time

# The Learner methods timed, by the phase they make up.
TIMED_METHODS = {"_make_batch_if_necessary": "episodes_to_batch", "_update": "sgd_steps"}
PHASES = ("episodes_to_batch", "sgd_steps", "rest_in_learner", "outside_learner")
CLOCK_ATTRIBUTE = "_bench_phase_clock"


def install(learner) -> None:
    """Runs inside the learner actor: wrap the timed methods of this one learner instance."""
    import torch

    device = learner.device
    if getattr(device, "type", "cpu") == "cuda":

        def sync() -> None:
            torch.cuda.synchronize(device)
    else:

        def sync() -> None:
            pass

    clock = {"started": None, "ended": None, "episodes_to_batch": 0.0, "sgd_steps": 0.0, "sgd_step_count": 0}

    def timed(phase: str, method):
        def wrapper(*args, **kwargs):
            sync()
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                sync()
                clock[phase] += time.perf_counter() - started
                if phase == "sgd_steps":
                    clock["sgd_step_count"] += 1

        return wrapper

    check_is_built, reduce = learner._check_is_built, learner.metrics.reduce

    def update_starts(*args, **kwargs):
        if clock["started"] is None:
            sync()
            clock["started"] = time.perf_counter()
        return check_is_built(*args, **kwargs)

    def update_ends(*args, **kwargs):
        try:
            return reduce(*args, **kwargs)
        finally:
            sync()
            clock["ended"] = time.perf_counter()

    for method, phase in TIMED_METHODS.items():
        setattr(learner, method, timed(phase, getattr(learner, method)))
    learner._check_is_built = update_starts
    learner.metrics.reduce = update_ends
    setattr(learner, CLOCK_ATTRIBUTE, clock)


def collect(learner) -> dict:
    """Runs inside the learner actor: take the wrappers off again and return what they timed."""
    for method in (*TIMED_METHODS, "_check_is_built"):
        learner.__dict__.pop(method, None)
    learner.metrics.__dict__.pop("reduce", None)
    clock = learner.__dict__.pop(CLOCK_ATTRIBUTE)
    if clock["started"] is None or clock["ended"] is None:
        raise RuntimeError(
            "the learner's update was not seen (Learner.update no longer starts with "
            "_check_is_built() and ends with metrics.reduce()?): its phases cannot be told apart"
        )
    return {**clock, "update": clock["ended"] - clock["started"]}


def breakdown(driver_s: float, clock: dict) -> dict:
    """Seconds per phase of one update (they add up to driver_s), and the mean SGD step."""
    rest = clock["update"] - clock["episodes_to_batch"] - clock["sgd_steps"]
    seconds = {
        "episodes_to_batch": clock["episodes_to_batch"],
        "sgd_steps": clock["sgd_steps"],
        "rest_in_learner": rest,
        "outside_learner": driver_s - clock["update"],
    }
    steps = clock["sgd_step_count"]
    return {
        "update_s": round(driver_s, 4),
        **{f"{phase}_s": round(value, 4) for phase, value in seconds.items()},
        "sgd_step_count": steps,
        "ms_per_sgd_step": round(1000 * clock["sgd_steps"] / steps, 2) if steps else None,
    }


def timed_update(group, update: dict) -> dict:
    """One LearnerGroup.update(**update) with its phases timed (one remote learner)."""
    for result in group.foreach_learner(install):
        result.get()
    try:
        started = time.perf_counter()
        group.update(**update)
        driver_s = time.perf_counter() - started
    finally:
        clocks = [result.get() for result in group.foreach_learner(collect)]
    return breakdown(driver_s, clocks[0])


PHASE_COLUMNS = ("variant", "update_s", "episodes_to_batch", "sgd_steps", "ms_per_sgd_step", "rest_in_learner",
                 "outside_learner")  # fmt: skip


def phase_rows(rows: list[dict]) -> list[list]:
    """Table cells: each phase as seconds and its share of the update."""

    def cell(phases: dict, phase: str) -> str:
        share = phases[f"{phase}_s"] / phases["update_s"] if phases["update_s"] else 0.0
        return f"{phases[f'{phase}_s']:.3f} ({share:.0%})"

    out = []
    for row in rows:
        phases = row.get("phases")
        if not phases:
            continue
        out.append([
            row["variant"], f"{phases['update_s']:.3f}", cell(phases, "episodes_to_batch"), cell(phases, "sgd_steps"),
            f"{phases['ms_per_sgd_step']:.1f}" if phases["ms_per_sgd_step"] is not None else "n/a",
            cell(phases, "rest_in_learner"), cell(phases, "outside_learner"),
        ])  # fmt: skip
    return out
