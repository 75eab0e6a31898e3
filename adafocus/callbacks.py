"""Stage II's SB3 callbacks: training accuracy, resumable checkpoints and progress lines, with the checkpoint file."""
from __future__ import annotations

import json
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from adafocus.data.clips import VideoSource
from adafocus.envs import AdaFocusVecEnv

from .training import interactive


class TrainAccuracy(BaseCallback):
    """Episode reward and accuracy of the training episodes, logged at the end of every rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.correct, self.seen = 0, 0

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"]):
            if done:
                self.seen += 1
                self.correct += int(info["prediction"] == info["label"])
        return True

    def _on_rollout_end(self) -> None:
        if self.seen:
            self.logger.record("rollout/train_top1", self.correct / self.seen)
        self.correct, self.seen = 0, 0


STATE_NAME = "adafocus_state.json"  # inside the checkpoint zip, beside SB3's own files


class ResumeCheckpoint(BaseCallback):
    """Every ``every`` updates, pi with its optimizer and step count (SB3's zip), the video source's position
    and the slots' generators, as one file written atomically: what a crashed stage II resumes from.

    Saved when a rollout starts, so the last update is in it and no half-collected rollout is."""

    def __init__(self, path: Path, every: int, source: VideoSource, vec: AdaFocusVecEnv, seconds: float = 0.0) -> None:
        super().__init__()
        self.path, self.every, self.source, self.vec = path, every, source, vec
        self.updates = -1
        self.seconds_before, self.began = seconds, time.perf_counter()  # training time of the runs it resumes

    def _on_training_start(self) -> None:
        self.began = time.perf_counter()

    def seconds(self) -> float:
        """Wall-clock seconds of training so far, over every resumed part."""
        return self.seconds_before + time.perf_counter() - self.began

    def _on_rollout_start(self) -> None:
        self.updates += 1
        if self.updates and self.updates % self.every == 0:
            save_checkpoint(self.model, self.path, {"num_timesteps": self.model.num_timesteps, "seconds": self.seconds(),
                                                    "source": self.source.state_dict(), "rngs": self.vec.rng_state()})

    def _on_step(self) -> bool:
        return True


class StepLog(BaseCallback):
    """Stage II's progress in a log (output that is not a terminal): one line every ``every`` timesteps (a
    pass over the training videos) and one at the end, instead of a bar redrawn at every step."""

    def __init__(self, name: str, total: int, every: int) -> None:
        super().__init__()
        self.name, self.total, self.every = name, total, max(1, every)
        self.began, self.last = time.perf_counter(), -1

    def _on_training_start(self) -> None:
        self.began, self.last = time.perf_counter(), self.num_timesteps // self.every

    def _line(self) -> None:
        rewards = [info["r"] for info in self.model.ep_info_buffer or []]
        reward = f", mean episode reward {np.mean(rewards):.4f}" if rewards else ""
        print(f"{self.name}: {self.num_timesteps:,}/{self.total:,} steps ({100 * self.num_timesteps / max(self.total, 1):.0f}%)"
              f"{reward}, {time.perf_counter() - self.began:.0f} s", file=sys.stderr, flush=True)

    def _on_step(self) -> bool:
        if self.num_timesteps // self.every > self.last:
            self.last = self.num_timesteps // self.every
            self._line()
        return True

    def _on_training_end(self) -> None:
        if self.num_timesteps % self.every:
            self._line()


def sb3_progress(progress: bool, name: str, total: int, every: int) -> tuple[bool, list[BaseCallback]]:
    """SB3's ``progress_bar`` and the extra callbacks for ``learn``: its live bar on a terminal, else
    :class:`StepLog`'s lines (SB3's bar is rich's, drawn on stdout)."""
    if not progress:
        return False, []
    if interactive(sys.stdout):
        return True, []
    return False, [StepLog(name, total, every)]


def save_checkpoint(algo: Any, path: Path, state: dict[str, Any]) -> None:
    """SB3's zip of ``algo`` with ``state`` (JSON) added, written to a temporary file and renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    algo.save(tmp)
    with zipfile.ZipFile(tmp, "a") as archive:
        archive.writestr(STATE_NAME, json.dumps(state))
    os.replace(tmp, path)


def read_checkpoint_state(path: Path) -> dict[str, Any] | None:
    """The state saved beside pi in a stage II checkpoint, or None when the file is missing or unreadable
    (a file cut short by a crash mid-write never replaces the previous one, but a foreign one may be there)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(STATE_NAME))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
