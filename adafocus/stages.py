"""The supervised stages as tasks of the one training loop: warm-up, stage I, stage III."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from adafocus.backbones import AdaFocusModel, ClipFocusModel, evaluating, patch_corners, random_corners
from adafocus.data.clips import ClipSet
from adafocus.envs.episodes import EpisodeBatch

from .config import StageConfig
from .training import StageTask


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at every step t, averaged over steps (the paper's code): (B, T, K), (B,)."""
    return F.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1]))


class WarmupTask(StageTask):
    """Stage 0: f_G and f_L each classify whole frames (their own linear heads, frame logits averaged).

    With ``train_global=False`` (lr_global = 0) f_G is left as it is and not even run.
    """

    def __init__(self, model: AdaFocusModel, train_global: bool = True) -> None:
        super().__init__()
        self.model, self.train_global = model, train_global

    def train(self, mode: bool = True) -> "WarmupTask":
        super().train(mode)
        if not self.train_global:
            self.model.global_encoder.eval()
        return self

    def forward(self, batch: dict[str, Any]):
        frames, labels = batch["frames"], batch["label"]
        full = self.model.classify_full_frames(frames)
        loss = F.cross_entropy(full, labels)
        if self.train_global:
            loss = loss + F.cross_entropy(self.model.classify_global_frames(frames), labels)
        return loss, full, labels

    def param_groups(self, stage: StageConfig) -> list[dict[str, Any]]:
        m = self.model
        return [{"params": [*m.global_encoder.parameters(), *m.global_head.parameters()], "lr": stage.lr_global},
                {"params": [*m.local_encoder.parameters(), *m.local_head.parameters()], "lr": stage.lr_local}]


