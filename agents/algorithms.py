"""Stage II's RL algorithms: stable-baselines3 (and sb3-contrib) by name, behind the FocusAgent interface."""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from .base import FocusAgent
from .extractor import GlanceExtractor
from .recurrent import GRUPPO

ALGORITHMS: dict[str, str] = {
    "ppo": "stable_baselines3:PPO",
    "paper_ppo": "adafocus.agents.paper_ppo:PaperPPO",  # the paper's pi (own GRU) and the authors' PPO update
    "gru_ppo": "adafocus.agents.recurrent:GRUPPO",  # the paper's pi (own GRU), SB3's PPO update
    "a2c": "stable_baselines3:A2C",
    "sac": "stable_baselines3:SAC",
    "td3": "stable_baselines3:TD3",
    "dqn": "stable_baselines3:DQN",
    "qrdqn": "sb3_contrib:QRDQN",
    "recurrent_ppo": "sb3_contrib:RecurrentPPO",
}
CONTINUOUS_ONLY = {"sac", "td3", "ddpg"}  # SB3 gives them Box action spaces only
DISCRETE_ONLY = {"dqn", "qrdqn"}


def resolve_algorithm(name: str) -> type[BaseAlgorithm]:
    """``ppo``, ``sac``, ... or any SB3-compatible class as ``package.module:Class``."""
    target = ALGORITHMS.get(name.lower(), name)
    if ":" not in target:
        raise ValueError(f"unknown algorithm {name!r}: use one of {sorted(ALGORITHMS)} or 'package.module:Class'")
    module, _, cls = target.partition(":")
    try:
        algo = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"algorithm {name!r}: cannot import {target} ({error})") from error
    if not (isinstance(algo, type) and issubclass(algo, BaseAlgorithm)):
        raise ValueError(f"algorithm {name!r}: {target} is not a stable-baselines3 algorithm class")
    return algo


def action_kind(algo: str, requested: str | None = None) -> str:
    """The action space an algorithm can use: the grid unless it only handles continuous actions."""
    name = algo.lower()
    if name in CONTINUOUS_ONLY or name.rsplit(":", 1)[-1].lower() in CONTINUOUS_ONLY:
        if requested == "grid":
            raise ValueError(f"{algo} needs continuous actions: use --env.action continuous")
        return "continuous"
    if name in DISCRETE_ONLY and requested == "continuous":
        raise ValueError(f"{algo} needs discrete actions: use --env.action grid")
    return requested or "grid"


