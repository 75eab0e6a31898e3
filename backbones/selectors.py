"""Small networks shared by the frame-selection baselines (AR-Net, SCSampler, LiteEval, Listen-to-look).

Torch only: a preview head over f_G's spatial map, the straight-through Gumbel-softmax choice, and a resize
of uint8 frames to any input resolution of the expensive network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PreviewHead(nn.Module):
    """A frame's cheap preview feature from f_G's spatial map: 1x1 conv -> ReLU -> linear -> ReLU.

    The same shape as pi's features extractor in AdaFocus (the paper's 1x1 conv 1280 -> 32, then a linear
    layer), so every selector reads f_G the way pi does. (N, C, h, w) -> (N, dim).
    """

    def __init__(self, channels: int, height: int, width: int, dim: int = 64, conv_channels: int = 16) -> None:
        super().__init__()
        if min(channels, height, width, dim, conv_channels) < 1:
            raise ValueError(f"PreviewHead needs positive sizes, got channels={channels}, map {height}x{width}, "
                             f"dim={dim}, conv_channels={conv_channels}")
        self.dim = dim
        self.net = nn.Sequential(nn.Conv2d(channels, conv_channels, 1), nn.ReLU(inplace=True), nn.Flatten(),
                                 nn.Linear(conv_channels * height * width, dim), nn.ReLU(inplace=True))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.net(maps)


def gumbel_choice(logits: torch.Tensor, tau: float, training: bool) -> torch.Tensor:
    """One-hot choice over the last dimension.

    In training: a straight-through Gumbel-softmax sample (hard one-hot forward, the soft sample's gradient
    backward), as AR-Net and LiteEval train their discrete decisions. Otherwise: the argmax, one-hot.
    """
    if tau <= 0:
        raise ValueError(f"the Gumbel-softmax temperature tau must be positive, got {tau}")
    if training:
        return F.gumbel_softmax(logits, tau=tau, hard=True, dim=-1)
    return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 frames (N, 3, H, W) -> (N, 3, size, size) in [0, 255] (antialiased bilinear; uint8 kept on the CPU,
    float elsewhere), ready for :func:`adafocus.backbones.encoders.normalize`. Frames already at ``size`` pass."""
    if frames.shape[-2:] == (size, size):
        return frames
    if frames.dtype == torch.uint8 and frames.device.type == "cpu":
        return F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(frames.float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).clamp_(0, 255)
