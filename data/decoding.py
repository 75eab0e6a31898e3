"""Decoding: frame counts, frame rates and the frames at given indices of a video file (decord or PyAV) or a
JPEG frame folder, as uint8 tensors. Every failure is a :class:`~adafocus.data.records.VideoDataError` naming
the file."""
from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .records import VideoDataError

logger = logging.getLogger(__name__)

Decoder = Literal["decord", "pyav"]
_DECODERS = ("decord", "pyav")
# TSN's frame names (1-based): the frame folders of the ``dir num_frames label`` lists.
DEFAULT_IMAGE_TEMPLATE = "img_{:05d}.jpg"


def check_decoder(decoder: str) -> None:
    """Refuse (ValueError) a decoder name other than ``"decord"`` and ``"pyav"``."""
    if decoder not in _DECODERS:
        raise ValueError(f"decoder must be one of {_DECODERS}, got {decoder!r}")


_DMLC_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+?:\d+: ")


def _first_line(error: BaseException) -> str:
    # decord's messages carry "[hh:mm:ss] src/file.cc:123: " prefixes and a multi-line C++ stack
    # trace; the first line without the prefixes says what went wrong.
    text = _DMLC_PREFIX.sub("", str(error)).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def count_frames(path: str | Path, decoder: Decoder = "decord",
                 image_template: str = DEFAULT_IMAGE_TEMPLATE) -> int:
    """Number of frames of a video file, or of consecutive images (from 1) in a frame folder.

    decord: ``len(VideoReader)``, the packets its demuxer finds; for an mp4 truncated after a
    moov-first header that is only the packets that start before the cut (decoding the cut one then
    fails), not the header's count. PyAV: the frames actually decoded (container metadata is not
    trusted); a decode error on the way raises, so truncation is always caught.
    """
    path = Path(path)
    check_decoder(decoder)
    if path.is_dir():
        n = 0
        while (path / image_template.format(n + 1)).is_file():
            n += 1
        return n
    if decoder == "decord":
        return len(_open_decord(path))
    with _open_av(path) as (container, stream):
        n = 0
        try:
            for _ in container.decode(stream):
                n += 1
        except _av_errors() as e:
            raise VideoDataError(f"{path}: truncated or corrupt: decoding failed after {n} frames: "
                                 f"{_first_line(e)}") from e
        return n


def frame_rate(path: str | Path, decoder: Decoder = "decord") -> float | None:
    """Frames per second of a video file as its container states it (decord: the average rate; PyAV: the
    stream's average rate), or None when the container states none. Frame folders have no rate: None."""
    path = Path(path)
    check_decoder(decoder)
    if path.is_dir():
        return None
    if decoder == "decord":
        vr = _open_decord(path)
        try:
            fps = float(vr.get_avg_fps())
        finally:
            del vr
    else:
        with _open_av(path) as (_, stream):
            rate = stream.average_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
    return fps if fps > 0 and np.isfinite(fps) else None


def decode_frames(path: str | Path, indices: Sequence[int] | np.ndarray, decoder: Decoder = "decord",
                  image_template: str = DEFAULT_IMAGE_TEMPLATE) -> torch.Tensor:
    """Decode the frames at 0-based ``indices`` of a video file (or frame folder) as uint8 (T, 3, H, W).

    Every failure -- unreadable file, index past the end, a container that claims more frames than
    it holds, a missing image -- is a :class:`VideoDataError` naming the file.
    """
    path = Path(path)
    check_decoder(decoder)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("decode_frames needs at least one index")
    if (idx < 0).any():
        raise ValueError(f"frame indices must be >= 0, got {idx.tolist()}")
    if path.is_dir():
        return _read_folder(path, idx, image_template)
    if decoder == "decord":
        return _decode_decord(path, idx)
    return _decode_pyav(path, idx)


def _open_decord(path: Path) -> Any:
    import decord  # the decord2 wheel; imported lazily so PyAV-only users do not need it
    from decord._ffi.base import DECORDError

    if not path.is_file():
        raise VideoDataError(f"{path}: video file not found")
    try:
        # A fresh single-threaded reader per call: readers must not cross a DataLoader fork, and
        # long-lived readers grow in memory after seeks.
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except (RuntimeError, DECORDError) as e:
        raise VideoDataError(f"{path}: cannot open video (not a video, truncated or corrupt): "
                             f"{_first_line(e)}") from e


def _decode_decord(path: Path, idx: np.ndarray) -> torch.Tensor:
    return decord_read(path, lambda n: idx)[0]


