"""The dataset: :class:`VideoDataset` turns a video list of any format into sampled, decoded, transformed
clips; :func:`collate_videos` batches them, and :func:`load_clips` decodes a whole dataset once into a
:class:`~adafocus.data.clips.ClipSet`.

Paths are relative to ``data_root`` (default: the list file's folder). A bad item raises
:class:`~adafocus.data.records.VideoDataError` naming its file and list line, or is skipped
(``skip_corrupt=True``, together with :func:`collate_videos`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data
from tqdm.auto import tqdm

from .clips import ClipSet
from .decoding import (DEFAULT_IMAGE_TEMPLATE, Decoder, check_decoder, count_folder_frames, count_frames,
                       decode_frames, decord_read)
from .lists import FORMAT_IMAGE_TEMPLATES, MULTI_LABEL_MAP_FORMATS, read_video_list
from .memory import check_fits
from .records import ListFormat, VideoDataError
from .sampling import SHORT_VIDEO_RULES, sample_clip_indices, sample_indices
from .something import read_label_names

logger = logging.getLogger(__name__)

Transform = Callable[[torch.Tensor, "torch.Tensor | None"], "tuple[torch.Tensor, torch.Tensor | None]"]


class VideoDataset(torch.utils.data.Dataset):
    """TSN-sampled clips of a video list; items are dicts (see :meth:`__getitem__`).

    The list is read (and every file checked to exist) at construction. Training sampling draws from
    ``np.random.default_rng([seed, epoch, index])``: deterministic, different per epoch (call
    :meth:`set_epoch` before each epoch, as with DistributedSampler) and independent of which DataLoader
    worker runs the item. The transform's own torch randomness is seeded from the same generator.
    With ``persistent_workers=True`` the workers keep the epoch they started with, so pair
    :meth:`set_epoch` with non-persistent workers.

    ``glance_frames`` G > 0 gives the clips of clip-level AdaFocus (Section 4.2): G frames for f_G and
    ``num_frames`` T for f_L, each set its own TSN sampling of the whole video (:func:`~adafocus.data.sampling.sample_clip_indices`),
    returned as one clip of G + T frames, the glance frames first (see :meth:`__getitem__`).
    """

    def __init__(self, list_file: str | Path, data_root: str | Path | None = None, num_frames: int = 8,
                 train: bool = False, num_classes: int | None = None, decoder: Decoder = "decord",
                 list_format: ListFormat = "auto", image_template: str | None = None,
                 annotation_root: str | Path | None = None, transform: Transform | None = None,
                 skip_corrupt: bool = False, seed: int = 0, cache_videos: bool = False,
                 label_file: str | Path | None = None, short_videos: str = "repeat",
                 glance_frames: int = 0) -> None:
        check_decoder(decoder)
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if glance_frames < 0:
            raise ValueError(f"glance_frames must be >= 0, got {glance_frames}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0 (it seeds numpy's SeedSequence), got {seed}")
        self.list_file = Path(list_file)
        self.data_root = Path(data_root) if data_root is not None else self.list_file.parent
        self.records = read_video_list(self.list_file, self.data_root, list_format, num_classes, label_file)
        # Class names in index order, where the list names classes by text (the annotation formats).
        self.class_names = read_label_names(label_file, list_format) if label_file is not None else None
        # Items carry every label of their video (for mAP) where the format's evaluation counts them all;
        # padded to one width so that they batch.
        self.label_width = max(len(r.all_labels or ()) for r in self.records) \
            if list_format in MULTI_LABEL_MAP_FORMATS else 0
        if short_videos not in SHORT_VIDEO_RULES:
            raise ValueError(f"short_videos must be one of {SHORT_VIDEO_RULES}, got {short_videos!r}")
        self.num_frames = num_frames
        self.short_videos = short_videos  # a video shorter than num_frames: last frame repeated, first frame, or refused
        self.glance_frames = glance_frames  # G: f_G's own frames ahead of the T focus frames (clip level), or 0
        self.train = train
        self.num_classes = num_classes
        self.decoder = decoder
        # None: the format's own frame names ("{:05d}.jpg" for the published V1 / Jester folders).
        self.image_template = image_template if image_template is not None \
            else FORMAT_IMAGE_TEMPLATES.get(list_format, DEFAULT_IMAGE_TEMPLATE)
        self.annotation_root = Path(annotation_root) if annotation_root is not None else None
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        self.seed = seed
        self.epoch = 0
        # PyAV counts frames by decoding them all, and folders of the annotation formats have no count in
        # their list; counts never change, so cache them (per process).
        self._frame_counts: dict[int, int] = {}
        # cache_videos: keep every decoded video (all its frames) in memory and sample from it; for small
        # sets decoded every epoch (the synthetic benchmark). Per process: use with num_workers=0.
        self._videos: dict[int, torch.Tensor] | None = {} if cache_videos else None
        # Whether a video has been decoded with PyAV because decord cannot convert its frames: the warning
        # is given for the first such video only.
        self._warned_pyav_fallback = False

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def all_labels(self, index: int) -> torch.Tensor:
        """Every label of video ``index``, int64 (``label_width``,), padded with -1 (no class)."""
        labels = self.records[index].all_labels or (self.records[index].label,)
        return torch.tensor([*labels, *[-1] * (self.label_width - len(labels))], dtype=torch.int64)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose training sample (frames, crops) :meth:`__getitem__` draws."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def annotation_path(self, index: int) -> Path | None:
        """``<annotation_root>/<path relative to data_root, suffix -> .npz>`` (folders: ``<dir>.npz``)."""
        if self.annotation_root is None:
            return None
        record = self.records[index]
        try:
            rel = record.path.relative_to(self.data_root)
        except ValueError:
            raise VideoDataError(f"{record.where()}: not under data_root {self.data_root}, "
                                 "so its annotation cannot be located") from None
        rel = rel.with_name(rel.name + ".npz") if record.is_folder else rel.with_suffix(".npz")
        return self.annotation_root / rel

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        """``frames`` uint8 (T, 3, H, W), ``label`` int64 scalar, ``index`` int, ``frame_indices`` int64
        (T,) (the 0-based sampled frames); with an annotation root also ``boxes`` float32 (T, 4) and,
        when annotated, ``readable`` bool (T,); for the formats whose mAP counts every label (FCVID)
        ``all_labels`` int64 (``label_width``,), padded with -1. A bad item raises :class:`VideoDataError`, or
        with ``skip_corrupt`` is logged and returned as None (drop it with :func:`collate_videos`).

        With ``glance_frames`` G > 0 every per-frame field has G + T rows: rows ``[:G]`` are f_G's glance frames,
        rows ``[G:]`` f_L's focus frames (:attr:`clip_frames` in all). In training the transform crops (and
        flips) the two parts independently, as the authors' loader transforms its glancer and focuser frames
        as two separate lists; the test transform is deterministic, so there both parts share one crop.
        """
        return self.load(index, self.epoch)

    def load(self, index: int, epoch: int) -> dict[str, Any] | None:
        """The item of video ``index`` as sampled in ``epoch`` (training sampling depends on it; test
        sampling does not): what :meth:`__getitem__` returns for the epoch set by :meth:`set_epoch`."""
        try:
            item = self._load(index, epoch)
        except VideoDataError as e:
            if not self.skip_corrupt:
                raise
            logger.warning("skipping video %d: %s", index, e)
            return None
        if self.label_width:
            item["all_labels"] = self.all_labels(index)
        return item

    def _load(self, index: int, epoch: int) -> dict[str, Any]:
        record = self.records[index]
        rng = np.random.default_rng([self.seed, epoch, index]) if self.train else None
        counted: list[int] = []
        sampled: list[np.ndarray] = []

        def choose(available: int) -> np.ndarray:
            counted.append(available)
            try:
                if self.glance_frames:
                    picked = np.concatenate(sample_clip_indices(available, self.glance_frames, self.num_frames,
                                                                self.train, rng, self.short_videos))
                else:
                    picked = sample_indices(available, self.num_frames, self.train, rng, self.short_videos)
            except ValueError as e:  # too short
                raise VideoDataError(f"{record.path}: {e}") from None
            sampled.append(picked)
            # Decode each frame once, in file order: glance and focus frames interleave and may coincide.
            return np.unique(picked)

        try:
            if self._videos is not None:
                if index not in self._videos:
                    self._videos[index] = self._decode_all(index)
                    if len(self._videos) == 1:  # the first video tells what the whole cache will hold
                        check_fits(self._videos[index].nbytes * len(self.records),
                                   f"--data.cache_videos keeps every decoded video of {self.list_file}",
                                   "set --data.cache_videos false (each video is then decoded when it is used)")
                choose(len(self._videos[index]))
                frames = self._videos[index][torch.from_numpy(sampled[0])]
            else:
                if record.is_folder or self.decoder != "decord":
                    decoded = choose(self._count(index))
                    frames = decode_frames(record.path, decoded, self.decoder, self.image_template)
                else:
                    frames, decoded = self._decord_read(record.path, choose)
                frames = frames[torch.from_numpy(np.searchsorted(decoded, sampled[0]))]
        except VideoDataError as e:
            raise record.located(e) from e
        available, frame_indices = counted[0], sampled[0]
        item: dict[str, Any] = {"index": index, "label": torch.tensor(record.label, dtype=torch.int64),
                                "frame_indices": torch.from_numpy(frame_indices)}
        boxes = None
        if self.annotation_root is not None:
            boxes, readable = self._annotation(index, available, frame_indices)
            if readable is not None:
                item["readable"] = readable
        if self.transform is not None:
            # Seed torch from the item's generator so crops/flips are as reproducible as the frames.
            torch_seed = int(rng.integers(2**62)) if rng is not None else 0
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(torch_seed)
                if self.glance_frames:
                    frames, boxes = self._transform_parts(frames, boxes)
                else:
                    frames, boxes = self.transform(frames, boxes)
        item["frames"] = frames
        if boxes is not None:
            item["boxes"] = boxes
        return item

    @property
    def clip_frames(self) -> int:
        """Frames per item: G + T (clip level) or T."""
        return self.glance_frames + self.num_frames

    def _transform_parts(self, frames: torch.Tensor,
                         boxes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The transform on the glance frames, then on the focus frames (two draws of its randomness)."""
        assert self.transform is not None
        g = self.glance_frames
        glance, glance_boxes = self.transform(frames[:g], None if boxes is None else boxes[:g])
        focus, focus_boxes = self.transform(frames[g:], None if boxes is None else boxes[g:])
        joined = None if boxes is None else torch.cat([glance_boxes, focus_boxes])
        return torch.cat([glance, focus]), joined

    def _decode_all(self, index: int) -> torch.Tensor:
        record = self.records[index]
        if record.is_folder or self.decoder != "decord":
            return decode_frames(record.path, np.arange(self._count(index)), self.decoder, self.image_template)
        return self._decord_read(record.path, np.arange)[0]

    def _decord_read(self, path: Path, choose: Callable[[int], np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
        frames, decoded, fell_back = decord_read(path, choose, warn_fallback=not self._warned_pyav_fallback)
        self._warned_pyav_fallback = self._warned_pyav_fallback or fell_back
        return frames, decoded

    def _count(self, index: int) -> int:
        record = self.records[index]
        if record.num_frames is not None:
            return record.num_frames
        if index not in self._frame_counts:
            if record.is_folder:
                self._frame_counts[index] = count_folder_frames(record.path, self.image_template)
            else:
                self._frame_counts[index] = count_frames(record.path, self.decoder)
        return self._frame_counts[index]

    def _annotation(self, index: int, available: int,
                    frame_indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        path = self.annotation_path(index)
        assert path is not None
        video = self.records[index].where()
        if not path.is_file():
            raise VideoDataError(f"{path}: annotation not found (for {video})")
        try:
            with np.load(path) as npz:
                boxes = np.asarray(npz["boxes"], dtype=np.float32)
                readable = np.asarray(npz["readable"], dtype=bool) if "readable" in npz.files else None
        except (OSError, ValueError, KeyError) as e:
            raise VideoDataError(f"{path}: cannot read annotation (for {video}): {e}") from e
        # Boxes are per video frame; a count mismatch means they would be read off the wrong frames.
        if boxes.shape != (available, 4):
            raise VideoDataError(f"{path}: boxes of shape {boxes.shape}, expected ({available}, 4) "
                                 f"for the video's {available} frames (for {video})")
        if readable is not None and readable.shape != (available,):
            raise VideoDataError(f"{path}: readable of shape {readable.shape}, expected ({available},) "
                                 f"(for {video})")
        return (torch.from_numpy(boxes[frame_indices]),
                None if readable is None else torch.from_numpy(readable[frame_indices]))


def collate_videos(batch: list[dict[str, Any] | None]) -> dict[str, Any]:
    """DataLoader ``collate_fn`` for :class:`VideoDataset`: drop skipped (None) items, stack the rest.

    Adds ``"skipped"``: how many items were dropped. If every item was dropped the result is just
    ``{"skipped": n}`` -- no ``frames`` key -- so callers must check ``"frames" in batch``.
    """
    items = [b for b in batch if b is not None]
    skipped = len(batch) - len(items)
    if not items:
        return {"skipped": skipped}
    shapes = {tuple(b["frames"].shape) for b in items}
    if len(shapes) > 1:
        raise ValueError(f"cannot batch clips of different shapes {sorted(shapes)}; "
                         "give the dataset a transform that brings them to one frame size")
    out = torch.utils.data.default_collate(items)
    out["skipped"] = skipped
    return out


def load_clips(dataset: VideoDataset, batch_size: int = 16, num_workers: int = 0,
               progress: bool = True, frame_size: int | None = None) -> ClipSet:
    """Decode a whole dataset once into a :class:`ClipSet` (in dataset order; skipped items left out).

    Sampling is the dataset's (``train=False`` gives the deterministic test clips). Boxes/readable (and
    every video's labels, ``all_labels``) are filled when the dataset yields them. With ``frame_size`` (the
    side of the frames the dataset yields) the clips' bytes are estimated first, and a set that would not
    fit in the available memory is refused before anything is decoded. Raises VideoDataError when no video could be decoded.
    """
    if frame_size is not None:
        check_fits(len(dataset) * dataset.clip_frames * 3 * frame_size ** 2,
                   f"decoding {dataset.list_file} into memory ({len(dataset)} videos x {dataset.clip_frames} frames "
                   f"x 3 x {frame_size} x {frame_size} bytes)",
                   "stream the videos instead (--data.stream true, the default)")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=collate_videos)
    parts: dict[str, list[torch.Tensor]] = {"frames": [], "label": [], "boxes": [], "readable": [], "index": [],
                                            "all_labels": []}
    skipped = 0
    # disable None: no bar unless stderr is a terminal (a log gets no redrawn bar)
    with tqdm(loader, desc="decoding videos", unit="batch", disable=None if progress else True) as bar:
        for batch in bar:
            skipped += batch["skipped"]
            if skipped:
                bar.set_postfix(skipped=skipped)
            if "frames" not in batch:
                continue
            for key in parts:
                if key in batch:
                    parts[key].append(torch.as_tensor(batch[key]))
    if skipped:
        logger.warning("load_clips: skipped %d of %d videos of %s (see the warnings above for why)",
                       skipped, len(dataset), dataset.list_file)
    if not parts["frames"]:
        raise VideoDataError(f"{dataset.list_file}: none of its {len(dataset)} videos could be decoded")

    def cat(key: str) -> torch.Tensor | None:
        if not parts[key]:
            return None
        if len(parts[key]) != len(parts["frames"]):
            raise VideoDataError(f"{dataset.list_file}: '{key}' present for some videos only")
        return torch.cat(parts[key])

    return ClipSet(frames=torch.cat(parts["frames"]), labels=cat("label"),
                   boxes=cat("boxes"), readable=cat("readable"), index=cat("index"), all_labels=cat("all_labels"))
