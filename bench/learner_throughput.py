"""Learner throughput: one PPO update timed by the driver's clock, CPU vs GPU learners.

    python -m bench.learner_throughput [--experiment jobs/experiments/ppo-halfcheetah.yaml]
        [--iterations 10] [--warmup 2] [--cpu-learner-cpus 4] [--set training.train_batch_size=8192 ...]

Samples one update's worth of episodes once (a local env runner with the
experiment's env and batch), then, for each variant, builds only the learner
group (one remote learner, as `jobs.train` places it) and calls its
`update(episodes=...)` --warmup times, then --iterations times, each timed with
`time.perf_counter()` around the call: episodes shipped to the learner, the
learner connectors (GAE), every SGD step of every epoch, results back. Every
variant trains on the very same episodes.

RLlib's own `timers/learner_update_timer` is not used: it is an exponential
moving average (coefficient 0.01, never reset), so after one slow warm-up
update it reports mostly the warm-up.

Then one more update per variant is timed phase by phase inside the learner
(bench/learner_phases.py: episodes to batch, SGD steps, the rest of the
learner's update, outside the learner), with CUDA syncs at the phase borders;
being on an update of its own, it leaves the timed ones as they were.

Variants: a CPU learner on --cpu-learner-cpus cores (its torch threads are read
inside the learner and reported); where torch.cuda.is_available(): a GPU
learner, with bf16 (learners.mixed_precision), with torch.compile
(learners.torch_compile), with both. Prints a table (and the same as markdown) and writes
bench/out/learner_throughput.json with the date, the device's name and the
torch, CUDA and Ray versions, after each variant too (variants_not_run: what a
run stopped at a deadline did not get to).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import learner_phases
from bench.common import REPO_ROOT, write_json
from jobs.common.errors import UserError, exits_cleanly
from jobs.common.reports.tables import markdown, table
from jobs.common.rllib.ppo import build_ppo_config
from jobs.common.schema.experiment import load_experiment

MIN_ITERATIONS = 5
COLUMNS = (
    "variant",
    "device",
    "cpus",
    "threads",
    "batch",
    "minibatch",
    "sgd_steps",
    "update_s_min",
    "update_s_median",
    "ms_per_sgd_step",
    "samples_trained/s",
    "vs_cpu",
)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    """The CPU, the GPU (with its memory) and the NVIDIA driver this runs on."""
    import torch

    info = {"cpu": cpu_name(), "cpus": os.cpu_count(), "gpus": torch.cuda.device_count(), "gpu": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 1024**3, 1))
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            query = [smi, "--query-gpu=driver_version", "--format=csv,noheader"]
            info["nvidia_driver"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def versions() -> dict:
    import ray
    import torch

    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "ray": ray.__version__,
        "python": platform.python_version(),
    }


def variants(cuda: bool, cpu_learner_cpus: int) -> list[dict]:
    cpu = {"name": "cpu learner", "gpu": False, "learners": {
        "num_gpus": 0, "num_learners": 1, "num_cpus_per_learner": cpu_learner_cpus,
        "mixed_precision": False, "torch_compile": False}}  # fmt: skip
    if not cuda:
        return [cpu]
    gpu = {"num_gpus": 1, "mixed_precision": False, "torch_compile": False}
    return [
        cpu,
        {"name": "gpu learner", "gpu": True, "learners": gpu},
        {"name": "gpu learner + bf16", "gpu": True, "learners": {**gpu, "mixed_precision": True}},
        {"name": "gpu learner + torch.compile", "gpu": True, "learners": {**gpu, "torch_compile": True}},
        {
            "name": "gpu learner + bf16 + torch.compile",
            "gpu": True,
            "learners": {**gpu, "mixed_precision": True, "torch_compile": True},
        },
    ]


def load(path: Path, overrides: list[str], variant: dict | None = None):
    learner_keys = [f"learners.{k}={json.dumps(v)}" for k, v in (variant or {}).get("learners", {}).items()]
    return load_experiment(path, [*overrides, *learner_keys]).experiment


def sample_once(experiment) -> tuple[list, dict, float]:
    """One update's worth of episodes from a local env runner (untrained policy), the project's runner class."""
    config = build_ppo_config(experiment, use_groups=False)
    config.env_runners(num_env_runners=0)  # the local runner makes the env and samples
    runner = config.env_runner_cls(config=config)
    started = time.perf_counter()
    try:
        episodes = runner.sample(num_timesteps=config.total_train_batch_size, random_actions=False)
        spaces = runner.get_spaces()
    finally:
        runner.stop()
    return episodes, spaces, time.perf_counter() - started


def probe(learner) -> dict:
    """Runs inside the learner actor: what it really trains with."""
    import torch

    device = learner.device
    on_gpu = getattr(device, "type", "cpu") == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_gpu else cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def measure(experiment, variant: dict, episodes: list, spaces: dict, warmup: int, iterations: int) -> dict:
    from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

    config = build_ppo_config(experiment, use_groups=False)
    config.validate()
    group = config.build_learner_group(rl_module_spec=config.get_multi_rl_module_spec(spaces=spaces))
    samples = sum(len(episode) for episode in episodes)
    update = {
        "episodes": episodes,
        "timesteps": {NUM_ENV_STEPS_SAMPLED_LIFETIME: samples},
        "num_epochs": config.num_epochs,
        "minibatch_size": config.minibatch_size,
        "shuffle_batch_per_epoch": config.shuffle_batch_per_epoch,
    }
    times = []
    try:
        inside = [result.get() for result in group.foreach_learner(probe)][0]
        for index in range(warmup + iterations):
            started = time.perf_counter()
            group.update(**update)
            seconds = time.perf_counter() - started
            label = "warm-up" if index < warmup else "measured"
            print(f"  {variant['name']}: update {index + 1} ({label}) {seconds:.3f}s", flush=True)
            if index >= warmup:
                times.append(seconds)
        phases = learner_phases.timed_update(group, update)
        print(f"  {variant['name']}: one more update, its phases timed: {phases['update_s']:.3f}s", flush=True)
    finally:
        group.shutdown()
    median = statistics.median(times)
    # Counted, not computed: RLlib's cyclic minibatch iterator takes an extra step where the batch
    # does not split evenly into minibatches.
    sgd_steps = phases["sgd_step_count"]
    return {
        "variant": variant["name"],
        "device": inside["device"],
        "device_name": inside["device_name"],
        "num_cpus_per_learner": config.num_cpus_per_learner,
        "torch_threads": inside["torch_threads"],
        "omp_num_threads": inside["omp_num_threads"],
        "mixed_precision_bf16": variant["learners"]["mixed_precision"],
        "torch_compile": variant["learners"]["torch_compile"],
        "samples_per_update": samples,
        "minibatch_size": config.minibatch_size,
        "num_epochs": config.num_epochs,
        "sgd_steps_per_update": sgd_steps,
        "warmup_updates": warmup,
        "update_s": [round(t, 4) for t in times],
        "update_s_min": round(min(times), 4),
        "update_s_median": round(median, 4),
        "ms_per_sgd_step": round(1000 * median / sgd_steps, 2),
        "samples_trained_per_s": round(samples * config.num_epochs / median),
        "phases": phases,
    }


def table_rows(rows: list[dict]) -> list[list]:
    cpu = next((row for row in rows if row["device"] == "cpu"), None)
    out = []
    for row in rows:
        speedup = f"{cpu['update_s_median'] / row['update_s_median']:.2f}x" if cpu else "n/a"
        device = row["device_name"] if row["device"] == "cpu" else f"{row['device_name']} ({row['device']})"
        out.append([
            row["variant"], device[:40], row["num_cpus_per_learner"], row["torch_threads"],
            f"{row['samples_per_update']:,}", row["minibatch_size"], row["sgd_steps_per_update"],
            f"{row['update_s_min']:.3f}", f"{row['update_s_median']:.3f}", f"{row['ms_per_sgd_step']:.1f}",
            f"{row['samples_trained_per_s']:,}", speedup,
        ])  # fmt: skip
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.learner_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "jobs/experiments/ppo-halfcheetah.yaml")
    parser.add_argument(
        "--iterations", type=int, default=10, help=f"measured updates per variant (>= {MIN_ITERATIONS})"
    )
    parser.add_argument("--warmup", type=int, default=2, help="updates before measuring (compilation, CUDA start-up)")
    parser.add_argument("--cpu-learner-cpus", type=int, default=4, help="num_cpus_per_learner of the CPU baseline")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the experiment for every variant (repeatable)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "learner_throughput.json")
    return parser.parse_args(argv)


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.iterations < MIN_ITERATIONS:
        raise UserError(f"--iterations {args.iterations}: at least {MIN_ITERATIONS} measured updates are needed")
    if args.warmup < 1:
        raise UserError(f"--warmup {args.warmup}: at least 1 (the first update pays for start-up)")
    cpus = os.cpu_count() or 1
    if not 1 <= args.cpu_learner_cpus <= cpus:
        raise UserError(
            f"--cpu-learner-cpus {args.cpu_learner_cpus}: this machine has {cpus} CPUs; "
            f"pass --cpu-learner-cpus {min(cpus, 4)} (the learner would wait for CPUs forever)"
        )

    import ray
    import torch

    cuda = torch.cuda.is_available()
    base = load(args.experiment, args.overrides)
    print(f"{base.env}: sampling one update's batch once with a local env runner", flush=True)
    episodes, spaces, sample_s = sample_once(base)
    samples = sum(len(episode) for episode in episodes)
    print(f"  {samples:,} env steps in {len(episodes)} episode chunks, {sample_s:.1f}s", flush=True)

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="error")
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    to_run = variants(cuda, args.cpu_learner_cpus)
    machine, libraries = hardware(), versions()
    rows, failed = [], []

    def save(left: list[str], quiet: bool) -> None:
        """The JSON so far: written after each variant, so a run stopped at a deadline keeps what it measured."""
        write_json(
            args.out,
            "learner_throughput",
            when,
            rows,
            quiet=quiet,
            experiment=os.path.relpath(args.experiment, REPO_ROOT),
            overrides=args.overrides,
            timing="driver perf_counter around LearnerGroup.update(episodes=...), one remote learner; "
            "min and median over the measured updates, after the warm-up ones",
            sample_s=round(sample_s, 2),
            cuda=cuda,
            gpu_variants_run=cuda,
            failed_variants=failed,
            variants_not_run=left,
            hardware=machine,
            versions=libraries,
        )

    try:
        for index, variant in enumerate(to_run):
            experiment = load(args.experiment, args.overrides, variant)
            print(f"{variant['name']}", flush=True)
            try:
                rows.append(measure(experiment, variant, episodes, spaces, args.warmup, args.iterations))
            except Exception as err:  # one variant failing (say, torch.compile) must not lose the others
                print(f"  {variant['name']} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                failed.append({"variant": variant["name"], "error": f"{type(err).__name__}: {err}"[:2000]})
            save([later["name"] for later in to_run[index + 1 :]], quiet=True)
    finally:
        ray.shutdown()

    print()
    print(table(COLUMNS, table_rows(rows)))
    print()
    print(markdown(COLUMNS, table_rows(rows)))
    print()
    print("Where an update's time goes (one more update per variant, timed phase by phase; seconds, share):")
    print(table(learner_phases.PHASE_COLUMNS, learner_phases.phase_rows(rows)))
    print()
    for row in rows:
        print(f"{row['variant']}: {row['torch_threads']} torch threads on {row['num_cpus_per_learner']} CPUs.")
    for failure in failed:
        print(f"error: {failure['variant']} not measured: {failure['error'].splitlines()[0]}", file=sys.stderr)
    if not cuda:
        print("GPU variants not run: no CUDA device here (torch.cuda.is_available() is False).")
    save([], quiet=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
