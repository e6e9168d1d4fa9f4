"""Experiment files: YAML in, a validated `Experiment` out.

An experiment file names the run (its S3 prefix and resume key), the
environment, the PPO knobs and when to stop. The layout follows Ray 2.60's
`AlgorithmConfig` sections (env_runners, learners, training, model), and the
key names of the old RLlib tutorials (`num_workers`, `num_gpus`,
`sgd_minibatch_size`, `episode_reward_mean`, ...) are accepted too: each is
mapped to its Ray 2.60 name with a one-line note.

Every problem is reported as a `UserError` naming the field, the value and
what would be accepted, before anything is built, submitted or written.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from jobs.common.errors import UserError
from jobs.common.schema import dotted
from jobs.common.schema.section import Section
from jobs.common.schema.yamlfile import describe_errors, load_mapping
from jobs.common.storage.objects import validate_storage_uri

# --------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------


class EnvRunners(Section):
    """Sampling: `AlgorithmConfig.env_runners(...)`."""

    num_env_runners: int = Field(1, ge=0, le=4096)
    num_envs_per_env_runner: int = Field(1, ge=1, le=4096)
    rollout_fragment_length: int | Literal["auto"] = "auto"
    num_cpus_per_env_runner: int = Field(1, ge=1, le=256)
    # "MeanStdFilter": observations normalised by their running mean and standard deviation, clipped
    # to [-10, 10] (RLlib's MeanStdFilter connector; its statistics go with each checkpoint, and
    # jobs.evaluate normalises with them). RLlib's old-stack key and values.
    observation_filter: Literal["NoFilter", "MeanStdFilter"] = "NoFilter"

    @field_validator("rollout_fragment_length")
    @classmethod
    def _positive_fragment(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError("must be 'auto' or an integer >= 1")
        return value


class Learners(Section):
    """Learning: `num_gpus` is the one knob. N > 0 means N remote learners with
    one GPU each, on the GPU worker group; 0 means `num_learners` remote CPU
    learners on the CPU worker group.

    `gpu_fallback: cpu` runs N > 0 with CPU learners, still on the GPU group,
    where that group has no real GPUs (a CPU-only laptop): same placement,
    said on every progress line. The speed options help on GPUs and are off
    by default because they slow small CPU learners down.
    """

    num_gpus: int = Field(0, ge=0, le=1024)
    num_learners: int = Field(1, ge=1, le=1024)
    # CPUs each remote learner reserves; its torch threads follow (a CPU learner
    # trains on this many cores; a GPU learner uses them for data preparation).
    num_cpus_per_learner: int = Field(1, ge=1, le=256)
    # CPU learners that train on the env runners' cores instead of reserving their own: PPO alternates
    # sampling and learning, so the cores that sample also learn (num_cpus_per_learner torch threads,
    # no CPUs reserved, on the CPU group). Every core busy in each phase, on as many cores as the runners'.
    share_env_runner_cpus: bool = False
    gpu_fallback: Literal["none", "cpu"] = "none"
    # torch.compile of the learner's forward_train (RLlib's torch_compile_learner).
    torch_compile: bool = False
    # bfloat16 autocast in the learner's forward and loss; weights stay float32.
    # GPU learners only: CPU learners (and CPU stand-ins) stay float32.
    mixed_precision: bool = False

    @model_validator(mode="after")
    def _sharing_is_for_cpu_learners(self):
        if self.share_env_runner_cpus and self.num_gpus:
            raise ValueError(
                f"share_env_runner_cpus is for CPU learners (num_gpus: 0); num_gpus is {self.num_gpus}: GPU learners "
                "run on the GPU group's own CPUs"
            )
        return self


class Training(Section):
    """PPO's `training(...)` arguments (Ray 2.60 names). A key left out keeps
    Ray's own default; `--dry-run` shows the resolved value."""

    gamma: float | None = Field(None, gt=0.0, le=1.0)
    lr: float | None = Field(None, gt=0.0, le=1.0)
    lambda_: float | None = Field(None, alias="lambda", ge=0.0, le=1.0)
    # Total samples per update, over all learners (Ray: *_per_learner = total / learners).
    train_batch_size: int | None = Field(None, ge=1)
    # Total samples per SGD step, over all learners: each learner takes total / learners
    # (Ray's minibatch_size is per learner), so every learner count takes the same steps.
    minibatch_size: int | None = Field(None, ge=1)
    num_epochs: int | None = Field(None, ge=1, le=1000)
    clip_param: float | None = Field(None, gt=0.0)
    vf_clip_param: float | None = Field(None, gt=0.0)
    vf_loss_coeff: float | None = Field(None, ge=0.0)
    entropy_coeff: float | None = Field(None, ge=0.0)
    use_kl_loss: bool | None = None
    kl_coeff: float | None = Field(None, ge=0.0)
    kl_target: float | None = Field(None, gt=0.0)
    grad_clip: float | None = Field(None, gt=0.0)

    @model_validator(mode="after")
    def _minibatch_fits(self):
        if self.minibatch_size and self.train_batch_size and self.minibatch_size > self.train_batch_size:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must not exceed train_batch_size ({self.train_batch_size})"
            )
        return self

    def given(self) -> dict[str, Any]:
        """Only the keys the experiment set, by their Python (Ray) names."""
        return self.model_dump(exclude_none=True, by_alias=False)


