"""The datasets' published annotation files: Something-Something V1 / Jester csv lists over JPEG frame folders,
Something-Something V2 json lists over webm videos or extracted frame folders (``list_format`` sthv1 / jester /
sthv2 with a ``label_file``).

Fixture frame i (0-based, file ``{i + 1:05d}.jpg``) is a flat grey of level 20 + 40 i, so a decoded frame's mean
tells which file it came from.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from adafocus.data.dataset import VideoDataset, collate_videos, load_clips
from adafocus.data.lists import read_video_list
from adafocus.data.records import VideoDataError
from adafocus.data.something import read_label_names
from adafocus.data.transforms import video_transform
from torchvision.io import encode_jpeg, write_file

W, H = 64, 48
# torchvision 0.29 deprecates torchvision.io's image codecs (in favour of TorchCodec); still what we use.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")

V1_LABELS = ["Holding something", "Pushing something from left to right", "Putting something into something"]
V2_LABELS = {"Holding something next to something": "1", "Pushing something from left to right": "0"}
# The published files' names; V1 and Jester share one layout.
CSV_FILES = {"sthv1": ("something-something-v1-labels.csv", "something-something-v1-train.csv"),
             "jester": ("jester-v1-labels.csv", "jester-v1-train.csv")}


def level(i: int) -> int:
    return 20 + 40 * i


def write_frames(folder: Path, n: int, template: str = "{:05d}.jpg") -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        image = torch.full((3, H, W), level(i), dtype=torch.uint8)
        write_file(str(folder / template.format(i + 1)), encode_jpeg(image, quality=95))
    return folder


def write_webm(path: Path, n: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), level(i), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value, indent=1))
    return path


def grey(frames: torch.Tensor) -> np.ndarray:
    return frames.float().mean((1, 2, 3)).numpy()


@pytest.fixture(params=["sthv1", "jester"])
def csv_set(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path, Path]:
    """(format, train list, labels file): ids 101 (4 frames, class 2), 7 (3 frames, class 0), 55 (2, class 1)
    under tmp_path/frames, lists and labels in tmp_path/annotations (as the datasets ship them)."""
    fmt = request.param
    labels_name, train_name = CSV_FILES[fmt]
    for video_id, n in (("101", 4), ("7", 3), ("55", 2)):
        write_frames(tmp_path / "frames" / video_id, n)
    (tmp_path / "annotations").mkdir()
    labels = write_lines(tmp_path / "annotations" / labels_name, V1_LABELS + [""])  # trailing blank line
    train = write_lines(tmp_path / "annotations" / train_name,
                        ["101;Putting something into something", "", "7;Holding something",
                         "55;Pushing something from left to right\r"])
    return fmt, train, labels


@pytest.fixture
def v2_set(tmp_path: Path) -> tuple[Path, Path]:
    """(train json, labels json): id 78687 as 78687.webm (5 frames), id 3 as an extracted frame folder (4)."""
    root = tmp_path / "videos"
    root.mkdir()
    write_webm(root / "78687.webm", 5)
    write_frames(root / "3", 4, "img_{:05d}.jpg")
    train = write_json(tmp_path / "something-something-v2-train.json", [
        {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
         "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks vaporub bottle"]},
        {"id": "3", "label": "pushing a pen from left to right",
         "template": "Pushing [something] from left to right", "placeholders": ["a pen"]},
    ])
    return train, write_json(tmp_path / "something-something-v2-labels.json", V2_LABELS)


# ---------------------------------------------------------------------------------------------- reading

def test_csv_labels_and_folders(csv_set: tuple[str, Path, Path]) -> None:
    fmt, train, labels = csv_set
    root = train.parent.parent / "frames"
    records = read_video_list(train, root, fmt, num_classes=3, label_file=labels)
    assert [(r.path, r.label, r.line) for r in records] == [(root / "101", 2, 1), (root / "7", 0, 3),
                                                            (root / "55", 1, 4)]
    assert all(r.is_folder and r.num_frames is None for r in records)
    assert read_label_names(labels, fmt) == V1_LABELS


def test_csv_dataset_counts_and_decodes(csv_set: tuple[str, Path, Path]) -> None:
    fmt, train, labels = csv_set
    ds = VideoDataset(train, train.parent.parent / "frames", num_frames=2, list_format=fmt, label_file=labels)
    assert ds.image_template == "{:05d}.jpg"  # the published folders' names, unless given
    assert ds.labels == [2, 0, 1] and ds.class_names == V1_LABELS
    item = ds[0]
    assert item["frames"].shape == (2, 3, H, W) and item["frames"].dtype == torch.uint8
    assert item["label"].item() == 2
    assert item["frame_indices"].tolist() == [1, 3]  # test sampling: the centres of 2 segments of 4 frames
    np.testing.assert_allclose(grey(item["frames"]), [level(1), level(3)], atol=3)  # files 00002, 00004.jpg
    assert [ds._count(i) for i in range(3)] == [4, 3, 2]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_videos)))
    assert batch["frames"].shape == (3, 2, 3, H, W) and batch["label"].tolist() == [2, 0, 1]
    (ds.records[0].path / "00004.jpg").unlink()
    assert ds._count(0) == 4  # counted once per folder: the count is cached, the folder not listed again
    assert VideoDataset(train, train.parent.parent / "frames", num_frames=2, list_format=fmt,
                        label_file=labels)._count(0) == 3  # a fresh dataset counts again


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_sthv2_webm_and_frame_folder(v2_set: tuple[Path, Path], decoder: str) -> None:
    train, labels = v2_set
    root = train.parent / "videos"
    ds = VideoDataset(train, root, num_frames=2, list_format="sthv2", label_file=labels, decoder=decoder,
                      num_classes=2)
    assert ds.class_names == ["Pushing something from left to right", "Holding something next to something"]
    webm, folder = ds.records
    assert (webm.path, webm.label, webm.is_folder) == (root / "78687.webm", 1, False)
    assert (folder.path, folder.label, folder.is_folder) == (root / "3", 0, True)
    assert webm.where().endswith("entry 1)")  # JSON lists are located by entry, not line
    assert ds.image_template == "img_{:05d}.jpg"  # extracted V2 frames: the default, or as given
    a, b = ds[0], ds[1]
    assert a["frames"].shape == b["frames"].shape == (2, 3, H, W)
    assert a["frame_indices"].tolist() == [1, 3] and b["frame_indices"].tolist() == [1, 3]
    np.testing.assert_allclose(grey(a["frames"]), [level(1), level(3)], atol=4)
    np.testing.assert_allclose(grey(b["frames"]), [level(1), level(3)], atol=3)


def test_sthv2_prefers_extracted_folder(v2_set: tuple[Path, Path]) -> None:
    train, labels = v2_set
    write_frames(train.parent / "videos" / "78687", 6, "{:06d}.jpg")
    ds = VideoDataset(train, train.parent / "videos", num_frames=3, list_format="sthv2", label_file=labels,
                      image_template="{:06d}.jpg")
    assert ds.records[0].is_folder and ds._count(0) == 6


def test_training_transform_and_load_clips(csv_set: tuple[str, Path, Path]) -> None:
    # The records feed the shared path unchanged: seeded training sampling, the transform, load_clips.
    fmt, train, labels = csv_set
    ds = VideoDataset(train, train.parent.parent / "frames", num_frames=2, train=True, seed=1, list_format=fmt,
                      label_file=labels, transform=video_transform(train=True, frame_size=32, flip=False))
    first = [ds[i]["frame_indices"].tolist() for i in range(3)]
    assert first == [ds[i]["frame_indices"].tolist() for i in range(3)]
    assert ds[0]["frames"].shape == (2, 3, 32, 32)
    clips = load_clips(ds, batch_size=2, progress=False)
    assert clips.frames.shape == (3, 2, 3, 32, 32) and clips.labels.tolist() == [2, 0, 1]


# ---------------------------------------------------------------------------------------------- errors

def test_label_file_required_and_only_for_annotation_formats(csv_set: tuple[str, Path, Path], tmp_path: Path) -> None:
    fmt, train, labels = csv_set
    with pytest.raises(ValueError, match=f"list_format '{fmt}' needs label_file"):
        VideoDataset(train, list_format=fmt)
    with pytest.raises(ValueError, match="label_file is read only by"):
        read_video_list(write_lines(tmp_path / "l.txt", ["101 0"]), tmp_path / "frames", "video", label_file=labels)
    with pytest.raises(ValueError, match="list_format must be .*'jester'.*'minikinetics', got 'sthv3'"):
        read_video_list(train, list_format="sthv3")  # type: ignore[arg-type]
    with pytest.raises(VideoDataError, match="nolabels.csv: labels file not found"):
        read_video_list(train, list_format=fmt, label_file=tmp_path / "nolabels.csv")


@pytest.mark.parametrize("line, reason", [
    ("101 Holding something", r"line 2: expected '<id>;<label text>', no ';' in '101 Holding something'"),
    ("101", r"line 2: a video id without a label: bad.csv looks like the test split.*labels are needed"),
    (";Holding something", "line 2: empty video id"),
    ("101;Holding somethign", (r"line 2: label 'Holding somethign' is not in the labels file .*labels.csv "
                               r"\(closest: 'Holding something'\)")),
    ("999;Holding something", r"line 2: frame folder not found: .*frames/999"),
])
def test_csv_bad_lines(csv_set: tuple[str, Path, Path], line: str, reason: str) -> None:
    fmt, train, labels = csv_set
    bad = write_lines(train.parent / "bad.csv", ["7;Holding something", line])
    with pytest.raises(VideoDataError, match=f"bad.csv, {reason}"):
        read_video_list(bad, train.parent.parent / "frames", fmt, label_file=labels)


def test_published_test_split_refused(csv_set: tuple[str, Path, Path]) -> None:
    fmt, train, labels = csv_set
    test = write_lines(train.parent / f"{fmt}-test.csv", ["101", "7"])
    with pytest.raises(VideoDataError, match=r"test.csv, line 1: .*labels are needed for training and evaluation"):
        VideoDataset(test, train.parent.parent / "frames", list_format=fmt, label_file=labels)


@pytest.mark.parametrize("lines, reason", [
    (["Holding something", "", "Pushing something"], "line 2: blank line"),
    (["Holding something", "Pushing something", "Holding something"], "line 3: label 'Holding something' repeats line 1"),
    ([""], "labels file is empty"),
])
def test_bad_labels_csv(csv_set: tuple[str, Path, Path], lines: list[str], reason: str) -> None:
    fmt, train, _ = csv_set
    labels = write_lines(train.parent / "labels.csv", lines)
    with pytest.raises(VideoDataError, match=f"labels.csv, {reason}" if "line" in reason else f"labels.csv: {reason}"):
        read_video_list(train, train.parent.parent / "frames", fmt, label_file=labels)


def test_class_count_must_match(csv_set: tuple[str, Path, Path]) -> None:
    fmt, train, labels = csv_set
    with pytest.raises(VideoDataError, match="labels.csv: 3 classes, but num_classes is 174"):
        read_video_list(train, train.parent.parent / "frames", fmt, num_classes=174, label_file=labels)


@pytest.mark.parametrize("bad, text, reason", [
    ("list", '[{"id": "3", "template": "Pushing [something] from left to right"},',
     "malformed JSON video list: .* at line 1"),
    ("list", '{"id": "3"}', "expected a JSON list of videos, got dict"),
    ("list", '[["3"]]', "entry 1: expected an object with an \"id\""),
    ("list", '[{"id": "3"}]', r"entry 1 \(id 3\): a video id without a label: .*test split.*labels are needed"),
    ("list", '[{"id": "3", "label": "a pen"}]', r"entry 1 \(id 3\): no \"template\""),
    ("list", '[{"id": "3", "template": "Pulling [something]"}]',
     r"entry 1 \(id 3\): label 'Pulling something' is not in the labels file .*labels.json"),
    ("list", '[{"id": "4", "template": "Pushing [something] from left to right"}]',
     r"entry 1 \(id 4\): neither frame folder .*videos/4 nor video file .*videos/4.webm found"),
    ("labels", "{", "malformed JSON labels file"),
    ("labels", '["Holding something"]', "labels file must be a non-empty JSON object"),
    ("labels", '{"Holding something": "0", "Pushing something": "0"}',
     "labels 'Holding something' and 'Pushing something' share index 0"),
    ("labels", '{"Holding something": "0", "Pushing something": "2"}', r"label indices must be 0 .. 1; missing \[1\]"),
    ("labels", '{"Holding something": "zero"}', "the index of label 'Holding something' must be an integer"),
])
def test_sthv2_bad_files(v2_set: tuple[Path, Path], bad: str, text: str, reason: str) -> None:
    train, labels = v2_set
    broken = train.parent / f"bad-{bad}.json"
    broken.write_text(text)
    if bad == "list":
        train = broken
    else:
        labels = broken
    with pytest.raises(VideoDataError, match=f"bad-{bad}.json(, |: ){reason}"):
        read_video_list(train, train.parent / "videos", "sthv2", label_file=labels)


def test_empty_or_misnamed_folder(csv_set: tuple[str, Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    fmt, train, labels = csv_set
    frames = train.parent.parent / "frames"
    (frames / "8").mkdir()
    write_frames(frames / "9", 3, "img_{:05d}.jpg")
    lst = write_lines(train.parent / "l.csv", ["7;Holding something", "8;Holding something", "9;Holding something"])
    ds = VideoDataset(lst, frames, num_frames=2, list_format=fmt, label_file=labels)
    with pytest.raises(VideoDataError, match=r"frames/8 \(list .*l.csv, line 2\): no frames: '00001.jpg' "
                                             r".*it holds no JPEGs"):
        ds[1]
    with pytest.raises(VideoDataError, match=r"frames/9 \(list .*l.csv, line 3\): no frames: .*it holds 3 JPEGs, "
                                             r"the first 'img_00001.jpg'; check the folder and the image template"):
        ds[2]
    assert VideoDataset(lst, frames, num_frames=2, list_format=fmt, label_file=labels,
                        image_template="img_{:05d}.jpg")[2]["frames"].shape == (2, 3, H, W)
    ds.skip_corrupt = True
    with caplog.at_level(logging.WARNING, logger="adafocus.data.dataset"):
        batch = collate_videos([ds[i] for i in range(3)])
    assert batch["skipped"] == 2 and batch["label"].tolist() == [0]
    assert "frames/8" in caplog.text and "frames/9" in caplog.text


def test_folder_removed_after_listing(csv_set: tuple[str, Path, Path]) -> None:
    fmt, train, labels = csv_set
    ds = VideoDataset(train, train.parent.parent / "frames", num_frames=2, list_format=fmt, label_file=labels)
    for image in ds.records[1].path.iterdir():
        image.unlink()
    ds.records[1].path.rmdir()
    with pytest.raises(VideoDataError, match=r"frames/7 \(list .*, line 3\): frame folder not found"):
        ds[1]
