"""A validated sweep as Ray Tune objects: the search space, the search
algorithm and the scheduler, and the experiment each trial runs.

The sweep file's schema and its checks are jobs/common/schema/sweep.py;
this module only translates, so nothing here can fail on user input.
"""

from __future__ import annotations

import json
from typing import Any

from jobs.common.schema import dotted
from jobs.common.schema.experiment import Experiment, parse_experiment, schema_kind
from jobs.common.schema.sweep import Asha, Dimension, Pbt, Sweep


def _tune_domain(dim: Dimension):
    from ray import tune

    args = [json.dumps(a) for a in dim.args] if dim.encoded else list(dim.args)
    if dim.primitive == "grid_search":
        return tune.grid_search(args)
    if dim.primitive == "choice":
        return tune.choice(args)  # one list of values, unlike the ranges' separate arguments
    return getattr(tune, dim.primitive)(*args)


def _nested(dimensions: list[Dimension], leaf=_tune_domain) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dim in dimensions:
        dotted.set_value(tree, dim.path, leaf(dim), replace=True)
    return tree


def param_space(sweep: Sweep) -> dict[str, Any]:
    """The searched keys, plus every key PBT mutates: PBT perturbs a trial's current
    value (it reads config[key]), so each trial starts with one drawn from its mutation."""
    searched = {dim.path for dim in sweep.dimensions}
    return _nested(sweep.dimensions + [dim for dim in sweep.mutations if dim.path not in searched])


def search_algorithm(sweep: Sweep):
    spec = sweep.spec
    if spec.search.algorithm == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(metric=sweep.metric, mode=spec.mode, seed=spec.search.seed)
        # TPE learns from finished trials: cap how many run on stale knowledge.
        return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent_trials or 4)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=spec.search.seed, max_concurrent=spec.max_concurrent_trials or 0)


def scheduler(sweep: Sweep):
    spec = sweep.spec.scheduler
    if isinstance(spec, Asha):
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr=spec.time_attr,
            max_t=spec.max_t,
            grace_period=spec.grace_period,
            reduction_factor=spec.reduction_factor,
            brackets=spec.brackets,
        )
    if isinstance(spec, Pbt):
        from ray.tune.schedulers import PopulationBasedTraining

        def mutation(dim: Dimension):
            if dim.primitive == "choice":
                return [json.dumps(a) for a in dim.args] if dim.encoded else list(dim.args)
            return _tune_domain(dim)

        return PopulationBasedTraining(
            time_attr=spec.time_attr,
            perturbation_interval=spec.perturbation_interval,
            burn_in_period=spec.burn_in_period,
            hyperparam_mutations=_nested(sweep.mutations, leaf=mutation),
            quantile_fraction=spec.quantile_fraction,
            resample_probability=spec.resample_probability,
        )
    return None


def trial_experiment(base: dict[str, Any], config: dict[str, Any], encoded_keys: list[str]) -> Experiment:
    """The experiment one trial runs: the base with the trial's sampled values."""
    data = dotted.copy(base)
    for path, value in dotted.leaves(config, lambda path: schema_kind(path) == "section"):
        if ".".join(path) in encoded_keys and isinstance(value, str):
            value = json.loads(value)
        dotted.set_value(data, path, value, replace=True)
    return parse_experiment(data, source="<trial>").experiment
