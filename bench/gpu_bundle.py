"""The GPU check's packages for a CUDA machine that has Python and torch but no Ray.

    python -m bench.gpu_bundle                  # or: make gpu-bundle
    python -m bench.gpu_bundle --verify         # and try it here, in a venv shaped like that machine

A lent GPU machine (docs/benchmarks.md, "GPU figures") runs Python 3.12 with a
CUDA build of torch and a scientific stack (numpy, pandas, pyarrow, scipy,
pyyaml, requests, aiohttp, grpcio, protobuf, ...), but no Ray, and it cannot
reach a package index. This packs the rest, at requirements.lock's versions,
as x86-64 manylinux wheels for that Python, installed into one folder
(`uv pip install --target`) and packed as .gpu-bundle/site-cp312.tar.xz
(~55 MB, under the 64 MiB a device call carries with the working tree).
bench/gpu_device_run.sh unpacks it there and runs `python -m bench.gpu_check`.

--verify builds the same bundle for this machine's Python too, makes a venv
with only the lock's packages that the GPU machine's image also holds (CPU
torch in place of CUDA torch), and runs the GPU check's two parts on the CPU
with the bundle on PYTHONPATH: a small learner benchmark and one iteration of
the GPU experiment through jobs.train. A package the bundle misses fails it here.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from controlplane.state import REPO_ROOT
from jobs.common.errors import UserError, exits_cleanly

LOCK = REPO_ROOT / "requirements.lock"
OUT_DIR = REPO_ROOT / ".gpu-bundle"

# What the GPU check imports that the GPU machine's image lacks: Ray and what RLlib and Tune need
# beyond that image, the MuJoCo envs, pydantic (Ray's and ours), boto3 (jobs' storage).
BUNDLED = (
    "ray",
    "gymnasium", "farama-notifications", "mujoco", "glfw", "pyopengl",
    "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions",
    "jsonschema", "jsonschema-specifications", "referencing", "rpds-py",
    "lz4", "ormsgpack", "dm-tree", "tensorboardx",
    "boto3", "botocore", "s3transfer", "jmespath",
)  # fmt: skip

# The lock's packages that the GPU machine's image already holds (its package list as read on
# 2026-11-17, docs in the device notes), torch among them. --verify's stand-in venv has only these.
ON_GPU_MACHINE = (
    "absl-py", "aiohappyeyeballs", "aiohttp", "aiosignal", "attrs", "certifi", "charset-normalizer", "click",
    "cloudpickle", "contourpy", "cycler", "etils", "filelock", "fonttools", "frozenlist", "fsspec", "grpcio",
    "idna", "imageio", "jinja2", "kiwisolver", "markdown", "markupsafe", "matplotlib", "mpmath", "msgpack",
    "multidict", "networkx", "numpy", "packaging", "pandas", "pillow", "prometheus-client", "propcache",
    "protobuf", "pyarrow", "pygments", "pyparsing", "python-dateutil", "pyyaml", "requests", "scipy",
    "setuptools", "six", "sortedcontainers", "sympy", "tensorboard", "tensorboard-data-server", "torch", "tqdm",
    "urllib3", "werkzeug", "wrapt", "yarl", "zipp",
)  # fmt: skip

# The manylinux tag of the wheels: glibc 2.28 or newer runs them (the GPU machine's image is Ubuntu 24.04).
PLATFORM = "x86_64-manylinux_2_28"
# Not needed to run and a third of the unpacked size: Ray's Java jars and the dashboard's web UI.
PRUNED = ("ray/jars", "ray/dashboard/client/build")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins(names: tuple[str, ...], lock: Path = LOCK) -> list[str]:
    """`name==version` of each name, from the lock; every name must be in it."""
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            pins[normalise(match.group(1))] = f"{match.group(1)}=={match.group(2)}"
    missing = [name for name in names if normalise(name) not in pins]
    if missing:
        raise UserError(
            f"{lock.name} has no pin for {', '.join(missing)}: run `make lock`, or take the names "
            "out of bench/gpu_bundle.py if the project no longer needs them"
        )
    return [pins[normalise(name)] for name in names]


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        raise UserError("uv is not installed: run `make venv` (the lock installs it) or `pip install uv`")
    return found


def install_site(folder: Path, python_version: str) -> None:
    """The bundled packages' wheels for that Python, installed into folder, then pruned."""
    pins = locked_pins(BUNDLED)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("\n".join(pins) + "\n")
        requirements.flush()
        command = [
            uv(), "pip", "install", "--quiet", "--no-deps", "--only-binary", ":all:", "--target", str(folder),
            "--python-version", python_version, "--python-platform", PLATFORM, "-r", requirements.name,
        ]  # fmt: skip
        print("$ " + " ".join(command), flush=True)
        if subprocess.run(command).returncode != 0:
            raise UserError(
                f"uv found no {PLATFORM} wheel for Python {python_version} of one of: "
                f"{' '.join(pins)} (its message is above); nothing was packed"
            )
    for pruned in PRUNED:
        shutil.rmtree(folder / pruned, ignore_errors=True)
    for cache in folder.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def pack(folder: Path, archive: Path) -> None:
    """folder's contents as archive (.tar.xz), written beside it and renamed: never half-written."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    env = {**os.environ, "XZ_OPT": "-6 -T0"}
    subprocess.run(["tar", "-cJf", str(partial), "-C", str(folder), "."], check=True, env=env)
    partial.replace(archive)


def build(python_version: str, out_dir: Path) -> Path:
    tag = "cp" + python_version.replace(".", "")
    archive = out_dir / f"site-{tag}.tar.xz"
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-") as scratch:
        site = Path(scratch) / "site"
        install_site(site, python_version)
        print(f"packing {archive}", flush=True)
        pack(site, archive)
    print(f"{archive.name}: {archive.stat().st_size / 2**20:.1f} MiB", flush=True)
    return archive


def verify() -> None:
    """Run the GPU check's two parts on the CPU, with the bundle and only the image's packages."""
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-verify-") as scratch:
        scratch = Path(scratch)
        # Built for this Python, in scratch: .gpu-bundle/ keeps only what travels to the GPU machine.
        archive = build(python_version, scratch)
        site, venv, storage = scratch / "site", scratch / "venv", scratch / "storage"
        site.mkdir()
        subprocess.run(["tar", "-xJf", str(archive), "-C", str(site)], check=True)
        subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as image:
            image.write("\n".join(locked_pins(ON_GPU_MACHINE)) + "\n")
            image.flush()
            # pip's find-links, as `make venv` hands them to uv: where a machine keeps a CPU torch.
            links = [arg for link in os.environ.get("PIP_FIND_LINKS", "").split() for arg in ("--find-links", link)]
            command = [uv(), "pip", "install", "--quiet", "--no-deps", "--python", str(venv / "bin" / "python"),
                       *links, "-r", image.name]  # fmt: skip
            subprocess.run(command, check=True)
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "RAY_ADDRESS")} | {
            "PYTHONPATH": f"{site}:{REPO_ROOT}",
            "PYTHONUNBUFFERED": "1",
        }
        python = str(venv / "bin" / "python")
        checks = [
            [python, "-m", "bench.learner_throughput", "--experiment", "jobs/experiments/ppo-halfcheetah.yaml",
             "--iterations", "5", "--warmup", "1", "--cpu-learner-cpus", "1",
             "--set", "training.train_batch_size=2048", "--set", "training.minibatch_size=512",
             "--set", "training.num_epochs=1", "--set", "env_runners.num_envs_per_env_runner=4",
             "--out", str(scratch / "learner.json")],
            [python, "-m", "jobs.train", "--config", "jobs/experiments/ppo-halfcheetah.yaml", "--num-gpus", "0",
             "--num-workers", "1", "--storage", str(storage), "--name", "bundle-check",
             "--set", "stop.iterations=1", "--set", "training.train_batch_size=2048",
             "--set", "training.minibatch_size=512", "--set", "env_runners.num_envs_per_env_runner=4",
             "--set", "learners.num_cpus_per_learner=1"],
        ]  # fmt: skip
        for command in checks:
            print("$ " + " ".join(command[1:]), flush=True)
            done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise UserError(
                    f"with only the bundle and the GPU machine's packages, `{' '.join(command[1:4])} ...` "
                    f"exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
                )
        print("verified: the learner benchmark and a jobs.train iteration ran with the bundle", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--verify", action="store_true", help="also build it for this Python and run the check's parts")
    return parser.parse_args(argv)


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not re.fullmatch(r"3\.\d{1,2}", args.python_version):
        raise UserError(f"--python-version {args.python_version!r}: give major.minor, e.g. 3.12")
    build(args.python_version, args.out_dir)
    if args.verify:
        verify()
    return 0


if __name__ == "__main__":
    sys.exit(main())
