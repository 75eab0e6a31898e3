"""Command lines generated from the config dataclasses: one source of truth for every default.

:func:`add_config_options` turns any config dataclass into options, one per leaf field named by its path (with
a prefix for a second config on the same command line: ``--frame.cost_weight``), its help from the field's
documentation and default; :func:`config_from_args` reads them back. For a run, ``--preset NAME`` picks the
starting config; every leaf field is then an option, e.g. ``--stage1.epochs 5`` or ``--model.patch_size 96``;
the common ones also have short aliases.

Every script of ``experiments/`` runs through :func:`run_script`, which applies one error rule: a
``ValueError`` (the project raises it, or its subclasses ``VideoDataError``, ``StageMismatch``,
``OfficialFormatError``, ``PolicyFileError``, for a bad option, config file, list, video or run folder) or an
``OSError`` (a file the user named that cannot be read or written) is the user's to fix, so it prints
``error: <message>`` on one line of stderr and exits with status 2; ``--debug`` shows its traceback instead.
Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import ast
import functools
import inspect
import sys
import textwrap
import tokenize
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from .config import PRESETS, RunConfig, preset

ALIASES = {
    "--train-list": "data.train_list", "--val-list": "data.val_list", "--data-root": "data.data_root",
    "--annotation-root": "data.annotation_root", "--decoder": "data.decoder", "--frames": "data.frames",
    "--skip-corrupt": "data.skip_corrupt", "--workers": "data.workers", "--label-file": "data.label_file",
    "--patch": "model.patch_size", "--global-size": "model.global_size", "--num-classes": "model.num_classes",
    "--algo": "policy.algo", "--total-timesteps": "policy.total_timesteps", "--n-envs": "policy.n_envs",
    "--device": "device", "--seed": "seed",
}
C = TypeVar("C")


def _leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any, str]]:
    """Every leaf field of the dataclass ``obj``: its dotted path, value, type hint and documentation."""
    hints = typing.get_type_hints(type(obj))
    docs = _field_docs(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value, hints[f.name], docs.get(f.name, "")


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation in the source of ``cls`` and its bases: the string literal on the line under
    the field, else the comment on the field's line and the comment lines right under it; a subclass's over
    its bases'."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no source (built in a session, frozen app): help without documentation
            continue
        lines = source.splitlines(keepends=True)
        comments = {token.start[0]: token.string.lstrip("#").strip()
                    for token in tokenize.generate_tokens(iter(lines).__next__) if token.type == tokenize.COMMENT}
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, [*body[1:], None]):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
            elif node.end_lineno in comments:  # with the comment lines that carry it on
                line = node.end_lineno
                text = [comments[line]]
                while line < len(lines) and lines[line].lstrip().startswith("#"):
                    line += 1
                    text.append(comments[line])
                docs[node.target.id] = " ".join(text)
    return docs


def _option_type(hint: Any) -> tuple[Callable[[str], Any], str | None]:
    """The parser of one command-line value of a field typed ``hint``, and the ``nargs`` of a tuple field."""
    nargs = None
    if typing.get_origin(hint) is tuple:
        hint, nargs = typing.get_args(hint)[0], "+"
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    if base is bool:
        def parse_bool(text: str) -> bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        return parse_bool, nargs
    if base in (int, float, str):
        if type(None) in typing.get_args(hint):
            return (lambda text: None if text.lower() == "none" else base(text)), nargs
        return base, nargs
    return str, nargs


def add_config_options(parser: argparse.ArgumentParser, default: Any, prefix: str = "", *,
                       aliases: Mapping[str, str] | None = None, skip: Collection[str] = (),
                       choices: Mapping[str, Sequence[Any]] | None = None, label: str = "default") -> None:
    """One option per leaf field of the dataclass ``default``, named by its path: ``--<prefix>.<path>``
    (``--<path>`` without a prefix), e.g. ``--frame.cost_weight`` or ``--stage1.epochs``; ``aliases`` gives
    fields a second name (path -> option), ``skip`` leaves fields out, ``choices`` restricts values. The help
    shows the field's documentation and its value in ``default`` (``(<label>: value)``). An option not given
    sets nothing, so that ``--x none`` can set a field to None; :func:`config_from_args` reads them back."""
    aliases, choices = aliases or {}, choices or {}
    for path, value, hint, doc in _leaves(default):
        if path in skip:
            continue
        dest = f"{prefix}.{path}" if prefix else path
        value_type, nargs = _option_type(hint)
        extra: dict[str, Any] = {"nargs": nargs} if nargs else {}
        if isinstance(value, bool):
            extra = {"nargs": "?", "const": True}  # "--skip-corrupt" alone means true
        if path in choices:
            extra["choices"] = choices[path]
        else:
            sample = value[0] if isinstance(value, tuple) and value else value
            extra["metavar"] = type(sample).__name__.upper() if sample is not None else "VALUE"
        names = [f"--{dest}"] + ([aliases[path]] if path in aliases else [])
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
        help_text = (f"{doc} " if doc else "") + f"({label}: {shown})"
        parser.add_argument(*names, dest=dest, type=value_type, default=argparse.SUPPRESS,
                            help=help_text.replace("%", "%%"), **extra)


def config_from_args(args: argparse.Namespace, default: C, prefix: str = "") -> C:
    """``default`` with the fields given as options (:func:`add_config_options` with the same prefix) set."""
    given = vars(args)
    config = default
    for path, value, _, _ in _leaves(default):
        dest = f"{prefix}.{path}" if prefix else path
        if dest in given:
            config = _set(config, path, tuple(given[dest]) if isinstance(value, tuple) else given[dest])
    return config


# see the module docstring: what a command line reports in one line (exit 2) instead of a traceback
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"  # torch's DataLoader re-raise


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """``--debug``, read by :func:`run_script` (declared here so that --help lists it and parsing accepts it)."""
    parser.add_argument("--debug", action="store_true",
                        help="on a data or config error, show the Python traceback instead of one line")


def one_line(error: BaseException) -> str:
    """The error's message on one line: its lines joined, and for an error re-raised from a DataLoader worker
    (whose message carries the worker's traceback) only the original error's own message."""
    text = str(error)
    if _WORKER_TRACEBACK in text:
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        name, sep, message = last.partition(": ")
        text = message if sep and name.replace(".", "").replace("_", "").isalnum() else last
    joined = ""
    for part in (line.strip() for line in text.splitlines()):
        if part:
            joined += part if not joined else (" " if joined.endswith(":") else "; ") + part
    return joined or type(error).__name__


def run_script(main: Callable[[list[str]], Any], argv: list[str] | None = None) -> None:
    """Run a script's ``main(argv)`` (default: the process's arguments) under the project's error rule: a
    data or config error (:data:`USER_ERRORS`) prints ``error: <message>`` on one line of stderr and exits
    with status 2, unless ``--debug`` is among the arguments, which re-raises it with its traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        main(argv)
    except USER_ERRORS as error:
        if "--debug" in argv:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def build_parser(description: str, config: RunConfig) -> argparse.ArgumentParser:
    """The options of a run: ``--preset``, ``--config`` and one option per field of ``config`` (help shows the
    preset's values)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_debug_option(parser)
    parser.add_argument("--preset", default=config.preset, choices=sorted(PRESETS), help="starting configuration")
    parser.add_argument("--config", help="a config.json written by an earlier run (applied before other options)")
    add_config_options(parser, config, aliases={path: alias for alias, path in ALIASES.items()},
                       skip={"preset"}, label="preset")  # preset: chosen by --preset above
    return parser


def _set(config: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    if not rest:
        return replace(config, **{head: value})
    return replace(config, **{head: _set(getattr(config, head), rest, value)})


def parse_config(description: str, argv: list[str] | None = None,
                 extra: typing.Callable[[argparse.ArgumentParser], None] | None = None) -> tuple[RunConfig, argparse.Namespace]:
    """Parse ``--preset`` first, then every field override; returns the config and the raw namespace."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--preset", default="synthetic")
    first.add_argument("--config")
    known, _ = first.parse_known_args(argv)
    if known.config:
        import json

        from .config import from_dict
        try:
            values = json.loads(Path(known.config).read_text())
        except OSError as error:
            raise ValueError(f"--config {known.config}: cannot read it ({error.strerror or error})") from None
        except ValueError as error:
            raise ValueError(f"--config {known.config}: not a JSON file ({error})") from None
        if not isinstance(values, dict):
            raise ValueError(f"--config {known.config}: not a run config (a JSON object written by a run)")
        config = from_dict(RunConfig, values)
    else:
        config = preset(known.preset)
    parser = build_parser(description, config)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    config = config_from_args(args, config)
    if config.data.train_list is None and not config.preset.startswith("synthetic") and not known.config:
        parser.error(f"preset {config.preset!r} trains on real data: give --train-list and --val-list")
    return config, args


