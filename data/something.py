"""Something-Something V1/V2 and Jester splits read from the datasets' own published annotation and labels
files (``list_format`` ``"sthv1"``, ``"sthv2"``, ``"jester"``, with the labels file as ``label_file``).

Something-Something V1 and Jester ship csv lists ``<id>;<label text>`` over frame folders
``<root>/<id>/00001.jpg ...``; Something-Something V2 ships json lists over ``<root>/<id>.webm`` videos (or
frame folders ``<root>/<id>/`` extracted by the user). Frame counts are not in these lists: each folder's
frames are counted once, on first use.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from .records import ListFormat, VideoDataError, VideoRecord, parse_int, read_json, read_text

# The formats read with a ``label_file``: their lists name classes by text.
ANNOTATION_FORMATS = ("sthv1", "sthv2", "jester")
# The frame names of the published V1 / Jester frame folders; V2 folders, extracted by the user, use the
# default template.
ANNOTATION_IMAGE_TEMPLATES = {"sthv1": "{:05d}.jpg", "jester": "{:05d}.jpg"}


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
        mapping = read_json(label_file, "labels file")
        if not isinstance(mapping, dict) or not mapping:
            raise VideoDataError(f"{label_file}: labels file must be a non-empty JSON object "
                                 '{"label text": "index", ...}, got ' + type(mapping).__name__)
        by_index: dict[int, str] = {}
        for text, index_text in mapping.items():
            index = parse_int(str(index_text), f"the index of label {text!r}", str(label_file))
            if index in by_index:
                raise VideoDataError(f"{label_file}: labels {by_index[index]!r} and {text!r} share index {index}")
            by_index[index] = text
        if sorted(by_index) != list(range(len(by_index))):
            missing = sorted(set(range(len(by_index))) - set(by_index))
            raise VideoDataError(f"{label_file}: label indices must be 0 .. {len(by_index) - 1}; "
                                 f"missing {missing[:10]}")
        return [by_index[i] for i in range(len(by_index))]
    lines = [line.strip() for line in read_text(label_file, "labels file").splitlines()]
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
        entries = read_json(list_file, "video list")
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
        for line_no, line in enumerate(read_text(list_file, "video list").splitlines(), start=1):
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