def make_algorithm(algo: str, env: VecEnv, policy: Any, num_frames: int, seed: int = 0,
                   device: str | torch.device = "auto", tensorboard_log: str | None = None) -> BaseAlgorithm:
    """Build an SB3 algorithm on the AdaFocus VecEnv with pi's shared features extractor.

    ``policy`` is a :class:`adafocus.config.PolicyConfig`. On-policy algorithms collect
    ``videos_per_update`` whole videos per update (n_steps = videos * T / n_envs), as the paper's PPO
    does with 64 videos; PPO splits them into ``minibatches`` (the paper: one). The paper's pi
    (``gru_ppo``, ``paper_ppo``) runs a GRU as wide as its encoder (1024 in the paper).
    """
    cls = resolve_algorithm(algo)
    extractor: dict[str, Any] = dict(
        features_extractor_class=GlanceExtractor,
        features_extractor_kwargs=dict(features_dim=policy.features_dim, conv_channels=policy.conv_channels,
                                       glance_norm=policy.glance_norm))
    if issubclass(cls, GRUPPO):
        extractor.update(lstm_hidden_size=policy.features_dim, action_std=policy.action_std)
    elif policy.action_std is not None:
        raise ValueError(f"--policy.action_std is the paper's continuous pi (gru_ppo, paper_ppo), not {algo}")
    kwargs: dict[str, Any] = dict(learning_rate=policy.learning_rate, gamma=policy.gamma, seed=seed, device=device,
                                  tensorboard_log=tensorboard_log, verbose=0)
    if issubclass(cls, OnPolicyAlgorithm):
        n_steps = max(1, policy.videos_per_update * num_frames // env.num_envs)
        kwargs.update(n_steps=n_steps, gae_lambda=policy.gae_lambda, ent_coef=policy.ent_coef, vf_coef=policy.vf_coef)
        if "n_epochs" in cls.__init__.__code__.co_varnames:  # PPO family
            kwargs.update(batch_size=max(1, n_steps * env.num_envs // policy.minibatches), n_epochs=policy.n_epochs,
                          clip_range=policy.clip_range)
        if "Lstm" not in _policy_name(cls):
            extractor["net_arch"] = []  # actor/critic heads on pi's features
    else:
        kwargs.update(learning_starts=min(1000, 10 * num_frames * env.num_envs), batch_size=256,
                      buffer_size=100_000, train_freq=(1, "step"), gradient_steps=1)
    return cls(_policy_name(cls), env, policy_kwargs=extractor, **kwargs)


def _policy_name(cls: type[BaseAlgorithm]) -> str:
    return "MultiInputLstmPolicy" if "MultiInputLstmPolicy" in getattr(cls, "policy_aliases", {}) else "MultiInputPolicy"


class SB3Agent(FocusAgent):
    """A trained SB3 model as a FocusAgent: ``act`` runs its policy on device tensors, no host copy."""

    def __init__(self, model: BaseAlgorithm) -> None:
        self.model = model
        self.policy = model.policy
        self.recurrent = hasattr(self.policy, "lstm_actor")
        self.action_space = model.action_space
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self, num_envs: int) -> None:
        self.state = None

    @torch.no_grad()
    def act(self, observation: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        self.policy.set_training_mode(False)
        obs = {k: v.to(self.policy.device) for k, v in observation.items()}
        if self.recurrent:
            n = obs["glance"].shape[0]
            starts = torch.zeros(n, device=self.policy.device)
            if self.state is None or self.state[0].shape[1] != n:
                lstm = self.policy.lstm_actor
                zeros = torch.zeros(lstm.num_layers, n, lstm.hidden_size, device=self.policy.device)
                self.state, starts = (zeros, zeros.clone()), torch.ones(n, device=self.policy.device)
            actions, self.state = self.policy._predict(obs, self.state, starts, deterministic)
        else:
            actions = self.policy._predict(obs, deterministic=deterministic)
        if isinstance(self.action_space, spaces.Box):
            actions = actions.clamp(-1, 1)
        return actions.to(observation["glance"].device)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        return self.model.predict(observation, state, episode_start, deterministic)


def save_agent(model: BaseAlgorithm, path: Path, config: dict[str, Any]) -> None:
    """SB3's own zip format, plus the run config beside it (``<path>.json``), each written to a temporary
    file and renamed into place, so a crash never leaves a half-written policy."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    model.save(tmp)
    os.replace(tmp, path)
    meta = path.with_suffix(".json")
    tmp = meta.with_name(f".{meta.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, meta)


def load_agent(path: Path, algo: str, device: str | torch.device = "auto") -> SB3Agent:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"policy file {path} does not exist")
    return SB3Agent(resolve_algorithm(algo).load(path, device=device))


def policy_gmacs(agent: FocusAgent, observation_space: spaces.Dict, device: torch.device) -> float:
    """GMACs of one act() of ``agent`` for one observation (0 for the non-learned policies)."""
    from adafocus.backbones import count_gmacs

    obs = {k: torch.as_tensor(np.zeros((1, *s.shape), np.float32), device=device) for k, s in observation_space.spaces.items()}
    agent.reset(1)
    gmacs = count_gmacs(lambda o: agent.act(o, deterministic=True), obs)
    agent.reset(1)
    return gmacs
