"""Train PPO from an experiment file; checkpoints go to S3 (or a local path).

    python -m jobs.train --config jobs/experiments/ppo-cartpole.yaml [--set training.lr=0.001 ...]
    python -m jobs.train --config ... --dry-run      # validate, print the Ray 2.60 settings, exit

Runs as a Ray job (`make train`, or `ray job submit --working-dir . -- python -m jobs.train ...`).
Rerunning an experiment whose name already has a checkpoint in storage resumes
from it. Output: one progress line per iteration, then a summary; the result is
`<run>/outcome.json` (jobs/common/reports/outcome.py), whose last line is
`checkpoint: <uri>`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from jobs.common.cluster import capacity
from jobs.common.cluster.capacity import GroupCapacity
from jobs.common.cluster.fits import check_placement
from jobs.common.cluster.plans import learner_plan
from jobs.common.errors import UserError, exits_cleanly
from jobs.common.reports import outcome, plots
from jobs.common.reports import training as report
from jobs.common.reports.metrics import RayMetrics
from jobs.common.reports.outcome import TrainOutcome
from jobs.common.reports.provenance import DriverLog, keep, run_record
from jobs.common.reports.tables import key_values
from jobs.common.reports.tensorboard import TensorBoardLog
from jobs.common.rllib.heap import build_algo
from jobs.common.rllib.ppo import build_ppo_config, rejected, resolved_settings
from jobs.common.rllib.trainer import runs_in_one_actor
from jobs.common.run import lease, loop, recovery
from jobs.common.run.preemption import StopRequest
from jobs.common.run.state import RunState, read_pointer
from jobs.common.schema.experiment import (
    Experiment,
    LoadedExperiment,
    add_overrides_argument,
    load_experiment,
    parse_experiment,
)
from jobs.common.storage import checkpoints, layout
from jobs.common.storage import objects as storage


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="experiment YAML, e.g. jobs/experiments/ppo-cartpole.yaml")
    source.add_argument(
        "--rerun",
        metavar="NAME",
        help="run experiment NAME again from its run.json in storage (same settings and seed), as NAME-rerun",
    )
    add_overrides_argument(parser, "training.lr=0.001")
    parser.add_argument("--name", help="experiment name (its folder in storage, and the resume key)")
    parser.add_argument("--storage", help="s3://bucket/prefix or a local directory (default: $RL_STORAGE_URI)")
    parser.add_argument("--num-workers", type=int, help="env runners (env_runners.num_env_runners)")
    parser.add_argument("--num-gpus", type=int, help="GPU learners, one GPU each (learners.num_gpus)")
    parser.add_argument(
        "--gpu-fallback",
        choices=("none", "cpu"),
        help="cpu: where the GPU group has no GPUs, run the GPU learners on CPU in the same place",
    )
    parser.add_argument("--dry-run", action="store_true", help="validate and print the resolved Ray settings as JSON")
    parser.add_argument("--check", action="store_true", help="validate the experiment and its storage, then exit")
    return parser.parse_args(argv)


def overrides_from(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    shortcuts = {
        "name": args.name,
        "storage": args.storage,
        "env_runners.num_env_runners": args.num_workers,
        "learners.num_gpus": args.num_gpus,
        "learners.gpu_fallback": args.gpu_fallback,
    }
    overrides += [f"{key}={json.dumps(value)}" for key, value in shortcuts.items() if value is not None]
    return overrides


def check_ray_config(experiment: Experiment, groups: dict[str, GroupCapacity] | None, use_groups: bool = True):
    """Check the plan against the cluster's capacity, then build and validate
    the PPOConfig; Ray's own checks become UserErrors too."""
    check_placement(experiment, groups)
    try:
        config = build_ppo_config(experiment, use_groups=use_groups, groups=groups)
        config.validate()
    except (ValueError, TypeError) as err:
        raise rejected(f"experiment '{experiment.name}'", err) from None
    return config


