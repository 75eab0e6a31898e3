"""The command lines' behaviour: a data or config error is one line naming the file or option and exit status 2
(its traceback only under --debug), --fresh deletes only a run folder, and output that is not a terminal gets
lines (one per epoch, one per pass of stage II) instead of redrawn bars."""
from __future__ import annotations

import argparse
import io
import json
import os
import runpy
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from adafocus.backbones import AdaFocusModel
from adafocus.checkpoint import save_atomic
from adafocus.cli import one_line, remove_run_folder, run_script, stage_main
from adafocus.config import to_dict
from adafocus.provenance import StageMismatch

from conftest import tiny_run_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "experiments"


def run(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """An experiments script in a child process whose output is captured (not a terminal)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(cwd / ".mpl"), **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def missing_video(tmp_path) -> Path:
    """A video list in the working directory whose one video does not exist."""
    (tmp_path / "list.txt").write_text("missing.mp4 0\n")
    return tmp_path / "list.txt"


def evaluable_run(folder: Path, video_list: str) -> Path:
    """A run folder evaluate.py can open (a tiny model's stage I checkpoint, no policy) reading ``video_list``."""
    base = tiny_run_config()
    config = replace(base, data=replace(base.data, train_list=video_list, val_list=video_list))
    (folder / "stage1").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(to_dict(config)))
    torch.manual_seed(0)
    save_atomic({"model": AdaFocusModel(config.model).state_dict(), "config": to_dict(config)},
                folder / "stage1" / "checkpoint.pt")
    return folder


# ---- one line and exit 2 for data and config errors ----------------------------------------------------
@pytest.mark.parametrize("script", ["train_policy.py", "evaluate.py"])
def test_a_missing_video_is_one_line_naming_the_file_and_exit_2(missing_video, tmp_path, script):
    args = (["--train-list", "list.txt", "--val-list", "list.txt", "--out", "run", "--no-progress"]
            if script == "train_policy.py" else ["--run", str(evaluable_run(tmp_path / "run", missing_video.name))])
    done = run(script, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == ["error: list.txt, line 1: video file not found: missing.mp4"]
    assert "Traceback" not in done.stderr + done.stdout


def test_debug_shows_the_traceback(missing_video, tmp_path):
    done = run("train_policy.py", "--train-list", "list.txt", "--val-list", "list.txt", "--out", "run",
               "--no-progress", "--debug", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "VideoDataError: list.txt, line 1: video file not found: missing.mp4" in done.stderr


def test_run_script_applies_the_error_rule(capsys):
    def fails(error: BaseException):
        def main(argv: list[str]) -> None:
            raise error
        return main

    for error in (ValueError("--x 3: must be even"), FileNotFoundError("runs/a: no config.json"),
                  StageMismatch(Path("runs/a/stage1"), [("stage1.epochs", 2, 3)])):
        with pytest.raises(SystemExit) as exit_:
            run_script(fails(error), [])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "stage1.epochs: 2 -> 3" in err and "--fresh" in err  # StageMismatch's lines, joined
    with pytest.raises(ValueError, match="even"):
        run_script(fails(ValueError("--x 3: must be even")), ["--debug"])
    with pytest.raises(RuntimeError):  # not a data or config error: a bug keeps its traceback
        run_script(fails(RuntimeError("shape mismatch")), [])


def test_one_line_keeps_only_the_original_message_of_a_dataloader_worker_error():
    wrapped = ValueError("Caught VideoDataError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                         "last):\n  File \"x.py\", line 1, in f\n    g()\nadafocus.data.records.VideoDataError: a.mp4: "
                         "cannot decode frame 3\n")
    assert one_line(wrapped) == "a.mp4: cannot decode frame 3"
    assert one_line(ValueError("checkpoint c.pt was written for another architecture:\n  a: 1\n  b: 2")) == \
        "checkpoint c.pt was written for another architecture: a: 1; b: 2"


def test_a_config_file_that_is_not_json_is_named(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit) as exit_:
        run_script(lambda argv: stage_main("stage1", "", argv), ["--config", str(tmp_path / "bad.json")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: --config {tmp_path / 'bad.json'}: not a JSON file")


@pytest.mark.parametrize("script", ["train_policy.py", "evaluate.py", "visualize.py", "compare_baselines.py",
                                    "convert_official.py", "flops.py", "synthetic_baselines.py"])
def test_every_script_takes_debug(script, capsys):
    main = runpy.run_path(str(SCRIPTS / script))["main"]
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "--debug" in capsys.readouterr().out


def test_the_stage_scripts_run_under_the_error_rule(capsys):
    for script, stage in (("pretrain.py", "warmup"), ("train_stage1.py", "stage1"), ("train_stage3.py", "stage3")):
        assert f'run_script(lambda argv: stage_main("{stage}", __doc__, argv))' in (SCRIPTS / script).read_text()
    with pytest.raises(SystemExit) as exit_:
        stage_main("stage1", "", ["--help"])
    assert exit_.value.code == 0 and "--debug" in capsys.readouterr().out


# ---- --fresh -------------------------------------------------------------------------------------------
def test_fresh_out_dot_leaves_the_working_directory(tmp_path):
    """Even a working directory that holds a run's config.json is not deleted by --out . --fresh."""
    (tmp_path / "config.json").write_text(json.dumps(to_dict(tiny_run_config())))
    (tmp_path / "notes.txt").write_text("mine")
    done = run("train_policy.py", "--out", ".", "--fresh", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --fresh: . is or holds the working directory; nothing was deleted"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".mpl") == ["config.json", "notes.txt"]


def test_fresh_deletes_only_a_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_folder = tmp_path / "runs" / "a"
    (run_folder / "stage1").mkdir(parents=True)
    (run_folder / "config.json").write_text(json.dumps(to_dict(tiny_run_config())))
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"preset": "mine"}))  # someone else's config.json
    (tmp_path / "link").symlink_to(run_folder)
    for refused, why in ((other, "not a run folder written by this project"), (tmp_path / "link", "symbolic link"),
                         (Path("."), "working directory"), (Path(".."), "working directory"),
                         (run_folder / "config.json", "is a file")):
        with pytest.raises(ValueError, match=why):
            remove_run_folder(refused)
    monkeypatch.chdir(run_folder / "stage1")
    with pytest.raises(ValueError, match="working directory"):  # a run folder holding the working directory
        remove_run_folder(run_folder)
    monkeypatch.chdir(tmp_path)
    remove_run_folder(tmp_path / "absent")  # nothing to delete
    remove_run_folder(run_folder)
    assert not run_folder.exists() and (other / "config.json").is_file()


# ---- progress in logs -----------------------------------------------------------------------------------
def test_a_logged_run_prints_one_line_per_epoch_and_no_carriage_returns(tmp_path):
    config = tiny_run_config()
    (tmp_path / "config.json").write_text(json.dumps(to_dict(config)))
    done = run("pretrain.py", "--config", "config.json", "--out", "run", cwd=tmp_path,
               env={"ADAFOCUS_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\r" not in done.stdout + done.stderr
    epochs = [line for line in done.stderr.splitlines() if line.startswith("warmup: epoch ")]
    assert [line.split(",")[0] for line in epochs] == [f"warmup: epoch {e}/{config.warmup.epochs}"
                                                        for e in range(1, config.warmup.epochs + 1)]
    assert json.loads(done.stdout.strip().splitlines()[-1])["stage"] == "warmup"


def test_stage2_logs_a_line_per_pass_instead_of_a_bar(tiny_model, tiny_clips, capsys, monkeypatch):
    from adafocus.callbacks import StepLog, sb3_progress

    from test_agents import build

    assert sb3_progress(False, "stage II", 64, 16) == (False, [])
    terminal = io.StringIO()
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdout", terminal)
    assert sb3_progress(True, "stage II", 64, 16) == (True, [])  # a terminal keeps SB3's live bar
    monkeypatch.undo()
    bar, logs = sb3_progress(True, "stage II", 64, 16)
    assert bar is False and len(logs) == 1 and isinstance(logs[0], StepLog)
    model, _ = build("ppo", tiny_model, tiny_clips)
    model.learn(64, callback=logs)
    err = capsys.readouterr().err
    assert "\r" not in err
    # 4 slots x 4 steps per rollout: one line per 16 steps
    assert [line.split(" (")[0] for line in err.splitlines()] == [f"stage II: {n}/64 steps" for n in (16, 32, 48, 64)]


def test_non_terminal_streams_are_not_interactive():
    from adafocus.training import interactive

    assert not interactive(io.StringIO())
    assert not interactive(argparse.Namespace())  # no isatty at all
