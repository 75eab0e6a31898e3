"""Shared fixtures: tiny AdaFocus networks and clip sets that build in a fraction of a second on a CPU.

The tiny model has the synthetic preset's architecture (MobileNet-V3-small cut after 4 blocks for f_G,
ResNet-18 for f_L) at toy sizes: 64x64 frames, f_G on 32x32 (a 24x4x4 map), 24x24 patches, 5 classes.
The module-scoped fixtures are shared by the tests of one module: do not train or modify them in place
(FocusEpisodes puts the model in eval mode and freezes it, which is harmless to share).
"""
from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import cloudpickle
import pytest
import torch

from dataclasses import replace

from adafocus.backbones import AdaFocusModel, EncoderSpec, ModelConfig
from adafocus.config import DataConfig, PolicyConfig, RunConfig, StageConfig
from adafocus.data.synthetic import SyntheticConfig
from adafocus.data.clips import ClipPool, ClipSet

TINY_CLASSES = 5
TINY_FRAMES = 4
TINY_FRAME_SIZE = 64
TINY_TARGET = 16  # side of the target box in tiny_clips


def tiny_model_config() -> ModelConfig:
    return ModelConfig(global_encoder=EncoderSpec("mobilenet_v3_small", None, blocks=4),
                       local_encoder=EncoderSpec("resnet18", None), num_classes=TINY_CLASSES,
                       frame_size=TINY_FRAME_SIZE, global_size=32, patch_size=24, hidden_size=16, dropout=0.0)


def random_clips(videos: int = 6, frames: int = TINY_FRAMES, size: int = TINY_FRAME_SIZE,
                 classes: int = TINY_CLASSES, target: int = TINY_TARGET, seed: int = 0) -> ClipSet:
    """Random uint8 videos with a random target box (side ``target``) per frame and labels in [0, classes)."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (videos, frames, 3, size, size), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, classes, (videos,), generator=generator)
    corners = torch.randint(0, size - target + 1, (videos, frames, 2), generator=generator).float()
    boxes = torch.cat([corners, corners + target], dim=-1)
    return ClipSet(pixels, labels, boxes)


class ListSource:
    """A video source that hands out a fixed list of one-video clip sets, in order (seeding starts over)."""

    def __init__(self, clips: list[ClipSet]) -> None:
        self.clips, self.position = clips, 0

    def take(self, count: int) -> ClipSet:
        assert count == 1
        self.position += 1
        return self.clips[self.position - 1]

    def seed(self, seed: int) -> None:
        self.position = 0


def slot_sources(clips: ClipSet, slots: int, seed: int, resets: int = 4) -> list[ListSource]:
    """What slot i of a VecEnv over ``clips`` (seed ``seed``) is handed at each reset, as single-env sources:
    video i of every batch of ``slots`` that a pool over the clips hands out."""
    pool = ClipPool(clips, seed)
    batches = [pool.take(slots) for _ in range(resets)]
    return [ListSource([b.subset(slice(i, i + 1)) for b in batches]) for i in range(slots)]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny CPU workloads: one intra-op thread. On a small box shared with other jobs, OpenMP threads
    spin-wait for each other and tiny forwards run several times slower with the default thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model() -> AdaFocusModel:
    """A randomly initialised (seed 0) tiny AdaFocusModel in eval mode, dropout 0: deterministic."""
    torch.manual_seed(0)
    return AdaFocusModel(tiny_model_config()).eval()


@pytest.fixture(scope="module")
def tiny_clips() -> ClipSet:
    """6 random videos of T = 4 frames at 64x64, with 16x16 target boxes and labels in [0, 5)."""
    return random_clips()


def tiny_run_config() -> RunConfig:
    """A whole run at toy sizes: 16 + 8 synthetic videos of 8 frames at 64x64, 4 classes, 2 epochs a stage."""
    syn = SyntheticConfig(num_classes=4, train_videos=16, val_videos=8, video_frames=8, frame_size=64,
                          tile_size=16, distractors=1)
    model = ModelConfig(global_encoder=EncoderSpec("mobilenet_v3_small", None, blocks=4),
                        local_encoder=EncoderSpec("resnet18", None), num_classes=4, frame_size=64,
                        global_size=32, patch_size=24, hidden_size=16, dropout=0.1)
    stage = StageConfig(epochs=2, lr_global=0.01, lr_local=0.01, lr_classifier=0.05, batch_size=8)
    return RunConfig(preset="synthetic", model=model,
                     data=DataConfig(frames=4, augment=False, flip=False, workers=0, cache_videos=True, synthetic=syn),
                     warmup=replace(stage, frames=2), stage1=stage, stage3=replace(stage, lr_local=0.0),
                     policy=PolicyConfig(n_envs=4, videos_per_update=4, features_dim=16, total_timesteps=64),
                     device="cpu")


# ---- crafted policy files -------------------------------------------------------------------------
class Marker:
    """Unpickled, this creates a file: what a crafted policy.zip can make SB3's own load do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def poison(path: Path, marker: Path, fields: tuple[str, ...] = ("policy_kwargs", "observation_space", "action_space",
                                                                  "lr_schedule", "clip_range", "surprise")) -> None:
    """Rewrite SB3's ``data`` member so that each of ``fields`` is a cloudpickled :class:`Marker`, as
    SB3 stores the objects JSON cannot hold (``":serialized:"``)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    payload = base64.b64encode(cloudpickle.dumps(Marker(marker))).decode()
    for field in fields:
        data[field] = {":type:": "<class 'object'>", ":serialized:": payload}
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
