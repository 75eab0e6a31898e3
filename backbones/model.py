"""The AdaFocus network: f_G, f_L and f_C together, with the batched glance and focus operations."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .classifier import RecurrentClassifier
from .crop import crop_patches
from .encoders import Encoder, EncoderSpec, normalize


@dataclass(frozen=True)
class ModelConfig:
    """Shape of an AdaFocus network. Defaults are the paper's Section 4.1 setting (ActivityNet)."""

    global_encoder: EncoderSpec = field(default_factory=lambda: EncoderSpec("mobilenet_v2", "imagenet"))
    """f_G: the cheap network on the whole frame (the paper: MobileNet-V2)"""
    local_encoder: EncoderSpec = field(default_factory=lambda: EncoderSpec("resnet50", "imagenet"))
    """f_L: the expensive network on the patch (the paper: ResNet-50)"""
    num_classes: int = 200
    """classes of the dataset"""
    frame_size: int = 224
    """frames reach the model at frame_size x frame_size"""
    global_size: int = 224
    """f_G's input side (the whole frame, resized)"""
    patch_size: int = 128
    """P: f_L's input side, cropped at full resolution"""
    hidden_size: int = 1024
    """f_C's GRU width (per-frame AdaFocus only)"""
    dropout: float = 0.8
    """dropout before every classification head"""
    glance_frames: int | None = None
    """None: per-frame AdaFocus (Section 4.1); n: clip-level AdaFocus (Section 4.2), f_G on n frames"""


def _head(in_features: int, config: ModelConfig) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(config.dropout), nn.Linear(in_features, config.num_classes))


class _FocusNetwork(nn.Module):
    """What both AdaFocus forms share: f_G, f_L, the glance input and the patch crop."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.global_encoder = Encoder(config.global_encoder)
        self.local_encoder = Encoder(config.local_encoder)

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.config.frame_size, self.config.frame_size

    def global_view(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (N, 3, H, W) -> normalised f_G input (N, 3, global_size, global_size).

        Resized first, then normalised: the per-pixel work is done on the small image. On the CPU the resize
        runs on the uint8 frames (torch's vectorised uint8 path, ~3x faster; within one grey level of the
        float resize), elsewhere in float.
        """
        size = self.config.global_size
        if frames.shape[-1] == size and frames.shape[-2] == size:
            return normalize(frames)
        if frames.dtype == torch.uint8 and frames.device.type == "cpu":
            return normalize(F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
        images = F.interpolate(frames.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return normalize(images, scale=1.0)


class AdaFocusModel(_FocusNetwork):
    """f_G (``global_encoder``), f_L (``local_encoder``), f_C (``classifier``) and two baselines' heads.

    ``global_classifier`` is f_C without the local input (the global-only baseline, trained beside f_C
    in stage I); ``global_head`` and ``local_head`` are the linear heads of the warm-up stage, where
    f_G and f_L classify whole frames; ``local_head`` over f_L on whole frames is the full-frame baseline.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        if self.global_encoder.temporal or self.local_encoder.temporal:
            raise ValueError("temporally shifted encoders see whole clips: use the clip-level model "
                             "(--model.glance_frames, Section 4.2)")
        gdim, ldim = self.global_encoder.out_channels, self.local_encoder.out_channels
        self.classifier = RecurrentClassifier(gdim, ldim, config.num_classes, config.hidden_size, config.dropout)
        self.global_classifier = RecurrentClassifier(gdim, 0, config.num_classes, config.hidden_size, config.dropout)
        self.global_head = _head(gdim, config)
        self.local_head = _head(ldim, config)

    def glance(self, frames: torch.Tensor) -> torch.Tensor:
        """f_G over whole frames: uint8 (B, T, 3, H, W) -> spatial maps (B, T, C, h, w)."""
        b, t = frames.shape[:2]
        maps = self.global_encoder.forward_map(self.global_view(frames.flatten(0, 1)))
        return maps.unflatten(0, (b, t))

    def focus(self, frames: torch.Tensor, corners: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """f_L over patches: uint8 frames (M, 3, H, W), corners (N, 2), patch n from frame ``index[n]``
        (default n) -> features (N, D_L)."""
        return self.local_encoder(normalize(crop_patches(frames, corners, self.config.patch_size, index)))

    def classify_patches(self, global_feats: torch.Tensor, frames: torch.Tensor,
                         corners: torch.Tensor) -> torch.Tensor:
        """f_C over a whole clip: pooled f_G (B, T, Dg), frames (B, T, 3, H, W), corners (B, T, 2) -> logits (B, T, K)."""
        b, t = frames.shape[:2]
        local = self.focus(frames.flatten(0, 1), corners.flatten(0, 1)).unflatten(0, (b, t))
        return self.classifier(global_feats, local)[0]

    def classify_full_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The full-frame baseline: f_L on every whole frame, frame logits averaged: (B, T, 3, H, W) -> (B, K)."""
        b, t = frames.shape[:2]
        feats = self.local_encoder(normalize(frames.flatten(0, 1)))
        return self.local_head(feats).unflatten(0, (b, t)).mean(dim=1)

    def classify_global_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Warm-up head of f_G: frame logits averaged over T: (B, T, 3, H, W) -> (B, K)."""
        pooled = self.glance(frames).mean(dim=(-2, -1))
        return self.global_head(pooled).mean(dim=1)
