"""`python -m controlplane <command>`: the commands behind the Makefile.

up        start the cluster (PROVIDER=local: Ray head + CPU group + GPU group + S3 server)
down      stop exactly what `up` started
status    nodes, groups, the S3 endpoint
submit    check, then `ray job submit` an entrypoint:  submit -- python -m jobs.train --config ...
evaluate  submit jobs.evaluate and fetch its video into results/
jobs      the cluster's Ray jobs, one line each (`ray job list`, shorter)
report    rebuild a sweep's report from S3 alone (no Ray needed) and copy it into results/
tensorboard  sync a run's TensorBoard event files from S3 and serve them on 127.0.0.1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from controlplane.errors import ClusterError
from controlplane.provider import Provider
from controlplane.state import REPO_ROOT, StateDir, default_state_dir
from jobs.common.cluster.ports import DASHBOARD_PORT
from jobs.common.errors import exits_cleanly

PROVIDERS = ("local", "docker", "kuberay", "vm")


# Which overlay's RayCluster a provider runs unless OVERLAY= names another (PROVIDER=vm runs cluster.yaml).
DEFAULT_OVERLAYS = {"local": "local", "docker": "local", "kuberay": "dev"}


def provider_for(args: argparse.Namespace) -> Provider:
    state_dir = StateDir(args.state_dir)
    overlay = args.overlay or DEFAULT_OVERLAYS.get(args.provider)
    if args.provider == "kuberay":
        from controlplane.kuberay.provider import KubeRayProvider

        return KubeRayProvider(state_dir, overlay=overlay, dashboard_port=args.dashboard_port, dry_run=args.dry_run)
    if args.provider == "docker":
        from controlplane.containers.provider import DockerProvider

        return DockerProvider(state_dir, dashboard_port=args.dashboard_port, overlay=overlay)
    if args.provider == "vm":
        from controlplane.vm import VmProvider

        return VmProvider(state_dir, dashboard_port=args.dashboard_port, dry_run=args.dry_run)
    from controlplane.local.provider import LocalProvider

    return LocalProvider(state_dir, dashboard_port=args.dashboard_port, overlay=overlay)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m controlplane", description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default=os.environ.get("PROVIDER") or "local", choices=PROVIDERS)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help="the cluster's state folder (default .cluster, or $CLUSTER_STATE_DIR)",
    )
    parser.add_argument(
        "--dashboard-port",
        type=int,
        default=int(os.environ.get("DASHBOARD_PORT") or DASHBOARD_PORT),
        help=f"Jobs API and dashboard port on 127.0.0.1 (default {DASHBOARD_PORT}, or $DASHBOARD_PORT)",
    )
    parser.add_argument(
        "--overlay",
        default=os.environ.get("OVERLAY") or None,
        help="the RayCluster to run: k8s/overlays/<name> or a folder with a kustomization.yaml "
        "(default: local for PROVIDER=local|docker, dev for kuberay; or $OVERLAY)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=os.environ.get("DRY_RUN", "") not in ("", "0"),
        help="kuberay/vm: print every command and manifest, in order, and change nothing (or DRY_RUN=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the cluster")
    commands.add_parser("down", help="stop the cluster")
    commands.add_parser("status", help="show nodes, groups and S3")
    submit = commands.add_parser("submit", help="check, then `ray job submit` an entrypoint")
    submit.add_argument("--no-wait", action="store_true", help="return once submitted")
    submit.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- python -m jobs.train --config ...")
    commands.add_parser("jobs", help="list the cluster's Ray jobs, one line each")
    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint on the cluster; fetch its video")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="s3://... checkpoint URI")
    source.add_argument("--config", help="experiment YAML: its latest checkpoint")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--output-dir", type=Path, default=REPO_ROOT / "results" / "evaluations")
    board = commands.add_parser("tensorboard", help="sync a run's TensorBoard files from S3 and serve them")
    board.add_argument("--name", required=True, help="an experiment or a sweep")
    board.add_argument("--port", type=int, default=int(os.environ.get("TENSORBOARD_PORT") or 6006))
    board.add_argument("--output-dir", type=Path, default=REPO_ROOT / "results" / "tensorboard")
    report = commands.add_parser("report", help="rebuild a sweep's report from S3; copy it into results/sweeps/")
    report.add_argument("--name", required=True, help="the sweep's name")
    report.add_argument("--output-dir", type=Path, default=REPO_ROOT / "results" / "sweeps")
    args = parser.parse_args(argv)
    if args.command == "submit":
        args.entrypoint = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
        if not args.entrypoint:
            parser.error("submit needs an entrypoint: submit -- python -m jobs.train --config FILE")
    return args


def evaluate(args: argparse.Namespace) -> int:
    """Submit jobs.evaluate of one checkpoint (the experiment's latest, for --config: resolved here, so that
    the result's place is known), then fetch its record and video from storage."""
    from controlplane.submit import submit
    from jobs.common.reports import outcome
    from jobs.common.reports.outcome import EvaluationOutcome
    from jobs.common.storage import layout
    from jobs.common.storage import objects as storage

    state_dir = StateDir(args.state_dir)
    checkpoint = args.checkpoint or newest_checkpoint(state_dir, args.config)
    entrypoint = ["python", "-m", "jobs.evaluate", "--episodes", str(args.episodes), "--checkpoint", checkpoint]
    status = submit(state_dir, entrypoint)
    if status != 0:
        return status
    evaluation = layout.Checkpoint(checkpoint.rstrip("/")).evaluation
    result = outcome.read(EvaluationOutcome, evaluation.result)
    if result is None:
        raise ClusterError(f"the evaluation job left no {evaluation.result}; see `ray job logs`")
    local = args.output_dir / evaluation.run_name / evaluation.name / layout.VIDEO_FILE
    storage.download_file(evaluation.result, local.with_name(layout.RESULT_FILE))
    if result.video is None:
        print(f"no video: {result.no_video}", flush=True)
        return 0
    storage.download_file(result.video, local)
    print(f"video (local copy): {os.path.relpath(local)}", flush=True)
    return 0


def newest_checkpoint(state_dir: StateDir, config: str) -> str:
    """The experiment's latest checkpoint, from its pointer in the cluster's storage (a clear error without one)."""
    from controlplane.submit import load_cluster_env
    from jobs.common.run.state import latest_checkpoint
    from jobs.common.schema.experiment import load_experiment
    from jobs.common.storage import objects as storage

    load_cluster_env(state_dir)
    experiment = load_experiment(config).experiment
    return latest_checkpoint(storage.resolve_storage(experiment.storage), experiment.name, "pass CHECKPOINT=s3://...")


def storage_from_env(args: argparse.Namespace) -> str:
    """The storage the cluster's env file names (or $RL_STORAGE_URI), checked: no Ray cluster needed."""
    from controlplane.submit import load_cluster_env
    from jobs.common.storage import objects as storage

    state_dir = StateDir(args.state_dir)
    if state_dir.env_file.exists():
        load_cluster_env(state_dir)
    storage_uri = storage.resolve_storage(None)
    storage.check_storage_reachable(storage_uri)
    return storage_uri


def sweep_report(args: argparse.Namespace) -> int:
    """Needs only the storage settings from the env file: no Ray cluster."""
    from jobs.common.reports import outcome
    from jobs.common.reports.sweep import build_report
    from jobs.common.storage import layout
    from jobs.common.storage import objects as storage

    storage_uri = storage_from_env(args)
    report = build_report(storage_uri, args.name)
    local = args.output_dir / args.name
    sweep = layout.sweep(storage_uri, args.name)
    result = report.outcome(args.name)
    outcome.write(result, sweep.outcome)
    for name in layout.REPORT_FILES:
        storage.download_file(sweep.report_file(name), local / name)
    print(report.summary)
    print(f"local copy: {os.path.relpath(local)}")
    for line in result.lines():
        print(line, flush=True)
    return 0


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "submit":
        from controlplane.submit import submit

        return submit(StateDir(args.state_dir), args.entrypoint, wait=not args.no_wait)
    if args.command == "evaluate":
        return evaluate(args)
    if args.command == "jobs":
        from controlplane.joblist import print_jobs

        return print_jobs(StateDir(args.state_dir))
    if args.command == "report":
        return sweep_report(args)
    if args.command == "tensorboard":
        from controlplane.tensorboard import serve

        return serve(storage_from_env(args), args.name, args.output_dir, args.port)
    provider = provider_for(args)
    return {"up": provider.up, "down": provider.down, "status": provider.status}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
