"""Stage provenance: each finished stage of a run folder records what produced it, and a re-run that differs is refused.

The rule: a stage folder (``<out>/warmup``, ``stage1``, ``tsm_plus``, ``policy``, ``stage3``) is reused only
when the command that would train it now is the command that trained it. Its record
(:func:`stage_record`) holds

* ``fields``: the config fields the stage depends on (:data:`STAGE_FIELDS`, flattened to dotted paths, less
  :data:`IGNORED_FIELDS`); stage II's also hold its algorithm's values from ``agents/hyperparams/<algo>.yml``
  that change what trains, as ``policy.defaults.<key>`` (:func:`adafocus.agents.defaults.recorded_defaults`),
* ``data``: the sha256 of the data lists' contents (the list files, not their paths),
* ``inputs``: the sha256 of the upstream files it started from (a checkpoint, a policy). A downstream stage
  therefore changes whenever an upstream stage was retrained, and an identical copy of a run still matches.

:func:`finish_stage` writes ``stage.json`` (the record plus the sha256 of the stage's output files) last and
atomically: it is the marker that the stage is finished. :func:`stage_status` reuses a stage only when the
record is equal and the outputs still have their recorded digests (a truncated file is "incomplete"), and
raises :class:`StageMismatch` naming every differing field when the record differs: the way out is
``--fresh`` (retrain the folder) or a new ``--out`` (with ``--from RUN`` to reuse RUN's matching stages,
see :func:`adopt_stages`). An interrupted stage is guarded the same way: :func:`begin_stage` records its
record in ``stage.partial.json`` at the start and :func:`check_partial` refuses to resume it with another.

A field that the record does not have (configs gain fields over time) is equal only at its default, which is
what the code that trained the stage did (a new field's default keeps the old behaviour); any other value,
and a field the command no longer has, counts as a difference.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import to_dict

FINISHED = "stage.json"
PARTIAL = "stage.partial.json"

# The config subtrees (dotted prefixes) each stage's result depends on.
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "warmup": ("model", "data", "warmup", "seed"),
    "stage1": ("model", "data", "stage1", "seed"),
    "tsm_plus": ("model", "data", "stage1", "seed"),  # stage I's settings on whole frames (see run_supervised)
    "policy": ("model", "data", "env", "policy", "seed"),
    "stage3": ("model", "data", "stage3", "seed", "env"),
}

# The order the stages are adopted in by --from, and what each one starts from: a stage is adopted only
# with all of its upstream stages (otherwise that upstream is retrained and its output changes).
PIPELINE_ORDER: tuple[str, ...] = ("warmup", "stage1", "tsm_plus", "policy", "stage3")
UPSTREAM: dict[str, tuple[str, ...]] = {
    "warmup": (),
    "stage1": ("warmup",),
    "tsm_plus": ("warmup",),
    "policy": ("stage1",),
    "stage3": ("stage1", "policy"),
}

# Fields left out of the records (a field or a whole subtree), each because it cannot change a stage's result.
IGNORED_FIELDS: tuple[str, ...] = (
    "data.workers",  # loader processes: the same batches, only faster
    "data.cache_videos",  # keeps decoded frames in memory: the same frames, only faster
    "data.train_list",  # a path: the list is recorded by the sha256 of its contents instead
    "data.val_list",  # a path: recorded by contents, as train_list
    "data.label_file",  # a path: recorded by contents when the caller passes it among the data lists
    "data.data_root",  # where the videos lie: a moved dataset is the same data (its lists are digested)
    "data.annotation_root",  # where the boxes lie: as data_root
    "policy.checkpoint_every",  # how often pi is saved while training, not what it learns
    "device",  # where the stage runs, not what it computes
    "preset",  # a name: the values it stands for are recorded field by field
)

_FIELD_DEFAULTS: dict[str, Any] = {}  # filled below, once the flattening helpers exist

_CHUNK = 1 << 20  # 1 MiB reads: checkpoints can be hundreds of MB


class _Absent:
    """A field that one side of a comparison does not have."""

    def __repr__(self) -> str:
        return "(absent)"

    def __reduce__(self) -> str:  # unpickles as the module's singleton, so differences still compare equal
        return "ABSENT"


ABSENT = _Absent()


class Digest(str):
    """A file's sha256 in a difference (equal to the hex string); None in a record means no file."""

    def __repr__(self) -> str:
        return f"sha256 {self[:12]}"  # a prefix is enough to tell two files apart in a message


class _NoFile:
    """A data list or upstream file that was not given (None in a record)."""

    def __repr__(self) -> str:
        return "no file"

    def __reduce__(self) -> str:
        return "NO_FILE"


NO_FILE = _NoFile()


def _digest(value: Any) -> Any:
    value = value.get("sha256") if isinstance(value, Mapping) else value
    return NO_FILE if value is None else Digest(value) if isinstance(value, str) else value


