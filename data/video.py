"""Video lists, TSN frame sampling and decoding: the shared path from files on disk to clip tensors.

Two list formats are read (both split on whitespace, so paths may not contain spaces):

* ``path label`` -- mmaction2's VideoDataset format; ``path`` is a video file (mp4, webm, ...).
* ``dir num_frames label`` -- the TSN/TSM frame-folder format in which Something-Something V1 and
  Jester ship: ``dir`` is a folder of JPEGs named by an image template (1-based, ``img_00001.jpg``).

The datasets' own published annotation files are read too (``list_format`` ``"sthv1"``, ``"sthv2"``,
``"jester"``, with the labels file as ``label_file``): Something-Something V1 and Jester csv lists
``<id>;<label text>`` over frame folders ``<root>/<id>/00001.jpg ...``, and Something-Something V2 json
lists over ``<root>/<id>.webm`` videos (or extracted frame folders ``<root>/<id>/``). Their frame counts
are not in the lists: each folder's frames are counted once, on first use.

The lists the AdaFocus authors publish for ActivityNet, FCVID and Mini-Kinetics are read as they ship
(``list_format`` ``"activitynet"``, ``"fcvid"``, ``"minikinetics"``; see :func:`read_official_list`):
``dir,num_frames,label[,label...]`` (Mini-Kinetics: ``dir num_frames label``) over frame folders
``<root>/<dir>/image_00001.jpg ...``. A video may carry several labels; the first one is its class.

Paths are relative to ``data_root`` (default: the list file's folder). Every bad input -- a list
problem, a missing/corrupt/truncated/too short video, a missing frame image or annotation -- raises
:class:`VideoDataError`, whose message names the file (and the list line where there is one), so a
broken dataset is diagnosed from the message alone. :class:`VideoDataset` can instead skip such items
(``skip_corrupt=True``) together with :func:`collate_videos`.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.utils.data
from tqdm.auto import tqdm

from .clips import ClipSet
from .memory import check_fits

logger = logging.getLogger(__name__)

Decoder = Literal["decord", "pyav"]
ListFormat = Literal["auto", "video", "frames", "sthv1", "sthv2", "jester", "activitynet", "fcvid", "minikinetics"]
Transform = Callable[[torch.Tensor, "torch.Tensor | None"], "tuple[torch.Tensor, torch.Tensor | None]"]

DEFAULT_IMAGE_TEMPLATE = "img_{:05d}.jpg"
# The datasets' published annotation files (the formats read with a ``label_file``) and the frame names
# their published frame folders use; other formats (and V2 folders extracted by the user) use the default.
ANNOTATION_FORMATS = ("sthv1", "sthv2", "jester")
# The AdaFocus authors' lists for ActivityNet, FCVID and Mini-Kinetics (their ops/dataset.py and dataset_config.py):
# per format, the field separator; all three name frames image_00001.jpg ... (1-based).
OFFICIAL_SEPARATORS = {"activitynet": ",", "fcvid": ",", "minikinetics": " "}
OFFICIAL_FORMATS = tuple(OFFICIAL_SEPARATORS)
# Formats whose mAP counts every label of a video: the authors' FCVID evaluation; their ActivityNet and
# Mini-Kinetics evaluations count the first label only.
MULTI_LABEL_MAP_FORMATS = ("fcvid",)
# The authors' loader drops list entries of fewer frames, from training and validation lists alike.
OFFICIAL_MIN_FRAMES = 3
FORMAT_IMAGE_TEMPLATES = {"sthv1": "{:05d}.jpg", "jester": "{:05d}.jpg",
                          **{name: "image_{:05d}.jpg" for name in OFFICIAL_FORMATS}}
_DECODERS = ("decord", "pyav")


class VideoDataError(ValueError):
    """Bad input data: the message names the offending file (and list line) and the reason."""


@dataclass(frozen=True)
class VideoRecord:
    """One entry of a video list.

    ``path`` is a video file, or a frame folder when ``num_frames`` is set (``dir num_frames label``
    format) or ``folder`` is (a frame folder whose count is not in the list: counted on first use).
    ``list_file``/``line`` (1-based) say where the entry came from, for error messages; ``line_kind``
    names what ``line`` counts ("entry" for the items of a JSON list). ``all_labels``: every label of a
    line that may list several (the ActivityNet / FCVID lists), in list order without repeats, the first
    being ``label``; None for single-label formats.
    """

    path: Path
    label: int
    num_frames: int | None = None
    list_file: Path | None = None
    line: int | None = None
    folder: bool = False
    line_kind: str = "line"
    all_labels: tuple[int, ...] | None = None

    @property
    def is_folder(self) -> bool:
        return self.num_frames is not None or self.folder

    def where(self) -> str:
        """``path`` plus its list position, the prefix of every error about this record."""
        if self.list_file is None:
            return str(self.path)
        return f"{self.path} (list {self.list_file}, {self.line_kind} {self.line})"

    def located(self, error: VideoDataError) -> VideoDataError:
        """``error`` (about this record's file, or an image in its folder) with the list position added."""
        message, prefix = str(error), f"{self.path}: "
        if self.list_file is None:
            return VideoDataError(message)
        if message.startswith(prefix):
            return VideoDataError(f"{self.where()}: {message[len(prefix):]}")
        return VideoDataError(f"{message} (list {self.list_file}, {self.line_kind} {self.line})")


# ----------------------------------------------------------------------------------------------------
# Lists


def read_video_list(list_file: str | Path, data_root: str | Path | None = None,
                    list_format: ListFormat = "auto", num_classes: int | None = None,
                    label_file: str | Path | None = None) -> list[VideoRecord]:
    """Read a video list, checking every line and that every video file / frame folder exists.

    ``list_format``: ``"video"`` (``path label``), ``"frames"`` (``dir num_frames label``) or ``"auto"``,
    which takes the format from the field count of the first non-blank line; later lines must match
    it (a mixed list is almost always a path containing a space, better reported than guessed).
    ``"sthv1"``, ``"sthv2"`` and ``"jester"`` read the datasets' published annotation files, with their
    labels file as ``label_file`` (see :func:`read_annotation_list`); ``"activitynet"``, ``"fcvid"`` and
    ``"minikinetics"`` the AdaFocus authors' lists (see :func:`read_official_list`).
    ``data_root`` defaults to the list file's folder, so a list and its videos can move together.
    Blank lines are skipped. ``num_classes``, when given, bounds the labels to ``[0, num_classes)``.
    """
    list_file = Path(list_file)
    if list_format in ANNOTATION_FORMATS:
        return read_annotation_list(list_file, label_file, list_format, data_root, num_classes)
    if list_format not in ("auto", "video", "frames", *OFFICIAL_FORMATS):
        raise ValueError(f"list_format must be 'auto', 'video', 'frames', 'sthv1', 'sthv2', 'jester', "
                         f"'activitynet', 'fcvid' or 'minikinetics', got {list_format!r}")
    if label_file is not None:
        raise ValueError(f"label_file is read only by the list formats {ANNOTATION_FORMATS} (their lists name "
                         f"classes by text); list_format {list_format!r} has integer labels")
    if list_format in OFFICIAL_FORMATS:
        return read_official_list(list_file, list_format, data_root, num_classes)
    root = Path(data_root) if data_root is not None else list_file.parent
    text = _read_text(list_file, "video list")

    expected = {"video": 2, "frames": 3}.get(list_format)
    records: list[VideoRecord] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{list_file}, line {line_no}"
        if expected is None:  # auto: the first data line decides
            if len(fields) not in (2, 3):
                raise VideoDataError(f"{where}: expected 2 fields (path label) or 3 fields "
                                     f"(dir num_frames label), got {len(fields)}: {line.strip()!r}")
            expected = len(fields)
        if len(fields) != expected:
            form = "path label" if expected == 2 else "dir num_frames label"
            raise VideoDataError(f"{where}: expected {expected} fields ({form}) like the lines before, "
                                 f"got {len(fields)}: {line.strip()!r}")
        label = _parse_int(fields[-1], "label", where)
        if num_classes is not None and not 0 <= label < num_classes:
            raise VideoDataError(f"{where}: label {label} outside [0, {num_classes})")
        path = root / fields[0]
        if expected == 2:
            if not path.is_file():
                raise VideoDataError(f"{where}: video file not found: {path}")
            records.append(VideoRecord(path, label, None, list_file, line_no))
        else:
            num_frames = _parse_int(fields[1], "num_frames", where)
            if num_frames < 0:
                raise VideoDataError(f"{where}: num_frames must be >= 0, got {num_frames}")
            if not path.is_dir():
                raise VideoDataError(f"{where}: frame folder not found: {path}")
            records.append(VideoRecord(path, label, num_frames, list_file, line_no))
    if not records:
        raise VideoDataError(f"{list_file}: video list is empty")
    return records


def read_official_list(list_file: str | Path, list_format: ListFormat, data_root: str | Path | None = None,
                       num_classes: int | None = None) -> list[VideoRecord]:
    """Records of the ActivityNet, FCVID or Mini-Kinetics lists as the AdaFocus authors publish them.

    * ``activitynet`` / ``fcvid`` (``actnet_{train,val}_split.txt``, ``fcvid_{train,val}_split.txt``): lines
      ``dir,num_frames,label[,label...]``, comma-separated; a video may list several labels. They are kept
      in list order without repeats (``VideoRecord.all_labels``); the first is the video's class.
    * ``minikinetics`` (``mini_{train,val}_videofolder.txt``): lines ``dir num_frames label`` separated by
      single spaces; the last two fields are the count and the label, the rest is the folder (which may
      hold spaces, as Kinetics class names do).

    ``<root>/<dir>`` is a frame folder of ``image_00001.jpg ...`` (1-based). As in the authors' loader,
    entries of fewer than 3 frames are dropped (from every split: their validation set is built the same
    way), before their folder is looked for; how many is logged. Labels must be class indices in
    ``[0, num_classes)`` (``>= 0`` without ``num_classes``). Every problem raises :class:`VideoDataError`
    naming the file, the line and the reason.
    """
    list_file = Path(list_file)
    if list_format not in OFFICIAL_FORMATS:
        raise ValueError(f"list_format must be one of {OFFICIAL_FORMATS}, got {list_format!r}")
    root = Path(data_root) if data_root is not None else list_file.parent
    separator = OFFICIAL_SEPARATORS[list_format]
    form = "dir num_frames label" if separator == " " else "dir,num_frames,label[,label...]"
    records: list[VideoRecord] = []
    dropped = 0
    for line_no, line in enumerate(_read_text(list_file, "video list").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        where = f"{list_file}, line {line_no}"
        # Mini-Kinetics folders may hold spaces: only the last two fields are numbers.
        fields = line.rsplit(" ", 2) if separator == " " else line.split(",")
        if len(fields) < 3 or (separator == " " and len(fields) != 3):
            hint = ""
            if separator == " " and "," in line:
                hint = " (comma-separated: list_format activitynet or fcvid?)"
            elif separator == "," and len(line.split()) >= 3:
                hint = " (space-separated: list_format minikinetics or frames?)"
            raise VideoDataError(f"{where}: expected '{form}' for list_format {list_format!r}, got "
                                 f"{len(fields)} field(s): {line!r}{hint}")
        if not fields[0].strip():
            raise VideoDataError(f"{where}: empty frame folder name in {line!r}")
        num_frames = _parse_int(fields[1], "num_frames", where)
        if num_frames < 0:
            raise VideoDataError(f"{where}: num_frames must be >= 0, got {num_frames}")
        labels: list[int] = []
        for text in fields[2:]:
            label = _parse_int(text, "label", where)
            if label < 0 or (num_classes is not None and label >= num_classes):
                bound = f"[0, {num_classes})" if num_classes is not None else ">= 0 (a class index)"
                raise VideoDataError(f"{where}: label {label} outside {bound}")
            if label not in labels:  # the authors' loader keeps a set of labels
                labels.append(label)
        if num_frames < OFFICIAL_MIN_FRAMES:
            dropped += 1
            continue
        path = root / fields[0]
        if not path.is_dir():
            raise VideoDataError(f"{where}: frame folder not found: {path}")
        records.append(VideoRecord(path, labels[0], num_frames, list_file, line_no,
                                   all_labels=tuple(labels) if separator == "," else None))
    if dropped:
        logger.info("%s: dropped %d entries with fewer than %d frames, as the authors' loader does",
                    list_file, dropped, OFFICIAL_MIN_FRAMES)
    if not records:
        raise VideoDataError(f"{list_file}: video list is empty" if not dropped else
                             f"{list_file}: every entry has fewer than {OFFICIAL_MIN_FRAMES} frames (dropped)")
    return records


def _parse_int(text: str, what: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise VideoDataError(f"{where}: {what} must be an integer, got {text!r}") from None


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VideoDataError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VideoDataError(f"{path}: cannot read {what}: {e}") from e


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(_read_text(path, what))
    except json.JSONDecodeError as e:
        raise VideoDataError(f"{path}: malformed JSON {what}: {e.msg} at line {e.lineno}, "
                             f"column {e.colno}") from None


def read_label_names(label_file: str | Path, list_format: ListFormat) -> list[str]:
    """Class names in class-index order from a dataset's published labels file.

    ``sthv1`` / ``jester``: a csv of one label text per line, the class index being the line's position
    (0-based; trailing blank lines are ignored, a blank line in between is an error). ``sthv2``: a JSON
    object ``{label text: "index"}`` whose indices must be 0 .. n-1. Duplicates are errors: a text must
    name one class.
    """
    label_file = Path(label_file)
    if list_format not in ANNOTATION_FORMATS:
        raise ValueError(f"list_format must be one of {ANNOTATION_FORMATS} to read a labels file, "
                         f"got {list_format!r}")
    if list_format == "sthv2":
        mapping = _read_json(label_file, "labels file")
        if not isinstance(mapping, dict) or not mapping:
            raise VideoDataError(f"{label_file}: labels file must be a non-empty JSON object "
                                 '{"label text": "index", ...}, got ' + type(mapping).__name__)
        by_index: dict[int, str] = {}
        for text, index_text in mapping.items():
            index = _parse_int(str(index_text), f"the index of label {text!r}", str(label_file))
            if index in by_index:
                raise VideoDataError(f"{label_file}: labels {by_index[index]!r} and {text!r} share index {index}")
            by_index[index] = text
        if sorted(by_index) != list(range(len(by_index))):
            missing = sorted(set(range(len(by_index))) - set(by_index))
            raise VideoDataError(f"{label_file}: label indices must be 0 .. {len(by_index) - 1}; "
                                 f"missing {missing[:10]}")
        return [by_index[i] for i in range(len(by_index))]
    lines = [line.strip() for line in _read_text(label_file, "labels file").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise VideoDataError(f"{label_file}: labels file is empty")
    first_line: dict[str, int] = {}
    for line_no, text in enumerate(lines, start=1):
        if not text:
            raise VideoDataError(f"{label_file}, line {line_no}: blank line (the class index is the line's "
                                 "position, so a blank line would shift every class after it)")
        if text in first_line:
            raise VideoDataError(f"{label_file}, line {line_no}: label {text!r} repeats line {first_line[text]}")
        first_line[text] = line_no
    return lines


def read_annotation_list(list_file: str | Path, label_file: str | Path | None, list_format: ListFormat,
                         data_root: str | Path | None = None,
                         num_classes: int | None = None) -> list[VideoRecord]:
    """Records of a Something-Something V1/V2 or Jester split in the dataset's published format.

    * ``sthv1`` / ``jester``: ``list_file`` is ``something-something-v1-{train,validation}.csv`` /
      ``jester-v1-{train,validation}.csv``, lines ``<id>;<label text>``; ``<root>/<id>`` must be a frame
      folder (frames ``00001.jpg ...``, counted on first use).
    * ``sthv2``: ``list_file`` is ``something-something-v2-{train,validation}.json``, a JSON list of
      ``{"id", "label", "template", "placeholders"}``; the class is the ``template`` with its brackets
      removed (``"Holding [something] next to [something]"`` -> ``"Holding something next to something"``).
      The video is the frame folder ``<root>/<id>`` if it exists, else ``<root>/<id>.webm``.

    ``label_file`` is the labels file (:func:`read_label_names`); class indices are its order. With
    ``num_classes`` the labels file must hold exactly that many classes. The published test splits
    carry ids only: they are refused, since training and evaluation need labels. ``data_root`` defaults
    to the list file's folder. Every problem raises :class:`VideoDataError` naming the file and line
    (JSON: entry) and the reason.
    """
    list_file = Path(list_file)
    if list_format not in ANNOTATION_FORMATS:
        raise ValueError(f"list_format must be one of {ANNOTATION_FORMATS}, got {list_format!r}")
    if label_file is None:
        raise ValueError(f"list_format {list_format!r} needs label_file: the dataset's labels file "
                         "(something-something-v1-labels.csv, something-something-v2-labels.json or "
                         "jester-v1-labels.csv), whose order gives the class indices")
    label_file = Path(label_file)
    root = Path(data_root) if data_root is not None else list_file.parent
    names = read_label_names(label_file, list_format)
    if num_classes is not None and len(names) != num_classes:
        raise VideoDataError(f"{label_file}: {len(names)} classes, but num_classes is {num_classes} "
                             "(set the model's class count to the labels file's)")
    index_of = {name: i for i, name in enumerate(names)}

    def label_of(text: str, where: str) -> int:
        if text not in index_of:
            close = difflib.get_close_matches(text, names, n=1)
            hint = f" (closest: {close[0]!r})" if close else ""
            raise VideoDataError(f"{where}: label {text!r} is not in the labels file {label_file}{hint}")
        return index_of[text]

    records: list[VideoRecord] = []
    if list_format == "sthv2":
        entries = _read_json(list_file, "video list")
        if not isinstance(entries, list):
            raise VideoDataError(f"{list_file}: expected a JSON list of videos, got {type(entries).__name__}")
        for entry_no, entry in enumerate(entries, start=1):
            where = f"{list_file}, entry {entry_no}"
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), (str, int)):
                raise VideoDataError(f"{where}: expected an object with an \"id\", got {str(entry)[:200]}")
            video_id = str(entry["id"]).strip()
            where = f"{where} (id {video_id})"
            if "template" not in entry:
                if "label" not in entry:
                    raise VideoDataError(_unlabelled(where, list_file))
                raise VideoDataError(f"{where}: no \"template\", which names the class")
            if not isinstance(entry["template"], str):
                raise VideoDataError(f"{where}: \"template\" must be a string, got {entry['template']!r}")
            label = label_of(entry["template"].replace("[", "").replace("]", "").strip(), where)
            folder, video = root / video_id, root / f"{video_id}.webm"
            if folder.is_dir():
                records.append(VideoRecord(folder, label, None, list_file, entry_no, folder=True, line_kind="entry"))
            elif video.is_file():
                records.append(VideoRecord(video, label, None, list_file, entry_no, line_kind="entry"))
            else:
                raise VideoDataError(f"{where}: neither frame folder {folder} nor video file {video} found")
    else:
        for line_no, line in enumerate(_read_text(list_file, "video list").splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            where = f"{list_file}, line {line_no}"
            video_id, separator, text = (part.strip() for part in line.partition(";"))
            if not separator:
                if len(line.split()) == 1:
                    raise VideoDataError(_unlabelled(where, list_file))
                raise VideoDataError(f"{where}: expected '<id>;<label text>', no ';' in {line!r}")
            if not video_id:
                raise VideoDataError(f"{where}: empty video id in {line!r}")
            label = label_of(text, where)
            folder = root / video_id
            if not folder.is_dir():
                raise VideoDataError(f"{where}: frame folder not found: {folder}")
            records.append(VideoRecord(folder, label, None, list_file, line_no, folder=True))
    if not records:
        raise VideoDataError(f"{list_file}: video list is empty")
    return records


def _unlabelled(where: str, list_file: Path) -> str:
    return (f"{where}: a video id without a label: {list_file.name} looks like the test split, which is "
            "published without labels; labels are needed for training and evaluation, so give the "
            "train or validation list")


# ----------------------------------------------------------------------------------------------------
# Sampling


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
    * ``"refuse"``: raises ValueError, which callers turn into a :class:`VideoDataError` naming the file.

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


# ----------------------------------------------------------------------------------------------------
# Decoding


def _check_decoder(decoder: str) -> None:
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
    _check_decoder(decoder)
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
    _check_decoder(decoder)
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
    _check_decoder(decoder)
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


_warned_decord_stride = False


def _decode_decord(path: Path, idx: np.ndarray) -> torch.Tensor:
    return _decord_read(path, lambda n: idx)[0]


def _decord_read(path: Path, choose: Callable[[int], np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
    """Open one reader, pick the indices from its frame count with ``choose``, decode them.

    One reader serves both steps, so a dataset item costs a single open (which demuxes the file).
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
        global _warned_decord_stride
        if not _warned_decord_stride:
            _warned_decord_stride = True
            logger.warning("decord cannot convert frames of %s (known decord bug for some frame widths, "
                           "dmlc/decord#336); decoding such videos with PyAV", path)
        return _decode_pyav(path, idx), idx
    if batch.ndim != 4 or batch.shape[0] != len(idx) or 0 in batch.shape:
        raise VideoDataError(f"{path}: truncated or corrupt: asked for {len(idx)} frames, "
                             f"decord returned an array of shape {batch.shape}")
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous(), idx


def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.error.FFmpegError, OSError)


class _open_av:
    """``with _open_av(path) as (container, stream)``: PyAV's first video stream, errors wrapped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> tuple[Any, Any]:
        import av

        if not self.path.is_file():
            raise VideoDataError(f"{self.path}: video file not found")
        try:
            self.container = av.open(str(self.path))
        except _av_errors() as e:
            raise VideoDataError(f"{self.path}: cannot open video (not a video, truncated or corrupt): "
                                 f"{_first_line(e)}") from e
        if not self.container.streams.video:
            self.container.close()
            raise VideoDataError(f"{self.path}: has no video stream")
        # No frame threading (thread_type="AUTO"): with it FFmpeg drops the decode error of a
        # truncated stream and PyAV just ends early, so truncation would pass unnoticed.
        return self.container, self.container.streams.video[0]

    def __exit__(self, *exc: object) -> None:
        self.container.close()


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


def _count_folder(folder: Path, image_template: str) -> int:
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


# ----------------------------------------------------------------------------------------------------
# Dataset


class VideoDataset(torch.utils.data.Dataset):
    """TSN-sampled clips of a video list; items are dicts (see :meth:`__getitem__`).

    The list is read (and every file checked to exist) at construction. Training sampling draws from
    ``np.random.default_rng([seed, epoch, index])``: deterministic, different per epoch (call
    :meth:`set_epoch` before each epoch, as with DistributedSampler) and independent of which DataLoader
    worker runs the item. The transform's own torch randomness is seeded from the same generator.
    With ``persistent_workers=True`` the workers keep the epoch they started with, so pair
    :meth:`set_epoch` with non-persistent workers.

    ``glance_frames`` G > 0 gives the clips of clip-level AdaFocus (Section 4.2): G frames for f_G and
    ``num_frames`` T for f_L, each set its own TSN sampling of the whole video (:func:`sample_clip_indices`),
    returned as one clip of G + T frames, the glance frames first (see :meth:`__getitem__`).
    """

    def __init__(self, list_file: str | Path, data_root: str | Path | None = None, num_frames: int = 8,
                 train: bool = False, num_classes: int | None = None, decoder: Decoder = "decord",
                 list_format: ListFormat = "auto", image_template: str | None = None,
                 annotation_root: str | Path | None = None, transform: Transform | None = None,
                 skip_corrupt: bool = False, seed: int = 0, cache_videos: bool = False,
                 label_file: str | Path | None = None, short_videos: str = "repeat",
                 glance_frames: int = 0) -> None:
        _check_decoder(decoder)
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
                    frames, decoded = _decord_read(record.path, choose)
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
        return _decord_read(record.path, np.arange)[0]

    def _count(self, index: int) -> int:
        record = self.records[index]
        if record.num_frames is not None:
            return record.num_frames
        if index not in self._frame_counts:
            if record.is_folder:
                self._frame_counts[index] = _count_folder(record.path, self.image_template)
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