# --------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------


def progress_line(iteration: int, env_steps: int, ret: float, iter_s: float, time_s: float) -> str:
    shown = "   n/a" if math.isnan(ret) else f"{ret:6.1f}"
    return (
        f"iter {iteration:4d} | env_steps {env_steps:9,d} | return {shown} | "
        f"iter_time {iter_s:5.2f}s | train_time {time_s:7.1f}s"
    )


# --------------------------------------------------------------------------


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loaded = load_rerun(args) if args.rerun else load_experiment(args.config, overrides_from(args))
    experiment = loaded.experiment

    if args.dry_run:
        for note in loaded.notes:
            print(note, file=sys.stderr)
        groups = capacity.from_env()
        config = check_ray_config(experiment, groups)
        configured = experiment.storage or _env_storage()
        plan = {
            "experiment": experiment.name,
            "storage": storage.resolve_storage(configured) if configured else None,
            "stop": experiment.stop.model_dump(exclude_none=True),
            "checkpoint": experiment.checkpoint.model_dump(),
            "ray": resolved_settings(experiment, config, groups),
            "cluster_capacity": {name: vars(group) for name, group in groups.items()}
            if groups
            else f"unknown (no {capacity.CAPACITY_ENV_VAR}; `source .cluster/env` to check against a cluster)",
        }
        print(json.dumps(plan, indent=2))
        return 0

    storage_uri = storage.resolve_storage(experiment.storage)
    storage.check_storage_reachable(storage_uri)
    run = layout.experiment(storage_uri, experiment.name)
    # A damaged or dangling pointer stops here, before anything is submitted.
    latest = read_pointer(run)
    what = f"experiment '{experiment.name}'"
    # One run of an experiment at a time: its lease, taken before anything is written (and, by the
    # check before submission, for the submission id `make train` then submits with).
    held = None if args.check else lease.acquire(run.uri, what)
    if latest and not args.check:
        # The first line of a resumed run says so (before Ray logs anything).
        print(f"resumed from {latest.checkpoint} at iteration {latest.iteration}", flush=True)
    if held and held.took_over:
        print(held.took_over, flush=True)
    try:
        return _run(args, loaded, experiment, run, latest, held)
    finally:
        if held:
            held.release()


def _run(
    args: argparse.Namespace,
    loaded: LoadedExperiment,
    experiment: Experiment,
    run: layout.RunFolder,
    latest: RunState | None,
    held: lease.HeldLease | None,
) -> int:
    groups = capacity.from_env()
    if args.check or runs_in_one_actor(experiment):
        # Ray's own checks of the settings run where RLlib is imported anyway: in the actor that trains
        # a small experiment (jobs/common/rllib/trainer.py), else in this driver, before it trains. The
        # check before submission (`make train`) imports no RLlib for them: 2.7 CPU-seconds, 2-3 s of wall
        # time. The schema keeps RLlib's rules that span keys (minibatch_size <= train_batch_size, ...).
        check_placement(experiment, groups)
    else:
        check_ray_config(experiment, groups)
    if args.check:
        lease.claim_before_submission(run.uri, f"experiment '{experiment.name}'")
        return 0
    assert held is not None
    held.keep()
    state = latest or RunState()
    state.job_id = held.lease.job_id
    for note in loaded.notes:
        print(note, flush=True)
    if latest and loop.already_done(experiment, latest):
        print(f"experiment '{experiment.name}' already met its stop criteria; nothing to train")
        for line in (outcome.read(TrainOutcome, run.outcome) or _outcome_of(experiment, run, latest)).lines():
            print(line, flush=True)
        return 0
    # From here on the driver's output is kept, and run.json written, however the job ends.
    log = DriverLog().start()
    started = datetime.now(UTC)
    ended: dict[str, Any] = {"ended": "failed"}
    try:
        status = train(experiment, run, state, groups, ended, held)
        ended["ended"] = ended.get("stopped") or "succeeded"
        return status
    except KeyboardInterrupt:
        ended["ended"] = "interrupted"
        raise
    finally:
        ended.update(iteration=state.iteration, env_steps=state.env_steps, checkpoint=state.checkpoint)
        record = run_record(experiment.model_dump(by_alias=True, mode="json"), ended, started)
        try:
            keep(run, log, record)
        except UserError as err:  # storage is gone: say so, do not hide the run's own outcome
            print(f"warning: driver.log and run.json not kept: {err}", file=sys.stderr, flush=True)