def file_digest(path: Path) -> str:
    """The sha256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def _jsonable(value: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists), so fresh and stored records compare equal."""
    return json.loads(json.dumps(value, default=str))


def _field_defaults() -> dict[str, Any]:
    from .config import RunConfig

    return _jsonable(_flatten(to_dict(RunConfig())))


def stage_fields(config: Any, stage: str) -> dict[str, Any]:
    """The config fields ``stage`` depends on, as {dotted path: value}."""
    if stage not in STAGE_FIELDS:
        raise ValueError(f"unknown stage {stage!r}; choose one of {sorted(STAGE_FIELDS)}")
    flat = _flatten(to_dict(config))
    fields = {path: value for path, value in sorted(flat.items())
              if any(_under(path, p) for p in STAGE_FIELDS[stage]) and not any(_under(path, p) for p in IGNORED_FIELDS)}
    if stage == "policy":  # the algorithm's values from agents/hyperparams/<algo>.yml train pi as much as the config
        from adafocus.agents.defaults import recorded_defaults

        fields.update(recorded_defaults(config.policy.algo))
    return _jsonable(dict(sorted(fields.items())))


def stage_record(config: Any, stage: str, data_lists: Mapping[str, Path | None],
                 inputs: Mapping[str, Path | None]) -> dict[str, Any]:
    """What produces ``stage`` under ``config``: its config fields, the digests of the data lists (None: no
    such file, e.g. no label file) and of the upstream files it starts from (e.g. {"init": stage I's
    checkpoint, "policy": policy.zip}). JSON-ready; compare with :func:`stage_status`."""
    return {
        "stage": stage,
        "fields": stage_fields(config, stage),
        "data": {name: None if path is None else file_digest(path) for name, path in sorted(data_lists.items())},
        "inputs": {name: {"sha256": None if path is None else file_digest(path)}
                   for name, path in sorted(inputs.items())},
    }