ACTIVATIONS = ("tanh", "relu", "linear", "swish", "silu", "elu")


class Model(Section):
    """`DefaultModelConfig` fields. `vf_share_layers` is always set explicitly:
    DefaultModelConfig's default (True) differs from PPO's own (False)."""

    fcnet_hiddens: list[int] = Field(default_factory=lambda: [256, 256], min_length=1, max_length=16)
    fcnet_activation: Literal[ACTIVATIONS] = "tanh"  # type: ignore[valid-type]
    vf_share_layers: bool = False

    @field_validator("fcnet_hiddens")
    @classmethod
    def _positive_layers(cls, value):
        if any(width < 1 or width > 65536 for width in value):
            raise ValueError("every layer width must be an integer in [1, 65536]")
        return value


class Stop(Section):
    """Stop at whichever comes first. At least one must be set."""

    episode_return_mean: float | None = None
    env_steps: int | None = Field(None, ge=1)
    time_s: float | None = Field(None, gt=0.0)
    iterations: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _at_least_one(self):
        if all(v is None for v in (self.episode_return_mean, self.env_steps, self.time_s, self.iterations)):
            raise ValueError(
                "no stop criterion: set at least one of episode_return_mean, env_steps, time_s, iterations"
            )
        return self

    def reason(self, *, iteration: int, env_steps: int, ret: float | None, time_s: float) -> str | None:
        """Why a run stops now (the first criterion met), or None to go on."""
        if self.episode_return_mean is not None and ret is not None and not math.isnan(ret):
            if ret >= self.episode_return_mean:
                return f"episode_return_mean {ret:.1f} >= {self.episode_return_mean:g}"
        if self.env_steps is not None and env_steps >= self.env_steps:
            return f"env_steps {env_steps} >= {self.env_steps}"
        if self.time_s is not None and time_s >= self.time_s:
            return f"time {time_s:.0f}s >= {self.time_s:g}s"
        if self.iterations is not None and iteration >= self.iterations:
            return f"iterations {iteration} >= {self.iterations}"
        return None


class Checkpoint(Section):
    every_n_iterations: int = Field(10, ge=1)
    at_end: bool = True


NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class Experiment(Section):
    name: str = Field(pattern=NAME_PATTERN)
    algorithm: Literal["PPO"] = "PPO"
    env: str
    env_config: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(0, ge=0)
    # s3://bucket/prefix or a local directory; None: $RL_STORAGE_URI.
    storage: str | None = None
    # episode_return_mean (stop criteria, progress, sweep metrics) is the mean of the
    # last this-many episodes (jobs.common.run.returns); RLlib's default window is 100.
    metrics_smoothing_episodes: int = Field(100, ge=1, le=10000)
    env_runners: EnvRunners = Field(default_factory=EnvRunners)
    learners: Learners = Field(default_factory=Learners)
    training: Training = Field(default_factory=Training)
    model: Model = Field(default_factory=Model)
    stop: Stop
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)
    # How often `jobs.train` rebuilds the algorithm from its latest checkpoint, in the same job, after
    # losing an actor it cannot do without (a learner, or the one actor of a small experiment: its
    # node gone). Lost env runners do not count: Ray restarts them. As for sweeps' trials.
    max_failures: int = Field(2, ge=0, le=100)

    @field_validator("storage")
    @classmethod
    def _storage_uri(cls, value):
        if value is not None:
            validate_storage_uri(value)
        return value

    @field_validator("env")
    @classmethod
    def _registered_env(cls, value):
        check_env_registered(value)
        return value

    @field_validator("env_config")
    @classmethod
    def _no_vector_size(cls, value):
        # The env runners ask the env creator for a vector env of this many (jobs/common/rllib/envs.py).
        if "num_envs" in value:
            raise ValueError("num_envs is not an env setting here: set env_runners.num_envs_per_env_runner instead")
        return value

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(by_alias=True, mode="json"), sort_keys=False)


