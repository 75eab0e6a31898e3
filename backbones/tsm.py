"""The temporal shift module (TSM, Lin et al., ICCV 2019), the backbone change of the paper's Section 4.2.

A 2D CNN sees the frames of a clip as a batch (B * T, C, H, W). Inside each residual block, a fraction of
the channels is shifted one frame back in time and the same fraction one frame forward (zeros where a
neighbour is missing), so the next convolution mixes information of frames t - 1, t and t + 1. The shift
adds no parameters and no multiply-adds.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torchvision.models import mobilenetv2, mobilenetv3, resnet

Placement = Literal["residual", "block"]


def temporal_shift(x: torch.Tensor, segments: int, fraction: float) -> torch.Tensor:
    """Shift channels of (B * T, C, H, W) features along time, T = ``segments``.

    The first ``int(C * fraction)`` channels of frame t take frame t + 1's values, the next as many take
    frame t - 1's, the rest stay (the TSM paper's fold of C / 8 each way is ``fraction = 1/8``).
    """
    if x.shape[0] % segments:
        raise ValueError(f"a batch of {x.shape[0]} frames is not a whole number of clips of {segments} frames")
    clips = x.view(x.shape[0] // segments, segments, *x.shape[1:])
    fold = int(x.shape[1] * fraction)
    out = torch.empty_like(clips)
    out[:, :-1, :fold] = clips[:, 1:, :fold]  # from the future
    out[:, -1, :fold] = 0
    out[:, 1:, fold:2 * fold] = clips[:, :-1, fold:2 * fold]  # from the past
    out[:, 0, fold:2 * fold] = 0
    out[:, :, 2 * fold:] = clips[:, :, 2 * fold:]
    return out.view_as(x)


class TemporalShift(nn.Module):
    """Runs ``net`` on temporally shifted input. ``segments`` (frames per clip) is set by the encoder that
    owns the module before each forward, since one network may see clips of different lengths."""

    def __init__(self, net: nn.Module, fraction: float) -> None:
        super().__init__()
        self.net, self.fraction, self.segments = net, fraction, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.segments, self.fraction))

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}"


def _residual_branch(block: nn.Module) -> tuple[nn.Module, str] | None:
    """(parent, attribute) of the first layer of a block's residual branch, or None if it has no identity path."""
    if isinstance(block, (resnet.BasicBlock, resnet.Bottleneck)):
        return block, "conv1"
    if isinstance(block, mobilenetv2.InvertedResidual) and block.use_res_connect:
        return block.conv, "0"
    if isinstance(block, mobilenetv3.InvertedResidual) and block.use_res_connect:
        return block.block, "0"
    return None


def add_temporal_shift(trunk: nn.Module, fraction: float = 0.125,
                       placement: Placement = "residual") -> list[TemporalShift]:
    """Insert temporal shifts into every residual block of a torchvision ResNet or MobileNet-V2/V3 trunk.

    ``residual`` shifts inside the residual branch, before its first layer (TSM's choice: the identity path
    keeps each frame's own features); ``block`` shifts the block's input, identity path included (TSM's
    "in-place" variant). Returns the inserted modules. Raises ValueError if the trunk has no residual block.
    """
    if not 0 < fraction <= 0.5:
        raise ValueError(f"shift fraction must be in (0, 0.5] (shifted both ways), got {fraction}")
    if placement not in ("residual", "block"):
        raise ValueError(f"shift placement must be 'residual' or 'block', got {placement!r}")
    targets = []
    for parent in trunk.modules():
        for name, child in parent.named_children():
            branch = _residual_branch(child)
            if branch is not None:
                targets.append((parent, name) if placement == "block" else branch)
    if not targets:
        raise ValueError("no residual block (ResNet BasicBlock/Bottleneck or MobileNet InvertedResidual with an "
                         "identity path) to shift in this network")
    shifts = []
    for parent, name in targets:
        shift = TemporalShift(getattr(parent, name), fraction)
        setattr(parent, name, shift)
        shifts.append(shift)
    return shifts