def record_differences(recorded: Mapping[str, Any], record: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(name, recorded value, value now) of every difference between two records; ABSENT marks a missing side,
    NO_FILE a data list or upstream file that was not given.

    Config fields are named by their dotted path (as on the command line), data lists ``data.<name>`` and
    upstream files ``inputs.<name>``, both with the sha256 of their contents (a :class:`Digest`) as values.
    """
    out: list[tuple[str, Any, Any]] = []
    if recorded.get("stage", ABSENT) != record.get("stage", ABSENT):
        out.append(("stage", recorded.get("stage", ABSENT), record.get("stage", ABSENT)))

    def compare(section: str, prefix: str, value=lambda v: v) -> None:
        old, new = recorded.get(section) or {}, record.get(section) or {}
        for key in sorted(set(old) | set(new)):
            a = value(old[key]) if key in old else ABSENT
            b = value(new[key]) if key in new else ABSENT
            if section == "fields" and key not in old and b == _FIELD_DEFAULTS.get(key, ABSENT):
                continue  # a field added since: its default is what the code that trained the stage did
            if a != b:
                out.append((f"{prefix}{key}", a, b))

    compare("fields", "")
    compare("data", "data.", _digest)
    compare("inputs", "inputs.", _digest)
    return out


class StageMismatch(ValueError):
    """A stage folder was produced (or partly trained) by a command that differs from this one."""

    def __init__(self, folder: Path, differences: list[tuple[str, Any, Any]], partial: bool = False) -> None:
        self.folder, self.differences, self.partial = Path(folder), list(differences), partial
        run = self.folder.parent
        what = "was partly trained" if partial else "was trained"
        lines = [f"{self.folder} {what} by a different command, so it is neither "
                 f"{'resumed' if partial else 'reused'} nor overwritten; differences (recorded -> now):"]
        lines += [f"  {name}: {old!r} -> {new!r}" for name, old, new in self.differences]
        lines.append(f"Either retrain this run folder with --fresh, or train into a new folder with --out NEW "
                     f"(add --from {run} to reuse its finished stages that still match: --out NEW --from {run}).")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the custom constructor (multiprocessing)
        return type(self), (self.folder, self.differences, self.partial)


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is unreadable (written atomically, so only by a foreign hand)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json_atomic(path: Path, value: Any) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``: readers see old or new, whole."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w") as f:
            json.dump(value, f, indent=2)
            f.flush()
            os.fsync(f.fileno())  # the marker must not reach the disk before its contents
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _relative(folder: Path, path: Path) -> str:
    """``path`` (absolute, relative to the working directory, or relative to ``folder``) as a name in ``folder``."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = folder / path
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        raise ValueError(f"output {path} is not inside the stage folder {folder}") from None


def finish_stage(folder: Path, record: Mapping[str, Any], outputs: list[Path]) -> None:
    """Mark ``folder``'s stage finished: ``stage.json`` = the record plus the sha256 of each output (paths
    inside the folder, absolute or relative to it). Written last and atomically, after every output."""
    folder = Path(folder)
    digests = {}
    for path in outputs:
        name = _relative(folder, path)
        digests[name] = file_digest(folder / name)
    _write_json_atomic(folder / FINISHED, {**_jsonable(dict(record)), "outputs": digests})
    (folder / PARTIAL).unlink(missing_ok=True)  # superseded by the finished record


def stage_status(folder: Path, record: Mapping[str, Any]) -> str:
    """"finished" (reuse it), "incomplete" (an output is missing or no longer has its recorded digest) or
    "absent" (no stage.json: nothing finished; a partial checkpoint may be resumed, see :func:`check_partial`).

    Raises StageMismatch when the stage was finished by a different command, before looking at its outputs:
    whatever state they are in, this command must not reuse or overwrite them silently.
    """
    folder = Path(folder)
    marker = folder / FINISHED
    if not marker.exists():
        return "absent"
    recorded = _read_json(marker)
    if recorded is None:
        return "incomplete"
    differences = record_differences(recorded, _jsonable(dict(record)))
    if differences:
        raise StageMismatch(folder, differences)
    for name, digest in (recorded.get("outputs") or {}).items():
        path = folder / name
        if not path.is_file() or file_digest(path) != digest:
            return "incomplete"
    return "finished"


def _unshare(folder: Path) -> None:
    """Give every hard-linked file in ``folder`` its own copy, so that training writing in place (appending
    to log.csv, saving a policy) cannot reach the run it was adopted from (or adopted into)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.stat().st_nlink > 1:
            tmp = path.with_name(f".{path.name}.unshare{os.getpid()}")
            shutil.copy2(path, tmp)
            os.replace(tmp, path)


def begin_stage(folder: Path, record: Mapping[str, Any]) -> None:
    """Call when a stage starts (or restarts) training in ``folder``: records ``record`` in
    ``stage.partial.json`` (atomically) and withdraws any ``stage.json`` (the folder is no longer finished)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _unshare(folder)
    _write_json_atomic(folder / PARTIAL, _jsonable(dict(record)))
    (folder / FINISHED).unlink(missing_ok=True)


def check_partial(folder: Path, record: Mapping[str, Any]) -> bool:
    """Before resuming an interrupted stage: True when its ``stage.partial.json`` holds ``record``, False when
    there is none (the caller decides what to do with an unrecorded checkpoint); StageMismatch when it differs."""
    folder = Path(folder)
    path = folder / PARTIAL
    if not path.exists():
        return False
    recorded = _read_json(path)
    differences = record_differences(recorded if recorded is not None else {}, _jsonable(dict(record)))
    if differences:
        raise StageMismatch(folder, differences, partial=True)
    return True


def _copy_tree(source: Path, target: Path) -> None:
    """Copy ``source`` into the new folder ``target``, hard-linking files where the file system allows."""
    for path in sorted(source.rglob("*")):
        if path.name == PARTIAL and path.parent == source:
            continue  # a finished stage's stale partial record is no part of it
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:  # another file system, or links not supported: a plain copy
            shutil.copy2(path, dest)


def adopt_stages(source: Path, out: Path, config: Any, records: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``--out OUT --from SOURCE``: bring SOURCE's finished stages that match this command into OUT.

    In pipeline order, a stage (one of ``records``; ``records[stage]`` as computed for this command, with
    inputs that may point into SOURCE, since adopted copies are identical) is adopted when SOURCE's copy is
    finished with an equal record and every stage it starts from (:data:`UPSTREAM`) was adopted. A stage that
    differs or is unfinished is no error here: it and the stages after it are trained anew in OUT. A stage
    already finished in OUT with this record counts as adopted; any other folder already in OUT is left alone.
    SOURCE is never written to (its files are hard-linked or copied; :func:`begin_stage` unshares links
    before any training writes). Returns the adopted stage names in pipeline order.
    """
    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise ValueError(f"--from {source} names the run folder itself; give --out a new folder")
    adopted: list[str] = []
    for stage in PIPELINE_ORDER:
        if stage not in records or not all(up in adopted for up in UPSTREAM[stage]):
            continue
        record = records[stage]
        if dict(record.get("fields") or {}) != stage_fields(config, stage):
            raise ValueError(f"the record given for {stage} was not computed from this config")
        target = out / stage
        if target.exists():
            try:
                if stage_status(target, record) == "finished":
                    adopted.append(stage)  # adopted by an earlier run of the same command
            except StageMismatch:
                pass  # OUT's own stage: stage_status refuses it later, with the command's way out
            continue
        try:
            if stage_status(source / stage, record) != "finished":
                continue
        except StageMismatch:
            continue  # differs from this command: trained anew in OUT
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{stage}.adopting{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            _copy_tree(source / stage, tmp)
            os.rename(tmp, target)  # all or nothing: no half-copied stage folder in OUT
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        adopted.append(stage)
    return adopted


_FIELD_DEFAULTS.update(_field_defaults())
