"""Train/test clip transforms (TSN recipe) on torchvision.transforms.v2, moving target boxes with the frames.

Frames are wrapped as a ``tv_tensors.Video`` and boxes as ``tv_tensors.BoundingBoxes`` (XYXY, canvas
= frame size), so every geometric step (crop, resize, flip) is applied to both with one set of
parameters, and the same crop to all T frames of a clip.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size


class MultiScaleCrop(v2.Transform):
    """TSN's ``GroupMultiScaleCrop``: crop sides from ``scales`` x short side, then resize to ``size``.

    Width and height are chosen independently from the scales but at most ``max_distort`` scale steps
    apart (TSN: 1), which gives the aspect jitter; sides within 3 px of ``size`` snap to it, as in TSN.
    With ``fix_crop`` (TSN's default) the crop sits at one of 13 fixed positions (corners, centre,
    edge midpoints, quarter points) instead of anywhere. v2.RandomResizedCrop samples area and aspect
    ratio instead, so it cannot reproduce this. Randomness uses torch's generator, like all v2 transforms.
    """

    def __init__(self, size: int, scales: Sequence[float] = (1, .875, .75, .66), max_distort: int = 1,
                 fix_crop: bool = True) -> None:
        super().__init__()
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"scales must be in (0, 1], got {scales}")
        self.size = size
        self.scales = tuple(scales)
        self.max_distort = max_distort
        self.fix_crop = fix_crop

    def _choice(self, n: int) -> int:
        return int(torch.randint(n, ()).item())

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        base = min(height, width)
        sides = [max(1, int(base * s)) for s in self.scales]
        sides = [self.size if abs(s - self.size) < 3 else s for s in sides]
        pairs = [(min(h, height), min(w, width)) for i, h in enumerate(sides) for j, w in enumerate(sides)
                 if abs(i - j) <= self.max_distort]
        crop_h, crop_w = pairs[self._choice(len(pairs))]
        if self.fix_crop:
            hs, ws = (height - crop_h) // 4, (width - crop_w) // 4
            steps = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (2, 0), (2, 4), (4, 2), (0, 2),
                     (1, 1), (1, 3), (3, 1), (3, 3)]  # (row, column) in quarters of the slack
            r, c = steps[self._choice(len(steps))]
            top, left = r * hs, c * ws
        else:
            top = int(torch.randint(height - crop_h + 1, ()).item())
            left = int(torch.randint(width - crop_w + 1, ()).item())
        return dict(top=top, left=left, height=crop_h, width=crop_w)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resized_crop, inpt, **params, size=[self.size, self.size],
                                 antialias=True)


class ClipTransform:
    """``(frames uint8 (T,3,H,W), boxes (T,4) | None) -> (frames, boxes)`` around a v2 pipeline.

    A class rather than a closure so datasets holding it pickle into spawn/forkserver DataLoader workers.
    """

    def __init__(self, pipeline: v2.Transform) -> None:
        self.pipeline = pipeline

    def __call__(self, frames: torch.Tensor,
                 boxes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be (T, 3, H, W), got {tuple(frames.shape)}")
        video = tv_tensors.Video(frames)
        if boxes is None:
            return self.pipeline(video).as_subclass(torch.Tensor), None
        bbox = tv_tensors.BoundingBoxes(boxes.to(torch.float32), format="XYXY",
                                        canvas_size=tuple(frames.shape[-2:]))
        video, bbox = self.pipeline(video, bbox)
        return video.as_subclass(torch.Tensor), bbox.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"ClipTransform({self.pipeline})"


def video_transform(train: bool, frame_size: int, flip: bool = True,
                    scales: Sequence[float] = (1, .875, .75, .66)) -> ClipTransform:
    """The TSN/AdaFocus clip transform, as ``(frames uint8 (T,3,H,W), boxes (T,4) | None) -> (frames, boxes)``.

    train: multi-scale crop (:class:`MultiScaleCrop`) resized to ``frame_size`` squared, then a
    horizontal flip with p=0.5 when ``flip`` (pass ``flip=False`` for Something-Something and Jester,
    whose labels are direction dependent). test: resize the short side to
    ``round(frame_size * 256 / 224)``, centre crop ``frame_size``. Output frames uint8 (T, 3, S, S),
    boxes float32 (T, 4) in output pixels (clamped to the frame) or None. Randomness comes from
    torch's global generator (:class:`~adafocus.data.dataset.VideoDataset` seeds it per item).
    """
    if train:
        steps: list[v2.Transform] = [MultiScaleCrop(frame_size, scales)]
        if flip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
    else:
        steps = [v2.Resize(round(frame_size * 256 / 224), antialias=True), v2.CenterCrop(frame_size)]
    return ClipTransform(v2.Compose(steps))
