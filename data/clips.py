"""In-memory clip tensors: the form in which frozen-backbone stages (II, evaluation) see a video set."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClipSet:
    """V videos of T sampled frames each, as tensors.

    frames: uint8 (V, T, 3, H, W); labels: int64 (V,);
    boxes: float32 (V, T, 4) target boxes ``x0, y0, x1, y1`` in pixels, or None when unknown;
    readable: bool (V, T), whether the class-bearing detail is visible in that frame, or None.
    """

    frames: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor | None = None
    readable: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.frames.dtype != torch.uint8 or self.frames.dim() != 5 or self.frames.shape[2] != 3:
            raise ValueError(f"frames must be uint8 (V, T, 3, H, W), got {self.frames.dtype} {tuple(self.frames.shape)}")
        v, t = self.frames.shape[:2]
        if self.labels.shape != (v,):
            raise ValueError(f"labels must have shape ({v},), got {tuple(self.labels.shape)}")
        if self.boxes is not None and self.boxes.shape != (v, t, 4):
            raise ValueError(f"boxes must have shape ({v}, {t}, 4), got {tuple(self.boxes.shape)}")
        if self.readable is not None and self.readable.shape != (v, t):
            raise ValueError(f"readable must have shape ({v}, {t}), got {tuple(self.readable.shape)}")

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def num_frames(self) -> int:
        return self.frames.shape[1]

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.frames.shape[-2], self.frames.shape[-1]

    def to(self, device: torch.device | str) -> "ClipSet":
        move = lambda x: None if x is None else x.to(device)  # noqa: E731
        return ClipSet(move(self.frames), move(self.labels), move(self.boxes), move(self.readable))

    def subset(self, index: torch.Tensor | slice) -> "ClipSet":
        pick = lambda x: None if x is None else x[index]  # noqa: E731
        return ClipSet(self.frames[index], self.labels[index], pick(self.boxes), pick(self.readable))
