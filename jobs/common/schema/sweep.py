"""Sweep files: YAML in, a validated `Sweep` out, and the Ray Tune objects it
stands for (search space, search algorithm, scheduler).

A sweep is a base experiment (the same file `jobs.train` takes, plus
overrides) and a search space over its keys, written with Tune's primitive
names: `{grid_search: [...]}`, `{choice: [...]}`, `{uniform: [low, high]}`,
`{loguniform: [low, high]}`, `{randint: [low, high]}`, ... Keys are the
experiment's own, nested (`model: {fcnet_hiddens: ...}`) or dotted
(`training.lr`).

Everything that would fail later on the cluster fails here, before
submission, as a UserError naming the key, the value and what would work:
unknown primitives, empty grids, reversed bounds, values the experiment
schema rejects, metrics trials do not report, resources no worker group can
offer, scheduler options that do not fit the metric or the mode.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from jobs.common.errors import UserError
from jobs.common.schema import dotted
from jobs.common.schema.experiment import (
    LEGACY_KEYS,
    NAME_PATTERN,
    Experiment,
    accepted_keys,
    apply_override,
    map_legacy_keys,
    parse_experiment,
    schema_kind,
)
from jobs.common.schema.section import Section
from jobs.common.schema.yamlfile import describe_errors, load_mapping, short
from jobs.common.storage.objects import validate_storage_uri

# --------------------------------------------------------------------------
# What trials report (jobs.common.sweeps.trial), and which way is better
# --------------------------------------------------------------------------

# metric -> "max" / "min" when it ranks trials, None when it only counts progress.
METRICS: dict[str, str | None] = {
    "episode_return_mean": "max",
    "episode_len_mean": "max",
    # Env steps at which the trial first reached stop.episode_return_mean (NaN before).
    "env_steps_to_solve": "min",
    "env_steps": None,
    "iteration": None,
    "time_s": None,
}
METRIC_ALIASES = {
    "env_runners/episode_return_mean": "episode_return_mean",
    "episode_reward_mean": "episode_return_mean",
    "env_runners/episode_len_mean": "episode_len_mean",
    "num_env_steps_sampled_lifetime": "env_steps",
    "timesteps_total": "env_steps",
}
# Monotone counters a scheduler can measure a trial's age by.
TIME_ATTRS = ("training_iteration", "env_steps", "time_total_s")

# primitive -> number of arguments (None: a non-empty list of values)
PRIMITIVES: dict[str, int | None] = {
    "grid_search": None,
    "choice": None,
    "uniform": 2,
    "quniform": 3,
    "loguniform": 2,
    "qloguniform": 3,
    "randint": 2,
    "qrandint": 3,
    "lograndint": 2,
    "randn": 2,
}
_INTEGER_PRIMITIVES = ("randint", "qrandint", "lograndint")
_LOG_PRIMITIVES = ("loguniform", "qloguniform", "lograndint")


# --------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------


class Search(Section):
    """random and grid: Tune's BasicVariantGenerator (grid_search keys are
    crossed, the rest sampled); optuna: Optuna's TPE sampler."""

    algorithm: Literal["random", "grid", "optuna"] = "random"
    seed: int | None = Field(0, ge=0)


class Fifo(Section):
    type: Literal["fifo"]


class Asha(Section):
    type: Literal["asha"]
    time_attr: str = "training_iteration"
    grace_period: int = Field(1, ge=1)
    max_t: int = Field(100, ge=1)
    reduction_factor: float = Field(3, gt=1)
    brackets: int = Field(1, ge=1, le=10)


class Pbt(Section):
    type: Literal["pbt"]
    time_attr: str = "training_iteration"
    perturbation_interval: int = Field(ge=1)
    burn_in_period: int = Field(0, ge=0)
    # Keys of the experiment -> a primitive ({loguniform: [...]}) or a list of values.
    hyperparam_mutations: dict[str, Any] = Field(min_length=1)
    quantile_fraction: float = Field(0.25, gt=0, le=0.5)
    resample_probability: float = Field(0.25, ge=0, le=1)


Scheduler = Annotated[Fifo | Asha | Pbt, Field(discriminator="type")]


