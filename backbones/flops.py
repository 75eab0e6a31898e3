"""GFLOPs as the video papers count them: multiply-accumulates (GMACs), measured by torch's counter."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .clip_model import ClipFocusModel
from .model import AdaFocusModel


@contextmanager
def evaluating(*modules: nn.Module | None) -> Iterator[None]:
    """Eval mode inside the block (BatchNorm statistics must not move while counting), then restore."""
    saved = [(m, m.training) for module in modules if module is not None for m in module.modules()]
    for m, _ in saved:
        m.eval()
    try:
        yield
    finally:
        for m, mode in saved:
            m.train(mode)


@torch.no_grad()
def count_gmacs(fn: Callable[..., object], *inputs: torch.Tensor) -> float:
    """GMACs of one call ``fn(*inputs)``: torch.utils.flop_counter counts 2 FLOPs per multiply-add."""
    with FlopCounterMode(display=False) as counter:
        fn(*inputs)
    return counter.get_total_flops() / 2 / 1e9


@dataclass(frozen=True)
class StepCost:
    """GMACs per frame of each part of one AdaFocus step."""

    global_encoder: float  # f_G on the whole frame at global_size
    local_encoder: float  # f_L on one P x P patch
    classifier: float  # one step of f_C
    policy: float  # one step of pi (0 when no policy network runs)

    @property
    def total(self) -> float:
        return self.global_encoder + self.local_encoder + self.classifier + self.policy

    @property
    def without_patch(self) -> float:
        """A step that skips the patch: f_G, f_C, pi."""
        return self.global_encoder + self.classifier + self.policy

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


def step_cost(model: AdaFocusModel, policy: nn.Module | None = None,
              policy_inputs: tuple[torch.Tensor, ...] = ()) -> StepCost:
    """Measure the per-frame cost of ``model`` and the policy network (batch of one, on the model's device)."""
    cfg = model.config
    device = next(model.parameters()).device
    frame = torch.zeros(1, 3, cfg.global_size, cfg.global_size, device=device)
    patch = torch.zeros(1, 3, cfg.patch_size, cfg.patch_size, device=device)
    g = torch.zeros(1, 1, model.classifier.global_dim, device=device)
    l = torch.zeros(1, 1, model.classifier.local_dim, device=device)
    with evaluating(model, policy):
        return StepCost(
            global_encoder=count_gmacs(model.global_encoder.forward_map, frame),
            local_encoder=count_gmacs(model.local_encoder, patch),
            classifier=count_gmacs(model.classifier, g, l),
            policy=count_gmacs(policy, *policy_inputs) if policy is not None else 0.0,
        )


def clip_cost(model: ClipFocusModel, frames: int, policy: nn.Module | None = None,
              policy_inputs: tuple[torch.Tensor, ...] = ()) -> StepCost:
    """GMACs per clip of clip-level AdaFocus (Section 4.2): f_G on its G glance frames, f_L on ``frames`` (T)
    patches, f_C's linear layer and pi (the whole clip is one step)."""
    cfg = model.config
    device = next(model.parameters()).device
    glance = model.glance_frames
    with evaluating(model, policy):
        return StepCost(
            global_encoder=count_gmacs(lambda x: model.global_logits(model.global_encoder.forward_map(x, glance)[None]),
                                       torch.zeros(glance, 3, cfg.global_size, cfg.global_size, device=device)),
            local_encoder=count_gmacs(lambda x: model.local_encoder(x, frames),
                                      torch.zeros(frames, 3, cfg.patch_size, cfg.patch_size, device=device)),
            classifier=count_gmacs(model.classifier, torch.zeros(1, model.local_encoder.out_channels, device=device)),
            policy=count_gmacs(policy, *policy_inputs) if policy is not None else 0.0,
        )


def tsm_costs(model: ClipFocusModel, frames: int) -> dict[str, float]:
    """GMACs per clip of the clip model's baselines: ``tsm`` (f_L on the G glance frames, whole), ``tsm_plus``
    (that plus f_G, fused as f_C fuses) and ``global_only`` (f_G and its head); ``frames`` is T."""
    size = model.config.frame_size
    device = next(model.parameters()).device
    clip = torch.zeros(1, model.glance_frames + frames, 3, size, size, dtype=torch.uint8, device=device)
    with evaluating(model):
        return {"tsm": count_gmacs(model.classify_tsm, clip),
                "tsm_plus": count_gmacs(model.classify_tsm_plus, clip),
                "global_only": count_gmacs(model.classify_global_frames, clip)}


def full_frame_cost(model: AdaFocusModel) -> float:
    """GMACs per frame of the full-frame baseline: f_L and its head on the whole frame."""
    size = model.config.frame_size
    device = next(model.parameters()).device
    frame = torch.zeros(1, 1, 3, size, size, dtype=torch.uint8, device=device)
    with evaluating(model):
        return count_gmacs(model.classify_full_frames, frame)


def global_only_cost(model: AdaFocusModel) -> float:
    """GMACs per frame of the global-only baseline: f_G and f_C without a patch."""
    cfg = model.config
    device = next(model.parameters()).device
    frame = torch.zeros(1, 3, cfg.global_size, cfg.global_size, device=device)
    g = torch.zeros(1, 1, model.global_classifier.global_dim, device=device)
    with evaluating(model):
        return count_gmacs(model.global_encoder.forward_map, frame) + count_gmacs(model.global_classifier, g)
