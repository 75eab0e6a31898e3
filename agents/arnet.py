"""AR-Net (Meng et al., ECCV 2020): per frame, a policy picks the main network's input resolution, or skips.

A lightweight policy network looks at a low-resolution view of each frame (here f_G's map of the frame at
``global_size``, read by a :class:`PreviewHead`) and an LSTM over the frames so far; its output is a choice
among the resolutions of the main network and "skip". The video prediction averages the frame logits of
the processed frames. Trained jointly with the straight-through Gumbel-softmax and an efficiency loss
(the expected GFLOPs, as a fraction of the whole-frame cost of every frame, weighted by
``efficiency_weight``). Not RL: a supervised loss through the shared training loop.

Choices where this project's setting differs from the paper's or the paper leaves a detail open:

- One main network for every resolution: the shared f_L (frozen, from the warm-up) with one trainable linear
  head per resolution (initialised from the warm-up's whole-frame head). The paper trains a ResNet per
  resolution end to end; here every baseline shares AdaFocus's backbones, and f_L's features are
  computed once per split so that training takes seconds.
- The policy's view is f_G's glance (the frame at ``global_size``: 84 in the paper, 56 on the 112-pixel
  synthetic frames) rather than a separate MobileNet-V2.
- Resolutions and efficiency weight are options: :data:`PAPER` is the paper's 224/168/112/84 + skip;
  :data:`SYNTHETIC` scales them to 112-pixel frames (112/84/56/42 + skip). The Gumbel temperature is fixed.
  The paper tunes the efficiency weight per dataset. On the synthetic benchmarks the preview cannot tell frames
  apart, and the weight acts as a switch between reading every frame at full size and skipping every frame;
  where it switches depends on the seed (measured on ``synthetic``, seeds 0/1/2: weight 1 reads all 8
  frames for all three; 1.5 reads 8 / 7 / 0; 2 reads 8 / 0 / 0; 2.5 read 6 / 0 / 0). The default 1 is the
  largest tried that reads every frame for all three seeds.
- A video whose every frame is skipped predicts uniform logits (zeros).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adafocus.backbones import AdaFocusModel
from adafocus.backbones.selectors import PreviewHead, gumbel_choice

from .frame_selection import FrozenFeatures, PreviewSelector, Selection


@dataclass(frozen=True)
class ARNetConfig:
    resolutions: tuple[int, ...] = (112, 84, 56, 42)
    """the main network's input sides ("skip" is added); left at this default, scaled to the frame size by
    adafocus.baselines.with_preset_defaults"""
    efficiency_weight: float = 1.0
    """lambda of the efficiency loss (GFLOPs as a fraction of all-full-frame)"""
    tau: float = 1.0
    """Gumbel-softmax temperature"""
    preview_dim: int = 64
    """width of the preview features the policy reads"""
    hidden_size: int = 64
    """width of the policy's LSTM"""


PAPER = ARNetConfig(resolutions=(224, 168, 112, 84))
SYNTHETIC = ARNetConfig()


