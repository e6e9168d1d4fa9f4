"""Experiment -> a placement plan (plans.py) -> Ray 2.60 `PPOConfig` (new API stack only)."""

from __future__ import annotations

from typing import Any

from jobs.common.cluster.capacity import GroupCapacity
from jobs.common.cluster.placement import CPU_GROUP, group_request
from jobs.common.cluster.plans import in_process_plan, learner_plan, placement_plan
from jobs.common.errors import UserError
from jobs.common.schema.experiment import Experiment


def rejected(subject: str, err: Exception, settings: str = "the settings") -> UserError:
    """Ray's rejection of a config as one message: "<subject>: Ray rejects <settings>: <reason>".
    The reason is its first line: RLlib appends advice on a second one
    (`config.experimental(_validate_config=False)`, a switch users of this project do not have)."""
    lines = str(err).strip().splitlines()
    return UserError(f"{subject}: Ray rejects {settings}: {lines[0] if lines else type(err).__name__}")


# Seconds between RLlib's attempts to bring a lost env runner back.
ENV_RUNNER_RESTART_S = 2.0


def build_ppo_config(
    experiment: Experiment,
    use_groups: bool = True,
    groups: dict[str, GroupCapacity] | None = None,
    in_process_gpus: float | None = None,
    remote_env_runners: bool = False,
):
    """The PPOConfig for this experiment. `use_groups` pins components to
    worker groups (see jobs.common.cluster.placement); off on a plain Ray cluster.
    `in_process_gpus` (sweep trials, the trainer actor): the learner in this process, see
    in_process_plan; the env runners too, unless `remote_env_runners` (the trainer actor's)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from jobs.common.rllib import connectors, envs
    from jobs.common.rllib.env_runner import BatchedEnvRunner
    from jobs.common.rllib.learners import TORCH_THREADS, MixedPrecisionPPOTorchLearner, ThreadedPPOTorchLearner

    in_process = in_process_gpus is not None
    if in_process:
        learners = in_process_plan(experiment, in_process_gpus, threads=remote_env_runners)
        use_groups = use_groups and remote_env_runners
    else:
        learners = learner_plan(experiment, groups)
    runners = experiment.env_runners
    training = experiment.training.given()
    # Both are totals in the experiment and per learner in Ray 2.60 (see learner_plan).
    training.pop("train_batch_size", None)
    training.pop("minibatch_size", None)
    if learners.train_batch_size_per_learner is not None:
        training["train_batch_size_per_learner"] = learners.train_batch_size_per_learner
    if learners.minibatch_size_per_learner is not None:
        training["minibatch_size"] = learners.minibatch_size_per_learner

    config = (
        PPOConfig()
        # The new API stack is the only one this project uses (and Ray 2.60's default).
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        # Continuous actions are rescaled and clipped inside the env (envs.py), not per item by RLlib.
        .environment(
            envs.registered(experiment.env),
            env_config=dict(experiment.env_config),
            normalize_actions=False,
            clip_actions=False,
        )
        .env_runners(
            num_env_runners=0 if in_process and not remote_env_runners else runners.num_env_runners,
            num_envs_per_env_runner=runners.num_envs_per_env_runner,
            # "auto": total batch / (runners x envs per runner), so that one
            # round of sampling fills exactly one update's batch.
            rollout_fragment_length=runners.rollout_fragment_length,
            num_cpus_per_env_runner=runners.num_cpus_per_env_runner,
            custom_resources_per_env_runner=group_request(CPU_GROUP) if use_groups else {},
            # The env runners' vector env is the project's own (envs.make_vector_env): actions mapped
            # on the whole batch, no step infos.
            gym_env_vectorize_mode="vector_entry_point",
            # RLlib's default pipelines without their per-env unbatching (connectors.py); they leave out
            # what only recurrent or multi-agent modules need, which the experiment schema has neither of.
            **connectors.batched_pipelines(runners.observation_filter),
            # RLlib's env runner, its loop over the vector env kept batched (env_runner.py).
            env_runner_cls=BatchedEnvRunner,
        )
        .learners(
            num_learners=learners.num_learners,
            num_gpus_per_learner=learners.num_gpus_per_learner,
            num_cpus_per_learner=learners.reserved_cpus_per_learner,
            custom_resources_per_learner=group_request(learners.group) if use_groups and learners.group else {},
            # learners.py sets the learners' torch threads from this (a sharing learner reserves no CPUs).
            learner_config_dict={TORCH_THREADS: learners.torch_threads},
        )
        .training(**training)
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=list(experiment.model.fcnet_hiddens),
                fcnet_activation=experiment.model.fcnet_activation,
                # Always explicit: DefaultModelConfig defaults to True, PPO to False.
                vf_share_layers=experiment.model.vf_share_layers,
            )
        )
        .reporting(metrics_num_episodes_for_smoothing=experiment.metrics_smoothing_episodes)
        # log_sys_usage: Tune's UtilMonitor thread samples psutil every 0.7 s, and `Algorithm.stop()` joins
        # it, sleeping out the interval: 0.3-0.6 s per sweep trial, a slot idle between trials. Its
        # `perf` result key is used nowhere here; Ray's metrics export has each node's CPU and memory.
        .debugging(seed=experiment.seed, log_sys_usage=False)
        # A lost env runner is started again by Ray (RLlib gives its actors max_restarts) as soon as its
        # group has room, and RLlib probes for it every iteration; 60 s between probes (RLlib's default)
        # would leave training waiting long after the node is back. jobs/common/run/loop.py does not
        # count the iterations that sampled nothing meanwhile.
        .fault_tolerance(restart_failed_env_runners=True, delay_between_env_runner_restarts_s=ENV_RUNNER_RESTART_S)
    )
    if learners.torch_compile:
        config.framework(torch_compile_learner=True)
    # Torch threads follow the learner's CPUs (learners.py says why Ray alone is not enough).
    config.learners(
        learner_class=MixedPrecisionPPOTorchLearner if learners.mixed_precision else ThreadedPPOTorchLearner
    )
    return config


def resolved_settings(experiment: Experiment, config, groups: dict[str, GroupCapacity] | None = None) -> dict[str, Any]:
    """The Ray 2.60 settings that matter, as `--dry-run` prints them.

    Batch sizes both ways: Ray's per-learner values and the totals over all
    learners (the experiment's train_batch_size and minibatch_size), with the
    SGD steps per epoch that follow, the same for every learner count."""
    plan = placement_plan(experiment, groups)
    model = config.model_config  # a dict once set through rl_module(model_config=...)
    learners = max(1, config.num_learners)
    minibatches_per_epoch = max(1, config.train_batch_size_per_learner // config.minibatch_size)
    return {
        "algorithm": "PPO",
        "api_stack": "new (RLModule + Learner, EnvRunner + ConnectorV2)",
        "environment": {"env": experiment.env, "env_config": config.env_config},
        "env_runners": {
            "num_env_runners": config.num_env_runners,
            "num_envs_per_env_runner": config.num_envs_per_env_runner,
            "rollout_fragment_length": config.rollout_fragment_length,
            "rollout_fragment_length_resolved": config.get_rollout_fragment_length(),
            "num_cpus_per_env_runner": config.num_cpus_per_env_runner,
            "observation_filter": experiment.env_runners.observation_filter,
            "custom_resources_per_env_runner": config.custom_resources_per_env_runner,
        },
        "learners": {
            "num_learners": config.num_learners,
            "num_gpus_per_learner": config.num_gpus_per_learner,
            "num_cpus_per_learner": config.num_cpus_per_learner,
            "torch_threads_per_learner": plan.learners.torch_threads or config.num_cpus_per_learner,
            "shares_env_runner_cpus": plan.learners.shares_env_runner_cpus,
            "custom_resources_per_learner": config.custom_resources_per_learner,
            "cpu_stand_in_for_gpus": plan.learners.cpu_stand_in,
            "torch_compile_learner": config.torch_compile_learner,
            "mixed_precision_bf16": plan.learners.mixed_precision,
        },
        "training": {
            "gamma": config.gamma,
            "lr": config.lr,
            "lambda_": config.lambda_,
            "train_batch_size_per_learner": config.train_batch_size_per_learner,
            "total_train_batch_size": config.total_train_batch_size,
            # Ray's `minibatch_size` is per learner; the experiment's is the total.
            "minibatch_size_per_learner": config.minibatch_size,
            "total_minibatch_size": config.minibatch_size * learners,
            "minibatch_size_source": "experiment (total, split over learners)"
            if experiment.training.minibatch_size is not None
            else "Ray's default (per learner)",
            "minibatches_per_epoch": minibatches_per_epoch,
            "num_epochs": config.num_epochs,
            "sgd_steps_per_update": minibatches_per_epoch * config.num_epochs,
            "clip_param": config.clip_param,
            "vf_clip_param": config.vf_clip_param,
            "vf_loss_coeff": config.vf_loss_coeff,
            "entropy_coeff": config.entropy_coeff,
            "use_kl_loss": config.use_kl_loss,
            "kl_coeff": config.kl_coeff,
            "kl_target": config.kl_target,
            "grad_clip": config.grad_clip,
        },
        "rl_module": {
            "model_config": {
                "fcnet_hiddens": model["fcnet_hiddens"],
                "fcnet_activation": model["fcnet_activation"],
                "vf_share_layers": model["vf_share_layers"],
            }
        },
        "placement": {
            "env_runners": plan.env_runners.group,
            "learners": plan.learners.group,
            "driver": plan.driver,
        },
        "seed": config.seed,
        "metrics_num_episodes_for_smoothing": config.metrics_num_episodes_for_smoothing,
    }
