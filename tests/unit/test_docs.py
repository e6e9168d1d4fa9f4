"""What README.md and docs/ tell a user to type exists: each `make` target and its variables, each
flag of our commands, each path in the tree, each experiment or sweep key.

Only code is read (fenced blocks and `inline spans`): prose may say "make sure". Each checker is
also run on a planted page with one mistake of its kind, so that a checker that reads nothing fails.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import BaseModel

from tests.conftest import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

# Folders a run writes: documented as where output goes, not there in a fresh clone.
RUNTIME_PATHS = (".cluster/", "results/", "bench/out/", "docker/wheels/", ".venv/", ".cache/",
                 "k8s/overlays/dev/s3-credentials.env")  # fmt: skip
EXTENSIONS = ("py", "yaml", "yml", "json", "md", "txt", "csv", "png", "gif", "lock", "toml", "pkl", "log", "sh")

# Flags of other tools that the docs quote on their own, by the tool they belong to.
OTHER_TOOLS_FLAGS = {
    "ray job submit": {"--working-dir", "--entrypoint-num-cpus", "--entrypoint-resources", "--address",
                       "--submission-id", "--no-wait", "--runtime-env-json"},
    "ray start": {"--block", "--head", "--dashboard-host", "--dashboard-port", "--num-cpus", "--num-gpus",
                  "--resources", "--node-ip-address"},
    "docker run": {"--cap-drop", "--gpus", "--env-file", "--network", "--security-opt", "--publish", "--cpus",
                   "--memory", "--shm-size"},
    "docker build": {"--build-arg", "--network"},
    "dockerd": {"--iptables", "--ip-forward", "--ip-masq", "--bridge", "--data-root"},
    "kubectl": {"--context", "--namespace"},
    "prometheus": {"--config.file"},
    "weed": {"-filer.saveToFilerLimit"},
    "pytest": {"--durations", "--strict-markers"},
}  # fmt: skip


# ---------------------------------------------------------------------------------------- reading


def code_of(markdown: str) -> list[str]:
    """Fenced blocks line by line, then inline spans, each a string of code."""
    code: list[str] = []
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
    for block in fenced.findall(markdown):
        code += block.splitlines()
    prose = fenced.sub("", markdown)
    code += [span for span in re.findall(r"`([^`\n]+)`", prose)]
    return code


def links_of(markdown: str) -> list[str]:
    return [target for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", markdown) if "://" not in target]


@functools.cache
def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO_ROOT / "Makefile").read_text(), re.M))


@functools.cache
def make_variables() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*[:?]?=", text, re.M)) | set(
        re.findall(r"\$\(([A-Z][A-Z0-9_]*)\)", text)
    )


def _help(command: tuple[str, ...]) -> str:
    done = subprocess.run([sys.executable, "-m", *command, "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, f"`python -m {' '.join(command)} --help` failed: {done.stderr[-2000:]}"
    return done.stdout


@functools.cache
def subcommands() -> tuple[str, ...]:
    usage = _help(("controlplane",))
    choices = [group.split(",") for group in re.findall(r"\{([a-z,]+)\}", usage)]
    return tuple(next(group for group in choices if "submit" in group))


def our_commands() -> dict[tuple[str, ...], bool]:
    """Every module of ours that `python -m` runs (-> whether it has an argparse command line), and the
    control plane's subcommands."""
    commands = {("controlplane", sub): True for sub in subcommands()}
    for package in ("jobs", "controlplane", "bench"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            text = path.read_text()
            if 'if __name__ == "__main__"' in text or path.name == "__main__.py":
                parts = path.relative_to(REPO_ROOT).with_suffix("").parts
                commands[(".".join(parts[:-1] if parts[-1] == "__main__" else parts),)] = "argparse" in text
    return commands


@functools.cache
def flags() -> dict[tuple[str, ...], frozenset[str]]:
    """Each of our commands (`python -m <module> [subcommand]`) -> the flags its --help lists (none for a
    command without options: never run here, it would do its work)."""
    commands = our_commands()
    with_options = [command for command, parsed in commands.items() if parsed]
    with ThreadPoolExecutor(4) as pool:
        helps = dict(zip(with_options, pool.map(_help, with_options), strict=True))
    pattern = r"(?<![\w-])(--[a-z][a-z0-9-]*)"
    return {command: frozenset(re.findall(pattern, helps.get(command, ""))) for command in commands}


def _paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    found = set()
    for name, field in model.model_fields.items():
        for key in {name, field.alias or name}:
            found.add(prefix + key)
            annotation = field.annotation
            for inner in (annotation, *getattr(annotation, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    found |= _paths(inner, f"{prefix}{key}.")
    return found


@functools.cache
def experiment_keys() -> set[str]:
    from jobs.common.schema.experiment import LEGACY_KEYS, Experiment

    return _paths(Experiment) | {".".join(old) for old in LEGACY_KEYS}


@functools.cache
def sweep_keys() -> set[str]:
    from jobs.common.schema.sweep import Asha, Pbt, SweepSpec

    scheduler = {f"scheduler.{key}" for model in (Asha, Pbt) for key in _paths(model)}
    return _paths(SweepSpec) | scheduler


EXPERIMENT_SECTIONS = ("env_runners", "learners", "training", "model", "stop", "checkpoint")
SWEEP_SECTIONS = ("search", "scheduler", "resources_per_trial", "best")


# ---------------------------------------------------------------------------------------- checking


def problems_in(markdown: str, page: Path) -> list[str]:
    problems = []
    for code in code_of(markdown):
        problems += [f"`{code}`: {problem}" for problem in check_code(code)]
    for target in links_of(markdown):
        if not (page.parent / target).exists():
            problems.append(f"link to {target}: no such file")
    return problems


def check_code(code: str) -> list[str]:
    return check_make(code) + check_flags(code) + check_paths(code) + check_keys(code)


def check_make(code: str) -> list[str]:
    problems = []
    for match in re.finditer(r"(?<![\w/.-])make ((?:[a-z][a-z0-9-]*)(?:[ ]+[A-Z][A-Z0-9_]*=\S*)*)", code):
        target, *assignments = match.group(1).split()
        if target not in make_targets():
            problems.append(f"no make target '{target}'")
        for assignment in assignments:
            if (variable := assignment.split("=")[0]) not in make_variables():
                problems.append(f"the Makefile reads no variable {variable}")
    return problems


def check_flags(code: str) -> list[str]:
    known = flags()
    problems = []
    # Each `python -m <ours> [sub]` owns the flags up to the next command on the line.
    pieces = re.split(r"(?=python -m )|(?= -- )|(?=\bray )|(?=\|)|(?=&&)|(?=;)", code)
    for piece in pieces:
        command = re.match(r"python -m ([\w.]+)(?: (\w+))?", piece)
        if not command:
            continue
        module, sub = command.groups()
        if module.endswith("."):  # a placeholder: `python -m bench.<name>`
            continue
        key = (module, sub) if (module, sub) in known else (module,)
        if key not in known:
            if module.startswith(("jobs.", "controlplane", "bench.")):
                problems.append(f"`python -m {module}` is not one of our commands")
            continue
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", piece):
            if flag not in known[key] and flag not in known.get(("controlplane",), ()):
                problems.append(f"`python -m {' '.join(key)}` has no flag {flag}")
    # A flag quoted on its own: one of ours, or another tool's that the docs name.
    if code.startswith("--"):
        flag = re.match(r"--[\w.-]+", code).group(0).rstrip(".")
        ours = set().union(*known.values())
        theirs = set().union(*OTHER_TOOLS_FLAGS.values())
        if flag not in ours and flag not in theirs:
            problems.append(f"no command of ours takes {flag}")
    return problems


def check_paths(code: str) -> list[str]:
    problems = []
    tree = r"(?:jobs|controlplane|bench|tests|k8s|docker|docs|\.ci)/[\w./<>*{}-]*"
    root = r"(?:Makefile|cluster\.yaml|pyproject\.toml|requirements\.lock|README\.md)"
    for path in re.findall(rf"(?<![\w./$~-])({tree}|{root})", code):
        path = path.rstrip(".,:;")
        if any(mark in path for mark in "<>*{}") or "..." in path or path.startswith(RUNTIME_PATHS):
            continue
        if not (REPO_ROOT / path).exists():
            problems.append(f"no {path} in the tree")
    return problems


def check_keys(code: str) -> list[str]:
    problems = []
    dotted = r"(?<![\w./-])({sections})((?:\.[a-z_][a-z0-9_]*)+)(?![\w/-])"
    for sections, known, what in ((EXPERIMENT_SECTIONS, experiment_keys(), "experiment"),
                                  (SWEEP_SECTIONS, sweep_keys(), "sweep")):  # fmt: skip
        for section, rest in re.findall(dotted.format(sections="|".join(sections)), code):
            key = section + rest
            if rest.rsplit(".", 1)[-1] in EXTENSIONS:
                continue
            if key not in known:
                problems.append(f"the {what} schema has no key {key}")
    for key in re.findall(r"--set ([a-z_][\w.]*)=", code):
        if key not in experiment_keys() and key not in sweep_keys():
            problems.append(f"--set {key}: no such experiment or sweep key")
    return problems


# ---------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_command_path_and_key_in_the_docs_exists(page):
    problems = problems_in(page.read_text(), page)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        ("`make trian`", "no make target 'trian'"),
        ("`make train EXPERIMNT=x.yaml`", "the Makefile reads no variable EXPERIMNT"),
        (
            "```bash\npython -m jobs.train --config x.yaml --num-gpu 2\n```",
            "`python -m jobs.train` has no flag --num-gpu",
        ),
        ("`python -m controlplane submit --wait-for-it`", "`python -m controlplane submit` has no flag --wait-for-it"),
        ("`--gpu-fallbak cpu`", "no command of ours takes --gpu-fallbak"),
        ("see `jobs/common/storage/retries.py`", "no jobs/common/storage/retries.py in the tree"),
        ("[the guide](docs/nowhere.md)", "link to docs/nowhere.md: no such file"),
        ("`learners.num_gpu: 2`", "the experiment schema has no key learners.num_gpu"),
        ("`scheduler.grace`", "the sweep schema has no key scheduler.grace"),
        ("`--set training.learning_rate=0.1`", "--set training.learning_rate: no such experiment or sweep key"),
    ],
)
def test_each_checker_finds_a_planted_mistake(planted, expected):
    problems = problems_in(f"# A page\n\nSome prose.\n\n{planted}\n", REPO_ROOT / "README.md")
    assert any(expected in problem for problem in problems), problems


def test_what_exists_passes():
    page = """```bash
make train EXPERIMENT=jobs/experiments/ppo-cartpole.yaml GPUS=2
python -m jobs.train --config jobs/experiments/ppo-cartpole.yaml --num-gpus 2 --set training.lr=0.001
python -m controlplane submit -- python -m jobs.sweep --config jobs/sweeps/cartpole-seed.yaml --resume
```
`learners.num_gpus`, `stop.episode_reward_mean` (legacy), `scheduler.grace_period`, `--gpu-fallback cpu`,
`.cluster/env`, [clusters](docs/clusters.md)."""
    assert problems_in(page, REPO_ROOT / "README.md") == []
