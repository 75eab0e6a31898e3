"""The embedded synthetic benchmark: a video task on which spatial focus matters.

Each video shows a small textured tile (the target) and a few look-alike tiles (distractors) moving over a
smooth background. The class is the target's texture, a period-2 luminance grating modulated by a
square wave (vertical or horizontal family x modulation period). Downsampling by 2 with an antialiasing
filter averages any period-2 grating to flat grey, so at f_G's resolution (half the frame) every tile
looks the same and the class is unreadable; only a patch at full resolution reads it. The target is
findable at low resolution by its hue (tiles are tinted: the target red, distractors cyan, of about equal
luminance, on a grey background), and distractors carry other classes' textures, so a patch in the wrong
place misleads.

Videos are real H.264 mp4 files written with PyAV, with ``train.txt`` / ``val.txt`` lists in the
``path label`` format and one ``annotations/videos/<name>.npz`` per video holding the target box of every
frame (``boxes``, x0 y0 x1 y1 pixels) and whether the class detail is readable (``readable``).

Two variants, one option each:

- ``readable_frames = k > 0`` (temporal redundancy): only k frames of each video show the target's texture,
  in aligned pairs (frames 2j, 2j + 1, so TSN sampling of ``video_frames / 2`` segments keeps k / 2 readable
  frames); in the others the target is drawn flat (``unreadable = "flat"``: its tint, no grating, as if
  blurred; f_G cannot tell these frames from readable ones) or not at all (``"absent"``: f_G sees where the
  red tile is, so a frame policy can learn which frames are worth reading), while distractors keep their
  textures throughout. Processing every frame then wastes compute, and looking at the target in the wrong
  frame reads nothing.
- ``drift = True`` (motion): the class is (texture, direction). The target's modulation pattern drifts one
  pixel per frame along its modulation axis, forward or backward; one frame shows the texture but not the
  direction, two neighbouring frames show both. Only modulated textures are used (periods >= 6, so a
  sampling gap of up to two frames still tells the directions apart), and the class count must be even.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from tqdm.auto import tqdm

TARGET_TINT = (1.00, 0.42, 0.36)  # red
DISTRACTOR_TINT = (0.36, 0.76, 0.86)  # cyan; luminance close to the red tint's, so only hue differs


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty of the synthetic benchmark (defaults sized for a 2-core CPU)."""

    num_classes: int = 10
    """classes (even: classes 2k and 2k+1 share a texture's modulation)"""
    train_videos: int = 512
    """videos of the training split"""
    val_videos: int = 128
    """videos of the validation split"""
    video_frames: int = 16
    """frames per video"""
    frame_size: int = 112
    """frame side in pixels"""
    tile_size: int = 24
    """side of the target and distractor tiles"""
    ring_width: int = 2
    """width of the tinted ring that makes a tile findable at low resolution"""
    distractors: int = 2
    """look-alike tiles carrying other classes' textures"""
    contrast: float = 0.4
    """amplitude of the grating around mid-grey (before the tint)"""
    speed: float = 2.5
    """tile speed in pixels per frame"""
    fps: int = 8
    """frame rate of the encoded videos"""
    crf: int = 10
    """x264 quality: low enough that the period-2 detail survives compression"""
    readable_frames: int = 0
    """0: every frame shows the class; k > 0: only k frames (aligned pairs) do"""
    unreadable: str = "flat"
    """the target in the other frames: "flat" (visible, no texture) or "absent" (not drawn)"""
    drift: bool = False
    """the class is (texture, drift direction of its pattern): motion decides"""
    seed: int = 0
    """seed of the generator (each split from its own stream)"""

    def __post_init__(self) -> None:
        if self.num_classes < 2 or self.num_classes % 2:
            raise ValueError(f"num_classes must be an even number >= 2, got {self.num_classes}")
        if self.tile_size + 2 > self.frame_size or self.frame_size % 2:
            raise ValueError("frame_size must be even and larger than tile_size")
        if self.distractors >= self.num_classes:
            raise ValueError("each distractor needs a class other than the target's: distractors < num_classes")
        if self.readable_frames < 0 or self.readable_frames % 2 or self.readable_frames > self.video_frames:
            raise ValueError(f"readable_frames must be an even number in [0, video_frames={self.video_frames}], "
                             f"got {self.readable_frames}")
        if self.unreadable not in ("flat", "absent"):
            raise ValueError(f"unreadable must be 'flat' or 'absent', got {self.unreadable!r}")
        if self.video_frames % 2:
            raise ValueError(f"video_frames must be even (frames come in pairs), got {self.video_frames}")


