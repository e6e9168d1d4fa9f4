"""The GPU check: is the GPU learner worth it here? One command, under 8 minutes.

    python -m bench.gpu_check          # or: make gpu-check

On a machine with CUDA (and a CUDA build of torch) it runs, in a local
in-process Ray (no cluster, no worker groups, storage in a temporary folder):

  1. the learner benchmark (bench/learner_throughput.py, 5 measured updates per
     variant): a 4-core CPU learner next to a GPU learner, with bf16, with
     torch.compile, with both, all on the same episodes of the GPU experiment, and where
     each variant's update spends its time (bench/learner_phases.py);
  2. a short training run of the GPU experiment through the project's own
     entrypoint: `python -m jobs.train --config jobs/experiments/ppo-halfcheetah.yaml
     --num-gpus 1 --num-workers 12 --set stop.time_s=...`, whose progress lines
     give env steps/s end to end and the return.

Prints the learner table, then the targets (GPU learner >= 10x the 4-core CPU
learner's samples/s; >= 20,000 env steps/s end to end; return 3,000 within 15
minutes, which a short run can only show on the way) and writes
bench/out/gpu.json with the date, the hardware and the versions. Without CUDA
it exits 1 at once, saying why.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import learner_throughput
from bench.common import REPO_ROOT, write_json
from jobs.common.reports.tables import table
from jobs.common.schema.experiment import load_experiment

BUDGET_S = 8 * 60
BENCH_TIMEOUT_S = 260
# Building the algorithm (12 env runners, the learner), the final checkpoint, shutdown.
TRAIN_OVERHEAD_S = 90
TARGET_SPEEDUP = 10.0
TARGET_ENV_STEPS_PER_S = 20_000
TARGET_RETURN = 3000.0
TARGET_RETURN_WITHIN_S = 15 * 60


def read_progress(storage_uri: str, name: str) -> list[dict]:
    """The run's iterations as it recorded them (its progress.csv: written with every checkpoint)."""
    from jobs.common.reports.training import load_progress
    from jobs.common.storage import layout

    return [
        {
            "iteration": row["iteration"],
            "env_steps": row["env_steps"],
            "return": None if math.isnan(row["episode_return_mean"]) else row["episode_return_mean"],
            "train_time_s": row["train_time_s"],
        }
        for row in load_progress(layout.experiment(storage_uri, name))
    ]


def training_figures(progress: list[dict]) -> dict:
    """Env steps/s (overall, and after the first iteration, which pays for start-up) and returns."""
    if not progress:
        return {"iterations": 0}
    last = progress[-1]
    returns = [row["return"] for row in progress if row["return"] is not None]
    reached = next((row for row in progress if row["return"] is not None and row["return"] >= TARGET_RETURN), None)
    figures = {
        "iterations": last["iteration"],
        "env_steps": last["env_steps"],
        "train_time_s": last["train_time_s"],
        "env_steps_per_s": round(last["env_steps"] / last["train_time_s"]) if last["train_time_s"] else None,
        "env_steps_per_s_after_first": None,
        "return_last": returns[-1] if returns else None,
        "return_best": max(returns) if returns else None,
        f"time_to_{TARGET_RETURN:.0f}_s": reached["train_time_s"] if reached else None,
    }
    first = progress[0]
    if len(progress) > 1 and last["train_time_s"] > first["train_time_s"]:
        steps = last["env_steps"] - first["env_steps"]
        figures["env_steps_per_s_after_first"] = round(steps / (last["train_time_s"] - first["train_time_s"]))
    return figures


def targets(learner_rows: list[dict], training: dict, train_s: float) -> list[list[str]]:
    """[check, measured, target, verdict] rows."""
    rows = []
    cpu = next((row for row in learner_rows if row["device"] == "cpu"), None)
    gpus = [row for row in learner_rows if row["device"] != "cpu"]
    if cpu and gpus:
        best = max(gpus, key=lambda row: row["samples_trained_per_s"])
        ratio = best["samples_trained_per_s"] / cpu["samples_trained_per_s"]
        rows.append([
            "GPU learner vs CPU learner",
            f"{ratio:.1f}x ({best['variant']}: {best['samples_trained_per_s']:,} vs "
            f"{cpu['samples_trained_per_s']:,} samples/s on {cpu['num_cpus_per_learner']} CPUs)",
            f">= {TARGET_SPEEDUP:g}x", "met" if ratio >= TARGET_SPEEDUP else "NOT met",
        ])  # fmt: skip
    else:
        rows.append(["GPU learner vs CPU learner", "not measured", f">= {TARGET_SPEEDUP:g}x", "unknown"])
    rate = training.get("env_steps_per_s_after_first") or training.get("env_steps_per_s")
    if rate:
        rows.append([
            "env steps/s end to end", f"{rate:,} (after the first iteration)",
            f">= {TARGET_ENV_STEPS_PER_S:,}", "met" if rate >= TARGET_ENV_STEPS_PER_S else "NOT met",
        ])  # fmt: skip
    else:
        rows.append(["env steps/s end to end", "not measured", f">= {TARGET_ENV_STEPS_PER_S:,}", "unknown"])
    reached = training.get(f"time_to_{TARGET_RETURN:.0f}_s")
    best = training.get("return_best")
    if reached is not None:
        verdict = "met" if reached <= TARGET_RETURN_WITHIN_S else "NOT met"
        rows.append(["return 3,000", f"at {reached:.0f}s", "within 900s", verdict])
    else:
        shown = "n/a" if best is None else f"best {best:.1f}"
        verdict = "unknown (run too short: a full run is `make train EXPERIMENT=...`)"
        if train_s >= TARGET_RETURN_WITHIN_S:
            verdict = "NOT met"
        rows.append(["return 3,000", f"{shown} in {training.get('train_time_s', 0):.0f}s", "within 900s", verdict])
    return rows