class ARNet(PreviewSelector):
    """``choices`` (B, T): the index into ``config.resolutions`` of each frame, ``len(resolutions)`` = skipped."""

    name = "arnet"

    def __init__(self, model: AdaFocusModel, config: ARNetConfig = SYNTHETIC) -> None:
        super().__init__(model)
        if not config.resolutions or any(r < 1 or r > self.frame_size for r in config.resolutions):
            raise ValueError(f"resolutions must be sides in 1..{self.frame_size} (the frame size), got {config.resolutions}")
        if len(set(config.resolutions)) != len(config.resolutions):
            raise ValueError(f"resolutions must be distinct, got {config.resolutions}")
        if config.efficiency_weight < 0:
            raise ValueError(f"efficiency_weight must be >= 0, got {config.efficiency_weight}")
        self.config = config
        self.preview = PreviewHead(*self.map_shape, dim=config.preview_dim)
        self.policy_rnn = nn.LSTMCell(config.preview_dim, config.hidden_size)
        self.policy_out = nn.Linear(config.hidden_size, len(config.resolutions) + 1)
        base = self.backbones["local_head"][-1]
        self.heads = nn.ModuleList(nn.Linear(base.in_features, base.out_features) for _ in config.resolutions)
        with torch.no_grad():
            for head in self.heads:
                head.load_state_dict(base.state_dict())

    @property
    def resolutions(self) -> tuple[int, ...]:
        return self.config.resolutions

    @property
    def skip(self) -> int:
        return len(self.config.resolutions)

    def decide(self, maps: torch.Tensor) -> torch.Tensor:
        """f_G maps (B, T, C, h, w) -> the policy's logits over resolutions + skip (B, T, R + 1)."""
        b, t = maps.shape[:2]
        preview = self.preview(maps.flatten(0, 1)).unflatten(0, (b, t))
        state, logits = None, []
        for step in range(t):
            state = self.policy_rnn(preview[:, step], state)
            logits.append(self.policy_out(state[0]))
        return torch.stack(logits, 1)

    @property
    def option_gmacs(self) -> torch.Tensor:
        """GFLOPs of the main network per option (R + 1,): each resolution's f_L + head, 0 for skip."""
        read = self.read_gmacs
        return torch.tensor([read[r] for r in self.resolutions] + [0.0])

    def _video_gmacs(self, onehot: torch.Tensor) -> torch.Tensor:
        """(B, T, R + 1) one-hot choices -> GFLOPs per video (B,), differentiable in the choices."""
        costs = self.option_gmacs.to(onehot)
        return self.decision_gmacs(onehot.shape[1]) + (onehot * costs).sum((1, 2))

    def select(self, features: FrozenFeatures) -> Selection:
        onehot = gumbel_choice(self.decide(features.maps), self.config.tau, self.training)
        frame_logits = torch.stack([head(features.local[r]) for head, r in zip(self.heads, self.resolutions)], 2)
        processed = onehot[..., :self.skip]  # (B, T, R)
        summed = torch.einsum("btr,btrk->bk", processed, frame_logits)
        logits = summed / processed.sum((1, 2)).clamp_min(1.0)[:, None]
        return Selection(logits, self._video_gmacs(onehot), onehot.argmax(-1))

    def loss(self, selection: Selection, labels: torch.Tensor) -> torch.Tensor:
        t = selection.choices.shape[1]
        full = t * self.read_gmacs[max(self.resolutions)]
        return F.cross_entropy(selection.logits, labels) + self.config.efficiency_weight * (selection.gmacs / full).mean()

    def usage(self, selection: Selection) -> dict[str, float]:
        """Frames read per video, and per resolution (``frames_at_<side>``)."""
        counts = torch.bincount(selection.choices.flatten(), minlength=self.skip + 1).float() / len(selection.choices)
        return {"frames_read": float(counts[:self.skip].sum()),
                **{f"frames_at_{r}": float(c) for r, c in zip(self.resolutions, counts[:self.skip])}}

    @torch.no_grad()
    def predict(self, frames: torch.Tensor) -> Selection:
        self._check_frames(frames)
        b, t = frames.shape[:2]
        flat = frames.flatten(0, 1)
        choices = self.decide(self.glance(flat).unflatten(0, (b, t))).argmax(-1)  # (B, T)
        summed = torch.zeros(b * t, self.num_classes, device=frames.device)
        for option, (head, r) in enumerate(zip(self.heads, self.resolutions)):
            pick = (choices.flatten() == option).nonzero().squeeze(1)
            if len(pick):  # the main network runs only on the frames given this resolution
                summed[pick] = head(self.read(flat[pick], r))
        processed = (choices != self.skip).sum(1)
        logits = summed.unflatten(0, (b, t)).sum(1) / processed.clamp_min(1)[:, None]
        onehot = F.one_hot(choices, self.skip + 1).float()
        return Selection(logits, self._video_gmacs(onehot), choices)
