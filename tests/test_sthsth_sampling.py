"""Section 4.2 as the authors' Something-Something code runs it (``Experiments on Something-Something V1&V2``):
f_G's G frames and f_L's T frames are two independent TSN samplings of the whole video (``ops/dataset.py``),
a video too short for the segments is read as its first frame, and stages I and III train with their own
dropout (``train_stage1.sh``: 0.5, ``train_stage3.sh``: 0)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn
from torchvision.io import encode_jpeg, write_file

from adafocus.backbones import ClipFocusModel, normalize
from adafocus.config import DataConfig, RunConfig, StageConfig
from adafocus.data.dataset import VideoDataset, collate_videos
from adafocus.data.decoding import decode_frames
from adafocus.data.sampling import sample_clip_indices, sample_indices
from adafocus.data.synthetic import SyntheticConfig
from adafocus.data.transforms import video_transform
from adafocus.envs import ClipEpisodes, EnvConfig
from adafocus.run_data import data_paths, video_dataset
from adafocus.stages import ClipPatchTask
from adafocus.training import Runtime, stage_dropout, train_stage

from conftest import random_clips
from test_tsm import tiny_clip_config

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # torchvision.io's codec

SIZE = 64


def naive_centres(n: int, segments: int) -> list[int]:
    """The authors' validation sampling (``_get_val_indices``): segment centres when the video has more frames
    than segments, else frame 0 for every segment."""
    if n <= segments:
        return [0] * segments
    tick = n / segments
    return [int(tick / 2 + tick * k) for k in range(segments)]


def naive_train(n: int, segments: int, draws: np.random.Generator) -> list[int]:
    """The authors' training sampling (``_sample_indices``): segments of n // segments frames, a random frame
    of each; with no whole frame per segment, frame 0 for every segment (their sorted-random branch needs
    n > segments there, which cannot happen)."""
    length = n // segments
    if length == 0:
        return [0] * segments
    return [k * length + int(o) for k, o in enumerate(draws.integers(0, length, segments))]


def grey(i: int) -> int:
    return 8 + 10 * i


def write_grey_video(folder: Path, n: int, as_mp4: bool) -> Path:
    """n frames whose grey level tells their index: a frame folder (``img_00001.jpg`` ...) or an mp4."""
    frames = [np.full((SIZE, SIZE, 3), grey(i), np.uint8) for i in range(n)]
    if not as_mp4:
        folder.mkdir(parents=True)
        for i, image in enumerate(frames):
            write_file(str(folder / f"img_{i + 1:05d}.jpg"), encode_jpeg(torch.from_numpy(image).permute(2, 0, 1).contiguous()))
        return folder
    path = folder.with_suffix(".mp4")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def index_of(frames: torch.Tensor) -> list[int]:
    """Which source frame each decoded frame is, from its grey level."""
    return [round((float(f.float().mean()) - 8) / 10) for f in frames]


# ------------------------------------------------------------------------------------------------ sampling

def test_glance_and_focus_frames_are_separate_tsn_samplings_at_test() -> None:
    glance, focus = sample_clip_indices(24, 8, 12, train=False)
    assert glance.tolist() == naive_centres(24, 8) == [1, 4, 7, 10, 13, 16, 19, 22]
    assert focus.tolist() == naive_centres(24, 12) == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23]
    assert not set(glance.tolist()) <= set(focus.tolist())  # not a subset of the focus frames


def test_training_draws_each_set_its_own_random_offsets() -> None:
    subsets = 0
    for seed in range(20):
        glance, focus = sample_clip_indices(24, 8, 12, True, np.random.default_rng(seed))
        draws = np.random.default_rng(seed)  # glance offsets first, then the focus offsets
        assert glance.tolist() == naive_train(24, 8, draws)
        assert focus.tolist() == naive_train(24, 12, draws)
        subsets += set(glance.tolist()) <= set(focus.tolist())
    assert subsets < 20


@pytest.mark.parametrize("n", [1, 5, 8, 10, 12, 13])
def test_a_short_video_follows_the_something_something_loader(n: int) -> None:
    glance, focus = sample_clip_indices(n, 8, 12, False, short="first")
    assert glance.tolist() == naive_centres(n, 8) and focus.tolist() == naive_centres(n, 12)
    glance, focus = sample_clip_indices(n, 8, 12, True, np.random.default_rng(3), short="first")
    draws = np.random.default_rng(3)
    assert glance.tolist() == naive_train(n, 8, draws) and focus.tolist() == naive_train(n, 12, draws)


def test_the_boundary_cases_of_the_first_frame_rule() -> None:
    # exactly T frames: every frame in training, frame 0 at test (centres need MORE frames than segments there)
    assert sample_indices(12, 12, True, np.random.default_rng(0), short="first").tolist() == list(range(12))
    assert sample_indices(12, 12, False, short="first").tolist() == [0] * 12
    assert sample_indices(10, 12, True, np.random.default_rng(0), short="first").tolist() == [0] * 12
    # the other loaders' rule is untouched: the last frame repeated, and T frames read in order at test
    assert sample_indices(10, 12, False).tolist() == [*range(10), 9, 9]
    assert sample_indices(12, 12, False).tolist() == list(range(12))


@pytest.mark.parametrize("source", ["folder", "decord", "pyav", "cached"])
def test_the_dataset_returns_the_glance_frames_then_the_focus_frames(tmp_path: Path, source: str) -> None:
    write_grey_video(tmp_path / "v", 24, as_mp4=source != "folder")
    line = "v 24 1" if source == "folder" else "v.mp4 1"
    (tmp_path / "list.txt").write_text(line + "\n")
    common = dict(num_frames=12, glance_frames=8, decoder="pyav" if source == "pyav" else "decord",
                  cache_videos=source == "cached", seed=4)
    test = VideoDataset(tmp_path / "list.txt", **common)[0]
    expected = naive_centres(24, 8) + naive_centres(24, 12)
    assert test["frames"].shape == (20, 3, SIZE, SIZE) and test["frame_indices"].tolist() == expected
    assert index_of(test["frames"]) == expected  # the decoded frames are those frames, in that order
    train = VideoDataset(tmp_path / "list.txt", train=True, **common)
    train.set_epoch(2)
    item = train[0]
    draws = np.random.default_rng([4, 2, 0])  # the dataset's generator for (seed, epoch, video)
    expected = naive_train(24, 8, draws) + naive_train(24, 12, draws)
    assert item["frame_indices"].tolist() == expected and index_of(item["frames"]) == expected


def test_a_short_video_in_the_dataset_reads_its_first_frame(tmp_path: Path) -> None:
    write_grey_video(tmp_path / "v", 10, as_mp4=False)
    (tmp_path / "list.txt").write_text("v 10 0\n")
    item = VideoDataset(tmp_path / "list.txt", num_frames=12, glance_frames=8, short_videos="first")[0]
    assert index_of(item["frames"]) == naive_centres(10, 8) + [0] * 12


def test_training_crops_the_glance_and_focus_frames_independently(tmp_path: Path) -> None:
    """The authors' loader runs its random crop once per list (glancer, focuser): with a video of identical
    frames, the first glance frame and the first focus frame differ only where their crops do."""
    folder = tmp_path / "v"
    folder.mkdir()
    ramp = torch.arange(96, dtype=torch.uint8).mul(2).expand(3, 80, 96).contiguous()  # brightness grows to the right
    for i in range(16):
        write_file(str(folder / f"img_{i + 1:05d}.jpg"), encode_jpeg(ramp))
    (tmp_path / "list.txt").write_text("v 16 0\n")
    args = dict(num_frames=4, glance_frames=2)
    train = VideoDataset(tmp_path / "list.txt", train=True, transform=video_transform(True, 48, flip=False), **args)
    differ = 0
    for epoch in range(8):
        train.set_epoch(epoch)
        frames = train[0]["frames"]
        assert torch.equal(frames[0], frames[1]) and torch.equal(frames[2], frames[5])  # one crop per part
        differ += not torch.equal(frames[0], frames[2])
    assert differ > 0
    test = VideoDataset(tmp_path / "list.txt", transform=video_transform(False, 48), **args)[0]["frames"]
    assert all(torch.equal(test[0], f) for f in test)  # the test crop is one and the same


def test_the_synthetic_tsm_data_follows_the_same_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAFOCUS_CACHE", str(tmp_path / "cache"))
    syn = SyntheticConfig(num_classes=4, train_videos=2, val_videos=2, video_frames=16, frame_size=SIZE, tile_size=16,
                          distractors=1, drift=True, speed=1.0)
    config = RunConfig(preset="synthetic_tsm", model=replace(tiny_clip_config(), num_classes=4, glance_frames=4),
                       data=DataConfig(frames=8, augment=False, flip=False, workers=0, synthetic=syn), device="cpu")
    item = video_dataset(config, data_paths(config, progress=False), "val", train=False)[0]
    assert item["frame_indices"].tolist() == naive_centres(16, 4) + naive_centres(16, 8)
    assert item["frames"].shape[0] == item["boxes"].shape[0] == 12


# ------------------------------------------------------------------------------------------------ the model

@pytest.fixture(scope="module")
def clip_model() -> ClipFocusModel:
    torch.manual_seed(0)
    return ClipFocusModel(tiny_clip_config()).eval()  # G = 2 glance frames, 64 x 64 frames, 24 x 24 patches


def test_logits_equal_a_naive_recomputation_from_the_two_samplings(tmp_path: Path, clip_model: ClipFocusModel) -> None:
    folder = tmp_path / "v"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    for i in range(12):
        image = torch.randint(0, 256, (3, SIZE, SIZE), generator=generator, dtype=torch.uint8)
        write_file(str(folder / f"img_{i + 1:05d}.jpg"), encode_jpeg(image))
    (tmp_path / "list.txt").write_text("v 12 0\n")
    g, t = clip_model.glance_frames, 3
    clip = VideoDataset(tmp_path / "list.txt", num_frames=t, glance_frames=g)[0]["frames"][None]
    corner = torch.tensor([[30, 8]])
    with torch.no_grad():
        logits = clip_model.classify_patches(clip, corner)
        glance = decode_frames(folder, naive_centres(12, g))  # frames 3, 9
        focus = decode_frames(folder, naive_centres(12, t))  # frames 2, 6, 10
        maps = clip_model.global_encoder.forward_map(clip_model.global_view(glance), g)
        global_logits = clip_model.global_head(maps.mean(dim=(-2, -1))).mean(dim=0)
        patches = focus[:, :, 8:8 + 24, 30:30 + 24]
        local = clip_model.local_encoder(normalize(patches), t).mean(dim=0)
        expected = clip_model.classifier(local) + global_logits
    assert naive_centres(12, g) == [3, 9] and naive_centres(12, t) == [2, 6, 10]
    assert torch.allclose(logits[0], expected, atol=1e-5)


def test_clip_episodes_read_the_patch_and_the_oracle_box_from_the_focus_frames(clip_model: ClipFocusModel) -> None:
    g, t = clip_model.glance_frames, 3
    clips = random_clips(videos=3, frames=g + t, size=SIZE)
    boxes = clips.boxes.clone()
    boxes[:, :g] = torch.tensor([0.0, 0.0, 16.0, 16.0])  # glance frames' boxes elsewhere: must not count
    clips = replace(clips, boxes=boxes)
    empty = ClipEpisodes(clip_model, None, EnvConfig(action="continuous"), num_frames=t)
    assert (empty.focus_frames, empty.num_frames) == (t, g + t)
    ep = ClipEpisodes(clip_model, clips, EnvConfig(action="continuous", reward="conf"))
    ep.begin(torch.arange(3))
    assert torch.allclose(ep.target_boxes(), boxes[:, g:].mean(dim=1))
    actions = torch.tensor([[-1.0, -1.0], [0.0, 0.5], [1.0, 1.0]])
    result = ep.step(actions)
    with torch.no_grad():
        assert torch.allclose(result.logits, clip_model.classify_patches(clips.frames, result.corners), atol=1e-5)
    with pytest.raises(ValueError, match="glance frames"):
        ClipEpisodes(clip_model, random_clips(videos=2, frames=g, size=SIZE), EnvConfig(action="continuous"))


# ------------------------------------------------------------------------------------------------ dropout

class _Probe(ClipPatchTask):
    """Stage I's task, recording the rate of every dropout layer of the model at each training step."""

    def __init__(self, model: ClipFocusModel, fail: bool = False) -> None:
        super().__init__(model, "center")
        self.seen: list[set[float]] = []
        self.fail = fail

    def forward(self, batch):
        if self.training:
            self.seen.append({m.p for m in self.model.modules() if isinstance(m, nn.Dropout)})
            if self.fail:
                raise RuntimeError("stage failed")
        return super().forward(batch)


