"""The AdaFocus authors' published lists for ActivityNet, FCVID and Mini-Kinetics (``list_format`` activitynet /
fcvid / minikinetics), multi-label targets through the dataset and ClipSet, and the multi-label mAP.

Fixture frame i (0-based, file ``image_{i + 1:05d}.jpg``) is a flat grey of level 20 + 40 i, so a decoded frame's
mean tells which file it came from.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.classification import multiclass_average_precision
from torchvision.io import encode_jpeg, write_file

from adafocus.config import preset
from adafocus.data.clips import ClipSet, multi_hot
from adafocus.data.dataset import VideoDataset, collate_videos, load_clips
from adafocus.data.lists import read_video_list
from adafocus.data.records import VideoDataError
from adafocus.evaluation import Rollout, RolloutStats, mean_average_precision, summarize
from adafocus.training import Runtime, Metrics, evaluate_task

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
W, H = 32, 24


def level(i: int) -> int:
    return 20 + 40 * i


def write_frames(folder: Path, n: int, template: str = "image_{:05d}.jpg") -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        write_file(str(folder / template.format(i + 1)), encode_jpeg(torch.full((3, H, W), level(i), dtype=torch.uint8)))
    return folder


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


# ---------------------------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("fmt", ["activitynet", "fcvid"])
def test_comma_lists_keep_every_label_and_drop_short_videos(tmp_path: Path, fmt: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    for name in ("v_a", "v_b", "v_c"):
        (tmp_path / "frames" / name).mkdir(parents=True)
    lst = write_lines(tmp_path / f"{fmt}_train_split.txt", [
        "v_a,120,5",
        "",
        "v_b,64,7,2,7",  # multi-label, one label repeated
        "v_gone,2,1",  # fewer than 3 frames: dropped before its folder is looked for
        "v_c,3,0,4,1",
    ])
    with caplog.at_level(logging.INFO, logger="adafocus.data.lists"):
        records = read_video_list(lst, tmp_path / "frames", fmt, num_classes=8)
    assert [(r.path.name, r.num_frames, r.label, r.all_labels, r.line) for r in records] == [
        ("v_a", 120, 5, (5,), 1), ("v_b", 64, 7, (7, 2), 3), ("v_c", 3, 0, (0, 4, 1), 5)]
    assert all(r.is_folder for r in records)
    assert "dropped 1 entries with fewer than 3 frames" in caplog.text


def test_minikinetics_list_is_space_separated_with_spaces_in_folders(tmp_path: Path) -> None:
    (tmp_path / "frames" / "abseiling" / "clip 01").mkdir(parents=True)
    (tmp_path / "frames" / "riding a bike" / "x").mkdir(parents=True)
    lst = write_lines(tmp_path / "mini_val_videofolder.txt",
                      ["abseiling/clip 01 250 0", "riding a bike/x 300 17", "riding a bike/x 1 17"])
    records = read_video_list(lst, tmp_path / "frames", "minikinetics", num_classes=200)
    assert [(r.path, r.num_frames, r.label, r.all_labels) for r in records] == [
        (tmp_path / "frames" / "abseiling" / "clip 01", 250, 0, None),
        (tmp_path / "frames" / "riding a bike" / "x", 300, 17, None)]


def test_frames_are_read_from_one_based_image_files(tmp_path: Path) -> None:
    write_frames(tmp_path / "frames" / "v1", 6)
    write_frames(tmp_path / "frames" / "v2", 4)
    lst = write_lines(tmp_path / "fcvid_val_split.txt", ["v1,6,3,1", "v2,4,2"])
    ds = VideoDataset(lst, tmp_path / "frames", num_frames=3, list_format="fcvid", num_classes=5)
    assert ds.image_template == "image_{:05d}.jpg" and ds.label_width == 2
    item = ds[0]
    # frame index j (0-based) is the file image_{j + 1:05d}.jpg, whose grey level is level(j)
    got = item["frames"].float().mean((1, 2, 3)).numpy()
    np.testing.assert_allclose(got, [level(j) for j in item["frame_indices"].tolist()], atol=2)
    assert item["label"].item() == 3 and item["all_labels"].tolist() == [3, 1]
    batch = collate_videos([ds[0], ds[1]])
    assert batch["all_labels"].tolist() == [[3, 1], [2, -1]]
    clips = ClipSet.from_batch(batch)
    assert clips.all_labels.tolist() == [[3, 1], [2, -1]] and clips.labels.tolist() == [3, 2]
    assert torch.equal(load_clips(ds, progress=False).all_labels, clips.all_labels)


def test_single_label_formats_carry_no_extra_labels(tmp_path: Path) -> None:
    write_frames(tmp_path / "v1", 4)
    lst = write_lines(tmp_path / "actnet_val_split.txt", ["v1,4,3,1"])
    ds = VideoDataset(lst, num_frames=2, list_format="activitynet")
    assert ds.records[0].all_labels == (3, 1) and ds.label_width == 0  # ActivityNet's mAP counts the first label
    assert "all_labels" not in ds[0] and ds[0]["label"].item() == 3


def test_presets_read_the_published_lists() -> None:
    for name in ("activitynet", "fcvid", "minikinetics"):
        assert preset(name).data.list_format == name and preset(name).data.image_template is None
    assert preset("sthsth").data.list_format == "sthv1" and preset("jester").data.list_format == "jester"


# ---------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("fmt,bad,reason", [
    ("fcvid", "v", r"expected 'dir,num_frames,label\[,label...\]' for list_format 'fcvid', got 1 field"),
    ("fcvid", "v,10", "got 2 field"),
    ("fcvid", "v 10 1", "space-separated: list_format minikinetics or frames"),
    ("activitynet", "v,ten,1", "num_frames must be an integer, got 'ten'"),
    ("activitynet", "v,-4,1", "num_frames must be >= 0, got -4"),
    ("fcvid", "v,10,1,", "label must be an integer, got ''"),
    ("fcvid", "v,10,1,x", "label must be an integer, got 'x'"),
    ("fcvid", "v,10,1,9", r"label 9 outside \[0, 5\)"),
    ("activitynet", "v,10,-1", r"label -1 outside \[0, 5\)"),
    ("fcvid", ",10,1", "empty frame folder name"),
    ("fcvid", "gone,10,1", "frame folder not found: .*gone"),
    ("minikinetics", "v,10,1", "got 1 field.*comma-separated: list_format activitynet or fcvid"),
    ("minikinetics", "v\t10\t1", "expected 'dir num_frames label'"),
    ("minikinetics", "v 10 1.5", "label must be an integer, got '1.5'"),
])
def test_bad_lines_name_file_and_line(tmp_path: Path, fmt: str, bad: str, reason: str) -> None:
    (tmp_path / "v").mkdir()
    good = "v 10 1" if fmt == "minikinetics" else "v,10,1"
    lst = write_lines(tmp_path / "bad.txt", [good, bad])
    with pytest.raises(VideoDataError, match=reason) as e:
        read_video_list(lst, list_format=fmt, num_classes=5)
    assert f"{lst}, line 2: " in str(e.value)


def test_empty_or_all_short_lists_and_label_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(VideoDataError, match="empty.txt: video list is empty"):
        read_video_list(write_lines(tmp_path / "empty.txt", ["  "]), list_format="fcvid")
    with pytest.raises(VideoDataError, match="short.txt: every entry has fewer than 3 frames"):
        read_video_list(write_lines(tmp_path / "short.txt", ["a,2,0", "b,0,1"]), list_format="activitynet")
    with pytest.raises(ValueError, match="label_file is read only by"):
        read_video_list(tmp_path / "short.txt", list_format="fcvid", label_file=tmp_path / "classInd.txt")


# ---------------------------------------------------------------------------------------------- mAP

def naive_map(scores: torch.Tensor, positives: list[set[int]]) -> float:
    """Per class: rank the videos by the class's score; AP = the mean, over the class's positives, of the
    precision among the videos ranked down to that positive. mAP: the mean over classes with a positive."""
    aps = []
    for k in range(scores.shape[1]):
        order = sorted(range(len(positives)), key=lambda v: -float(scores[v, k]))
        hits, precisions = 0, []
        for rank, v in enumerate(order, start=1):
            if k in positives[v]:
                hits += 1
                precisions.append(hits / rank)
        if precisions:
            aps.append(sum(precisions) / len(precisions))
    return sum(aps) / len(aps)


LOGITS = torch.tensor([[2.0, 0.5, 1.0, -1.0],
                       [0.1, 1.5, 1.2, 0.0],
                       [1.0, 0.2, 2.5, 0.3],
                       [0.3, 1.0, 0.1, 0.9],
                       [0.4, 0.8, 0.9, -0.5]])
ALL_LABELS = torch.tensor([[0, 2], [1, -1], [2, 1], [1, 3], [3, -1]])  # class 3 only as a second label once


def test_multi_label_map_is_the_per_class_average_precision_over_every_label() -> None:
    probs, labels = LOGITS.softmax(-1), ALL_LABELS[:, 0]
    positives = [{int(c) for c in row if c >= 0} for row in ALL_LABELS]
    expected = naive_map(probs, positives)
    targets = multi_hot(ALL_LABELS, 4)
    assert targets.tolist()[0] == [True, False, True, False]
    assert mean_average_precision(probs, labels, targets) == pytest.approx(expected)
    single = mean_average_precision(probs, labels)
    assert single == pytest.approx(naive_map(probs, [{int(c)} for c in labels]))
    assert single != pytest.approx(expected, abs=0.01)  # the example tells the two apart (0.833 vs 0.8625)

    stats = RolloutStats()
    stats.add(LOGITS[:3, None].expand(-1, 2, -1), labels[:3], all_labels=ALL_LABELS[:3])
    stats.add(LOGITS[3:, None].expand(-1, 2, -1), labels[3:], all_labels=ALL_LABELS[3:])
    result = stats.result(1.0, curve=False)
    assert result.mAP == pytest.approx(expected)
    assert result.top1 == pytest.approx(float((LOGITS.argmax(-1) == labels).float().mean()))  # on the first label
    assert summarize(Rollout(LOGITS[:, None], labels, None, 0.0, ALL_LABELS), 1.0).mAP == pytest.approx(expected)
    assert summarize(Rollout(LOGITS[:, None], labels, None, 0.0), 1.0).mAP == pytest.approx(single)


def test_training_validation_map_uses_every_label_when_the_data_has_them() -> None:
    labels = ALL_LABELS[:, 0]
    metrics = Metrics(4, torch.device("cpu"), multi_label=True)
    metrics.update(LOGITS[:2], labels[:2], ALL_LABELS[:2])
    metrics.update(LOGITS[2:], labels[2:], ALL_LABELS[2:])
    positives = [{int(c) for c in row if c >= 0} for row in ALL_LABELS]
    assert metrics.compute()["mAP"] == pytest.approx(naive_map(LOGITS.softmax(-1), positives))
    single = Metrics(4, torch.device("cpu"))
    single.update(LOGITS, labels)
    expected = float(multiclass_average_precision(LOGITS.softmax(-1), labels, 4, average="macro"))
    assert single.compute()["mAP"] == pytest.approx(expected)  # single-label data: as before
    with pytest.raises(ValueError, match="need every video's labels"):
        Metrics(4, torch.device("cpu"), multi_label=True).update(LOGITS, labels)

    class Items(Dataset):
        label_width = 2  # what a multi-label VideoDataset announces

        def __len__(self) -> int:
            return len(LOGITS)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"logits": LOGITS[i], "label": labels[i], "all_labels": ALL_LABELS[i]}

    class Replay(nn.Module):
        def forward(self, batch: dict[str, torch.Tensor]):
            return torch.zeros(()), batch["logits"], batch["label"]

    got = evaluate_task(Replay(), DataLoader(Items(), batch_size=2), Runtime(torch.device("cpu")), 4,
                        torch.autocast("cpu", enabled=False))
    assert got["mAP"] == pytest.approx(naive_map(LOGITS.softmax(-1), positives))


def test_clip_sets_carry_every_label() -> None:
    frames = torch.zeros(5, 2, 3, 8, 8, dtype=torch.uint8)
    clips = ClipSet(frames, ALL_LABELS[:, 0].clone(), all_labels=ALL_LABELS.clone())  # assigned into below
    assert clips.subset(torch.tensor([3, 0])).all_labels.tolist() == [[1, 3], [0, 2]]
    assert torch.equal(ClipSet.cat([clips.subset(slice(0, 2)), clips.subset(slice(2, None))]).all_labels, ALL_LABELS)
    other = ClipSet(frames[:1].clone(), torch.tensor([4]), all_labels=torch.tensor([[4, -1]]))
    clips.assign(torch.tensor([1]), other)
    assert clips.all_labels[1].tolist() == [4, -1] and clips.labels[1].item() == 4
    with pytest.raises(ValueError, match="all_labels must have shape"):
        ClipSet(frames, ALL_LABELS[:, 0], all_labels=ALL_LABELS[:4])
    with pytest.raises(ValueError, match=r"label 4 outside \[0, 4\)"):
        multi_hot(torch.tensor([[4, -1]]), 4)
