"""Listen-to-look, image-based version (Gao et al., CVPR 2020): a cheap preview of every frame drives an
attention-based recurrent selector that picks K frames for the expensive classifier.

The paper's preview is image + audio; AdaFocus compares with its image-based version, as here. Not RL: the
selector trains by cross-entropy on the classifier's prediction through the shared training loop.

Design (the nearest reasonable reading of the paper where this setting differs):

- Preview: f_G's glance of every frame through a :class:`PreviewHead` -> one key per frame (B, T, D).
- Selector: an LSTM, started from the mean key (a summary of the whole preview); at each of K steps a
  query from its hidden state attends over the keys (scaled dot product, frames already picked masked);
  the frame with the highest attention is picked (a straight-through Gumbel-softmax sample in training, the
  argmax at test), and its key is the LSTM's next input.
- Classifier: the frozen f_L with its whole-frame head (the full-frame baseline's) on the K picked frames,
  logits averaged. In training the one-hot picks weight the precomputed frame logits, so the
  cross-entropy's gradient reaches the selector through the straight-through estimator.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from adafocus.backbones import AdaFocusModel
from adafocus.backbones.selectors import PreviewHead, gumbel_choice

from .frame_selection import FrozenFeatures, PreviewSelector, Selection


class ListenToLook(PreviewSelector):
    """``choices`` (B, K): the indices of the picked frames, in the order they were picked."""

    name = "listen_to_look"

    def __init__(self, model: AdaFocusModel, frames: int = 4, preview_dim: int = 64, hidden_size: int = 64,
                 tau: float = 1.0) -> None:
        super().__init__(model)
        if frames < 1:
            raise ValueError(f"frames (K, how many frames the classifier reads) must be >= 1, got {frames}")
        self.frames, self.tau = frames, tau
        self.preview = PreviewHead(*self.map_shape, dim=preview_dim)
        self.rnn = nn.LSTMCell(preview_dim, hidden_size)
        self.query = nn.Linear(hidden_size, preview_dim)

    def decide(self, maps: torch.Tensor) -> torch.Tensor:
        """f_G maps (B, T, C, h, w) -> one-hot picks (B, K, T) (Gumbel samples in train mode)."""
        b, t = maps.shape[:2]
        if self.frames > t:
            raise ValueError(f"frames K={self.frames} exceeds the {t} frames per video")
        keys = self.preview(maps.flatten(0, 1)).unflatten(0, (b, t))
        state = self.rnn(keys.mean(1))
        taken = torch.zeros(b, t, dtype=torch.bool, device=maps.device)
        picks = []
        for _ in range(self.frames):
            attention = torch.einsum("btd,bd->bt", keys, self.query(state[0])) / math.sqrt(keys.shape[-1])
            onehot = gumbel_choice(attention.masked_fill(taken, -1e9), self.tau, self.training)
            picks.append(onehot)
            taken = taken | onehot.bool()
            state = self.rnn(torch.einsum("bt,btd->bd", onehot, keys), state)
        return torch.stack(picks, 1)

    def _gmacs(self, b: int, t: int, device: torch.device) -> torch.Tensor:
        return torch.full((b,), self.decision_gmacs(t) + self.frames * self.read_gmacs[self.frame_size], device=device)

    def select(self, features: FrozenFeatures) -> Selection:
        picks = self.decide(features.maps)  # (B, K, T)
        frame_logits = self.classify(features.local[self.frame_size])
        logits = torch.einsum("bkt,btc->bc", picks, frame_logits) / self.frames
        b, _, t = picks.shape
        return Selection(logits, self._gmacs(b, t, logits.device), picks.argmax(-1))

    def loss(self, selection: Selection, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(selection.logits, labels)

    @torch.no_grad()
    def predict(self, frames: torch.Tensor) -> Selection:
        self._check_frames(frames)
        b, t = frames.shape[:2]
        top = self.decide(self.glance(frames.flatten(0, 1)).unflatten(0, (b, t))).argmax(-1)  # (B, K)
        picked = frames[torch.arange(b, device=frames.device)[:, None], top]
        logits = self.classify(self.read(picked.flatten(0, 1), self.frame_size)).unflatten(0, (b, self.frames))
        return Selection(logits.mean(1), self._gmacs(b, t, frames.device), top)
