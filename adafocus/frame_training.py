"""Stage II' on a finished AdaFocus run: train the frame policies (pi', AdaFrame, MultiAgent) with pi and the
backbones frozen, and open them again as gymnasium envs or as trained agents.

Every frame policy reads frames with the run's backbones and its frozen pi, priced with the same per-frame
GMACs (:func:`adafocus.backbones.step_cost`, pi's network by :func:`adafocus.backbones.count_gmacs`).
:mod:`adafocus.frame_evaluation` compares them with the frame baselines.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor

from adafocus.agents import FocusAgent, load_algorithm, log_interval, policy_gmacs, save_agent
from adafocus.agents.frames import FrameAgent, make_frame_algorithm
from adafocus.backbones import AdaFocusModel, step_cost
from adafocus.data.clips import ClipSet
from adafocus.envs import EnvConfig, FocusEpisodes
from adafocus.envs.frame_episodes import (FrameCosts, FrameEpisodes, FrameReader, JumpEpisodes,
                                          MultiAgentEpisodes, SkipEpisodes)
from adafocus.envs.frame_vec_env import FrameEnv, FrameVecEnv

from . import provenance
from .callbacks import sb3_progress
from .cli import add_config_options
from .config import PolicyConfig, RunConfig
from .models import build_model, make_episodes
from .run_data import clip_set, data_paths, episode_source
from .run_folder import load_policy, open_run, policy_env_config
from .training import setup_runtime

KINDS = ("pi_prime", "adaframe", "multiagent")


@dataclass(frozen=True)
class FrameConfig(PolicyConfig):
    """Stage II' (the frame policies): the paper trains pi' with Adam for 10 epochs after pi (appendix B.1).

    The fields of stage II's :class:`~adafocus.config.PolicyConfig`, with the frame policies' defaults.
    """

    epochs: float = 10.0
    """passes over the training videos"""
    gamma: float = 1.0
    """discount; at 1 the return of pi' is exactly c_final - c_0 - lambda x GFLOPs (every episode is at most T
    steps)"""
    gae_lambda: float = 0.95
    """GAE's lambda"""
    n_epochs: int = 4
    """passes over each rollout per update"""
    minibatches: int = 4
    """minibatches per update"""
    features_dim: int = 256
    """width of the frame policy's hidden layer"""
    conv_channels: int = 16
    """channels of the frame policy's 1x1 conv on f_G's map"""
    cost_weight: float = 1.0
    """lambda of pi': the reward given up per GFLOP spent (too large and PPO learns to stop at once)"""
    skip: str = "glance"
    """skip option of pi': glance (f_G reads every frame reached and pi' decides from it) or none (a skipped
    frame costs nothing)"""
    max_reads: int = 4
    """AdaFrame's read budget (0: T)"""
    agents: int = 2
    """MultiAgent's number of agents"""
    agent_steps: int = 4
    """MultiAgent's steps per agent"""
    agent_cost_weight: float = 0.0
    """MultiAgent's lambda of a cost term the paper does not have (0: none)"""


@dataclass
class LoadedRun:
    """A finished AdaFocus run, the base the frame policies build on: config, trained model, frozen pi."""

    config: RunConfig
    model: AdaFocusModel
    focus: FocusAgent
    env_config: EnvConfig
    device: torch.device


def load_run(run: Path, device: torch.device | str = "cpu") -> LoadedRun:
    """Stage III's (else stage I's) model and the learned pi of a run written by ``train_policy.py``."""
    files = open_run(Path(run))
    if files.policy is None:
        raise FileNotFoundError(f"{run}: no policy/policy.zip: the frame policies need a trained pi")
    device = torch.device(device)
    model = build_model(files.config, files.checkpoint, device)
    env = policy_env_config(files.config, files.policy)
    spaces = make_episodes(model, None, replace(env, reward="conf"), device, num_frames=files.config.data.frames)
    agent = load_policy(files.policy, spaces, device, files.config)
    return LoadedRun(files.config, model, agent, env, device)