class PatchTask(StageTask):
    """Stage I: f_L and f_C on patches placed without a policy (``random`` in the paper); f_G frozen.

    The global-only classifier (f_C without a patch) trains beside f_C on the same f_G features.
    ``oracle`` centres the patch on the annotated target, ``center`` on the frame, ``none`` trains
    the global-only classifier alone; these give the benchmark's reference points.
    """

    PLACEMENTS = ("random", "oracle", "center", "none")

    def __init__(self, model: AdaFocusModel, placement: str = "random") -> None:
        super().__init__()
        if placement not in self.PLACEMENTS:
            raise ValueError(f"patches must be one of {self.PLACEMENTS}, got {placement!r}")
        self.model, self.placement = model, placement

    def train(self, mode: bool = True) -> "PatchTask":
        super().train(mode)
        self.model.global_encoder.eval()  # frozen: its BatchNorm statistics stay
        return self

    def corners(self, frames: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
        b, t, _, h, w = frames.shape
        p = self.model.config.patch_size
        if self.placement == "random":
            return random_corners(torch.rand(b, t, 2, device=frames.device), (h, w), p)
        if self.placement == "oracle":
            if boxes is None:
                raise ValueError("oracle patches need target boxes (annotated, synthetic videos)")
            centres = (boxes[..., :2] + boxes[..., 2:]) / 2 / torch.tensor([w, h], device=frames.device)
        else:
            centres = torch.full((b, t, 2), 0.5, device=frames.device)
        return patch_corners(centres.flatten(0, 1), (h, w), p).unflatten(0, (b, t))

    def forward(self, batch: dict[str, Any]):
        frames, labels = batch["frames"], batch["label"]
        with torch.no_grad():
            pooled = self.model.glance(frames).mean(dim=(-2, -1))
        global_logits = self.model.global_classifier(pooled)[0]
        loss = sequence_loss(global_logits, labels)
        if self.placement == "none":
            return loss, global_logits[:, -1], labels
        logits = self.model.classify_patches(pooled, frames, self.corners(frames, batch.get("boxes")))
        return loss + sequence_loss(logits, labels), logits[:, -1], labels

    def param_groups(self, stage: StageConfig) -> list[dict[str, Any]]:
        m = self.model
        return [{"params": list(m.local_encoder.parameters()), "lr": stage.lr_local},
                {"params": [*m.classifier.parameters(), *m.global_classifier.parameters()], "lr": stage.lr_classifier}]


class ClipPatchTask(StageTask):
    """Stage I of clip-level AdaFocus (Section 4.2): f_L and f_C's linear layer on one patch per clip, placed
    ``random`` (the paper), ``oracle`` (the target's mean box over the focus frames) or ``center``; ``full``
    trains the same networks on whole glance frames instead: the TSM+ baseline. f_G and its head stay frozen.
    Batches hold clips of G glance frames then T focus frames (:meth:`ClipFocusModel.split`).
    """

    PLACEMENTS = ("random", "oracle", "center", "full")

    def __init__(self, model: ClipFocusModel, placement: str = "random") -> None:
        super().__init__()
        if placement not in self.PLACEMENTS:
            raise ValueError(f"patches must be one of {self.PLACEMENTS} for the clip-level model, got {placement!r}")
        self.model, self.placement = model, placement

    def train(self, mode: bool = True) -> "ClipPatchTask":
        super().train(mode)
        self.model.global_encoder.eval()
        self.model.global_head.eval()
        return self

    def corners(self, frames: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
        b, _, _, h, w = frames.shape
        p = self.model.config.patch_size
        if self.placement == "random":
            return random_corners(torch.rand(b, 2, device=frames.device), (h, w), p)
        if self.placement == "oracle":
            if boxes is None:
                raise ValueError("oracle patches need target boxes (annotated, synthetic videos)")
            focus = boxes[:, self.model.glance_frames:]  # the patch is read from the focus frames only
            centres = ((focus[..., :2] + focus[..., 2:]) / 2).mean(dim=1) / torch.tensor([w, h], device=frames.device)
        else:
            centres = torch.full((b, 2), 0.5, device=frames.device)
        return patch_corners(centres, (h, w), p)

    def forward(self, batch: dict[str, Any]):
        frames, labels = batch["frames"], batch["label"]
        if self.placement == "full":
            logits = self.model.classify_tsm_plus(frames)
        else:
            corners = self.corners(frames, batch.get("boxes"))
            logits = self.model.classify_patches(frames, corners)
        return F.cross_entropy(logits, labels), logits, labels

    def param_groups(self, stage: StageConfig) -> list[dict[str, Any]]:
        m = self.model
        return [{"params": list(m.local_encoder.parameters()), "lr": stage.lr_local},
                {"params": list(m.classifier.parameters()), "lr": stage.lr_classifier}]


class PolicyTask(StageTask):
    """Stage III: f_C fine-tuned on the patches a learned (deterministic) policy picks.

    Each batch of videos (from the same loader as stage I) is loaded into the episodes, which run f_G on it
    once, and rolled out without gradients through the frozen f_G / f_L, with pi reading the current f_C's
    state exactly as at test time; f_C then learns on the f_L features it was shown.
    """

    def __init__(self, model: AdaFocusModel | ClipFocusModel, agent, episodes: EpisodeBatch) -> None:
        super().__init__()
        self.model, self.agent, self.episodes = model, agent, episodes

    def train(self, mode: bool = True) -> "PolicyTask":
        super().train(mode)
        self.model.global_encoder.eval()
        self.model.local_encoder.eval()
        return self

    def forward(self, batch: dict[str, Any]):
        episodes = self.episodes
        with torch.no_grad(), evaluating(self.model.classifier):
            episodes.load(ClipSet.from_batch(batch))
            obs, local = episodes.begin(torch.arange(episodes.num_videos)), []
            self.agent.reset(episodes.num_envs)  # a recurrent pi starts each video from its zero state
            for _ in range(episodes.num_steps):
                result = episodes.step(self.agent.act(obs, deterministic=True))
                obs = result.observation
                local.append(result.local)
        logits = episodes.replay_logits(local)
        return sequence_loss(logits, episodes.labels), logits[:, -1], episodes.labels

    def param_groups(self, stage: StageConfig) -> list[dict[str, Any]]:
        return [{"params": list(self.model.classifier.parameters()), "lr": stage.lr_classifier}]