def stage_main(stage: str, description: str, argv: list[str] | None = None) -> Path:
    """The command line of one supervised stage (warm-up, stage I or stage III); prints the last metrics."""
    import json

    from .pipeline import run_supervised
    from .training import setup_runtime

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", help="run folder (default: runs/<preset>); the stage writes <out>/<stage>/")
        parser.add_argument("--init", help="checkpoint of the previous stage to start from "
                            "(default: <out>/warmup or <out>/stage1 checkpoint when present)")
        parser.add_argument("--no-resume", action="store_true", help="start over instead of resuming <out>/<stage>")
        parser.add_argument("--no-progress", action="store_true")
        if stage == "stage3":
            parser.add_argument("--policy", help="the learned policy (default: <out>/policy/policy.zip)")

    config, args = parse_config(description, argv, extra)
    out = Path(args.out or f"runs/{config.preset}")
    previous = {"warmup": None, "stage1": "warmup", "stage3": "stage1"}[stage]
    init = Path(args.init) if args.init else None
    if init is None and previous is not None and (out / previous / "checkpoint.pt").is_file():
        init = out / previous / "checkpoint.pt"
    policy = None
    if stage == "stage3":
        policy = Path(args.policy) if args.policy else out / "policy" / "policy.zip"
    runtime = setup_runtime(config.device)
    path = run_supervised(config, stage, out, init=init, policy=policy, resume=not args.no_resume,
                          progress=not args.no_progress, runtime=runtime)
    if runtime.is_main:
        metrics = json.loads((path.parent / "metrics.json").read_text())
        print(json.dumps({"stage": stage, "checkpoint": str(path), **metrics}))
    return path


