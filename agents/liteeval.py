"""LiteEval (Wu et al., NeurIPS 2019): a coarse LSTM reads cheap features of every frame; at each frame a
gate decides whether to also compute expensive fine features, which a fine LSTM consumes.

Trained with the straight-through Gumbel-softmax for the gates and a compute penalty beside the
cross-entropy. Not RL: a supervised loss through the shared training loop. The penalty is on the batch's
GFLOPs as a fraction u of reading every frame: ``compute_weight * (u - budget)^2`` with a target ``budget``
(a budget-matched setting, the default: half), or ``compute_weight * u`` with ``budget=None``. A plain
linear penalty flips between reading every frame and none on the synthetic benchmarks (measured: weight 0.25
reads 6.4 of 8 frames on the temporal variant, 0.5 reads none), so the default targets a budget.

Design, where this setting differs from the paper or the paper leaves a detail open:

- Coarse features: f_G's glance of each frame through a :class:`PreviewHead` (the paper: MobileNet-V2 on the
  frame downsampled). Fine features: the frozen f_L's pooled feature of the whole frame (the paper: ResNet).
- The gate reads both LSTMs' hidden states; the fine LSTM's input is [fine feature, coarse hidden state];
  when the gate is off, the fine LSTM's state is carried over unchanged.
- The prediction is a linear classifier on [coarse hidden, fine hidden] after the last frame.
"""
from __future__ import annotations

from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from adafocus.backbones import AdaFocusModel, count_gmacs, evaluating
from adafocus.backbones.selectors import PreviewHead, gumbel_choice

from .frame_selection import FrameSelector, FrozenFeatures, Selection


class LiteEval(FrameSelector):
    """``choices`` (B, T): 1 where the fine features of the frame were computed, else 0."""

    name = "liteeval"

    def __init__(self, model: AdaFocusModel, compute_weight: float = 10.0, budget: float | None = 0.5,
                 tau: float = 1.0, preview_dim: int = 64, coarse_size: int = 64, fine_size: int = 128) -> None:
        super().__init__(model)
        if compute_weight < 0:
            raise ValueError(f"compute_weight must be >= 0, got {compute_weight}")
        if budget is not None and not 0 <= budget <= 1:
            raise ValueError(f"budget must be a fraction in [0, 1] of reading every frame (or None), got {budget}")
        self.compute_weight, self.budget, self.tau = compute_weight, budget, tau
        self.preview = PreviewHead(*self.map_shape, dim=preview_dim)
        self.coarse = nn.LSTMCell(preview_dim, coarse_size)
        self.fine = nn.LSTMCell(self.local_dim + coarse_size, fine_size)
        self.gate = nn.Linear(coarse_size + fine_size, 2)
        self.head = nn.Linear(coarse_size + fine_size, self.num_classes)

    def _zeros(self, *shape: int) -> torch.Tensor:
        return torch.zeros(*shape, device=self.device)

    @cached_property
    def costs(self) -> dict[str, float]:
        """GFLOPs per frame of the coarse path (f_G, preview, coarse LSTM, gate), per fine frame (f_L, fine
        LSTM) and per video (the classifier)."""
        c, f = self.coarse.hidden_size, self.fine.hidden_size
        size = self.frame_size
        with evaluating(self):
            coarse = (self.glance_gmacs + count_gmacs(self.preview, self._zeros(1, *self.map_shape))
                      + count_gmacs(lambda x, h, s: self.coarse(x, (h, s)), self._zeros(1, self.coarse.input_size),
                                    self._zeros(1, c), self._zeros(1, c))
                      + count_gmacs(self.gate, self._zeros(1, c + f)))
            fine = (count_gmacs(self.backbones["local_encoder"], self._zeros(1, 3, size, size))
                    + count_gmacs(lambda x, h, s: self.fine(x, (h, s)), self._zeros(1, self.fine.input_size),
                                  self._zeros(1, f), self._zeros(1, f)))
            return {"coarse": coarse, "fine": fine, "classifier": count_gmacs(self.head, self._zeros(1, c + f))}

    def _video_gmacs(self, fine_frames: torch.Tensor, t: int) -> torch.Tensor:
        cost = self.costs
        return t * cost["coarse"] + cost["classifier"] + fine_frames * cost["fine"]

    def select(self, features: FrozenFeatures) -> Selection:
        maps, local = features.maps, features.local[self.frame_size]
        b, t = maps.shape[:2]
        preview = self.preview(maps.flatten(0, 1)).unflatten(0, (b, t))
        coarse = (self._zeros(b, self.coarse.hidden_size),) * 2
        fine = (self._zeros(b, self.fine.hidden_size),) * 2
        gates = []
        for step in range(t):
            coarse = self.coarse(preview[:, step], coarse)
            gate = gumbel_choice(self.gate(torch.cat([coarse[0], fine[0]], -1)), self.tau, self.training)[:, 1:]
            updated = self.fine(torch.cat([local[:, step], coarse[0]], -1), fine)
            fine = tuple(gate * new + (1 - gate) * old for new, old in zip(updated, fine))
            gates.append(gate[:, 0])
        gates = torch.stack(gates, 1)
        logits = self.head(torch.cat([coarse[0], fine[0]], -1))
        return Selection(logits, self._video_gmacs(gates.sum(1), t), gates.detach().long())

    def loss(self, selection: Selection, labels: torch.Tensor) -> torch.Tensor:
        t = selection.choices.shape[1]
        full = t * (self.costs["coarse"] + self.costs["fine"]) + self.costs["classifier"]
        used = (selection.gmacs / full).mean()
        penalty = used if self.budget is None else (used - self.budget) ** 2
        return F.cross_entropy(selection.logits, labels) + self.compute_weight * penalty

    def usage(self, selection: Selection) -> dict[str, float]:
        """Frames whose fine features were computed, per video."""
        return {"frames_read": float(selection.choices.float().sum(1).mean())}

    @torch.no_grad()
    def predict(self, frames: torch.Tensor) -> Selection:
        self._check_frames(frames)
        b, t = frames.shape[:2]
        preview = self.preview(self.glance(frames.flatten(0, 1))).unflatten(0, (b, t))
        coarse = (self._zeros(b, self.coarse.hidden_size),) * 2
        fine = [self._zeros(b, self.fine.hidden_size), self._zeros(b, self.fine.hidden_size)]
        gates = torch.zeros(b, t, dtype=torch.long, device=frames.device)
        for step in range(t):
            coarse = self.coarse(preview[:, step], coarse)
            on = self.gate(torch.cat([coarse[0], fine[0]], -1)).argmax(-1) == 1
            pick = on.nonzero().squeeze(1)
            if len(pick):  # f_L and the fine LSTM run only for the videos whose gate is on
                local = self.read(frames[pick, step], self.frame_size)
                h, c = self.fine(torch.cat([local, coarse[0][pick]], -1), (fine[0][pick], fine[1][pick]))
                fine[0], fine[1] = fine[0].index_copy(0, pick, h), fine[1].index_copy(0, pick, c)
            gates[:, step] = on.long()
        logits = self.head(torch.cat([coarse[0], fine[0]], -1))
        return Selection(logits, self._video_gmacs(gates.sum(1).float(), t), gates)
