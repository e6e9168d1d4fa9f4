"""What this machine can do on an experiment's shape, without Ray or RLlib: the limit bench/throughput.py
measures the project against.

Sampling: `num_envs_per_env_runner` vectorised envs, the vector env the env runners step
(jobs/common/rllib/envs.py: Gymnasium's sync vector env, no infos, actions mapped on the batch), stepped
by the experiment's policy network (a forward pass and a Gaussian sample per step, as PPO's continuous policy
does), on one core: env steps per second per core. Learning: one PPO update of the experiment's batch
(its epochs and minibatches; policy and value networks, the clipped loss, Adam), on `cores` torch
threads. The limit of one iteration on `cores` cores: the batch sampled at the one-core rate on every
core, then the update, since PPO alternates the two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Limit:
    steps_per_s_per_core: float
    update_s: float
    cores: int
    batch: int

    @property
    def sample_s(self) -> float:
        return self.batch / (self.steps_per_s_per_core * self.cores)

    @property
    def iteration_s(self) -> float:
        return self.sample_s + self.update_s

    @classmethod
    def mean(cls, limits: list[Limit]) -> Limit:
        """The mean of limits measured on the same shape (of their rates and update times): this machine's
        speed drifts by 10-40 % within the hour, so a bench measures it before and after the run it
        compares with it."""
        rate = sum(limit.steps_per_s_per_core for limit in limits) / len(limits)
        update = sum(limit.update_s for limit in limits) / len(limits)
        return cls(steps_per_s_per_core=rate, update_s=update, cores=limits[0].cores, batch=limits[0].batch)


def _network(sizes: list[int], activation: str):
    import torch

    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "linear": torch.nn.Identity}[activation]
    layers: list = []
    for inputs, outputs in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [torch.nn.Linear(inputs, outputs), act()]
    layers.append(torch.nn.Linear(sizes[-2], sizes[-1]))
    return torch.nn.Sequential(*layers)


@dataclass(frozen=True)
class ActionHead:
    """The policy's output for an action space, as RLlib's default PPO module has it: a Gaussian (means and
    log-stds) over a Box, a categorical (logits) over a Discrete."""

    size: int
    discrete: bool

    @classmethod
    def of(cls, space) -> ActionHead:
        import gymnasium as gym

        from jobs.common.errors import UserError

        if isinstance(space, gym.spaces.Discrete):
            return cls(size=int(space.n), discrete=True)
        if isinstance(space, gym.spaces.Box):
            return cls(size=int(np.prod(space.shape)), discrete=False)
        raise UserError(f"the limit models Box and Discrete action spaces, not {space}")

    @property
    def outputs(self) -> int:
        return self.size if self.discrete else 2 * self.size

    def distribution(self, outputs):
        import torch

        if self.discrete:
            return torch.distributions.Categorical(logits=outputs)
        mean, log_std = outputs.chunk(2, dim=-1)
        return torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp()), 1)

    def sample(self, outputs):
        """Actions for the env from a batch of outputs, by torch's samplers directly (no distribution objects:
        the limit's lean path)."""
        import torch

        if self.discrete:
            return torch.multinomial(torch.softmax(outputs, dim=-1), 1).squeeze(-1).numpy()
        mean, log_std = outputs.chunk(2, dim=-1)
        return torch.normal(mean, log_std.exp()).numpy()

    def random_actions(self, batch: int, generator):
        import torch

        if self.discrete:
            return torch.randint(self.size, (batch,), generator=generator)
        return torch.randn(batch, self.size, generator=generator)