def load_rerun(args: argparse.Namespace) -> LoadedExperiment:
    """The experiment recorded in NAME's run.json, named NAME-rerun unless --name says otherwise."""
    storage_uri = storage.resolve_storage(args.storage)
    run = layout.experiment(storage_uri, args.rerun)
    record = storage.read_json(run.run_record)
    if not isinstance(record, dict) or not isinstance(record.get("experiment"), dict):
        raise UserError(
            f"--rerun {args.rerun}: no run.json with an experiment at {run.run_record}; "
            "train it first (`make train`), or check RL_STORAGE_URI"
        )
    experiment = dict(record["experiment"])
    experiment["name"] = f"{args.rerun}-rerun"
    experiment.pop("storage", None)
    return parse_experiment(experiment, source=run.run_record, overrides=overrides_from(args))


def recover(
    experiment: Experiment,
    run: layout.RunFolder,
    state: RunState,
    groups: dict[str, GroupCapacity] | None,
    use_groups: bool,
    algo,
    err: BaseException,
    cause: str,
    recoveries: recovery.Recoveries,
):
    """The algorithm lost an actor it cannot do without: a new one, from the run's latest checkpoint.
    A loss while rebuilding (the new actor placed on a node that is going too) counts as one more."""
    job_id = state.job_id
    while True:
        latest = read_pointer(run)
        recoveries.failed(cause, latest.checkpoint if latest else None)  # past max_failures: the job fails here
        source = latest.checkpoint if latest else "the start (no checkpoint yet)"
        print(f"lost {cause}: rebuilding from {source} ({recoveries.count} of at most {recoveries.max_failures}); "
              "waiting until the cluster has room for it", flush=True)  # fmt: skip
        stop_quietly(algo)
        recovery.wait_until_node_is_gone(err)
        restart = latest or RunState()
        for name in RunState.__dataclass_fields__:
            setattr(state, name, getattr(restart, name))
        state.job_id = job_id
        try:
            algo = build_algorithm(experiment, groups, use_groups)
            if state.checkpoint:
                restore(algo, state.checkpoint)
        except Exception as again:
            cause = recovery.lost_actor(again)
            if cause is None:
                raise
            err = again
            continue
        print(f"recovered from {cause}: resumed from {source} at iteration {state.iteration}", flush=True)
        return algo


def _outcome_of(experiment: Experiment, run: layout.RunFolder, state: RunState) -> TrainOutcome:
    """The record of a run that ended before outcome.json was written (an older run)."""
    return TrainOutcome(
        experiment=experiment.name, job_id=state.job_id, checkpoint=state.checkpoint, iterations=state.iteration,
        env_steps=state.env_steps, episode_return_mean=state.episode_return_mean, train_time_s=state.time_s,
        stopped=state.stop_reason or "", checkpointed_at=state.iteration, learning_curve=run.learning_curve,
    )  # fmt: skip


class LeaseGuard(loop.Observer):
    """No checkpoint once this run has lost its lease to another (its writes would mix with the other's)."""

    def __init__(self, held: lease.HeldLease):
        self.held = held

    def before_checkpoint(self, state: RunState) -> None:
        self.held.check()


def _env_storage() -> str | None:
    return os.environ.get(storage.STORAGE_ENV_VAR)


# While no env runner answers, a line this often (the first at once).
WAITING_LINE_EVERY_S = 30.0


