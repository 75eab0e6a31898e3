"""The embedded synthetic benchmark: deterministic, decodable through the shared dataset, and built so that
the class is unreadable at f_G's resolution but readable in a full-resolution patch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adafocus.data.synthetic import SyntheticConfig, class_texture, generate, render_video
from adafocus.data.video import VideoDataset

SMALL = SyntheticConfig(num_classes=6, train_videos=6, val_videos=3, video_frames=8, frame_size=64,
                        tile_size=16, distractors=2)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate(SMALL, root=tmp_path_factory.mktemp("synthetic"), progress=False)


def test_generation_writes_lists_videos_and_annotations(generated):
    lines = generated.train_list.read_text().splitlines()
    assert len(lines) == SMALL.train_videos and len(generated.val_list.read_text().splitlines()) == SMALL.val_videos
    for line in lines:
        rel, label = line.split()
        assert (generated.root / rel).is_file() and 0 <= int(label) < SMALL.num_classes
        with np.load(generated.annotation_root / rel.replace(".mp4", ".npz")) as npz:
            assert npz["boxes"].shape == (SMALL.video_frames, 4) and npz["readable"].all()


def test_videos_decode_through_the_shared_dataset_with_their_target_boxes(generated):
    dataset = VideoDataset(generated.train_list, generated.root, num_frames=4, num_classes=SMALL.num_classes,
                           annotation_root=generated.annotation_root)
    item = dataset[0]
    assert item["frames"].shape == (4, 3, 64, 64) and item["frames"].dtype == torch.uint8
    assert item["boxes"].shape == (4, 4)
    x0, y0, x1, y1 = item["boxes"][0].long().tolist()
    assert (x1 - x0, y1 - y0) == (SMALL.tile_size, SMALL.tile_size)
    # the target is reddish: its tint survives H.264 (chroma is subsampled, so compare means)
    tile = item["frames"][0, :, y0:y1, x0:x1].float().mean(dim=(1, 2))
    assert tile[0] > tile[1] + 20 and tile[0] > tile[2] + 20


def test_generation_is_deterministic_and_reused(generated, tmp_path):
    again = generate(SMALL, root=tmp_path, progress=False)
    assert again.train_list.read_text() == generated.train_list.read_text()
    a = np.load(generated.annotation_root / "videos" / "train_00003.npz")["boxes"]
    b = np.load(again.annotation_root / "videos" / "train_00003.npz")["boxes"]
    np.testing.assert_array_equal(a, b)
    stamp = again.train_list.stat().st_mtime_ns
    assert generate(SMALL, root=tmp_path, progress=False).train_list.stat().st_mtime_ns == stamp


def test_class_detail_vanishes_at_half_resolution_but_not_at_full():
    textures = torch.tensor(np.stack([class_texture(k, 32, 10, 0.4, (1, 3)) for k in range(10)]), dtype=torch.float32)
    low = F.interpolate(textures[:, None], scale_factor=0.5, mode="bilinear", antialias=True)[:, 0]
    inner = low[:, 2:-2, 2:-2]  # away from the tile border, where the background would bleed in
    assert float((inner - 0.5).abs().max()) < 0.02  # flat grey at f_G's resolution: class unreadable
    assert float(textures.std(dim=(1, 2)).min()) > 0.3  # strong detail at full resolution
    flat = textures.flatten(1)
    distance = torch.cdist(flat, flat) + torch.eye(10) * 1e3
    assert float(distance.min()) > 1.0  # every class has its own texture


def test_distractors_carry_other_classes_and_everything_stays_in_frame():
    rng = np.random.default_rng(0)
    frames, boxes, readable = render_video(SMALL, label=2, rng=rng)
    assert readable.all()  # the default variant shows the class in every frame
    assert frames.shape == (SMALL.video_frames, 64, 64, 3) and frames.dtype == np.uint8
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all()
    assert np.abs(np.diff(boxes[:, 0])).max() > 0 or np.abs(np.diff(boxes[:, 1])).max() > 0  # it moves


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="even"):
        SyntheticConfig(num_classes=5)
    with pytest.raises(ValueError, match="distractors"):
        SyntheticConfig(num_classes=4, distractors=4)
