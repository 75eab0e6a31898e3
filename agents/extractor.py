"""pi's network on f_G features, as a stable-baselines3 features extractor shared by every algorithm."""
from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class GlanceExtractor(BaseFeaturesExtractor):
    """The paper's pi trunk (its "state encoder"): 1x1 conv (C -> 32) on f_G's map -> ReLU -> linear -> ReLU.

    The paper's pi then runs its own GRU (``gru_ppo`` / ``paper_ppo``, :mod:`adafocus.agents.recurrent`);
    feed-forward algorithms instead read f_C's recurrent state from the ``memory`` observation when the env
    gives it, concatenated before the linear layer with ``progress`` (t / T).
    ``glance_norm`` first normalises the map over (C, h, w) per observation (GroupNorm with one group, eps
    1e-5): f_G's raw features can be tiny (a randomly initialised MobileNet trunk gives a std of ~0.002,
    where pi barely learned), and the normalisation lifts them; it is stateless, so training and acting
    agree. The authors' pi has no such layer (their f_G is ImageNet-trained).
    """

    def __init__(self, observation_space: spaces.Dict, features_dim: int = 1024, conv_channels: int = 32,
                 glance_norm: bool = True) -> None:
        super().__init__(observation_space, features_dim)
        channels, h, w = observation_space["glance"].shape
        extra = sum(int(observation_space[k].shape[0]) for k in ("memory", "progress") if k in observation_space.spaces)
        norm = [nn.GroupNorm(1, channels)] if glance_norm else []
        self.conv = nn.Sequential(*norm, nn.Conv2d(channels, conv_channels, 1), nn.ReLU(inplace=True), nn.Flatten())
        self.fuse = nn.Sequential(nn.Linear(conv_channels * h * w + extra, features_dim), nn.ReLU(inplace=True))
        self.keys = [k for k in ("memory", "progress") if k in observation_space.spaces]

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [self.conv(observations["glance"])] + [observations[k] for k in self.keys]
        return self.fuse(torch.cat(parts, dim=1))
