"""SCSampler (Korbar et al., ICCV 2019), as AR-Net's authors implement it: a cheap saliency scorer ranks the
frames of a video; the expensive classifier runs on the top K only, and its frame logits are averaged.

Not RL: the scorer trains with its own supervised loss through the shared training loop.

Choices where the published description leaves a detail open:

- Frames, not clips: AdaFocus's comparison samples T frames per video, so the units ranked are frames.
- The scorer reads f_G's glance of each frame through a :class:`PreviewHead` and a linear layer, one frame
  at a time (no temporal context, as SCSampler's per-clip sampler).
- Its target is the expensive classifier's own evidence: the frozen classifier's softmax confidence on the
  true class in that frame (binary cross-entropy against it). SCSampler's saliency is "how useful this clip is
  to the action classifier"; the classifier's confidence is the direct measure of it.
- The expensive classifier is the frozen f_L with its whole-frame head (the full-frame baseline's), so the
  method changes only which frames it reads. K (``frames``) is an option; the default reads half the frames.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adafocus.backbones import AdaFocusModel
from adafocus.backbones.selectors import PreviewHead

from .frame_selection import FrozenFeatures, PreviewSelector, Selection


class SCSampler(PreviewSelector):
    """``choices`` (B, K): the indices of the K frames the classifier reads, by decreasing saliency."""

    name = "scsampler"

    def __init__(self, model: AdaFocusModel, frames: int = 4, preview_dim: int = 64) -> None:
        super().__init__(model)
        if frames < 1:
            raise ValueError(f"frames (K, how many frames the classifier reads) must be >= 1, got {frames}")
        self.frames = frames
        self.preview = PreviewHead(*self.map_shape, dim=preview_dim)
        self.score = nn.Linear(preview_dim, 1)

    def decide(self, maps: torch.Tensor) -> torch.Tensor:
        """f_G maps (B, T, C, h, w) -> saliency logits (B, T)."""
        b, t = maps.shape[:2]
        return self.score(self.preview(maps.flatten(0, 1))).view(b, t)

    def _top(self, scores: torch.Tensor) -> torch.Tensor:
        if self.frames > scores.shape[1]:
            raise ValueError(f"frames K={self.frames} exceeds the {scores.shape[1]} frames per video")
        return scores.topk(self.frames, dim=1).indices

    def _gmacs(self, b: int, t: int, device: torch.device) -> torch.Tensor:
        return torch.full((b,), self.decision_gmacs(t) + self.frames * self.read_gmacs[self.frame_size], device=device)

    def select(self, features: FrozenFeatures) -> Selection:
        scores = self.decide(features.maps)
        top = self._top(scores.detach())
        frame_logits = self.classify(features.local[self.frame_size])  # frozen classifier, (B, T, K)
        picked = frame_logits.gather(1, top[..., None].expand(-1, -1, frame_logits.shape[-1]))
        b, t = scores.shape
        return Selection(picked.mean(1), self._gmacs(b, t, scores.device), top,
                         {"scores": scores, "frame_logits": frame_logits})

    def loss(self, selection: Selection, labels: torch.Tensor) -> torch.Tensor:
        frame_logits = selection.aux["frame_logits"]
        confidence = frame_logits.softmax(-1).gather(-1, labels[:, None, None].expand(-1, frame_logits.shape[1], 1))
        return F.binary_cross_entropy_with_logits(selection.aux["scores"], confidence.squeeze(-1).detach())

    @torch.no_grad()
    def predict(self, frames: torch.Tensor) -> Selection:
        self._check_frames(frames)
        b, t = frames.shape[:2]
        scores = self.decide(self.glance(frames.flatten(0, 1)).unflatten(0, (b, t)))
        top = self._top(scores)
        picked = frames[torch.arange(b, device=frames.device)[:, None], top]  # (B, K, 3, H, W)
        logits = self.classify(self.read(picked.flatten(0, 1), self.frame_size)).unflatten(0, (b, self.frames))
        return Selection(logits.mean(1), self._gmacs(b, t, frames.device), top, {"scores": scores})