def frame_reader(model: AdaFocusModel, clips: ClipSet | None, env: EnvConfig, focus: FocusAgent,
                 device: torch.device | str = "cpu", num_frames: int | None = None) -> FrameReader:
    """The AdaFocus frame read over ``clips`` (or over videos loaded later, of ``num_frames`` frames) with its
    measured GMACs (pi's network included)."""
    episodes = FocusEpisodes(model, clips, replace(env, reward="conf"), device, num_frames=num_frames)
    cost = step_cost(model)
    pi = policy_gmacs(focus, episodes.observation_space, episodes.device)
    costs = FrameCosts(glance=cost.global_encoder, patch=cost.local_encoder + pi, classifier=cost.classifier)
    return FrameReader(episodes, lambda obs: focus.act(obs, deterministic=True), costs)


def build_episodes(kind: str, reader: FrameReader, settings: FrameConfig) -> FrameEpisodes:
    """The episodes of one frame policy (one of :data:`KINDS`) over ``reader``."""
    if kind == "pi_prime":
        return SkipEpisodes(reader, settings.cost_weight, settings.skip)  # type: ignore[arg-type]
    if kind == "adaframe":
        return JumpEpisodes(reader, settings.max_reads or None)
    if kind == "multiagent":
        return MultiAgentEpisodes(reader, settings.agents, settings.agent_steps, settings.agent_cost_weight)
    raise ValueError(f"frame policy must be one of {KINDS}, got {kind!r}")


def horizon(episodes: FrameEpisodes) -> int:
    """Steps of the longest episode."""
    if isinstance(episodes, JumpEpisodes):
        return episodes.max_reads - 1
    if isinstance(episodes, MultiAgentEpisodes):
        return episodes.steps
    return episodes.num_frames


def policy_name(kind: str, settings: FrameConfig) -> str:
    """The folder of a trained frame policy: pi' carries its lambda and skip option in the name."""
    if kind == "pi_prime":
        return f"pi_prime_lambda{settings.cost_weight:g}_{settings.skip}"
    if kind == "multiagent" and settings.agent_cost_weight > 0:
        return f"multiagent_lambda{settings.agent_cost_weight:g}"
    return kind


def train_frame_policy(kind: str, run: Path, out: Path, settings: FrameConfig, progress: bool = True,
                       resume: bool = True) -> Path:
    """Stage II': train one frame policy by RL over the run's training videos, pi and backbones frozen."""
    folder = Path(out) / policy_name(kind, settings)
    path = folder / "policy.zip"
    files = open_run(Path(run))
    record = {"stage": f"frame_policy:{kind}", "fields": {f"frame.{k}": v for k, v in asdict(settings).items()},
              "data": {}, "inputs": {name: {"sha256": provenance.file_digest(p)} for name, p in
                                     (("checkpoint", files.checkpoint), ("policy", files.policy)) if p is not None}}
    if resume and provenance.stage_status(folder, record) == "finished":
        return path
    provenance.begin_stage(folder, record)
    runtime = setup_runtime("auto")
    loaded = load_run(run, runtime.device)
    source = episode_source(loaded.config, data_paths(loaded.config, progress), "train", settings.n_envs, runtime.device,
                            progress)
    frames = loaded.config.data.frames
    episodes = build_episodes(kind, frame_reader(loaded.model, None, loaded.env_config, loaded.focus, runtime.device, frames),
                              settings)
    vec = VecMonitor(FrameVecEnv(episodes, settings.n_envs, seed=loaded.config.seed, source=source))
    steps_per_episode = horizon(episodes) * episodes.agents
    algo = make_frame_algorithm(settings.algo, vec, settings, horizon(episodes), loaded.config.seed, runtime.device)
    folder.mkdir(parents=True, exist_ok=True)
    algo.set_logger(configure(str(folder), ["csv"]))
    steps = settings.total_timesteps or int(settings.epochs * source.order.size * steps_per_episode)
    began = time.perf_counter()
    bar, logs = sb3_progress(progress, f"stage II' {kind}", steps, source.order.size * steps_per_episode)
    algo.learn(steps, callback=logs, log_interval=log_interval(algo), progress_bar=bar)
    source.close()
    meta = {"kind": kind, "run": str(run), "settings": asdict(settings), "timesteps": steps,
            "seconds": time.perf_counter() - began}
    save_agent(algo, path, meta)  # policy.zip, then policy.json, each atomically
    provenance.finish_stage(folder, record, [path, path.with_suffix(".json")])
    return path


