"""Video sources for the episode stages: a stream decoded on the fly, or a pool held in memory.

Both hand out videos in the same order: epoch after epoch, each epoch a permutation of the whole split
seeded by ``(seed, epoch)``, so one stage II epoch shows every training video once and a position in that
infinite sequence is the whole state of the source (what a checkpoint records).

- :class:`ClipStream` reads the videos through a ``DataLoader`` (workers, pinned memory, prefetch), each
  sampled and transformed as its dataset says for the epoch it is drawn in (training: random segment
  offsets, multi-scale crop, flip). Memory is bounded by the batch size, the prefetch depth and the workers,
  whatever the size of the split.
- :class:`~adafocus.data.clips.ClipPool` hands out clips decoded once (:func:`~adafocus.data.dataset.load_clips`): one fixed view
  per video, for small sets where decoding again every epoch would cost more than holding them.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .clips import ClipSet, EpochOrder, OrderedSource
from .dataset import VideoDataset, collate_videos
from .records import VideoDataError


class _Batches(Sampler[list[tuple[int, int, int]]]):
    """Endless batches of keys ``(position, index, epoch)`` from ``start`` on."""

    def __init__(self, order: EpochOrder, batch_size: int, start: int) -> None:
        self.order, self.batch_size, self.start = order, batch_size, start

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        position = self.start
        while True:
            yield [(p, *self.order[p]) for p in range(position, position + self.batch_size)]
            position += self.batch_size


class _Keyed(Dataset):
    """The dataset's item for key ``(position, index, epoch)``, tagged with its position."""

    def __init__(self, dataset: VideoDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any] | None:
        position, index, epoch = key
        item = self.dataset.load(index, epoch)
        if item is not None:
            item["position"] = position
        return item


class ClipStream(OrderedSource):
    """The videos of ``dataset`` decoded on the fly, ``batch_size`` per loader batch, handed out in any count.

    ``take(count)`` returns the next ``count`` videos as a :class:`ClipSet` on ``device`` (videos skipped as
    corrupt, with the dataset's ``skip_corrupt``, are passed over). Loader batches are split and joined as
    needed, so the N slots of a VecEnv and the few rows of a frame-policy env draw from the same stream.
    """

    def __init__(self, dataset: VideoDataset, batch_size: int, seed: int = 0, workers: int = 0,
                 device: torch.device | str = "cpu", prefetch: int = 2) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(len(dataset), seed)
        self.dataset, self.batch_size, self.workers, self.prefetch = dataset, batch_size, workers, prefetch
        self.device = torch.device(device)
        self._buffer: list[_Positioned] = []
        self._batches: Iterator[dict[str, Any]] | None = None

    def _loader(self) -> Iterator[dict[str, Any]]:
        loader = DataLoader(_Keyed(self.dataset), batch_sampler=_Batches(self.order, self.batch_size, self.position),
                            num_workers=self.workers, collate_fn=collate_videos,
                            pin_memory=self.device.type == "cuda",
                            prefetch_factor=self.prefetch if self.workers > 0 else None)
        return iter(loader)

    def _fill(self, count: int) -> None:
        held = sum(len(c) for c in self._buffer)
        empty = 0
        while held < count:
            if self._batches is None:
                self._batches = self._loader()
            batch = next(self._batches)
            if "frames" not in batch:  # every video of this batch was skipped
                empty += self.batch_size
                if empty >= self.order.size:
                    raise VideoDataError(f"{self.dataset.list_file}: no video could be decoded in a whole pass "
                                         "over the list (see the warnings above for why)")
                continue
            clips = ClipSet.from_batch(batch)
            self._buffer.append(_Positioned(clips, batch["position"]))
            held += len(clips)

    def take(self, count: int) -> ClipSet:
        self._fill(count)
        parts, need = [], count
        while need:
            head = self._buffer[0]
            if len(head) <= need:
                parts.append(self._buffer.pop(0))
            else:
                parts.append(head.head(need))
                self._buffer[0] = head.tail(need)
            need -= len(parts[-1])
        self.position = int(parts[-1].positions[-1]) + 1
        clips = ClipSet.cat([p.clips for p in parts]) if len(parts) > 1 else parts[0].clips
        return clips.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stop the loader's workers and drop what they prefetched."""
        self._batches, self._buffer = None, []


class _Positioned:
    """Clips with the stream positions they were drawn at."""

    def __init__(self, clips: ClipSet, positions: torch.Tensor) -> None:
        self.clips, self.positions = clips, positions

    def __len__(self) -> int:
        return len(self.clips)

    def head(self, n: int) -> "_Positioned":
        return _Positioned(self.clips.subset(slice(0, n)), self.positions[:n])

    def tail(self, n: int) -> "_Positioned":
        return _Positioned(self.clips.subset(slice(n, None)), self.positions[n:])


def batches(dataset: VideoDataset, batch_size: int, workers: int = 0,
            device: torch.device | str = "cpu") -> Iterator[ClipSet]:
    """One ordered pass over ``dataset`` (evaluation), ``batch_size`` videos at a time, skipped ones left out."""
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_videos, pin_memory=device.type == "cuda")
    for batch in loader:
        if "frames" in batch:
            yield ClipSet.from_batch(batch).to(device, non_blocking=True)


def pool_batches(clips: ClipSet, batch_size: int, device: torch.device | str = "cpu") -> Iterator[ClipSet]:
    """One ordered pass over clips held in memory, ``batch_size`` at a time."""
    for start in range(0, len(clips), batch_size):
        yield clips.subset(slice(start, start + batch_size)).to(device, non_blocking=True)