def decord_read(path: Path, choose: Callable[[int], np.ndarray],
                warn_fallback: bool = True) -> tuple[torch.Tensor, np.ndarray, bool]:
    """Open one decord reader, pick the indices from its frame count with ``choose``, decode them.

    One reader serves both steps, so a dataset item costs a single open (which demuxes the file). Returns
    the frames, uint8 (N, 3, H, W), the indices, and whether PyAV decoded them instead: decord cannot convert
    the frames of some widths. ``warn_fallback``: log a warning when it does (a caller reading many videos
    warns only for the first).
    """
    from decord._ffi.base import DECORDError

    vr = _open_decord(path)
    try:
        n = len(vr)
        idx = choose(n)
        if idx.max() >= n:
            raise VideoDataError(f"{path}: frame index {int(idx.max())} past the end ({n} frames)")
        try:
            batch = vr.get_batch(idx.tolist()).asnumpy()
        except (RuntimeError, DECORDError) as e:
            if "DECORDArrayCopyFromTo" not in str(e):
                raise VideoDataError(f"{path}: truncated or corrupt: {_first_line(e)}") from e
            batch = None  # decord's row-padding bug, handled below
    finally:
        del vr
    if batch is None or (batch.ndim == 4 and batch.shape[-1] != 3):
        # decord2 (3.4) mis-sizes its RGB buffer for some frame widths (16, 24, 32, 48, 96, 144, ...;
        # dmlc/decord#336): get_batch raises a size mismatch and single frames come back with 4 or 6
        # "channels". The stream itself is fine, so decode it with PyAV instead of failing.
        if warn_fallback:
            logger.warning("decord cannot convert frames of %s (known decord bug for some frame widths, "
                           "dmlc/decord#336); decoding such videos with PyAV", path)
        return _decode_pyav(path, idx), idx, True
    if batch.ndim != 4 or batch.shape[0] != len(idx) or 0 in batch.shape:
        raise VideoDataError(f"{path}: truncated or corrupt: asked for {len(idx)} frames, "
                             f"decord returned an array of shape {batch.shape}")
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous(), idx, False


def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.error.FFmpegError, OSError)


@contextlib.contextmanager
def _open_av(path: Path) -> Iterator[tuple[Any, Any]]:
    """``with _open_av(path) as (container, stream)``: PyAV's first video stream, errors wrapped."""
    import av

    if not path.is_file():
        raise VideoDataError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except _av_errors() as e:
        raise VideoDataError(f"{path}: cannot open video (not a video, truncated or corrupt): "
                             f"{_first_line(e)}") from e
    try:
        if not container.streams.video:
            raise VideoDataError(f"{path}: has no video stream")
        # No frame threading (thread_type="AUTO"): with it FFmpeg drops the decode error of a
        # truncated stream and PyAV just ends early, so truncation would pass unnoticed.
        yield container, container.streams.video[0]
    finally:
        container.close()


def _decode_pyav(path: Path, idx: np.ndarray) -> torch.Tensor:
    wanted = set(idx.tolist())
    last = int(idx.max())
    got: dict[int, np.ndarray] = {}
    with _open_av(path) as (container, stream):
        i = -1
        try:
            # Sequential decode: PyAV seeks are keyframe-granular, so reading forward is the exact way.
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
        except _av_errors() as e:
            raise VideoDataError(f"{path}: truncated or corrupt: decoding failed after {i + 1} frames: "
                                 f"{_first_line(e)}") from e
    if last not in got:
        raise VideoDataError(f"{path}: truncated or corrupt: frame index {last} wanted, "
                             f"only {i + 1} frames decoded")
    shapes = {a.shape for a in got.values()}
    if len(shapes) != 1:
        raise VideoDataError(f"{path}: truncated or corrupt: frames of different shapes {sorted(shapes)}")
    return torch.from_numpy(np.stack([got[j] for j in idx.tolist()])).permute(0, 3, 1, 2).contiguous()


def _read_folder(folder: Path, idx: np.ndarray, image_template: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file

    images = []
    for j in idx.tolist():
        image_path = folder / image_template.format(j + 1)  # TSN names frames from 1
        if not image_path.is_file():
            raise VideoDataError(f"{image_path}: frame image not found")
        try:
            images.append(decode_image(read_file(str(image_path)), mode=ImageReadMode.RGB))
        except (RuntimeError, OSError, ValueError) as e:
            raise VideoDataError(f"{image_path}: cannot decode frame image: {_first_line(e)}") from e
        if images[-1].shape != images[0].shape:
            raise VideoDataError(f"{image_path}: frame of shape {tuple(images[-1].shape)}, "
                                 f"the folder's first sampled frame is {tuple(images[0].shape)}")
    return torch.stack(images)


def count_folder_frames(folder: Path, image_template: str) -> int:
    """Frames of a frame folder: consecutive images from 1 (as :func:`count_frames`), found in one directory
    listing rather than one file check per frame. A missing folder or no first image is an error."""
    try:
        names = {entry.name for entry in os.scandir(folder)}
    except FileNotFoundError:
        raise VideoDataError(f"{folder}: frame folder not found") from None
    except OSError as e:
        raise VideoDataError(f"{folder}: cannot list frame folder: {e}") from e
    count = 0
    while image_template.format(count + 1) in names:
        count += 1
    if count == 0:
        jpegs = sorted(name for name in names if name.lower().endswith((".jpg", ".jpeg")))
        found = f"it holds {len(jpegs)} JPEGs, the first {jpegs[0]!r}; " if jpegs else "it holds no JPEGs; "
        raise VideoDataError(f"{folder}: no frames: {image_template.format(1)!r} (image_template "
                             f"{image_template!r}) not found; {found}check the folder and the image template")
    return count

