"""Clip tensors: the form in which the frozen-backbone stages (II, III, evaluation) see a batch of videos,
and the ``VideoSource`` contract through which episodes draw their next videos."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class ClipSet:
    """V videos of T sampled frames each, as tensors.

    frames: uint8 (V, T, 3, H, W); labels: int64 (V,);
    boxes: float32 (V, T, 4) target boxes ``x0, y0, x1, y1`` in pixels, or None when unknown;
    readable: bool (V, T), whether the class-bearing detail is visible in that frame, or None;
    index: int64 (V,), each video's index in its dataset, or None (then a video is known by its position);
    features: per-video tensors (V, ...) that the frozen network ``features_of`` computed from these frames
    (f_G's maps, computed by the episodes), carried along so that clips held in memory pay f_G once, not once
    per episode;
    all_labels: int64 (V, L), every label of each video padded with -1 (the first being ``labels``), for
    multi-label data whose mAP counts them all (FCVID), or None: then ``labels`` are the only labels.
    """

    frames: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor | None = None
    readable: torch.Tensor | None = None
    index: torch.Tensor | None = None
    features: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)
    features_of: object | None = field(default=None, repr=False, compare=False)
    all_labels: torch.Tensor | None = None

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
        if self.index is not None and self.index.shape != (v,):
            raise ValueError(f"index must have shape ({v},), got {tuple(self.index.shape)}")
        if self.all_labels is not None and (self.all_labels.dim() != 2 or self.all_labels.shape[0] != v
                                            or self.all_labels.shape[1] < 1):
            raise ValueError(f"all_labels must have shape ({v}, L >= 1), got {tuple(self.all_labels.shape)}")

    @classmethod
    def from_batch(cls, batch: dict[str, Any]) -> "ClipSet":
        """A collated :class:`~adafocus.data.dataset.VideoDataset` batch (``frames``, ``label``, optional
        ``boxes``, ``readable``, ``index``, ``all_labels``) as a ClipSet."""
        index = batch.get("index")
        return cls(batch["frames"], batch["label"], batch.get("boxes"), batch.get("readable"),
                   None if index is None else torch.as_tensor(index, dtype=torch.int64),
                   all_labels=batch.get("all_labels"))

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def num_frames(self) -> int:
        return self.frames.shape[1]

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.frames.shape[-2], self.frames.shape[-1]

    def video_ids(self) -> torch.Tensor:
        """Each video's dataset index, or its position when the set does not know it."""
        return self.index if self.index is not None else torch.arange(len(self), device=self.labels.device)

    def _map(self, fn) -> "ClipSet":
        """Every per-video tensor through ``fn`` (None stays None), features included."""
        apply = lambda x: None if x is None else fn(x)  # noqa: E731
        features = None if self.features is None else {k: fn(v) for k, v in self.features.items()}
        return ClipSet(fn(self.frames), fn(self.labels), apply(self.boxes), apply(self.readable), apply(self.index),
                       features, self.features_of, apply(self.all_labels))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "ClipSet":
        return self._map(lambda x: x.to(device, non_blocking=non_blocking))

    def subset(self, index: torch.Tensor | slice) -> "ClipSet":
        return self._map(lambda x: x[index])

    def assign(self, rows: torch.Tensor, other: "ClipSet") -> None:
        """Overwrite videos ``rows`` with ``other``'s, in place (views of these tensors stay valid)."""
        for name in ("frames", "labels", "boxes", "readable", "index", "all_labels"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if (mine is None) != (theirs is None):
                raise ValueError(f"cannot assign clips {'with' if theirs is not None else 'without'} {name} "
                                 f"into clips {'with' if mine is not None else 'without'} them")
            if mine is not None:
                mine[rows] = theirs.to(mine.device)
        if self.features is not None and other.features is not None:
            for key, value in self.features.items():
                value[rows] = other.features[key].to(value.device)

    @staticmethod
    def cat(parts: list["ClipSet"]) -> "ClipSet":
        def join(name: str) -> torch.Tensor | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else torch.cat(values)
        return ClipSet(torch.cat([p.frames for p in parts]), torch.cat([p.labels for p in parts]),
                       join("boxes"), join("readable"), join("index"), all_labels=join("all_labels"))


def multi_hot(all_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Every video's labels (V, L), padded with -1, as a bool (V, num_classes) matrix of its classes."""
    if all_labels.numel() and int(all_labels.max()) >= num_classes:
        raise ValueError(f"label {int(all_labels.max())} outside [0, {num_classes})")
    hot = torch.zeros(all_labels.shape[0], num_classes + 1, dtype=torch.bool, device=all_labels.device)
    hot.scatter_(1, torch.where(all_labels >= 0, all_labels, num_classes), True)  # padding -> the extra column
    return hot[:, :num_classes]


class VideoSource(Protocol):
    """Where a batch of episodes gets its next videos: :class:`~adafocus.data.stream.ClipStream` decodes
    them on the fly, :class:`ClipPool` hands out clips held in memory.

    ``take(count)`` returns the next ``count`` videos (on the host or the device); ``state_dict`` /
    ``load_state_dict`` save and restore the position, so an interrupted stage II resumes where it was.
    """

    def take(self, count: int) -> ClipSet: ...

    def seed(self, seed: int) -> None:
        """Start over from the first video of the order that ``seed`` gives (what a seeded reset asks)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class EpochOrder:
    """Position p of the infinite sequence -> (dataset index, epoch): epoch p // size, at offset p % size
    of that epoch's permutation (numpy generator seeded ``[seed, epoch]``)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        if size < 1:
            raise ValueError(f"a video source needs at least one video, got {size}")
        self.size, self.seed = size, seed
        self._epoch, self._permutation = -1, np.empty(0, dtype=np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._permutation = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return self._permutation

    def __getitem__(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.size)
        return int(self.permutation(epoch)[offset]), epoch



class OrderedSource:
    """What both video sources share: the :class:`EpochOrder`, the position in it (the whole saved state),
    and reseeding. Subclasses implement ``take`` and ``close``."""

    def __init__(self, videos: int, seed: int) -> None:
        self.order, self.position = EpochOrder(videos, seed), 0

    @property
    def epoch(self) -> float:
        """Passes over the videos handed out so far."""
        return self.position / self.order.size

    def close(self) -> None:
        """Release what is held for videos not handed out yet."""

    def seed(self, seed: int) -> None:
        self.close()
        self.order, self.position = EpochOrder(self.order.size, seed), 0

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "seed": self.order.seed, "videos": self.order.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position (what was prefetched beyond it is read again)."""
        if state["videos"] != self.order.size or state["seed"] != self.order.seed:
            raise ValueError(f"the saved position is for {state['videos']} videos in the order of seed {state['seed']}, "
                             f"this source has {self.order.size} videos with seed {self.order.seed}")
        self.close()
        self.position = int(state["position"])


class ClipPool(OrderedSource):
    """Clips held in memory, handed out epoch after epoch in :class:`EpochOrder` (as
    :class:`~adafocus.data.stream.ClipStream` hands out decoded ones)."""

    def __init__(self, clips: ClipSet, seed: int = 0, device: torch.device | str = "cpu") -> None:
        if clips.index is None:  # the pool's positions are the videos' indices
            clips = replace(clips, index=torch.arange(len(clips), device=clips.labels.device))
        super().__init__(len(clips), seed)
        self.clips, self.device = clips, torch.device(device)

    def take(self, count: int) -> ClipSet:
        index = torch.tensor([self.order[p][0] for p in range(self.position, self.position + count)])
        self.position += count
        return self.clips.subset(index).to(self.device, non_blocking=True)
