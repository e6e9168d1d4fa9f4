"""Run a Ray Tune sweep of PPO from a sweep file; everything lands in S3.

    python -m jobs.sweep --config jobs/sweeps/cartpole-seed.yaml [--set num_samples=2 ...]
    python -m jobs.sweep --config ... --dry-run     # validate, print the plan, exit

Runs as a Ray job (`make sweep`, or `ray job submit --working-dir . -- python -m jobs.sweep ...`).
Storage, per sweep name: Tune's experiment, a folder per trial with its RLlib
checkpoints, and the report (jobs/common/storage/layout.py).
Rerunning a sweep whose experiment is in storage resumes it (Tuner.restore):
unfinished and errored trials continue from their last checkpoint; finished
ones are not run again. The result is `<sweep>/outcome.json`
(jobs/common/reports/outcome.py); the last two lines are `report: <uri>` and
`best_checkpoint: <uri>`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
from typing import Any

from jobs.common.cluster import capacity
from jobs.common.cluster.fits import check_trial_fits
from jobs.common.errors import UserError, exits_cleanly
from jobs.common.reports import outcome, plots
from jobs.common.reports.provenance import DriverLog
from jobs.common.reports.sweep import ReportContext, build_report, save_context
from jobs.common.rllib.ppo import build_ppo_config, rejected
from jobs.common.run import lease
from jobs.common.schema.experiment import add_overrides_argument
from jobs.common.schema.sweep import Sweep, load_sweep
from jobs.common.storage import layout
from jobs.common.storage import objects as storage

EXIT_INTERRUPTED = 130


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="sweep YAML, e.g. jobs/sweeps/cartpole-seed.yaml")
    add_overrides_argument(parser, "num_samples=2")
    parser.add_argument("--name", help="sweep name (its folder in storage, and the resume key)")
    parser.add_argument("--storage", help="s3://bucket/prefix or a local directory (default: $RL_STORAGE_URI)")
    parser.add_argument("--resume", action="store_true", help="fail unless the sweep exists in storage to resume")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the plan as JSON")
    parser.add_argument("--check", action="store_true", help="validate the sweep and its storage, then exit")
    return parser.parse_args(argv)


def overrides_from(args: argparse.Namespace) -> list[str]:
    shortcuts = {"name": args.name, "storage": args.storage}
    return list(args.overrides) + [f"{k}={json.dumps(v)}" for k, v in shortcuts.items() if v is not None]


def check_ray_settings(sweep: Sweep) -> None:
    try:
        build_ppo_config(sweep.base_experiment, in_process_gpus=sweep.spec.resources_per_trial.gpus).validate()
    except (ValueError, TypeError) as err:
        raise rejected(f"sweep '{sweep.source}'", err, "the base experiment's settings") from None


def plan(sweep: Sweep, storage_uri: str | None, groups) -> dict[str, Any]:
    spec = sweep.spec
    return {
        "sweep": sweep.name,
        "storage": layout.sweep(storage_uri, sweep.name).uri if storage_uri else None,
        "trials": sweep.trial_count(),
        "search_space": {d.key: d.describe() for d in sweep.dimensions},
        "search": spec.search.model_dump(),
        "scheduler": spec.scheduler.model_dump(),
        "metric": sweep.metric,
        "mode": spec.mode,
        "best": {"metric": sweep.best_metric, "mode": sweep.best_mode},
        "resources_per_trial": spec.resources_per_trial.model_dump(),
        "max_concurrent_trials": spec.max_concurrent_trials,
        "max_failures": spec.max_failures,
        "base_experiment": json.loads(json.dumps(sweep.base_experiment.model_dump(by_alias=True, mode="json"))),
        "cluster_capacity": {n: vars(g) for n, g in groups.items()} if groups else None,
    }


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sweep = load_sweep(args.config, overrides_from(args))
    groups = capacity.from_env()
    check_trial_fits(sweep, groups)
    if not args.check:
        # Before any trial starts (else each would fail alike); not before submission: the check there
        # imports no RLlib (2.7 CPU-seconds), as jobs/train.py's does not.
        check_ray_settings(sweep)
    if args.dry_run:
        configured = sweep.spec.storage or os.environ.get(storage.STORAGE_ENV_VAR)
        print(json.dumps(plan(sweep, storage.resolve_storage(configured) if configured else None, groups), indent=2))
        return 0

    storage_uri = storage.resolve_storage(sweep.spec.storage)
    storage.check_storage_reachable(storage_uri)
    what = f"sweep '{sweep.name}'"
    folder = layout.sweep(storage_uri, sweep.name)
    if args.check:
        if args.resume and not _exists(storage_uri, sweep.name):
            raise UserError(_nothing_to_resume(storage_uri, sweep.name))
        lease.claim_before_submission(folder.uri, what)
        return 0
    # One run of a sweep at a time: its lease, taken before anything is written.
    held = lease.acquire(folder.uri, what)
    try:
        return run(sweep, storage_uri, args.resume, held.keep())
    finally:
        held.release()


def _exists(storage_uri: str, name: str) -> bool:
    from ray.tune import Tuner

    return Tuner.can_restore(layout.sweep(storage_uri, name).tune)


def _nothing_to_resume(storage_uri: str, name: str) -> str:
    return f"--resume: sweep '{name}' has no Tune experiment at {layout.sweep(storage_uri, name).tune} to resume"


def run(sweep: Sweep, storage_uri: str, must_resume: bool, held: lease.HeldLease | None = None) -> int:
    folder = layout.sweep(storage_uri, sweep.name)
    experiment_path = folder.tune
    resuming = _exists(storage_uri, sweep.name)
    if must_resume and not resuming:
        raise UserError(_nothing_to_resume(storage_uri, sweep.name))
    if resuming:
        # The first line of a resumed sweep says so (before Ray logs anything).
        print(f"resumed from {experiment_path}", flush=True)
    if held and held.took_over:
        print(held.took_over, flush=True)
    for note in sweep.notes:
        print(note, flush=True)

    # From here on the driver's output (the trials' lines included) is kept beside the sweep, however it ends.
    log = DriverLog().start()
    try:
        return _run(sweep, storage_uri, folder, resuming)
    finally:
        try:
            log.write_to(folder.driver_log)
        except UserError as err:  # storage is gone: say so, do not hide the sweep's own outcome
            print(f"warning: driver.log not kept: {err}", file=sys.stderr, flush=True)


def _run(sweep: Sweep, storage_uri: str, folder: layout.SweepFolder, resuming: bool) -> int:
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from jobs.common.reports.sweep import short_names
    from jobs.common.sweeps.progress import SweepProgress
    from jobs.common.sweeps.trial import run_trial
    from jobs.common.sweeps.tune import param_space, scheduler, search_algorithm

    experiment_path = folder.tune
    keep_s3_keys_out_of_trial_runtime_envs()
    ray.init(logging_level="warning")
    from jobs.common.cluster.placement import CPU_GROUP, GPU_GROUP, cluster_has_groups, group_request

    wanted = sweep.spec.resources_per_trial
    bundle: dict[str, float] = {"CPU": wanted.cpus, "GPU": wanted.gpus}
    if cluster_has_groups(ray.cluster_resources()):
        bundle.update(group_request(GPU_GROUP if wanted.gpus > 0 else CPU_GROUP))
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            base=sweep.base,
            encoded_keys=sweep.encoded_keys,
            storage_uri=storage_uri,
            sweep_name=sweep.name,
            gpus=wanted.gpus,
            job_id=lease.current_job_id(),
        ),
        tune.PlacementGroupFactory([bundle]),
    )
    # Of Tune's own per-trial loggers, keep result.json: the report reads it (ExperimentAnalysis).
    # Its progress.csv and TensorBoard files would repeat that and the trials' own TensorBoard
    # logs, and Tune uploads each of its files again every time it saves the experiment's state.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    context = ReportContext.of(sweep)
    save_context(storage_uri, context)
    progress = SweepProgress(sweep.trial_count(), sweep.metric, sweep.spec.mode, short_names(context))
    # Tune's own writes (the experiment's state, the trials' results) retried as ours are: an S3 server
    # frozen for tens of seconds holds them up, never fails them.
    tune_fs, tune_path = storage.tune_filesystem(folder.uri)
    run_config = tune.RunConfig(
        name=folder.tune_name,
        storage_path=tune_path,
        storage_filesystem=tune_fs,
        failure_config=tune.FailureConfig(max_failures=sweep.spec.max_failures),
        callbacks=[progress, JsonLoggerCallback()],
        verbose=0,
    )
    if resuming:
        tuner = tune.Tuner.restore(
            storage.tune_filesystem(experiment_path)[1],
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            restart_errored=False,
            storage_filesystem=tune_fs,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(sweep),
            tune_config=tune.TuneConfig(
                metric=sweep.metric,
                mode=sweep.spec.mode,
                search_alg=search_algorithm(sweep),
                scheduler=scheduler(sweep),
                num_samples=sweep.spec.num_samples,
                max_concurrent_trials=sweep.spec.max_concurrent_trials,
                reuse_actors=True,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=run_config,
        )
    # `ray job stop` sends SIGTERM: let Tune stop the way it does on Ctrl+C,
    # saving its experiment state to storage before the job ends.
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    plots.import_in_background()  # for the report's figure, drawn after the last trial
    tuner.fit()
    ray.shutdown()

    report = build_report(storage_uri, sweep.name)
    print(report.summary, flush=True)
    result = report.outcome(sweep.name)
    outcome.write(result, folder.outcome)
    if result.unfinished:
        print(f"sweep interrupted: {result.unfinished} trials unfinished; rerun the same command to resume", flush=True)
    # Linux reports ru_maxrss in KiB. A driver that grows with the trial count would show here.
    print(f"driver peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", flush=True)
    for line in result.lines():
        print(line, flush=True)
    return EXIT_INTERRUPTED if result.unfinished else 0


# What Tune copies from the driver's environment into every trial actor's runtime_env.
S3_KEY_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"}


def keep_s3_keys_out_of_trial_runtime_envs() -> None:
    """Stop Tune from copying the S3 keys into its trial actors' runtime_env.

    Ray logs every runtime_env in plain text (runtime_env_agent.log on each node)
    and keeps it in the GCS actor table. The copy is not needed: every node
    already has the keys in its environment (a Kubernetes Secret, or the local
    provider's server environment), and trial workers inherit it.
    """
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = class_cache.ENV_VARS_TO_PROPAGATE - S3_KEY_VARS


def trial_dirname(trial) -> str:
    return trial.trial_id


if __name__ == "__main__":
    sys.exit(main())