def learner_failures(status: int | None, learner: dict) -> list[str]:
    """What went wrong in the learner benchmark: its exit (None: timed out), each failed variant, and
    the variants it did not get to (its JSON is written after each variant, so a timeout keeps the rest)."""
    failures = []
    if status != 0:
        failures.append(f"learner benchmark {'timed out' if status is None else f'exited {status}'}")
    failures += [
        f"learner variant {f['variant']}: {(f['error'].splitlines() or [''])[0]}"
        for f in learner.get("failed_variants", [])
    ]
    if learner.get("variants_not_run"):
        failures.append(f"learner variants not run: {', '.join(learner['variants_not_run'])}")
    return failures


def run_streaming(command: list[str], timeout_s: float, prefix: str) -> tuple[int | None, list[str]]:
    """Run a command in its own process group, echo its output, stop it (by its id) at the deadline.
    Returns (exit status, or None when it ran out of time; its output lines)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RL_WORKER_GROUPS")}
    print("$ " + " ".join(command), flush=True)
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []

    def echo() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            print(prefix + lines[-1], flush=True)

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    try:
        process.wait(timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop(process)
    reader.join(10)
    return (None if timed_out else process.returncode), lines


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the group we started, then SIGKILL after a grace period."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def no_cuda_reason() -> str | None:
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None); install a CUDA build"
    return (
        f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device "
        "(torch.cuda.is_available() is False)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="jobs/experiments/ppo-halfcheetah.yaml")
    parser.add_argument("--num-workers", type=int, default=12, help="env runners of the training run")
    parser.add_argument("--train-seconds", type=float, default=150, help="stop.time_s of the training run")
    parser.add_argument("--iterations", type=int, default=5, help="measured updates per learner variant")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "gpu.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = no_cuda_reason()
    if reason:
        print(f"error: bench.gpu_check needs a CUDA GPU: {reason}. Nothing was run.", file=sys.stderr, flush=True)
        return 1
    started = time.monotonic()
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    cpus = os.cpu_count() or 1
    failures = []

    # 1. The learner benchmark.
    bench_out = REPO_ROOT / "bench" / "out" / "learner_throughput.json"
    bench_cmd = [
        sys.executable, "-m", "bench.learner_throughput", "--experiment", args.experiment,
        "--iterations", str(args.iterations), "--warmup", "2", "--cpu-learner-cpus", str(min(4, cpus)),
        "--out", str(bench_out),
    ]  # fmt: skip
    bench_started = time.monotonic()
    bench_out.unlink(missing_ok=True)  # an earlier run's figures must not pass for this one's
    status, _ = run_streaming(bench_cmd, BENCH_TIMEOUT_S, "  bench | ")
    # Written even when a variant failed (exit 1): the others' figures are in it.
    learner = json.loads(bench_out.read_text()) if bench_out.exists() else {}
    failures += learner_failures(status, learner)
    bench_s = time.monotonic() - bench_started

    # 2. A short training run of the GPU experiment through jobs.train, in a local Ray.
    left = BUDGET_S - (time.monotonic() - started)
    train_s = max(30.0, min(args.train_seconds, left - TRAIN_OVERHEAD_S - 20))
    # The run's own limit is stop.time_s; this one only stops a run that hangs (inside the budget).
    train_timeout_s = max(train_s + 30, left - 10)
    learner_cpus = load_experiment(REPO_ROOT / args.experiment).experiment.learners.num_cpus_per_learner
    workers = min(args.num_workers, max(1, cpus - learner_cpus - 1))
    if workers != args.num_workers:
        print(f"note: {cpus} CPUs here: {workers} env runners instead of {args.num_workers}", flush=True)
    storage = tempfile.mkdtemp(prefix="gpu-check-")
    name = "gpu-check-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    train_cmd = [
        sys.executable, "-m", "jobs.train", "--config", args.experiment, "--num-gpus", "1",
        "--num-workers", str(workers), "--name", name, "--storage", storage,
        "--set", f"stop.time_s={train_s:g}", "--set", "checkpoint.every_n_iterations=100000",
    ]  # fmt: skip
    try:
        status, _ = run_streaming(train_cmd, train_timeout_s, "  train | ")
        progress = read_progress(storage, name)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    training = training_figures(progress)
    if status != 0:
        failures.append(f"training run {'timed out' if status is None else f'exited {status}'}")
    if not progress:
        failures.append("training run recorded no iteration (no progress.csv)")

    rows = targets(learner.get("rows", []), training, train_s)
    print()
    if learner:
        from bench.learner_phases import PHASE_COLUMNS, phase_rows

        print(table(learner_throughput.COLUMNS, learner_throughput.table_rows(learner["rows"])))
        print()
        print("Where an update's time goes (seconds, share):")
        print(table(PHASE_COLUMNS, phase_rows(learner["rows"])))
        print()
    print(table(["check", "measured", "target", "verdict"], rows))
    total_s = time.monotonic() - started
    print(f"\n{total_s:.0f}s in all (learner benchmark {bench_s:.0f}s)")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    write_json(
        args.out,
        "gpu_check",
        when,
        [dict(zip(["check", "measured", "target", "verdict"], row, strict=True)) for row in rows],
        hardware=learner_throughput.hardware(),
        versions=learner_throughput.versions(),
        learner_throughput=learner.get("rows", []),
        training={
            "command": " ".join(train_cmd[1:]),
            "stop_time_s": train_s,
            **training,
            "progress": progress,
        },
        failures=failures,
        duration_s=round(total_s),
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