class PrintProgress(loop.Observer):
    """A line per iteration; progress.csv beside each checkpoint."""

    def __init__(self, run: layout.RunFolder, state: RunState, suffix: str):
        self.run = run
        self.suffix = suffix
        # Iterations after the checkpoint we resume from were lost with the run that made them.
        self.history = [row for row in report.load_progress(run) if row["iteration"] <= state.iteration]
        self.saved_at = state.iteration if state.checkpoint else None
        self.waiting_since: float | None = None
        self.told_at = 0.0

    def iteration_done(self, state: RunState, seconds: float, result: dict) -> None:
        line = progress_line(state.iteration, state.env_steps, state.return_or_nan, seconds, state.time_s)
        runners = result.get(loop.ENV_RUNNERS_KEY)
        if runners:
            line += f" | env runners {runners[0]}/{runners[1]}"
        print(line + self.suffix, flush=True)
        self.history.append(
            {
                "iteration": state.iteration,
                "env_steps": state.env_steps,
                "episode_return_mean": state.return_or_nan,
                "train_time_s": round(state.time_s, 3),
            }
        )

    def waiting_for_env_runners(self, state: RunState, healthy: int, configured: int, seconds: float) -> None:
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = self.told_at = now
        elif now - self.told_at < WAITING_LINE_EVERY_S:
            return
        self.told_at = now
        print(f"waiting for env runners: no samples for {now - self.waiting_since:.0f}s ({healthy} of {configured} "
              "answer; lost "
              "with their node; Ray starts them again as soon as their group has room: `make cluster-up` repairs a "
              "local node, the docker cluster's autoscaler adds one)", flush=True)  # fmt: skip

    def before_checkpoint(self, state: RunState) -> None:
        report.save_progress(self.run, self.history)

    def reported(self, state: RunState, checkpointed: bool) -> None:
        self.waiting_since = None
        if checkpointed:
            self.saved_at = state.iteration

    def rewind(self, state: RunState) -> None:
        """Back to the checkpoint a rebuilt algorithm resumed from: later rows were lost with the old one."""
        self.history = [row for row in self.history if row["iteration"] <= state.iteration]
        self.saved_at = state.iteration if state.checkpoint else None


def build_algorithm(experiment: Experiment, groups: dict[str, GroupCapacity] | None, use_groups: bool):
    """The algorithm, its actors placed: waits until the cluster has room for them (a lost node repaired,
    or added by the autoscaler for the waiting actors)."""
    from jobs.common.cluster import build_gate
    from jobs.common.cluster.placement import CPU_GROUP, group_request
    from jobs.common.rllib.trainer import RemoteAlgorithm

    if runs_in_one_actor(experiment):
        resources = group_request(CPU_GROUP) if use_groups else {}
        # One actor alone is placed at once: no half-placed job for the build gate to guard against.
        # An actor with remote env runners places those itself, so it takes the gate.
        places_runners = experiment.env_runners.num_env_runners > 0
        with build_gate.building(f"job {experiment.name}") if places_runners else contextlib.nullcontext():
            return RemoteAlgorithm(experiment, resources)
    # One job at a time places its actors: two half-placed jobs would wait for each other forever.
    with build_gate.building(f"job {experiment.name}"):
        return build_algo(build_ppo_config(experiment, use_groups=use_groups, groups=groups))


def restore(algo, checkpoint: str) -> None:
    from jobs.common.rllib.trainer import RemoteAlgorithm

    if isinstance(algo, RemoteAlgorithm):
        algo.restore(checkpoint)
    else:
        checkpoints.restore(algo, checkpoint)


def stop_quietly(algo) -> None:
    """Stop what is left of an algorithm that lost an actor (stopping the lost one may fail too)."""
    try:
        algo.stop()
    except Exception as err:  # noqa: BLE001 - its actors are gone or going: nothing to keep
        print(f"note: stopping the old algorithm: {type(err).__name__}", flush=True)