class _Clips(torch.utils.data.Dataset):
    def __init__(self, frames: int) -> None:
        self.clips = random_clips(videos=4, frames=frames, size=SIZE)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.clips.frames[i], "label": self.clips.labels[i]}


def rates(model: nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]


@pytest.mark.filterwarnings("ignore:Average precision score")  # 4 videos of 5 classes: some classes absent
def test_each_stage_trains_with_its_own_dropout_and_hands_the_model_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ClipFocusModel(replace(tiny_clip_config(), dropout=0.2))
    assert rates(model) == [0.2, 0.2, 0.2]  # f_C's, f_G's head's and f_L's full-frame head's
    data = _Clips(model.glance_frames + 2)
    env = Runtime(torch.device("cpu"))
    stage = StageConfig(epochs=1, lr_local=0.01, lr_classifier=0.01, batch_size=2, patches="center")

    def run(task: _Probe, dropout: float | None, out: str) -> None:
        train_stage(task, replace(stage, dropout=dropout), data, data, tmp_path / out, env, 5, 0, {},
                    collate=collate_videos, progress=False)

    first = _Probe(model)
    run(first, 0.5, "stage1")  # the authors' stage I
    assert first.seen == [{0.5}, {0.5}] and rates(model) == [0.2, 0.2, 0.2]
    third = _Probe(model)
    run(third, 0.0, "stage3")  # their stage III
    assert third.seen == [{0.0}, {0.0}] and rates(model) == [0.2, 0.2, 0.2]
    plain = _Probe(model)
    run(plain, None, "plain")  # None: the model's own rate, nothing left over from the stages before
    assert plain.seen == [{0.2}, {0.2}]
    with pytest.raises(RuntimeError, match="stage failed"):
        run(_Probe(model, fail=True), 0.5, "failed")
    assert rates(model) == [0.2, 0.2, 0.2]  # put back even when the stage breaks off
    with pytest.raises(ValueError, match="dropout"):
        with stage_dropout(model, 1.0):
            pass
