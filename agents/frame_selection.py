"""One interface for the frame-selection baselines: AR-Net, SCSampler, LiteEval and Listen-to-look.

These methods decide, from a cheap look at every frame, which frames (and at which resolution) the
expensive network reads. None of them is RL: each trains its own loss (cross-entropy, plus a compute
penalty where the method has one) through the shared supervised loop, over backbones shared with AdaFocus:

- the cheap view is f_G's spatial map of every whole frame (``global_size``), read by a
  :class:`~adafocus.backbones.selectors.PreviewHead` of the method's own;
- the expensive network is f_L with its whole-frame head (``local_head``) as the warm-up trained them,
  i.e. the full-frame baseline's classifier. Both stay frozen: their features are computed once per split
  (:meth:`FrameSelector.frozen_features`) and each method trains its selector (and the heads it owns).

Two paths give the same numbers: ``select(features)`` over precomputed frozen features (training, with
Gumbel samples in train mode), and ``predict(frames)`` from uint8 pixels, which runs f_L only on what was
selected and reports each video's GFLOPs (multiply-accumulates, the shared counter
:func:`~adafocus.backbones.count_gmacs`, the selector's own networks included).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn

from adafocus.backbones import AdaFocusModel, count_gmacs, evaluating
from adafocus.backbones.encoders import normalize
from adafocus.backbones.selectors import resize_frames


@dataclass
class FrozenFeatures:
    """What the frozen backbones give for V videos of T frames, computed once.

    maps: f_G's spatial maps (V, T, C, h, w); local: f_L pooled features (V, T, D) per input resolution.
    """

    maps: torch.Tensor
    local: dict[int, torch.Tensor]

    def __len__(self) -> int:
        return self.maps.shape[0]

    def subset(self, index: torch.Tensor) -> FrozenFeatures:
        return FrozenFeatures(self.maps[index], {r: x[index] for r, x in self.local.items()})

    def to(self, device: torch.device | str) -> FrozenFeatures:
        return FrozenFeatures(self.maps.to(device), {r: x.to(device) for r, x in self.local.items()})


@dataclass
class Selection:
    """A method's output on a batch of B videos.

    logits: video logits (B, K); gmacs: GFLOPs of each video (B,), differentiable in the choices where the
    method penalises compute; choices: what was selected (method-specific, documented by each method);
    aux: what the method's loss needs besides (e.g. scores, frame logits).
    """

    logits: torch.Tensor
    gmacs: torch.Tensor
    choices: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class FrameSelector(nn.Module, ABC):
    """A frame-selection method over the frozen f_G (cheap view) and f_L + head (expensive classifier).

    Subclasses build their own networks in ``__init__`` (after calling this one) and implement
    :meth:`select`, :meth:`loss` and :meth:`predict`; ``resolutions`` lists the inputs sides of f_L
    they read (default: the whole frame only).
    """

    name: str = "selector"

    def __init__(self, model: AdaFocusModel) -> None:
        super().__init__()
        # one Module holds the frozen backbones so that trainable_parameters() can leave them out
        self.backbones = nn.ModuleDict({"global_encoder": model.global_encoder, "local_encoder": model.local_encoder,
                                        "local_head": model.local_head})
        self.frame_size, self.global_size = model.config.frame_size, model.config.global_size
        self.num_classes = model.config.num_classes
        for p in self.backbones.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            probe = self.backbones["global_encoder"].forward_map(torch.zeros(1, 3, self.global_size, self.global_size))
        self.map_shape: tuple[int, int, int] = tuple(probe.shape[1:])
        self.local_dim = self.backbones["local_encoder"].out_channels

    @property
    def resolutions(self) -> tuple[int, ...]:
        return (self.frame_size,)

    def train(self, mode: bool = True) -> FrameSelector:
        super().train(mode)
        self.backbones.eval()  # frozen: BatchNorm statistics and dropout stay as the warm-up left them
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The method's own parameters (selector and heads it owns), never the frozen backbones."""
        frozen = {id(p) for p in self.backbones.parameters()}
        return [p for p in self.parameters() if id(p) not in frozen]

    # ---- frozen backbones -------------------------------------------------------------------------------
    def glance(self, frames: torch.Tensor) -> torch.Tensor:
        """f_G over whole frames: uint8 (N, 3, H, W) -> maps (N, C, h, w)."""
        return self.backbones["global_encoder"].forward_map(normalize(resize_frames(frames, self.global_size)))

    def read(self, frames: torch.Tensor, resolution: int) -> torch.Tensor:
        """f_L over whole frames resized to ``resolution``: uint8 (N, 3, H, W) -> pooled features (N, D)."""
        return self.backbones["local_encoder"](normalize(resize_frames(frames, resolution)))

    def classify(self, local: torch.Tensor) -> torch.Tensor:
        """The expensive classifier's head on f_L features: (..., D) -> (..., K)."""
        return self.backbones["local_head"](local)

    @torch.no_grad()
    def frozen_features(self, frames: torch.Tensor, batch_size: int = 32,
                        resolutions: tuple[int, ...] | None = None) -> FrozenFeatures:
        """f_G maps and f_L features of ``frames`` uint8 (V, T, 3, H, W), batch by batch, at ``resolutions``
        (default: this method's; several methods can share one set computed at the union of theirs)."""
        self._check_frames(frames)
        resolutions = self.resolutions if resolutions is None else resolutions
        maps, local = [], {r: [] for r in resolutions}
        device = next(self.parameters()).device
        with evaluating(self.backbones):
            for start in range(0, len(frames), batch_size):
                chunk = frames[start:start + batch_size].to(device)
                flat = chunk.flatten(0, 1)
                maps.append(self.glance(flat).unflatten(0, chunk.shape[:2]))
                for r in resolutions:
                    local[r].append(self.read(flat, r).unflatten(0, chunk.shape[:2]))
        return FrozenFeatures(torch.cat(maps), {r: torch.cat(x) for r, x in local.items()})

    def _check_frames(self, frames: torch.Tensor) -> None:
        if frames.dim() != 5 or frames.shape[2] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 (B, T, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
        if frames.shape[-2:] != (self.frame_size, self.frame_size):
            raise ValueError(f"frames must be {self.frame_size}x{self.frame_size} (the model's frame_size), "
                             f"got {tuple(frames.shape[-2:])}")

    # ---- costs (GMACs, counted once with the shared counter) -----------------------------------------------
    @cached_property
    def glance_gmacs(self) -> float:
        """f_G on one whole frame at ``global_size``."""
        frame = torch.zeros(1, 3, self.global_size, self.global_size, device=self.device)
        with evaluating(self.backbones):
            return count_gmacs(self.backbones["global_encoder"].forward_map, frame)

    @cached_property
    def read_gmacs(self) -> dict[int, float]:
        """f_L and its head on one whole frame, per input resolution."""
        with evaluating(self.backbones):
            return {r: count_gmacs(lambda x: self.classify(self.backbones["local_encoder"](x)),
                                   torch.zeros(1, 3, r, r, device=self.device)) for r in self.resolutions}

    @property
    def device(self) -> torch.device:
        """Where the method's networks (and the frozen backbones) are."""
        return next(self.parameters()).device

    # ---- the method ---------------------------------------------------------------------------------------
    @abstractmethod
    def select(self, features: FrozenFeatures) -> Selection:
        """Decide and classify from precomputed frozen features (train mode: Gumbel samples; eval: argmax)."""

    @abstractmethod
    def loss(self, selection: Selection, labels: torch.Tensor) -> torch.Tensor:
        """The method's training loss on one batch."""

    def usage(self, selection: Selection) -> dict[str, float]:
        """What a batch's selection read, averaged over its videos (default: frames per video)."""
        return {"frames_read": float(selection.choices.shape[1])}

    @abstractmethod
    def predict(self, frames: torch.Tensor) -> Selection:
        """Inference from uint8 frames (B, T, 3, H, W): runs f_L only on what is selected."""


class PreviewSelector(FrameSelector):
    """A method that decides from f_G's previews alone, before any f_L read (AR-Net, SCSampler,
    Listen-to-look; not LiteEval, whose gate also reads the fine features), so its decision cost is one pass
    of :meth:`decide` over the previews."""

    @abstractmethod
    def decide(self, maps: torch.Tensor) -> torch.Tensor:
        """The selector's networks on f_G maps (B, T, C, h, w); what it returns is method-specific."""

    def decision_gmacs(self, frames: int) -> float:
        """GFLOPs of the method's decisions for one video of ``frames`` frames: f_G on every frame and the
        selector's own networks, counted by running :meth:`decide` on zeros (cached per T)."""
        cache = self.__dict__.setdefault("_decision_gmacs", {})
        if frames not in cache:
            maps = torch.zeros(1, frames, *self.map_shape, device=self.device)
            with evaluating(self):
                cache[frames] = frames * self.glance_gmacs + count_gmacs(self.decide, maps)
        return cache[frames]