@dataclass(frozen=True)
class SyntheticDataset:
    """Where a generated benchmark lies: pass these to the shared video dataset."""

    root: Path
    train_list: Path
    val_list: Path
    annotation_root: Path
    config: SyntheticConfig


def _periods(num_classes: int) -> list[int]:
    """Modulation periods of the square wave; 0 means unmodulated (plain stripes)."""
    return [0] + [4 + 2 * i for i in range(num_classes // 2 - 1)]


def class_texture(label: int, size: int, num_classes: int, contrast: float,
                  phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Luminance texture (size, size) in [0, 1] of class ``label``.

    Classes 2k and 2k+1 share the modulation period; even classes alternate along x (vertical stripes),
    odd ones along y. Every texture has a period-2 factor, so a 2x antialiased downsample flattens it.
    """
    period = _periods(num_classes)[label // 2]
    fast, slow = np.meshgrid(np.arange(size) + phase[0], np.arange(size) + phase[1], indexing="xy")
    if label % 2:
        fast, slow = slow, fast
    wave = np.ones_like(slow) if period == 0 else np.where((slow // (period // 2)) % 2 == 0, 1, -1)
    return 0.5 + contrast * np.where(fast % 2 == 0, 1, -1) * wave


def _drift_texture(label: int, size: int, num_classes: int, contrast: float, phase: tuple[int, int],
                   t: int) -> np.ndarray:
    """Texture of class ``label`` at frame t in the drift variant: texture ``label // 2`` (a modulated
    grating of period >= 6), its modulation shifted by +t (even labels) or -t (odd labels) pixels."""
    texture = label // 2 + 4  # skip the unmodulated and period-4 textures of class_texture's ladder
    step = t if label % 2 == 0 else -t
    # the modulation runs along y for even textures, along x for odd ones (class_texture swaps the axes)
    shifted = (phase[0], phase[1] + step) if texture % 2 == 0 else (phase[0] + step, phase[1])
    return class_texture(texture, size, num_classes + 8, contrast, shifted)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth, nearly grey background (size, size, 3): a coarse random grid, bilinearly upsampled."""
    coarse = rng.uniform(0.35, 0.65, size=(4, 4, 1)) + rng.uniform(-0.04, 0.04, size=(4, 4, 3))
    axis = np.linspace(0, 3, size)
    i0 = np.minimum(axis.astype(int), 2)
    w = (axis - i0)[:, None]
    rows = coarse[i0] * (1 - w[..., None]) + coarse[i0 + 1] * w[..., None]  # (size, 4, 3)
    w = (axis - i0)[None, :, None]
    return rows[:, i0] * (1 - w) + rows[:, i0 + 1] * w


def _trajectory(rng: np.random.Generator, frames: int, limit: int, speed: float) -> np.ndarray:
    """Top-left positions (frames, 2) of a tile moving in a straight line, bouncing off the borders."""
    start = rng.uniform(0, limit, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    raw = start + np.arange(frames)[:, None] * speed * np.array([np.cos(angle), np.sin(angle)])
    folded = np.mod(raw, 2 * limit)  # reflect at 0 and limit
    return np.round(np.where(folded > limit, 2 * limit - folded, folded)).astype(int)


def _tile(texture: np.ndarray, tint: tuple[float, float, float], width: int) -> np.ndarray:
    """A tinted texture inside a ring of the same hue: the grating survives in every channel at full
    resolution; downsampled, the tile is a flat patch of its tint."""
    tile = texture[..., None] * np.asarray(tint)
    tile[:width], tile[-width:], tile[:, :width], tile[:, -width:] = tint, tint, tint, tint
    return tile


def readable_mask(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Which frames (T,) show the target's class detail: all, or ``readable_frames`` in aligned pairs."""
    if config.readable_frames == 0:
        return np.ones(config.video_frames, dtype=bool)
    pairs = rng.choice(config.video_frames // 2, config.readable_frames // 2, replace=False)
    mask = np.zeros(config.video_frames, dtype=bool)
    mask[2 * pairs], mask[2 * pairs + 1] = True, True
    return mask


def render_video(config: SyntheticConfig, label: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One video: uint8 frames (T, H, W, 3), the target's boxes (T, 4) as x0, y0, x1, y1, and whether each
    frame shows the class detail (T,)."""
    size, tile, frames = config.frame_size, config.tile_size, config.video_frames
    limit = size - tile
    others = rng.choice([c for c in range(config.num_classes) if c != label], config.distractors, replace=False)
    objects = [(int(c), DISTRACTOR_TINT) for c in others] + [(label, TARGET_TINT)]  # target drawn last, on top
    phases = [tuple(int(p) for p in rng.integers(0, 12, 2)) for _ in objects]
    paths = [_trajectory(rng, frames, limit, config.speed) for _ in objects]
    readable = readable_mask(config, rng)
    video = np.repeat(_background(rng, size)[None], frames, axis=0)
    flat = _tile(np.full((tile, tile), 0.5), TARGET_TINT, config.ring_width)
    for i, ((c, tint), phase, path) in enumerate(zip(objects, phases, paths)):
        is_target = i == len(objects) - 1
        still = None if config.drift else _tile(class_texture(c, tile, config.num_classes, config.contrast, phase),
                                                tint, config.ring_width)
        for t, (x, y) in enumerate(path):
            if is_target and not readable[t]:
                if config.unreadable == "absent":
                    continue
                image = flat
            elif still is None:
                image = _tile(_drift_texture(c, tile, config.num_classes, config.contrast, phase, t), tint,
                              config.ring_width)
            else:
                image = still
            video[t, y:y + tile, x:x + tile] = image
    xy = paths[-1].astype(np.float32)
    boxes = np.concatenate([xy, xy + tile], axis=1)
    return np.round(video * 255).astype(np.uint8), boxes, readable


def write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int) -> None:
    """Write uint8 RGB frames (T, H, W, 3) as an H.264 mp4 (yuv420p) with PyAV; equal frames give equal bytes
    (x264 is not bit-exact on frames much smaller than 64 x 64)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "grain"}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            for plane in frame.planes:  # x264 reads the rows' alignment padding, which is uninitialised
                rows = np.frombuffer(bytes(plane), np.uint8).reshape(-1, plane.line_size)[:, :plane.width]
                plane.update(np.pad(rows, ((0, 0), (0, plane.line_size - plane.width)), mode="edge").tobytes())
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


# version of write_mp4's output: the cache folder's name hashes it with the config, so videos of an older
# encoding are never reused
ENCODING = 2


def _config_key(config: SyntheticConfig) -> str:
    return hashlib.sha1(json.dumps({**asdict(config), "encoding": ENCODING}, sort_keys=True).encode()).hexdigest()[:10]


def default_cache_dir() -> Path:
    """``$ADAFOCUS_CACHE`` or ``~/.cache/adafocus``."""
    return Path(os.environ.get("ADAFOCUS_CACHE", Path.home() / ".cache" / "adafocus"))


def _complete(dataset: SyntheticDataset) -> bool:
    """Whether ``dataset.root`` holds a finished generation of ``dataset.config`` (its lists are written last)."""
    marker = dataset.root / "config.json"
    try:
        return json.loads(marker.read_text()) == asdict(dataset.config) \
            and dataset.train_list.is_file() and dataset.val_list.is_file()
    except (OSError, ValueError):  # missing or half-written marker: not a finished generation
        return False


def _staging_prefix(root: Path) -> str:
    return f".{root.name}.{socket.gethostname()}."


def _remove_dead_staging(root: Path) -> None:
    """Delete staging folders that killed generations of ``root`` on this host left behind (their pid is gone)."""
    prefix = _staging_prefix(root)
    for folder in root.parent.glob(f"{prefix}*.tmp"):
        try:
            pid = int(folder.name[len(prefix):].split(".")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError):  # not our naming, or a live process of another user
            pass


def _write(config: SyntheticConfig, root: Path, progress: bool) -> None:
    """Render every video of ``config`` into ``root``; each split's list is written after its videos."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "videos").mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(asdict(config), indent=2))
    splits = {"train": (config.train_videos, 0), "val": (config.val_videos, 1)}
    bar = tqdm(total=config.train_videos + config.val_videos, desc="synthetic videos",
               disable=None if progress else True)  # None: no bar unless stderr is a terminal
    for split, (count, stream) in splits.items():
        rng = np.random.default_rng([config.seed, stream])
        labels = rng.permutation(np.arange(count) % config.num_classes)  # balanced classes
        lines = []
        for i, label in enumerate(labels):
            name = f"{split}_{i:05d}"
            frames, boxes, readable = render_video(config, int(label), rng)
            write_mp4(root / "videos" / f"{name}.mp4", frames, config.fps, config.crf)
            # annotation path mirrors the list's relative path: annotations/videos/<name>.npz
            np.savez(root / "annotations" / "videos" / f"{name}.npz", boxes=boxes, readable=readable)
            lines.append(f"videos/{name}.mp4 {label}\n")
            bar.update()
        tmp = root / f".{split}.txt.tmp"
        tmp.write_text("".join(lines))
        tmp.replace(root / f"{split}.txt")
    bar.close()


def _install(staging: Path, dataset: SyntheticDataset) -> None:
    """Move a finished generation from ``staging`` to ``dataset.root``.

    A missing or empty root is replaced in one rename, so readers see all of it or nothing. A root that
    already holds files (an unfinished generation of an older version, or a caller's folder) gets the
    generated entries one by one: its lists are removed first and the new lists moved in last, so no list
    ever names a missing video. Generation is deterministic, so a concurrent generator's files are equal.
    """
    root = dataset.root
    try:
        staging.rename(root)  # fails when root exists and is not empty
        return
    except OSError:
        if _complete(dataset):  # a concurrent generation finished first: keep it
            return
    lists = ("train.txt", "val.txt")
    try:
        for name in lists:
            (root / name).unlink(missing_ok=True)
        for name in ("videos", "annotations", "config.json"):
            old = root / name
            if old.is_dir() and not old.is_symlink():
                old.rename(staging / f".old-{name}")  # removed with the staging folder
            elif old.exists() or old.is_symlink():
                old.unlink()
            (staging / name).rename(old)
        for name in lists:
            os.replace(staging / name, root / name)
    except OSError:
        if not _complete(dataset):  # lost a race to a concurrent generator, which finished: fine
            raise


def _dataset(config: SyntheticConfig, root: Path | None) -> SyntheticDataset:
    root = Path(root) if root is not None else default_cache_dir() / "synthetic" / _config_key(config)
    return SyntheticDataset(root, root / "train.txt", root / "val.txt", root / "annotations", config)


def existing(config: SyntheticConfig, root: Path | None = None) -> SyntheticDataset | None:
    """The finished generation of ``config`` under ``root`` (default: the cache), or None; writes nothing."""
    dataset = _dataset(config, root)
    return dataset if _complete(dataset) else None


def generate(config: SyntheticConfig, root: Path | None = None, progress: bool = True) -> SyntheticDataset:
    """Generate the benchmark under ``root`` (default: a folder of the cache named by the config's hash).

    Reuses a complete earlier generation with the same config. Renders into a temporary sibling folder
    and moves it into place when done, each split's list last, so an interrupted generation never leaves a
    list that names missing videos, and concurrent generations (several jobs on one cache) do not write
    into each other's files: the first to finish wins, the others' equal copies are discarded. Under
    torchrun, use :func:`generate_once`.
    """
    dataset = _dataset(config, root)
    root = dataset.root
    if _complete(dataset):
        return dataset
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(root)
    # the staging folder sits next to root (same file system, so the final rename is atomic); its name
    # carries host and pid so a later run can tell a dead generation's leftovers from a running one's
    staging = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(root)}{os.getpid()}.", suffix=".tmp", dir=root.parent))
    try:
        _write(config, staging, progress)
        _install(staging, dataset)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _complete(dataset):
        raise RuntimeError(f"synthetic benchmark generation into {root} did not complete (config.json or the "
                           "train/val lists are missing): was the folder changed during generation?")
    return dataset


def generate_once(config: SyntheticConfig, root: Path | None = None, progress: bool = True) -> SyntheticDataset:
    """:func:`generate`, by one process per node when torch.distributed runs with several processes.

    Every rank generating on a fresh cache would render the same videos several times over; the node's
    first rank (LOCAL_RANK 0, else rank 0) generates while the others wait at a barrier, then read the
    finished lists. A generating rank's error is raised after the barrier, so the others do not hang.
    """
    import torch.distributed as dist  # here: the rest of this module does not need torch

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return generate(config, root, progress)
    dataset, error = None, None
    if int(os.environ.get("LOCAL_RANK", dist.get_rank())) == 0:
        try:
            dataset = generate(config, root, progress)
        except Exception as exc:  # noqa: BLE001 -- re-raised after the barrier
            error = exc
    dist.barrier()
    if error is not None:
        raise error
    dataset = dataset or existing(config, root)
    if dataset is None:
        raise RuntimeError(f"rank {dist.get_rank()}: no finished synthetic benchmark in "
                           f"{_dataset(config, root).root} after the node's first rank generated it: did that "
                           "rank fail, or does it see another $ADAFOCUS_CACHE?")
    return dataset