class TrialResources(Section):
    """One trial is one Ray actor: it samples and learns in-process."""

    cpus: float = Field(1, gt=0, le=256)
    gpus: float = Field(0, ge=0, le=64)


class Best(Section):
    """How the report ranks trials, when not by the scheduler's metric."""

    metric: str
    mode: Literal["max", "min"]


class SweepSpec(Section):
    name: str = Field(pattern=NAME_PATTERN)
    experiment: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    stop: dict[str, Any] | None = None
    search_space: dict[str, Any] = Field(min_length=1)
    num_samples: int = Field(1, ge=1, le=100_000)
    search: Search = Field(default_factory=Search)
    scheduler: Scheduler = Field(default_factory=lambda: Fifo(type="fifo"))
    max_concurrent_trials: int | None = Field(None, ge=1, le=10_000)
    resources_per_trial: TrialResources = Field(default_factory=TrialResources)
    metric: str = "episode_return_mean"
    mode: Literal["max", "min"] = "max"
    best: Best | None = None
    # A failed trial is retried from its last checkpoint this many times.
    max_failures: int = Field(2, ge=0, le=100)
    storage: str | None = None


# --------------------------------------------------------------------------
# The parsed sweep
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    """One searched key: `training.lr` ~ uniform(1e-7, 1e-2)."""

    path: tuple[str, ...]
    primitive: str
    args: tuple[Any, ...]
    # Lists of lists (layer sizes) travel through Tune as JSON strings: every
    # searcher handles strings, not every searcher handles lists.
    encoded: bool = False

    @property
    def key(self) -> str:
        return ".".join(self.path)

    def candidates(self) -> list[Any]:
        """Values that must all be valid for the experiment: every listed value,
        or both ends of a range."""
        if PRIMITIVES[self.primitive] is None:
            return list(self.args)
        if self.primitive == "randn":
            return [self.args[0]]
        low, high = self.args[0], self.args[1]
        if self.primitive in _INTEGER_PRIMITIVES:
            return [low, high - 1]
        return [low, high]

    def describe(self) -> str:
        return f"{self.primitive}({', '.join(json.dumps(a) for a in self.args)})"


@dataclass
class Sweep:
    spec: SweepSpec
    source: str
    base: dict[str, Any]  # the base experiment, legacy keys mapped, overrides applied
    base_experiment: Experiment
    dimensions: list[Dimension]
    mutations: list[Dimension]
    metric: str
    best_metric: str
    best_mode: str
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def encoded_keys(self) -> list[str]:
        return [d.key for d in self.dimensions + self.mutations if d.encoded]

    def grid_size(self) -> int:
        size = 1
        for dim in self.dimensions:
            if dim.primitive == "grid_search":
                size *= len(dim.args)
        return size

    def trial_count(self) -> int:
        return self.spec.num_samples * self.grid_size()


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    raw = load_mapping(
        path, "sweep file", "jobs/sweeps/cartpole-seed.yaml", shape="name, experiment, search_space, ..."
    )
    return parse_sweep(raw, source=str(path), overrides=overrides, relative_to=Path(path).parent)


def parse_sweep(
    raw: dict[str, Any],
    source: str = "<sweep>",
    overrides: list[str] | None = None,
    relative_to: Path | None = None,
) -> Sweep:
    data = dotted.copy(raw)
    for override in overrides or []:
        apply_override(data, override)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        raise UserError(_format_spec_error(err, source)) from None
    if spec.storage is not None:
        try:
            validate_storage_uri(spec.storage)
        except ValueError as err:
            raise UserError(f"sweep '{source}': storage '{spec.storage}': {err}") from None

    base, base_experiment, notes = _base_experiment(spec, source, relative_to)
    dimensions = [_dimension(path, value, base, source, "search_space") for path, value in _flatten(spec.search_space)]
    _no_duplicates(dimensions, source)
    mutations: list[Dimension] = []
    if isinstance(spec.scheduler, Pbt):
        mutations = [
            _dimension(tuple(key.split(".")), _as_primitive(value), base, source, "scheduler.hyperparam_mutations")
            for key, value in spec.scheduler.hyperparam_mutations.items()
        ]
    metric = _metric(spec.metric, source, "metric", notes)
    best_metric = _metric(spec.best.metric, source, "best.metric", notes) if spec.best else metric
    sweep = Sweep(
        spec=spec,
        source=source,
        base=base,
        base_experiment=base_experiment,
        dimensions=dimensions,
        mutations=mutations,
        metric=metric,
        best_metric=best_metric,
        best_mode=spec.best.mode if spec.best else spec.mode,
        notes=notes,
    )
    _check_metric_fits(sweep)
    _check_scheduler(sweep)
    _check_search(sweep)
    return sweep