# --------------------------------------------------------------------------
# The tutorials' key names, and where Ray 2.60 keeps them
# --------------------------------------------------------------------------

# (old path) -> (new path). Paths are tuples of keys from the file's top level.
LEGACY_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("num_workers",): ("env_runners", "num_env_runners"),
    ("num_rollout_workers",): ("env_runners", "num_env_runners"),
    ("num_envs_per_worker",): ("env_runners", "num_envs_per_env_runner"),
    ("rollout_fragment_length",): ("env_runners", "rollout_fragment_length"),
    ("num_cpus_per_worker",): ("env_runners", "num_cpus_per_env_runner"),
    ("observation_filter",): ("env_runners", "observation_filter"),
    ("num_gpus",): ("learners", "num_gpus"),
    ("num_learners",): ("learners", "num_learners"),
    ("num_cpus_per_learner",): ("learners", "num_cpus_per_learner"),
    ("num_cpus_per_learner_worker",): ("learners", "num_cpus_per_learner"),
    ("lr",): ("training", "lr"),
    ("gamma",): ("training", "gamma"),
    ("lambda",): ("training", "lambda"),
    ("train_batch_size",): ("training", "train_batch_size"),
    ("sgd_minibatch_size",): ("training", "minibatch_size"),
    ("minibatch_size",): ("training", "minibatch_size"),
    ("num_sgd_iter",): ("training", "num_epochs"),
    ("num_epochs",): ("training", "num_epochs"),
    ("clip_param",): ("training", "clip_param"),
    ("vf_clip_param",): ("training", "vf_clip_param"),
    ("vf_loss_coeff",): ("training", "vf_loss_coeff"),
    ("entropy_coeff",): ("training", "entropy_coeff"),
    ("kl_coeff",): ("training", "kl_coeff"),
    ("kl_target",): ("training", "kl_target"),
    ("grad_clip",): ("training", "grad_clip"),
    ("training", "sgd_minibatch_size"): ("training", "minibatch_size"),
    ("training", "num_sgd_iter"): ("training", "num_epochs"),
    ("env_runners", "num_workers"): ("env_runners", "num_env_runners"),
    ("env_runners", "num_envs_per_worker"): ("env_runners", "num_envs_per_env_runner"),
    ("stop", "episode_reward_mean"): ("stop", "episode_return_mean"),
    ("stop", "env_runners/episode_return_mean"): ("stop", "episode_return_mean"),
    ("stop", "timesteps_total"): ("stop", "env_steps"),
    ("stop", "num_env_steps_sampled_lifetime"): ("stop", "env_steps"),
    ("stop", "time_total_s"): ("stop", "time_s"),
    ("stop", "training_iteration"): ("stop", "iterations"),
    ("checkpoint_freq",): ("checkpoint", "every_n_iterations"),
    ("checkpoint_at_end",): ("checkpoint", "at_end"),
    ("checkpoint", "checkpoint_frequency"): ("checkpoint", "every_n_iterations"),
    ("checkpoint", "checkpoint_at_end"): ("checkpoint", "at_end"),
}


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