class SamplingLoop:
    """The limit's sampling: `num_envs` envs in the project's vector env, stepped by a policy network of the
    experiment's shape (a forward pass and a sample from its distribution per step), on one torch thread."""

    def __init__(self, env_id: str, num_envs: int, hidden: list[int], activation: str):
        import torch

        from jobs.common.rllib.envs import make_vector_env

        torch.set_num_threads(1)
        self.num_envs = num_envs
        self.envs = make_vector_env(env_id, num_envs)
        obs_size = int(np.prod(self.envs.single_observation_space.shape))
        self.head = ActionHead.of(self.envs.single_action_space)
        self.policy = _network([obs_size, *hidden, self.head.outputs], activation)
        self.obs, _ = self.envs.reset(seed=0)

    def step(self) -> None:
        import torch

        with torch.no_grad():
            actions = self.head.sample(self.policy(torch.as_tensor(self.obs, dtype=torch.float32)))
        self.obs, *_ = self.envs.step(actions)

    def run(self, env_steps: int) -> None:
        """At least `env_steps` env steps (whole vector steps)."""
        for _ in range(-(-env_steps // self.num_envs)):
            self.step()

    def close(self) -> None:
        self.envs.close()


def sampling_rate(env_id: str, num_envs: int, hidden: list[int], activation: str, seconds: float = 6.0) -> float:
    """Env steps per second on one core: vectorised envs plus the policy's forward pass and sampling."""
    loop = SamplingLoop(env_id, num_envs, hidden, activation)
    for _ in range(50):  # warm-up
        loop.step()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        loop.step()
        steps += num_envs
    rate = steps / (time.perf_counter() - started)
    loop.close()
    return rate


def update_seconds(obs_size: int, head: ActionHead, hidden: list[int], activation: str, batch: int, minibatch: int,
                   epochs: int, threads: int, repeats: int = 2) -> float:  # fmt: skip
    """One PPO update of `batch` samples (`epochs` passes in minibatches of `minibatch`) on `threads`
    torch threads: the fastest of `repeats` after a warm-up one."""
    import torch

    torch.set_num_threads(threads)
    policy = _network([obs_size, *hidden, head.outputs], activation)
    value = _network([obs_size, *hidden, 1], activation)
    optimizer = torch.optim.Adam([*policy.parameters(), *value.parameters()], lr=3e-4)
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(batch, obs_size, generator=generator)
    actions = head.random_actions(batch, generator)
    old_logp = torch.randn(batch, generator=generator)
    advantages = torch.randn(batch, generator=generator)
    returns = torch.randn(batch, generator=generator)

    def one_update() -> float:
        started = time.perf_counter()
        for _ in range(epochs):
            order = torch.randperm(batch, generator=generator)
            for start in range(0, batch, minibatch):
                index = order[start : start + minibatch]
                dist = head.distribution(policy(obs[index]))
                logp = dist.log_prob(actions[index])
                ratio = (logp - old_logp[index]).exp()
                surrogate = torch.min(ratio * advantages[index], ratio.clamp(0.8, 1.2) * advantages[index])
                value_loss = (value(obs[index]).squeeze(-1) - returns[index]).pow(2)
                loss = -surrogate.mean() + 0.5 * value_loss.mean() - 0.0 * dist.entropy().mean()
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_([*policy.parameters(), *value.parameters()], 0.5)
                optimizer.step()
        return time.perf_counter() - started

    one_update()
    return min(one_update() for _ in range(repeats))


def measure(experiment, cores: int, seconds: float = 6.0, repeats: int = 2) -> Limit:
    """The limit of one iteration of `experiment` on `cores` cores: `seconds` of sampling, the fastest of
    `repeats` updates."""
    import gymnasium as gym

    hidden, activation = list(experiment.model.fcnet_hiddens), experiment.model.fcnet_activation
    num_envs = experiment.env_runners.num_envs_per_env_runner
    rate = sampling_rate(experiment.env, num_envs, hidden, activation, seconds=seconds)
    env = gym.make(experiment.env)
    obs_size = int(np.prod(env.observation_space.shape))
    head = ActionHead.of(env.action_space)
    env.close()
    training = experiment.training
    batch = training.train_batch_size or 4000
    minibatch = training.minibatch_size or 128
    update = update_seconds(obs_size, head, hidden, activation, batch, minibatch, training.num_epochs or 1, cores,
                            repeats=repeats)  # fmt: skip
    return Limit(steps_per_s_per_core=rate, update_s=update, cores=cores, batch=batch)