def train(
    experiment: Experiment,
    run: layout.RunFolder,
    state: RunState,
    groups: dict[str, GroupCapacity] | None,
    ended: dict[str, Any],
    held: lease.HeldLease,
) -> int:
    import ray

    from jobs.common.cluster.placement import cluster_has_groups

    ray.init(logging_level="warning")
    # From here on SIGTERM (`ray job stop`, a pod or node going away) ends the run with a checkpoint.
    # After ray.init(): Ray installs a SIGTERM handler of its own there (a stack dump, then exit).
    stop_request = StopRequest().install()
    use_groups = cluster_has_groups(ray.cluster_resources())
    if not use_groups:
        print("note: this Ray cluster advertises no worker groups (cpu_group/gpu_group); Ray places components freely")
    plan = learner_plan(experiment, groups)
    suffix = ""
    if plan.cpu_stand_in:
        suffix = f" | cpu stand-in for {plan.num_learners} GPU learners"
        print(f"note: the GPU group has no GPUs here: {plan.num_learners} CPU learners stand in (--gpu-fallback cpu)")
    started = time.monotonic()
    algo = build_algorithm(experiment, groups, use_groups)
    timings = {"build_s": time.monotonic() - started}
    if state.checkpoint:
        restore(algo, state.checkpoint)
    storage.write_bytes(run.experiment_file, experiment.to_yaml().encode())

    progress = PrintProgress(run, state, suffix)
    tensorboard = TensorBoardLog(run)
    plots.import_in_background()
    recoveries = recovery.Recoveries(experiment.max_failures)
    started = time.monotonic()
    try:
        observers = loop.Observers(LeaseGuard(held), progress, tensorboard, RayMetrics(experiment.name))
        while True:
            try:
                reason = loop.run(algo, experiment, state, run, observers, stop_request)
                break
            except Exception as err:
                cause = recovery.lost_actor(err)
                if cause is None:
                    raise
                algo = recover(experiment, run, state, groups, use_groups, algo, err, cause, recoveries)
                progress.rewind(state)
        ended["stopped"] = reason
        if recoveries.count:
            ended["recovered"] = recoveries.count
    finally:
        tensorboard.close()
        timings["train_s"] = time.monotonic() - started
        started = time.monotonic()
        stop_quietly(algo)
        # Shut Ray down first so that no actor's log line lands after the last line.
        ray.shutdown()
        timings["shutdown_s"] = time.monotonic() - started

    started = time.monotonic()
    storage.write_bytes(
        run.learning_curve,
        report.learning_curve_png(
            progress.history, f"{experiment.name}: PPO on {experiment.env}", experiment.stop.episode_return_mean
        ),
    )
    timings["report_s"] = time.monotonic() - started
    result = TrainOutcome(
        experiment=experiment.name,
        job_id=state.job_id,
        checkpoint=state.checkpoint,
        iterations=state.iteration,
        env_steps=state.env_steps,
        episode_return_mean=state.episode_return_mean,
        train_time_s=round(state.time_s, 3),
        stopped=str(reason),
        checkpointed_at=progress.saved_at,
        learning_curve=run.learning_curve,
        timings={name: round(seconds, 3) for name, seconds in timings.items()},
        recovered=recoveries.count,
    )
    outcome.write(result, run.outcome)
    print("summary:")
    print(
        key_values(
            [
                ("iterations", str(result.iterations)),
                ("env_steps", f"{result.env_steps:,}"),
                ("return", "n/a" if result.episode_return_mean is None else f"{result.episode_return_mean:.1f}"),
                ("train_time", f"{result.train_time_s:.1f}s"),
                ("stopped", result.stopped),
                ("checkpointed", f"iteration {result.checkpointed_at}"),
                ("learning_curve", result.learning_curve),
                ("job_time", result.job_time()),
                ("outcome", run.outcome),
            ]
        ),
        flush=True,
    )
    for line in result.lines():
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
