"""From a run config to data: the synthetic benchmark or a real video list, as datasets or clip tensors."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from adafocus.data.clips import ClipPool, ClipSet, VideoSource
from adafocus.data.stream import ClipStream, batches, pool_batches
from adafocus.data.synthetic import generate_once
from adafocus.data.transforms import video_transform
from adafocus.data.dataset import VideoDataset, load_clips

from .config import RunConfig


LABEL_SENSITIVE_TO_FLIP = ("sthv1", "sthv2", "jester")


@dataclass(frozen=True)
class DataPaths:
    train_list: Path
    val_list: Path
    data_root: Path | None
    annotation_root: Path | None


def with_val_videos(config: RunConfig, val_videos: int) -> RunConfig:
    """``config`` with a synthetic validation split of ``val_videos`` videos from the same generator (each
    video is generated from its own seed, so the training split is unchanged): a smaller standard error of
    top-1 (about 4 points at 128 videos, 1.5 at 1024). ValueError for a run that reads a video list."""
    if config.data.train_list is not None:
        raise ValueError("--val-videos applies to the synthetic benchmark only (this run reads a video list)")
    return replace(config, data=replace(config.data, synthetic=replace(config.data.synthetic, val_videos=val_videos)))


def data_paths(config: RunConfig, progress: bool = True) -> DataPaths:
    """The run's lists; with no ``--train-list``, the synthetic benchmark, generated on first use."""
    data = config.data
    if data.train_list is None:
        if config.model.num_classes != data.synthetic.num_classes:
            raise ValueError(f"--model.num_classes {config.model.num_classes} differs from the synthetic "
                             f"benchmark's {data.synthetic.num_classes} classes")
        if config.model.frame_size != data.synthetic.frame_size:
            raise ValueError(f"--model.frame_size {config.model.frame_size} differs from the synthetic "
                             f"benchmark's {data.synthetic.frame_size}")
        syn = generate_once(data.synthetic, progress=progress)  # one rank per node generates under torchrun
        return DataPaths(syn.train_list, syn.val_list, syn.root, syn.annotation_root)
    if data.val_list is None:
        raise ValueError("--train-list needs a --val-list too")
    optional = lambda p: Path(p) if p else None  # noqa: E731
    return DataPaths(Path(data.train_list), Path(data.val_list), optional(data.data_root), optional(data.annotation_root))


def video_dataset(config: RunConfig, paths: DataPaths, split: str, train: bool,
                  frames: int | None = None, cache: bool | None = None) -> VideoDataset:
    """The shared VideoDataset for ``split`` ("train" or "val"); ``train`` picks random sampling and augmentation;
    ``frames`` overrides the number of sampled frames T, ``cache`` the data config's ``cache_videos``. For the
    clip-level model each item also carries ``model.glance_frames`` glance frames, sampled on their own, first."""
    data = config.data
    if data.list_format in LABEL_SENSITIVE_TO_FLIP and data.flip and data.augment and train:
        raise ValueError(f"--data.flip is on, but flipping changes {data.list_format}'s labels (left/right "
                         "actions and gestures): use --data.flip false (the sthsth and jester presets do)")
    transform = None
    if data.augment or data.train_list is not None:
        transform = video_transform(train=train and data.augment, frame_size=config.model.frame_size, flip=data.flip)
    return VideoDataset(paths.train_list if split == "train" else paths.val_list, paths.data_root,
                        num_frames=frames or data.frames, train=train, num_classes=config.model.num_classes,
                        decoder=data.decoder, list_format=data.list_format, image_template=data.image_template,
                        label_file=data.label_file,
                        annotation_root=paths.annotation_root, transform=transform,
                        skip_corrupt=data.skip_corrupt, seed=config.seed, short_videos=data.short_videos,
                        glance_frames=config.model.glance_frames or 0,  # clip level: f_G's own G frames first
                        cache_videos=data.cache_videos if cache is None else cache)


def clip_set(config: RunConfig, paths: DataPaths, split: str, progress: bool = True) -> ClipSet:
    """Decode a split once into tensors (test-mode sampling), refused up front when it would not fit in memory:
    the in-memory path (``--data.stream false``) and the frame-policy and baseline evaluations."""
    dataset = video_dataset(config, paths, split, train=False, cache=False)  # decoded once here anyway
    return load_clips(dataset, num_workers=config.data.workers, progress=progress, frame_size=config.model.frame_size)


def episode_source(config: RunConfig, paths: DataPaths, split: str, batch_size: int,
                   device: torch.device | str = "cpu", progress: bool = True) -> VideoSource:
    """The videos episodes are played on (stage II, the gymnasium env), epoch after epoch in shuffled order:
    streamed with the split's training transform (random segment offsets, multi-scale crop, flip where the
    preset allows it), or, with ``--data.stream false``, test-mode clips decoded once and held in memory."""
    if config.data.stream:
        dataset = video_dataset(config, paths, split, train=True)
        return ClipStream(dataset, batch_size, config.seed, config.data.workers, device)
    return ClipPool(clip_set(config, paths, split, progress), config.seed, device)


def evaluation_batches(config: RunConfig, paths: DataPaths, split: str, batch_size: int,
                       device: torch.device | str = "cpu", progress: bool = True) -> tuple[Iterator[ClipSet], int]:
    """One ordered pass over a split's test-mode clips, ``batch_size`` videos at a time, and the split's size:
    streamed, or from clips decoded once (``--data.stream false``)."""
    if config.data.stream:
        dataset = video_dataset(config, paths, split, train=False)
        return batches(dataset, batch_size, config.data.workers, device), len(dataset)
    clips = clip_set(config, paths, split, progress)
    return pool_batches(clips, batch_size, device), len(clips)