def load_frame_policy(path: Path, reader: FrameReader, device: torch.device | str = "cpu",
                      seed: int = 0) -> tuple[str, FrameConfig, FrameEpisodes, FrameAgent]:
    """A trained frame policy, with the episodes it acts in over ``reader``: the algorithm rebuilt from the
    settings in its ``policy.json`` for those episodes' spaces, and only the file's tensors read into it
    (:func:`adafocus.agents.load_algorithm`; nothing in the file is unpickled)."""
    meta_path = Path(path).with_suffix(".json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"frame policy {path} has no config file {meta_path} beside it")
    meta = json.loads(meta_path.read_text())
    if not isinstance(meta, dict) or meta.get("kind") not in KINDS or not isinstance(meta.get("settings"), dict):
        raise ValueError(f"{meta_path}: not the config a frame policy is saved with (kind and settings)")
    kind, settings = meta["kind"], FrameConfig(**meta["settings"])
    episodes = build_episodes(kind, reader, settings)
    algo = load_algorithm(path, lambda env: make_frame_algorithm(settings.algo, env, settings, horizon(episodes), seed,
                                                                 device), episodes.observation_space, episodes.action_space)
    return kind, settings, episodes, FrameAgent(algo)


def add_frame_arguments(parser: argparse.ArgumentParser) -> None:
    """``--frame-policy`` and the job's other options, and one ``--frame.<field>`` option per
    :class:`FrameConfig` field (read back by ``config_from_args(args, FrameConfig(), "frame")``)."""
    parser.add_argument("--frame-policy", nargs="+", choices=KINDS,
                        help="train these frame policies (stage II') on the finished run, then evaluate them")
    parser.add_argument("--frame-out", help="folder for the frame policies and their table (default: <out>_frames)")
    parser.add_argument("--frame-lambdas", nargs="+", type=float,
                        help="pi': train one policy per cost weight lambda (default: --frame.cost_weight)")
    parser.add_argument("--frame-eval-videos", type=int,
                        help="evaluate on a synthetic validation split of this many videos (default: the run's)")
    add_config_options(parser, FrameConfig(), "frame")


def make_frame_env(kind: str = "pi_prime", run: str | Path | None = None, split: str = "train",
                   device: str = "cpu", seed: int = 0, progress: bool = False, **settings: Any) -> FrameEnv:
    """One frame-policy episode as a gymnasium env: on a finished run's model and pi (``run``), or, without
    one, on the ``synthetic_temporal`` preset's randomly initialised backbones with pi at the centre."""
    from adafocus.agents import CenterAgent

    from .config import preset

    frame = replace(FrameConfig(), **settings)
    if run is not None:
        loaded = load_run(Path(run), device)
        config, model, focus, env = loaded.config, loaded.model, loaded.focus, loaded.env_config
    else:
        config = preset("synthetic_temporal")
        torch.manual_seed(seed)
        model, env = AdaFocusModel(config.model), config.env
        focus = None
    clips = clip_set(config, data_paths(config, progress), split, progress)
    if focus is None:
        focus = CenterAgent(FocusEpisodes(model, clips.subset(slice(0, 1)), env, device).action_space)
    return FrameEnv(build_episodes(kind, frame_reader(model, clips, env, focus, device), frame))
