"""The GPU check's bundle for a CUDA machine without Ray: pinned by the lock, refused clearly when it
cannot be built, and (slow) verified by running the check's parts with only the bundle and the GPU
machine's packages."""

import os
import subprocess
import sys

import pytest

from bench import gpu_bundle
from jobs.common.errors import UserError
from tests.conftest import REPO_ROOT


def test_every_bundled_package_takes_the_locks_version():
    pins = gpu_bundle.locked_pins(gpu_bundle.BUNDLED)
    assert len(pins) == len(gpu_bundle.BUNDLED)
    assert "ray==2.60.0" in pins
    lock = (REPO_ROOT / "requirements.lock").read_text()
    assert all(f"\n{pin}" in lock for pin in pins)


def test_the_bundle_leaves_to_the_gpu_machine_what_it_has_torch_first():
    bundled = {gpu_bundle.normalise(name) for name in gpu_bundle.BUNDLED}
    on_machine = {gpu_bundle.normalise(name) for name in gpu_bundle.ON_GPU_MACHINE}
    assert not bundled & on_machine
    assert {"torch", "numpy", "pyarrow", "pandas"} <= on_machine
    gpu_bundle.locked_pins(gpu_bundle.ON_GPU_MACHINE)  # all in the lock, or --verify could not stand in for it


def test_a_package_missing_from_the_lock_is_named(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("ray==2.60.0\n    # via -r requirements.in\nlz4==4.4.5\n")
    assert gpu_bundle.locked_pins(("Ray", "LZ4"), lock) == ["ray==2.60.0", "lz4==4.4.5"]
    with pytest.raises(UserError, match=r"no pin for dm-tree, ormsgpack: run `make lock`"):
        gpu_bundle.locked_pins(("ray", "dm-tree", "ormsgpack"), lock)


def test_a_python_version_that_is_not_major_minor_is_refused(capsys, tmp_path):
    assert gpu_bundle.main(["--python-version", "312", "--out-dir", str(tmp_path)]) == 2
    assert "--python-version '312': give major.minor, e.g. 3.12" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_device_script_without_a_bundle_says_what_to_run(tmp_path):
    env = {**os.environ, "GPU_BUNDLE": str(tmp_path / "absent.tar.xz"), "OUT": str(tmp_path / "out")}
    done = subprocess.run(
        ["bash", "bench/gpu_device_run.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "absent.tar.xz is missing: run `make gpu-bundle` here first" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_bundle_runs_the_checks_parts_with_only_the_gpu_machines_packages(tmp_path):
    """Downloads the wheels (PyPI) for 3.12 and this Python; about 2 minutes on 2 cores."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_bundle", "--verify", "--out-dir", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "verified: the learner benchmark and a jobs.train iteration ran with the bundle" in done.stdout
    (archive,) = tmp_path.iterdir()
    assert archive.name == "site-cp312.tar.xz"
    # A device call carries 64 MiB with the working tree (about 2 MiB).
    assert archive.stat().st_size < 60 * 2**20
