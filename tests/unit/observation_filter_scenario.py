"""Trains CartPole for two small iterations, as the trainer actor builds it (local env runner, local
learner), with and without `env_runners.observation_filter: MeanStdFilter`, and saves each checkpoint
under the folder given. Run in a process of its own by test_observation_filter.py: it starts a local Ray."""

import json
import sys
from pathlib import Path

import ray

from jobs.common.rllib.trainer import build_in_actor
from jobs.common.schema.experiment import parse_experiment


def train(folder: Path, observation_filter: str) -> str:
    experiment = parse_experiment(
        {"name": "filter-test", "env": "CartPole-v1", "stop": {"iterations": 2},
         "env_runners": {"num_env_runners": 0, "num_envs_per_env_runner": 2, "observation_filter": observation_filter},
         "training": {"train_batch_size": 200, "minibatch_size": 100, "num_epochs": 1},
         "model": {"fcnet_hiddens": [8]}}
    ).experiment  # fmt: skip
    algo = build_in_actor(experiment, use_groups=False)
    try:
        for _ in range(2):
            algo.train()
        path = folder / observation_filter
        algo.save_to_path(str(path))
        return str(path)
    finally:
        algo.stop()


if __name__ == "__main__":
    ray.init(num_cpus=1, include_dashboard=False, logging_level="error")
    try:
        root = Path(sys.argv[1])
        print(json.dumps({name: train(root, name) for name in ("MeanStdFilter", "NoFilter")}), flush=True)
    finally:
        ray.shutdown()
