"""Frame-index sampling: which frames of a video of n frames a clip reads (TSN segments, and the glance and
focus frames of clip-level AdaFocus)."""
from __future__ import annotations

import numpy as np

# How a video of fewer frames than segments is read (see sample_indices).
SHORT_VIDEO_RULES = ("repeat", "refuse", "first")


def sample_indices(num_available: int, num_segments: int, train: bool,
                   rng: np.random.Generator | None = None, short: str = "repeat") -> np.ndarray:
    """TSN sampling: one 0-based frame index per segment, int64 of shape ``(num_segments,)``.

    Follows the AdaFocus/TSM code: in training the video is cut into ``num_segments`` segments of
    ``num_available // num_segments`` frames (the remainder at the end is never sampled, as there) and
    a random frame of each is taken; at test the segments are ``num_available / num_segments`` long
    (float) and the frame at each centre, ``int(tick / 2 + tick * k)``, is taken. Unlike TSM, a video
    of exactly ``num_segments`` frames gives ``0, 1, ..., T-1`` at test (TSM falls back to all zeros),
    except under ``short="first"``.

    A video shorter than T (``num_available < num_segments``) is read by one of three rules:

    * ``"repeat"``: as the authors' ActivityNet/FCVID/Mini-Kinetics loader reads it, in training and at
      test alike: every frame once, then the last one repeated, ``0, 1, ..., n-1, n-1, ...``;
    * ``"first"``: as their Something-Something/Jester loader (Section 4.2) reads it: the first frame
      ``num_segments`` times. At test that loader takes segment centres only from a video with MORE frames
      than segments, so there a video of exactly T frames is read as its first frame T times too;
    * ``"refuse"``: raises ValueError, which callers turn into a
      :class:`~adafocus.data.records.VideoDataError` naming the file.

    A video without frames always raises.
    """
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    if short not in SHORT_VIDEO_RULES:
        raise ValueError(f"short must be one of {SHORT_VIDEO_RULES}, got {short!r}")
    if num_available < 1:
        raise ValueError("has no frames")
    k = np.arange(num_segments, dtype=np.int64)
    if short == "first" and (num_available < num_segments or (not train and num_available == num_segments)):
        return np.zeros(num_segments, dtype=np.int64)
    if num_available < num_segments:
        if short == "refuse":
            raise ValueError(f"has {num_available} frames, fewer than {num_segments} (--data.short_videos repeat "
                             "reads it with its last frame repeated, as the authors' loader does)")
        return np.minimum(k, num_available - 1)
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        length = num_available // num_segments
        return k * length + rng.integers(0, length, size=num_segments, dtype=np.int64)
    tick = num_available / float(num_segments)
    return (tick / 2.0 + tick * k).astype(np.int64)


def sample_clip_indices(num_available: int, glance_segments: int, focus_segments: int, train: bool,
                        rng: np.random.Generator | None = None,
                        short: str = "repeat") -> tuple[np.ndarray, np.ndarray]:
    """Clip-level AdaFocus (Section 4.2): the frames f_G reads and the frames f_L reads, sampled independently.

    Each set is its own TSN sampling of the whole video (:func:`sample_indices`): ``glance_segments`` (G)
    segments for f_G and ``focus_segments`` (T) for f_L, as the authors' Something-Something loader samples
    its glancer and focuser frames, so the glance frames are not a subset of the focus frames. In training
    both draw their random offsets from ``rng``, glance first. Returns (glance (G,), focus (T,)).
    """
    if train and rng is None:
        rng = np.random.default_rng()
    return (sample_indices(num_available, glance_segments, train, rng, short),
            sample_indices(num_available, focus_segments, train, rng, short))
