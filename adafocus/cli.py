"""Command lines generated from the config dataclasses: one source of truth for every default.

``--preset NAME`` picks the starting config; every leaf field is then an option named by its path,
e.g. ``--stage1.epochs 5`` or ``--model.patch_size 96``; the common ones also have short aliases.

Every script of ``experiments/`` runs through :func:`run_script`, which applies one error rule: a
``ValueError`` (the project raises it, or its subclasses ``VideoDataError``, ``StageMismatch``,
``OfficialFormatError``, ``PolicyFileError``, for a bad option, config file, list, video or run folder) or an
``OSError`` (a file the user named that cannot be read or written) is the user's to fix, so it prints
``error: <message>`` on one line of stderr and exits with status 2; ``--debug`` shows its traceback instead.
Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .config import PRESETS, RunConfig, preset

ALIASES = {
    "--train-list": "data.train_list", "--val-list": "data.val_list", "--data-root": "data.data_root",
    "--annotation-root": "data.annotation_root", "--decoder": "data.decoder", "--frames": "data.frames",
    "--skip-corrupt": "data.skip_corrupt", "--workers": "data.workers", "--label-file": "data.label_file",
    "--patch": "model.patch_size", "--global-size": "model.global_size", "--num-classes": "model.num_classes",
    "--algo": "policy.algo", "--total-timesteps": "policy.total_timesteps", "--n-envs": "policy.n_envs",
    "--device": "device", "--seed": "seed",
}


def _leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value, hints[f.name]


def _parser_for(hint: Any, default: Any):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    if base is bool:
        def parse_bool(text: str) -> bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        return parse_bool
    if base in (int, float, str):
        if type(None) in typing.get_args(hint):
            return lambda text: None if text.lower() == "none" else base(text)
        return base
    return str


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
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_debug_option(parser)
    parser.add_argument("--preset", default=config.preset, choices=sorted(PRESETS), help="starting configuration")
    parser.add_argument("--config", help="a config.json written by an earlier run (applied before other options)")
    aliases = {path: alias for alias, path in ALIASES.items()}
    for path, value, hint in _leaves(config):
        if path == "preset":  # chosen by --preset above
            continue
        names = [f"--{path}"] + ([aliases[path]] if path in aliases else [])
        flag = dict(nargs="?", const=True) if isinstance(value, bool) else {}  # "--skip-corrupt" alone means true
        # SUPPRESS: an option not given leaves no attribute, so "--x none" can set a field to None
        parser.add_argument(*names, dest=path, type=_parser_for(hint, value), default=argparse.SUPPRESS,
                            metavar=type(value).__name__.upper() if value is not None else "VALUE",
                            help=f"(preset: {value})", **flag)
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
    given = vars(args)
    for path, _, _ in _leaves(config):
        if path in given:
            config = _set(config, path, given[path])
    if config.data.train_list is None and not config.preset.startswith("synthetic") and not known.config:
        parser.error(f"preset {config.preset!r} trains on real data: give --train-list and --val-list")
    return config, args


def stage_main(stage: str, description: str, argv: list[str] | None = None) -> Path:
    """The command line of one supervised stage (warm-up, stage I or stage III); prints the last metrics."""
    import json

    from .pipeline import run_supervised
    from .training import setup_environment

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
    env = setup_environment(config.device)
    path = run_supervised(config, stage, out, init=init, policy=policy, resume=not args.no_resume,
                          progress=not args.no_progress, env=env)
    if env.is_main:
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


def print_results(results: dict[str, Any], written: dict[str, list[Path]], title: str) -> None:
    """The per-policy table (top-1, mAP, GFLOPs per video, focus hit rate, throughput) and the files written."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("policy", "top1", "mAP", "gflops_per_video", "hit_rate", "iou", "videos/s"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    for name, r in results["policies"].items():
        table.add_row(name, fmt(r["top1"]), fmt(r["mAP"]), f"{r['gflops_per_video']:.4f}", fmt(r["hit_rate"]),
                      fmt(r["mean_iou"]), f"{r['videos_per_second']:.0f}")
    console = Console(width=120)
    console.print(table)
    for kind, paths in written.items():
        console.print(f"{kind}: " + ", ".join(str(p) for p in paths), soft_wrap=True)
