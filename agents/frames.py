"""Frame policies (pi', AdaFrame, MultiAgent): their features extractor, SB3 algorithms by name, the
agent interface with a utility estimate, and the non-learned frame selections (uniform, oracle)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from .algorithms import CONTINUOUS_ONLY, SB3Agent, resolve_algorithm


class FrameExtractor(BaseFeaturesExtractor):
    """A frame policy's trunk: f_G's map (``glance``, when observed) through GroupNorm and a 1x1 conv as in
    pi's :class:`GlanceExtractor`, every other (vector) observation concatenated, then linear -> ReLU."""

    def __init__(self, observation_space: spaces.Dict, features_dim: int = 256, conv_channels: int = 16) -> None:
        super().__init__(observation_space, features_dim)
        self.vector_keys = sorted(k for k in observation_space.spaces if k != "glance")
        width = sum(int(np.prod(observation_space[k].shape)) for k in self.vector_keys)
        self.conv = None
        if "glance" in observation_space.spaces:
            channels, h, w = observation_space["glance"].shape
            self.conv = nn.Sequential(nn.GroupNorm(1, channels), nn.Conv2d(channels, conv_channels, 1),
                                      nn.ReLU(inplace=True), nn.Flatten())
            width += conv_channels * h * w
        self.fuse = nn.Sequential(nn.Linear(width, features_dim), nn.ReLU(inplace=True))

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [observations[k].flatten(1) for k in self.vector_keys]
        if self.conv is not None:
            parts.append(self.conv(observations["glance"]))
        return self.fuse(torch.cat(parts, dim=1))


def make_frame_algorithm(algo: str, env: VecEnv, settings: Any, horizon: int, seed: int = 0,
                         device: str | torch.device = "auto", tensorboard_log: str | None = None) -> BaseAlgorithm:
    """Any SB3 algorithm of :data:`ALGORITHMS` (or ``package.module:Class``) on a frame-policy VecEnv.

    ``settings`` carries learning_rate, gamma, gae_lambda, ent_coef, vf_coef, n_epochs, clip_range,
    minibatches, videos_per_update, features_dim, conv_channels (a :class:`adafocus.frame_training.FrameConfig`). On-policy
    algorithms collect about ``videos_per_update`` episodes of ``horizon`` steps per update.
    """
    name = algo.lower()
    if name in CONTINUOUS_ONLY or name.rsplit(":", 1)[-1].lower() in CONTINUOUS_ONLY:
        raise ValueError(f"--frame.algo {algo}: frame policies choose among discrete options; "
                         "use ppo, a2c, dqn, qrdqn or recurrent_ppo")
    cls = resolve_algorithm(algo)
    policy_kwargs: dict[str, Any] = {"features_extractor_class": FrameExtractor,
                                     "features_extractor_kwargs": {"features_dim": settings.features_dim,
                                                                   "conv_channels": settings.conv_channels}}
    kwargs: dict[str, Any] = {"learning_rate": settings.learning_rate, "gamma": settings.gamma, "seed": seed,
                              "device": device, "tensorboard_log": tensorboard_log, "verbose": 0}
    policy_name = "MultiInputLstmPolicy" if "MultiInputLstmPolicy" in getattr(cls, "policy_aliases", {}) else "MultiInputPolicy"
    if issubclass(cls, OnPolicyAlgorithm):
        n_steps = max(2, settings.videos_per_update * horizon // env.num_envs)
        kwargs.update(n_steps=n_steps, gae_lambda=settings.gae_lambda, ent_coef=settings.ent_coef,
                      vf_coef=settings.vf_coef)
        if "n_epochs" in cls.__init__.__code__.co_varnames:  # PPO family
            kwargs.update(batch_size=max(2, n_steps * env.num_envs // settings.minibatches),
                          n_epochs=settings.n_epochs, clip_range=settings.clip_range)
        if policy_name == "MultiInputPolicy":
            policy_kwargs["net_arch"] = [64]
    else:
        kwargs.update(learning_starts=min(1000, 10 * horizon * env.num_envs), batch_size=256,
                      buffer_size=100_000, train_freq=(1, "step"), gradient_steps=1)
    return cls(policy_name, env, policy_kwargs=policy_kwargs, **kwargs)


class FrameAgent(SB3Agent):
    """A trained frame policy: ``act`` on device tensors, and ``utility``, its estimate of the reward
    still to come (the critic's value, or the best Q-value for DQN-like algorithms): AdaFrame's stop rule."""

    @torch.no_grad()
    def act(self, observation: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        any_obs = next(iter(observation.values()))
        if self.recurrent:  # SB3's own predict carries the LSTM state across calls (on the host)
            n = any_obs.shape[0]
            starts = np.full(n, self.state is None or self.state[0].shape[1] != n)
            host = {k: v.cpu().numpy() for k, v in observation.items()}
            actions, self.state = self.model.predict(host, None if starts[0] else self.state, starts, deterministic)
            return torch.as_tensor(actions, device=any_obs.device)
        self.policy.set_training_mode(False)
        obs = {k: v.to(self.policy.device) for k, v in observation.items()}
        return self.policy._predict(obs, deterministic=deterministic).to(any_obs.device)

    @torch.no_grad()
    def utility(self, observation: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) expected future reward from these observations."""
        self.policy.set_training_mode(False)
        obs = {k: v.to(self.policy.device) for k, v in observation.items()}
        if hasattr(self.policy, "predict_values") and not self.recurrent:
            values = self.policy.predict_values(obs)[:, 0]
        elif hasattr(self.policy, "q_net"):
            values = self.policy.q_net(obs).amax(-1)
        else:
            raise ValueError(f"{type(self.model).__name__} has no value estimate for AdaFrame's utility stop")
        return values.to(next(iter(observation.values())).device)


def frame_policy_gmacs(agent: FrameAgent, observation_space: spaces.Dict, device: torch.device) -> float:
    """GMACs of one decision of a frame policy (one observation)."""
    from adafocus.backbones import count_gmacs

    obs = {k: torch.zeros((1, *s.shape), device=device) for k, s in observation_space.spaces.items()}
    agent.reset(1)
    gmacs = count_gmacs(lambda o: agent.act(o, deterministic=True), obs)
    agent.reset(1)
    return gmacs


def uniform_frames(num_videos: int, num_frames: int, k: int) -> torch.Tensor:
    """K frames per video, one at the centre of each of K equal segments (TSN's test sampling): (V, K)."""
    if not 1 <= k <= num_frames:
        raise ValueError(f"k must be in [1, {num_frames}], got {k}")
    frames = ((torch.arange(k) + 0.5) * num_frames / k).long()
    return frames.expand(num_videos, k).clone()


def oracle_frames(readable: torch.Tensor, k: int) -> torch.Tensor:
    """K frames per video chosen with the annotation: readable frames first (in temporal order), then the
    others in temporal order; the chosen K are returned sorted in time: (V, T) bool -> (V, K)."""
    if readable is None:
        raise ValueError("oracle frames need clips with per-frame 'readable' annotations (the temporal synthetic variant)")
    v, t = readable.shape
    if not 1 <= k <= t:
        raise ValueError(f"k must be in [1, {t}], got {k}")
    index = torch.arange(t, device=readable.device).expand(v, t)
    rank = index + t * (~readable).long()  # readable frames sort before the rest, each group in time order
    return rank.argsort(dim=1)[:, :k].sort(dim=1).values
