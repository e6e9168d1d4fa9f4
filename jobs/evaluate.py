"""Restore a policy, play deterministic episodes, write a video of one.

    python -m jobs.evaluate --checkpoint s3://bucket/experiments/ppo-cartpole/checkpoint_000010
    python -m jobs.evaluate --config jobs/experiments/ppo-cartpole.yaml   # its latest checkpoint

Only the policy (the RLModule) is restored, not the whole algorithm: no env
runners or learners are started. The episodes run in one Ray task on the CPU
worker group. The video (GIF) and a result.json go next to the checkpoint,
under `<experiment>/evaluations/<checkpoint>/`, and into --output-dir. The
result.json is the record (jobs/common/reports/outcome.py); the last line is
`mean_return: <mean> std: <std> episodes: <n> video: <uri>`.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from pathlib import Path
from typing import Any

from jobs.common.errors import UserError, exits_cleanly
from jobs.common.reports import outcome
from jobs.common.reports.outcome import EvaluationOutcome
from jobs.common.run.state import latest_checkpoint
from jobs.common.schema.experiment import load_experiment, parse_experiment
from jobs.common.storage import layout
from jobs.common.storage import objects as storage


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="s3://... or a local path of a checkpoint written by jobs.train")
    source.add_argument("--config", help="experiment YAML: evaluate that experiment's latest checkpoint")
    parser.add_argument(
        "--storage", help="with --config: s3://bucket/prefix or a local path (default: $RL_STORAGE_URI)"
    )
    parser.add_argument("--episodes", type=int, default=10, help="deterministic episodes to play (default 10)")
    parser.add_argument("--max-video-frames", type=int, default=500, help="frames kept in the video (default 500)")
    parser.add_argument("--output-dir", default="results/evaluations", help="local copy of the video and result")
    parser.add_argument("--check", action="store_true", help="validate inputs and storage, then exit")
    args = parser.parse_args(argv)
    if not 1 <= args.episodes <= 10000:
        parser.error(f"--episodes {args.episodes}: must be between 1 and 10000")
    return args


def resolve_checkpoint(args: argparse.Namespace) -> str:
    if args.checkpoint:
        uri = args.checkpoint.rstrip("/")
        try:
            storage.validate_storage_uri(uri)
        except ValueError as err:
            raise UserError(f"--checkpoint '{uri}': {err}") from None
        if not storage.is_s3(uri):
            uri = str(Path(uri).expanduser().resolve())
        root = storage.resolve_storage(uri) if not storage.is_s3(uri) else uri
        storage.check_storage_reachable(root)
        if not storage.exists(layout.Checkpoint(uri).policy):
            raise UserError(
                f"--checkpoint '{uri}' is not a checkpoint written by jobs.train "
                f"(no {layout.POLICY_PATH} inside); list the experiment's folder for its checkpoint folders"
            )
        return uri
    experiment = load_experiment(args.config).experiment
    return latest_checkpoint(storage.resolve_storage(args.storage or experiment.storage), experiment.name,
                             "pass --checkpoint")  # fmt: skip


def load_checkpoint_experiment(checkpoint: str):
    where = layout.Checkpoint(checkpoint).experiment_file
    data = storage.read_bytes(where)
    if data is None:
        raise UserError(
            f"checkpoint '{checkpoint}' has no {layout.EXPERIMENT_FILE}: cannot tell which environment to play"
        )
    import yaml

    return parse_experiment(yaml.safe_load(data), source=where).experiment


def observation_normaliser(checkpoint: str, observation_space):
    """Observations as the policy saw them in training where the experiment normalised them
    (env_runners.observation_filter: MeanStdFilter): RLlib's MeanStdFilter with the checkpoint's statistics,
    which evaluation leaves as they are. Returns obs -> normalised obs."""
    from ray.rllib.connectors.env_to_module import EnvToModulePipeline, MeanStdFilter
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from jobs.common.rllib.connectors import MEAN_STD_FILTER

    where = layout.Checkpoint(checkpoint).env_to_module
    state = EnvToModulePipeline.from_checkpoint(where).get_state().get(MEAN_STD_FILTER)
    if not state:
        raise UserError(f"checkpoint '{checkpoint}': its experiment normalises observations, but {where} holds "
                        f"no {MEAN_STD_FILTER} statistics to normalise them with")  # fmt: skip
    obs_filter = MeanStdFilter(update_stats=False)
    # Set after construction: RLlib 2.60's MeanStdFilter reads its clip value before it has set it
    # when the space comes with the constructor.
    obs_filter.input_observation_space = observation_space
    obs_filter.set_state(state)

    def normalise(observation):
        episode = SingleAgentEpisode(observations=[observation], observation_space=observation_space)
        obs_filter(rl_module=None, batch={}, episodes=[episode])
        return episode.get_observations(-1)

    return normalise


def play(checkpoint: str, env_id: str, env_config: dict, episodes: int, max_frames: int,
         observation_filter: str = "NoFilter") -> dict[str, Any]:  # fmt: skip
    """Deterministic episodes with the restored RLModule; frames of the first one as GIF bytes."""
    import os

    # Rendering uses pygame off-screen: no display, no sound card.
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import numpy as np
    import torch
    from PIL import Image
    from ray.rllib.core.rl_module.rl_module import RLModule

    from jobs.common.rllib.connectors import MEAN_STD_FILTER
    from jobs.common.rllib.envs import make_env

    module = RLModule.from_checkpoint(layout.Checkpoint(checkpoint).policy)
    dist_class = module.get_inference_action_dist_cls()
    normalise = None
    returns, lengths, frames = [], [], []
    no_video = None
    for episode in range(episodes):
        # The env as training stepped it: actions in [-1, 1], rescaled and clipped inside (envs.py).
        env = make_env(env_id, env_config, render_mode="rgb_array" if episode == 0 else None)
        if observation_filter == MEAN_STD_FILTER and normalise is None:
            normalise = observation_normaliser(checkpoint, env.observation_space)
        obs, _ = env.reset(seed=episode)
        total, steps, done = 0.0, 0, False
        while not done:
            if episode == 0 and no_video is None and len(frames) < max_frames:
                try:
                    frames.append(env.render())
                except Exception as err:  # noqa: BLE001 - MuJoCo without OpenGL raises its own FatalError
                    no_video = (
                        f"{env_id} cannot render on this node: {type(err).__name__}; for MuJoCo set "
                        "MUJOCO_GL=egl on a GPU node, or install libosmesa6 and set MUJOCO_GL=osmesa"
                    )
                    frames = []
            seen = normalise(obs) if normalise else obs
            with torch.no_grad():
                out = module.forward_inference({"obs": torch.as_tensor(np.asarray(seen)[None], dtype=torch.float32)})
            action = dist_class.from_logits(out["action_dist_inputs"]).to_deterministic().sample()[0].numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
            done = terminated or truncated
        env.close()
        returns.append(total)
        lengths.append(steps)

    if not frames:
        return {"returns": returns, "lengths": lengths, "gif": None, "no_video": no_video or "no frames rendered"}
    images = [Image.fromarray(frame).reduce(2) for frame in frames]
    gif = io.BytesIO()
    images[0].save(gif, format="GIF", save_all=True, append_images=images[1:], duration=40, loop=0)
    return {"returns": returns, "lengths": lengths, "gif": gif.getvalue(), "no_video": None}


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checkpoint = resolve_checkpoint(args)
    experiment = load_checkpoint_experiment(checkpoint)
    if args.check:
        return 0

    import ray

    from jobs.common.cluster.placement import CPU_GROUP, cluster_has_groups, group_request

    ray.init(logging_level="warning")
    options: dict[str, Any] = {"num_cpus": 1}
    if cluster_has_groups(ray.cluster_resources()):
        options["resources"] = group_request(CPU_GROUP)
    print(f"evaluating {checkpoint} on {experiment.env}: {args.episodes} deterministic episodes", flush=True)
    played = ray.get(
        ray.remote(play)
        .options(**options)
        .remote(
            checkpoint,
            experiment.env,
            dict(experiment.env_config),
            args.episodes,
            args.max_video_frames,
            experiment.env_runners.observation_filter,
        )
    )
    ray.shutdown()

    returns = played["returns"]
    for episode, (ret, length) in enumerate(zip(returns, played["lengths"], strict=True)):
        print(f"episode {episode:3d} | return {ret:7.1f} | length {length}", flush=True)
    mean = statistics.fmean(returns)
    std = statistics.pstdev(returns)

    evaluation = layout.Checkpoint(checkpoint).evaluation
    result = EvaluationOutcome(
        checkpoint=checkpoint,
        env=experiment.env,
        episodes=len(returns),
        mean_return=mean,
        std_return=std,
        returns=returns,
        lengths=played["lengths"],
        video=evaluation.video if played["gif"] else None,
        no_video=played["no_video"],
    )
    if played["gif"]:
        storage.write_bytes(evaluation.video, played["gif"])
    outcome.write(result, evaluation.result)

    local_dir = Path(args.output_dir) / evaluation.run_name / evaluation.name
    local_dir.mkdir(parents=True, exist_ok=True)
    if played["gif"]:
        (local_dir / layout.VIDEO_FILE).write_bytes(played["gif"])
    (local_dir / layout.RESULT_FILE).write_bytes(result.to_json())

    for line in result.lines():
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
