"""Video lists: mmaction2 video lists, TSN/TSM frame-folder lists and the AdaFocus authors' lists, and
:func:`read_video_list`, which reads a list of any format (Something-Something / Jester through
:mod:`~adafocus.data.something`).

Two plain list formats are read (both split on whitespace, so paths may not contain spaces):

* ``path label`` -- mmaction2's VideoDataset format; ``path`` is a video file (mp4, webm, ...).
* ``dir num_frames label`` -- the TSN/TSM frame-folder format in which Something-Something V1 and
  Jester ship: ``dir`` is a folder of JPEGs named by an image template (1-based, ``img_00001.jpg``).

The lists the AdaFocus authors publish for ActivityNet, FCVID and Mini-Kinetics are read as they ship
(``list_format`` ``"activitynet"``, ``"fcvid"``, ``"minikinetics"``; see :func:`read_official_list`):
``dir,num_frames,label[,label...]`` (Mini-Kinetics: ``dir num_frames label``) over frame folders
``<root>/<dir>/image_00001.jpg ...``. A video may carry several labels; the first one is its class.

Paths are relative to ``data_root`` (default: the list file's folder). Every problem raises
:class:`~adafocus.data.records.VideoDataError` naming the file, the line and the reason.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .records import ListFormat, VideoDataError, VideoRecord, parse_int, read_text
from .something import ANNOTATION_FORMATS, ANNOTATION_IMAGE_TEMPLATES, read_annotation_list

logger = logging.getLogger(__name__)

# The AdaFocus authors' lists for ActivityNet, FCVID and Mini-Kinetics (their ops/dataset.py and dataset_config.py):
# per format, the field separator; all three name frames image_00001.jpg ... (1-based).
OFFICIAL_SEPARATORS = {"activitynet": ",", "fcvid": ",", "minikinetics": " "}
OFFICIAL_FORMATS = tuple(OFFICIAL_SEPARATORS)
# Formats whose mAP counts every label of a video: the authors' FCVID evaluation; their ActivityNet and
# Mini-Kinetics evaluations count the first label only.
MULTI_LABEL_MAP_FORMATS = ("fcvid",)
# The authors' loader drops list entries of fewer frames, from training and validation lists alike.
OFFICIAL_MIN_FRAMES = 3
# The frame names of each format's published frame folders; other formats use the default template.
FORMAT_IMAGE_TEMPLATES = {**ANNOTATION_IMAGE_TEMPLATES, **{name: "image_{:05d}.jpg" for name in OFFICIAL_FORMATS}}


def read_video_list(list_file: str | Path, data_root: str | Path | None = None,
                    list_format: ListFormat = "auto", num_classes: int | None = None,
                    label_file: str | Path | None = None) -> list[VideoRecord]:
    """Read a video list, checking every line and that every video file / frame folder exists.

    ``list_format``: ``"video"`` (``path label``), ``"frames"`` (``dir num_frames label``) or ``"auto"``,
    which takes the format from the field count of the first non-blank line; later lines must match
    it (a mixed list is almost always a path containing a space, better reported than guessed).
    ``"sthv1"``, ``"sthv2"`` and ``"jester"`` read the datasets' published annotation files, with their
    labels file as ``label_file`` (see :func:`~adafocus.data.something.read_annotation_list`); ``"activitynet"``, ``"fcvid"`` and
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
    text = read_text(list_file, "video list")

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
        label = parse_int(fields[-1], "label", where)
        if num_classes is not None and not 0 <= label < num_classes:
            raise VideoDataError(f"{where}: label {label} outside [0, {num_classes})")
        path = root / fields[0]
        if expected == 2:
            if not path.is_file():
                raise VideoDataError(f"{where}: video file not found: {path}")
            records.append(VideoRecord(path, label, None, list_file, line_no))
        else:
            num_frames = parse_int(fields[1], "num_frames", where)
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
    for line_no, line in enumerate(read_text(list_file, "video list").splitlines(), start=1):
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
        num_frames = parse_int(fields[1], "num_frames", where)
        if num_frames < 0:
            raise VideoDataError(f"{where}: num_frames must be >= 0, got {num_frames}")
        labels: list[int] = []
        for text in fields[2:]:
            label = parse_int(text, "label", where)
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