def map_legacy_keys(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Move tutorial-style keys to their Ray 2.60 place. Returns (mapped, notes).

    Giving both the old and the new key with different values is an error.
    """
    mapped = dotted.copy(raw)
    notes: list[str] = []
    for old, new in LEGACY_KEYS.items():
        found, value = dotted.pop(mapped, old)
        if not found:
            continue
        existing = dotted.get(mapped, new, _ABSENT)
        if existing is not _ABSENT and existing != value:
            raise UserError(
                f"'{_dotted(old)}' ({value!r}) and '{_dotted(new)}' ({existing!r}) "
                f"set the same thing to different values: keep only '{_dotted(new)}'"
            )
        try:
            dotted.set_value(mapped, new, value)
        except dotted.NotASection as err:
            raise UserError(f"'{_dotted(err.path)}' must be a mapping, got {err.value!r}") from None
        if old != new:
            notes.append(f"note: '{_dotted(old)}' is now '{_dotted(new)}' (Ray 2.60); mapped")
    return mapped, notes


_ABSENT = object()


# --------------------------------------------------------------------------
# Environments
# --------------------------------------------------------------------------


def check_env_registered(env_id: str) -> None:
    """Gymnasium must know the environment; suggest the closest ids if not."""
    import gymnasium

    if env_id in gymnasium.registry:
        return
    try:
        gymnasium.spec(env_id)  # resolves namespaces and versions the way gym.make does
        return
    except Exception:
        pass
    close = difflib.get_close_matches(env_id, list(gymnasium.registry), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"not a registered Gymnasium environment{hint} (e.g. 'CartPole-v1')")


# --------------------------------------------------------------------------
# Loading, overrides and error messages
# --------------------------------------------------------------------------


@dataclass
class LoadedExperiment:
    experiment: Experiment
    source: str
    notes: list[str] = field(default_factory=list)


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> LoadedExperiment:
    """Read, map legacy keys, apply `key.path=value` overrides and validate."""
    raw = load_mapping(
        path, "experiment file", "jobs/experiments/ppo-cartpole.yaml", shape="name: ..., env: ..., stop: ..."
    )
    return parse_experiment(raw, source=str(path), overrides=overrides)


def parse_experiment(
    raw: dict[str, Any], source: str = "<experiment>", overrides: list[str] | None = None
) -> LoadedExperiment:
    data = dotted.copy(raw)
    for override in overrides or []:
        apply_override(data, override)
    mapped, notes = map_legacy_keys(data)
    try:
        experiment = Experiment.model_validate(mapped)
    except ValidationError as err:
        raise UserError(format_validation_error(err, source)) from None
    return LoadedExperiment(experiment=experiment, source=source, notes=notes)


def add_overrides_argument(parser, example: str) -> None:
    """`--set KEY=VALUE`, repeatable, into `args.overrides` (train and sweep read it the same way)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a key of the file, e.g. --set {example} (repeatable)")  # fmt: skip


def apply_override(data: dict[str, Any], override: str) -> None:
    """`training.lr=0.001` sets data['training']['lr'] = 0.001 (value parsed as YAML)."""
    key, sep, text = override.partition("=")
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w/]*(\.[A-Za-z_][\w/]*)*", key):
        raise UserError(f"override '{override}' must look like KEY=VALUE, e.g. training.lr=0.001")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    try:
        dotted.set_value(data, dotted.split(key), value)
    except dotted.NotASection as err:
        raise UserError(f"override '{override}': '{err.path[-1]}' is not a section") from None


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Experiment
    for part in loc:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            # by alias
            info = next((f for f in model.model_fields.values() if f.alias == part), None)
        if info is None:
            return None
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return None
    return model


def schema_kind(path: tuple[str, ...]) -> str | None:
    """What a dotted experiment path names: "section" (model, training, ...),
    "leaf" (a value: training.lr, or anything under the free-form env_config)
    or None (no such key)."""
    if len(path) > 1 and path[0] == "env_config":
        return "leaf"
    parent = _model_at(path[:-1])
    if parent is None:
        return None
    info = next((f for n, f in parent.model_fields.items() if path[-1] in (n, f.alias)), None)
    if info is None:
        return None
    annotation = info.annotation
    return "section" if isinstance(annotation, type) and issubclass(annotation, BaseModel) else "leaf"


def accepted_keys(path: tuple[str, ...]) -> list[str]:
    """The keys accepted under a section path (the top level for ())."""
    model = _model_at(path)
    return _field_names(model) if model else []


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def format_validation_error(err: ValidationError, source: str) -> str:
    def accepted_at(section: tuple[str, ...], problem: dict) -> list[str]:
        model = _model_at(section)
        return _field_names(model) if model else []

    def legacy_names(section: tuple[str, ...]) -> list[str]:
        return [old[-1] for old in LEGACY_KEYS if old[:-1] == section]

    return describe_errors(err, f"experiment '{source}'", accepted_at, also_close_to=legacy_names)
