"""What every video list format yields: :class:`VideoRecord` entries, :class:`VideoDataError` for bad input,
and the helpers the formats share to read their files.

Every bad input -- a list problem, a missing/corrupt/truncated/too short video, a missing frame image or
annotation -- raises :class:`VideoDataError`, whose message names the file (and the list line where there
is one), so a broken dataset is diagnosed from the message alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ListFormat = Literal["auto", "video", "frames", "sthv1", "sthv2", "jester", "activitynet", "fcvid", "minikinetics"]


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


def parse_int(text: str, what: str, where: str) -> int:
    """``text`` as an int; else a VideoDataError saying at ``where`` that ``what`` must be an integer."""
    try:
        return int(text)
    except ValueError:
        raise VideoDataError(f"{where}: {what} must be an integer, got {text!r}") from None


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; a missing or unreadable file is a VideoDataError naming it as ``what``."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VideoDataError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VideoDataError(f"{path}: cannot read {what}: {e}") from e


def read_json(path: Path, what: str) -> Any:
    """The JSON value of ``path``; malformed JSON is a VideoDataError giving its line and column."""
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as e:
        raise VideoDataError(f"{path}: malformed JSON {what}: {e.msg} at line {e.lineno}, "
                             f"column {e.colno}") from None

