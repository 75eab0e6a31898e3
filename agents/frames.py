"""Frame policies (pi', AdaFrame, MultiAgent): their features extractor and hyper-parameter entry (built by
:func:`~adafocus.agents.make_algorithm`), the agent interface with a utility estimate, and the non-learned
frame selections (uniform, oracle)."""
from __future__ import annotations


import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from .algorithms import SB3Agent, make_algorithm
from .config import PolicyConfig


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


FRAME_ENV_ID = "AdaFrame-v0"
"""the frame policies' entry in ``agents/hyperparams/<algo>.yml`` (shared with AdaFocusPlus-v0 and MultiAgent-v0)"""


def make_frame_algorithm(algo: str, env: VecEnv, config: PolicyConfig, horizon: int, seed: int = 0,
                         device: str | torch.device = "auto", tensorboard_log: str | None = None) -> BaseAlgorithm:
    """:func:`~adafocus.agents.make_algorithm` for a frame policy: its :class:`FrameExtractor` at ``config``'s
    widths, the frame policies' entry of the hyper-parameter files, episodes of ``horizon`` decisions."""
    extractor = (FrameExtractor, {"features_dim": config.features_dim, "conv_channels": config.conv_channels})
    return make_algorithm(algo, env, config, horizon, seed, device, tensorboard_log, env_id=FRAME_ENV_ID,
                          extractor=extractor)


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