RUN_CONFIG_KEYS = ("preset", "model", "data", "policy")  # what a run's config.json (a RunConfig) holds


def remove_run_folder(out: Path) -> None:
    """``--fresh``: delete a run folder, which must be one this project wrote: a folder (not a link) holding
    the ``config.json`` of a run. A folder that is, or holds, the working directory or the home directory is
    refused whatever it holds (``--out . --fresh``), as is anything else; a refusal is a ValueError naming
    the folder, and nothing is deleted."""
    import json
    import shutil

    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return

    def refuse(why: str) -> ValueError:
        return ValueError(f"--fresh: {out} {why}; nothing was deleted")

    if out.is_symlink() or not out.is_dir():
        raise refuse("is not a run folder (it is a file or a symbolic link)")
    target = out.resolve()
    kept = {"the working directory": Path.cwd().resolve()}
    try:
        kept["the home directory"] = Path.home().resolve()
    except RuntimeError:  # no home directory to protect
        pass
    for name, place in kept.items():
        if target == place or target in place.parents:
            raise refuse(f"is or holds {name}")
    try:
        described = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        described = None
    if not (isinstance(described, dict) and all(key in described for key in RUN_CONFIG_KEYS)):
        raise refuse("is not a run folder written by this project (no config.json of a run in it)")
    shutil.rmtree(out)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def print_table(title: str, rows: Mapping[str, Mapping[str, Any]], columns: Mapping[str, Callable[[Mapping[str, Any]], str]],
                first: str = "policy", written: Mapping[str, list[Path]] | None = None) -> None:
    """One row per method (its name in the ``first`` column, then one cell per ``columns`` entry: header ->
    the cell's text from the row), then the files written, one line per kind."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column(first, justify="left")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in rows.items():
        table.add_row(name, *(cell(row) for cell in columns.values()))
    console = Console(width=120)
    console.print(table)
    for kind, paths in (written or {}).items():
        console.print(f"{kind}: " + ", ".join(str(p) for p in paths), soft_wrap=True)


def print_results(results: dict[str, Any], written: dict[str, list[Path]], title: str) -> None:
    """The per-policy table (top-1, mAP, GFLOPs per video, focus hit rate, throughput) and the files written."""
    print_table(title, results["policies"], {
        "top1": lambda r: _fmt(r["top1"]), "mAP": lambda r: _fmt(r["mAP"]),
        "gflops_per_video": lambda r: _fmt(r["gflops_per_video"], 4), "hit_rate": lambda r: _fmt(r["hit_rate"]),
        "iou": lambda r: _fmt(r["mean_iou"]), "videos/s": lambda r: _fmt(r["videos_per_second"], 0)}, written=written)


def print_frame_table(evaluation: dict[str, Any]) -> None:
    """The frame policies' table of :func:`adafocus.frame_evaluation.evaluate_frame_policies`: top-1, mAP,
    GFLOPs per video, and the uniform-K and threshold-exit top-1 at the same GFLOPs."""
    print_table(f"Frame policies on {evaluation['videos']} {evaluation['split']} videos "
                f"(T = {evaluation['frames']}, K = {evaluation['k']})", evaluation["policies"], {
                    "top1": lambda r: _fmt(r["top1"]), "mAP": lambda r: _fmt(r["mAP"]),
                    "GFLOPs/video": lambda r: _fmt(r["gflops_per_video"], 4),
                    "uniform@=GFLOPs": lambda r: _fmt(r["uniform_top1_at_equal_gflops"]),
                    "exit@=GFLOPs": lambda r: _fmt(r["threshold_exit_top1_at_equal_gflops"])}, first="method")