def _base_experiment(spec: SweepSpec, source: str, relative_to: Path | None):
    candidates = [Path(spec.experiment)]
    if relative_to is not None and not Path(spec.experiment).is_absolute():
        candidates.append(relative_to / spec.experiment)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise UserError(
            f"sweep '{source}': experiment file '{spec.experiment}' does not exist "
            "(a path from the repository root, e.g. jobs/experiments/ppo-cartpole.yaml)"
        )
    try:
        raw = load_mapping(path, "experiment file", "jobs/experiments/ppo-cartpole.yaml", shape="name, env, stop, ...")
    except UserError as err:
        raise UserError(f"sweep '{source}': {err}") from None
    for key, value in spec.overrides.items():
        apply_override(raw, f"{key}={json.dumps(value)}")
    if spec.stop is not None:
        raw["stop"] = spec.stop
    raw["name"] = spec.name
    if spec.storage is not None:
        raw["storage"] = spec.storage
    mapped, notes = map_legacy_keys(raw)
    where = f"sweep '{source}' (base experiment {path})"
    try:
        experiment = parse_experiment(mapped, source=where).experiment
    except UserError as err:
        raise UserError(str(err)) from None
    return mapped, experiment, notes


def _flatten(tree: dict[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    """Nested or dotted keys -> [(path, {primitive: args})]. A mapping is a
    section to descend into unless its path names a value in the experiment."""
    return list(dotted.leaves(tree, lambda path: schema_kind(_legacy_path(path)) == "section"))


def _legacy_path(path: tuple[str, ...]) -> tuple[str, ...]:
    return LEGACY_KEYS.get(path, path)


def _as_primitive(value: Any) -> Any:
    """PBT also takes a plain list of values: a choice among them."""
    return {"choice": value} if isinstance(value, list) else value


def _dimension(path: tuple[str, ...], value: Any, base: dict[str, Any], source: str, where: str) -> Dimension:
    shown = ".".join(path)
    mapped = _legacy_path(path)
    kind = schema_kind(mapped)
    if kind is None:
        parent = mapped[:-1]
        accepted = accepted_keys(parent)
        close = difflib.get_close_matches(mapped[-1], accepted, n=1, cutoff=0.6)
        hint = f" (did you mean '{'.'.join(parent + (close[0],))}'?)" if close else ""
        section = f"'{'.'.join(parent)}'" if parent else "the experiment's top level"
        raise UserError(
            f"sweep '{source}': {where}.{shown}: the experiment has no key '{shown}'{hint}; "
            f"keys under {section}: {', '.join(accepted) or '(none)'}"
        )
    if kind == "section" or mapped in (("name",), ("storage",), ("algorithm",)):
        raise UserError(f"sweep '{source}': {where}.{shown}: '{shown}' cannot be searched; search its keys")
    if not isinstance(value, dict) or len(value) != 1:
        raise UserError(
            f"sweep '{source}': {where}.{shown} = {short(value)}: expected one search primitive, e.g. "
            f"{{choice: [a, b]}} or {{uniform: [low, high]}} (primitives: {', '.join(PRIMITIVES)}); "
            "to fix a value for every trial, put it under 'overrides'"
        )
    ((primitive, args),) = value.items()
    if primitive not in PRIMITIVES:
        close = difflib.get_close_matches(str(primitive), list(PRIMITIVES), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(
            f"sweep '{source}': {where}.{shown}: unknown search primitive '{primitive}'{hint}; "
            f"Tune's primitives: {', '.join(PRIMITIVES)}"
        )
    args = _check_args(primitive, args, f"sweep '{source}': {where}.{shown}")
    encoded = PRIMITIVES[primitive] is None and any(isinstance(a, list | dict) for a in args)
    dim = Dimension(path=mapped, primitive=primitive, args=tuple(args), encoded=encoded)
    for candidate in dim.candidates():
        data = dotted.copy(base)
        dotted.set_value(data, mapped, candidate, replace=True)
        try:
            parse_experiment(data, source="<trial>")
        except UserError as err:
            reason = str(err).split(": ", 1)[-1]
            raise UserError(
                f"sweep '{source}': {where}.{shown} = {dim.describe()}: value {candidate!r}: {reason}"
            ) from None
    return dim


def _check_args(primitive: str, args: Any, where: str) -> list[Any]:
    arity = PRIMITIVES[primitive]
    if arity is None:
        if not isinstance(args, list) or not args:
            raise UserError(f"{where}: {primitive} needs a non-empty list of values, got {short(args)}")
        return args
    if not isinstance(args, list) or len(args) != arity:
        form = {2: "[low, high]", 3: "[low, high, q]"}[arity]
        if primitive == "randn":
            form = "[mean, sd]"
        raise UserError(f"{where}: {primitive} takes {form}, got {short(args)}")
    if any(isinstance(a, bool) or not isinstance(a, int | float) or not math.isfinite(a) for a in args):
        raise UserError(f"{where}: {primitive} takes finite numbers, got {short(args)}")
    if primitive == "randn":
        if args[1] <= 0:
            raise UserError(f"{where}: randn's sd must be > 0, got {args[1]}")
        return args
    low, high = args[0], args[1]
    if low >= high:
        raise UserError(
            f"{where}: bounds reversed: low {low} > high {high}; write [{high}, {low}]"
            if low > high
            else f"{where}: empty range [{low}, {high}]: low must be below high"
        )
    if primitive in _INTEGER_PRIMITIVES and not all(isinstance(a, int) for a in args):
        raise UserError(f"{where}: {primitive} takes integers, got {short(args)}")
    if primitive in _LOG_PRIMITIVES and low <= 0:
        raise UserError(f"{where}: {primitive} needs low > 0 (a log scale), got {low}; use uniform for ranges from 0")
    if arity == 3 and args[2] <= 0:
        raise UserError(f"{where}: {primitive}'s step q must be > 0, got {args[2]}")
    return args


def _no_duplicates(dimensions: list[Dimension], source: str) -> None:
    seen: set[tuple[str, ...]] = set()
    for dim in dimensions:
        if dim.path in seen:
            raise UserError(
                f"sweep '{source}': search_space names '{dim.key}' twice (a tutorial key and its new name?)"
            )
        seen.add(dim.path)


def _metric(name: str, source: str, where: str, notes: list[str]) -> str:
    if name in METRIC_ALIASES:
        notes.append(f"note: {where} '{name}' is reported as '{METRIC_ALIASES[name]}' by sweep trials; mapped")
        return METRIC_ALIASES[name]
    if name not in METRICS:
        close = difflib.get_close_matches(name, list(METRICS) + list(METRIC_ALIASES), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(
            f"sweep '{source}': {where} '{name}' is not reported by PPO trials{hint}; they report: {', '.join(METRICS)}"
        )
    return name


def _check_metric_fits(sweep: Sweep) -> None:
    source = sweep.source
    for where, metric, mode in (
        ("metric", sweep.metric, sweep.spec.mode),
        ("best.metric", sweep.best_metric, sweep.best_mode),
    ):
        direction = METRICS[metric]
        if direction is None:
            raise UserError(
                f"sweep '{source}': {where} '{metric}' counts progress, it does not rank trials; "
                "use episode_return_mean (mode max) or env_steps_to_solve (mode min)"
            )
        if mode != direction:
            raise UserError(
                f"sweep '{source}': mode '{mode}' on '{metric}' would rank the worst trial first; use mode: {direction}"
            )
    uses_solve = "env_steps_to_solve" in (sweep.metric, sweep.best_metric)
    if uses_solve and sweep.base_experiment.stop.episode_return_mean is None:
        raise UserError(
            f"sweep '{source}': env_steps_to_solve needs stop.episode_return_mean (the return that counts as "
            "solved); set it under 'stop'"
        )


def _check_scheduler(sweep: Sweep) -> None:
    scheduler = sweep.spec.scheduler
    source = sweep.source
    if isinstance(scheduler, Fifo):
        return
    kind = scheduler.type.upper()
    if sweep.metric == "env_steps_to_solve":
        raise UserError(
            f"sweep '{source}': {kind} compares running trials by 'metric', but env_steps_to_solve has no "
            "value until a trial solves; use metric: episode_return_mean (mode: max) and rank the report with "
            "best: {metric: env_steps_to_solve, mode: min}"
        )
    if scheduler.time_attr not in TIME_ATTRS:
        raise UserError(
            f"sweep '{source}': scheduler.time_attr '{scheduler.time_attr}' is not a counter trials report; "
            f"use one of {', '.join(TIME_ATTRS)}"
        )
    if isinstance(scheduler, Asha) and scheduler.grace_period > scheduler.max_t:
        raise UserError(
            f"sweep '{source}': scheduler.grace_period ({scheduler.grace_period}) is above scheduler.max_t "
            f"({scheduler.max_t}): no trial could ever be stopped early; use grace_period < max_t"
        )
    if isinstance(scheduler, Pbt):
        every = sweep.base_experiment.checkpoint.every_n_iterations
        if scheduler.time_attr == "training_iteration" and scheduler.perturbation_interval % every:
            raise UserError(
                f"sweep '{source}': scheduler.perturbation_interval ({scheduler.perturbation_interval}) is not a "
                f"multiple of checkpoint.every_n_iterations ({every}): PBT copies checkpoints at each "
                f"perturbation; set overrides: {{checkpoint.every_n_iterations: {scheduler.perturbation_interval}}}"
            )
        if sweep.spec.search.algorithm == "optuna":
            raise UserError(
                f"sweep '{source}': PBT mutates hyperparameters itself and cannot be combined with the optuna "
                "searcher; use search.algorithm: random"
            )


def _check_search(sweep: Sweep) -> None:
    if sweep.spec.search.algorithm != "optuna":
        return
    source = sweep.source
    grids = [d.key for d in sweep.dimensions if d.primitive == "grid_search"]
    if grids:
        raise UserError(
            f"sweep '{source}': the optuna searcher does not take grid_search ({', '.join(grids)}); "
            "use choice instead, or search.algorithm: grid"
        )
    if "env_steps_to_solve" == sweep.metric:
        raise UserError(
            f"sweep '{source}': optuna learns from 'metric' in every trial, but env_steps_to_solve has no value "
            "for trials that never solve; use metric: episode_return_mean"
        )


# --------------------------------------------------------------------------


def _format_spec_error(err: ValidationError, source: str) -> str:
    def clean(loc: tuple[str, ...]) -> tuple[str, ...]:
        # Drop pydantic's union parts: scheduler.Asha.grace_period -> scheduler.grace_period.
        loc = tuple(p for p in loc if not p.startswith(("Fifo", "Asha", "Pbt")))
        return tuple(p for p in loc if p not in ("fifo", "asha", "pbt")) if loc[:1] == ("scheduler",) else loc

    def accepted_at(section: tuple[str, ...], problem: dict) -> list[str]:
        model = _spec_model_at(section, problem)
        return list(model.model_fields) if model else []

    return describe_errors(err, f"sweep '{source}'", accepted_at, clean_loc=clean)


def _spec_model_at(loc: tuple[str, ...], problem: dict) -> type[BaseModel] | None:
    models: dict[tuple[str, ...], type[BaseModel]] = {
        (): SweepSpec,
        ("search",): Search,
        ("resources_per_trial",): TrialResources,
        ("best",): Best,
    }
    if loc == ("scheduler",):
        raw_loc = [str(p) for p in problem["loc"]]
        return next((m for tag, m in (("asha", Asha), ("pbt", Pbt), ("fifo", Fifo)) if tag in raw_loc), None)
    return models.get(loc)
