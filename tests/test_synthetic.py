"""The embedded synthetic benchmark: deterministic, decodable through the shared dataset, and built so that
the class is unreadable at f_G's resolution but readable in a full-resolution patch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adafocus.data.synthetic import SyntheticConfig, class_texture, generate, render_video
from adafocus.data.dataset import VideoDataset

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


def _target_pixels(frames: np.ndarray, boxes: np.ndarray, t: int, ring: int) -> np.ndarray:
    x0, y0, x1, y1 = boxes[t].astype(int)
    return frames[t, y0 + ring:y1 - ring, x0 + ring:x1 - ring].astype(float)  # (h, w, 3)


@pytest.mark.parametrize("unreadable", ["flat", "absent"])
def test_temporal_variant_hides_the_class_in_all_but_aligned_pairs(unreadable):
    config = SyntheticConfig(num_classes=6, video_frames=8, frame_size=64, tile_size=16, distractors=0,
                             readable_frames=4, unreadable=unreadable)
    frames, boxes, readable = render_video(config, label=1, rng=np.random.default_rng(3))
    assert readable.sum() == 4 and (readable[0::2] == readable[1::2]).all()  # whole pairs (2j, 2j + 1)
    red = (frames[..., 0].astype(int) - frames[..., 2].astype(int) > 60).reshape(8, -1).sum(1)
    for t in range(8):
        detail = _target_pixels(frames, boxes, t, config.ring_width).std(axis=(0, 1)).max()  # per channel
        if readable[t]:
            assert detail > 20 and red[t] > 0  # the grating is there
        elif unreadable == "flat":
            assert detail < 8 and red[t] > 0  # the tile is there, without its texture
        else:
            assert red[t] == 0  # no target at all: f_G can see which frames are worth reading


def test_drift_variant_moves_the_pattern_one_way_per_class():
    config = SyntheticConfig(num_classes=4, video_frames=4, frame_size=64, tile_size=20, distractors=0, speed=0.0,
                             drift=True)
    shifts = []
    for label in (0, 1):  # same texture, opposite directions
        frames, boxes, _ = render_video(config, label=label, rng=np.random.default_rng(0))
        a, b = (_target_pixels(frames, boxes, t, config.ring_width + 2).mean(-1) for t in (0, 1))
        errors = {s: np.abs(np.roll(a, s, axis=0)[2:-2] - b[2:-2]).mean() for s in (-1, 1)}
        shifts.append(min(errors, key=errors.get))
    assert shifts[0] == -shifts[1]


def test_variant_configs_are_checked():
    with pytest.raises(ValueError, match="readable_frames"):
        SyntheticConfig(readable_frames=3)
    with pytest.raises(ValueError, match="unreadable"):
        SyntheticConfig(readable_frames=4, unreadable="hidden")


TINY = SyntheticConfig(num_classes=4, train_videos=4, val_videos=2, video_frames=4, frame_size=32, tile_size=8,
                       distractors=1)


def _assert_complete(dataset) -> None:
    for list_file, count in ((dataset.train_list, TINY.train_videos), (dataset.val_list, TINY.val_videos)):
        lines = list_file.read_text().splitlines()
        assert len(lines) == count
        assert all((dataset.root / line.split()[0]).is_file() for line in lines)


def test_an_interrupted_generation_leaves_no_list_and_the_next_one_completes(tmp_path, monkeypatch):
    from adafocus.data import synthetic

    original, calls = synthetic.write_mp4, {"n": 0}

    def dying_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == TINY.train_videos + 1:  # the train list is done, the first val video is not
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(synthetic, "write_mp4", dying_write)
    root = tmp_path / "bench"
    with pytest.raises(KeyboardInterrupt):
        generate(TINY, root=root, progress=False)
    assert not (root / "train.txt").exists() and not (root / "val.txt").exists()
    assert list(tmp_path.iterdir()) == []  # the staging folder went with it
    monkeypatch.setattr(synthetic, "write_mp4", original)
    _assert_complete(generate(TINY, root=root, progress=False))


def test_leftovers_of_a_killed_generation_are_replaced(tmp_path):
    import subprocess
    import sys

    from adafocus.data import synthetic

    root = tmp_path / "bench"
    # an older version's in-place generation, killed after its train list: stale files, no val list
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "train_00000.mp4").write_bytes(b"truncated")
    (root / "config.json").write_text("{}")
    (root / "train.txt").write_text("videos/train_00000.mp4 0\n")
    # a staging folder of this version whose process died (a reaped child's pid is free)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{synthetic._staging_prefix(root)}{dead.pid}.abc.tmp"
    stale.mkdir()
    dataset = generate(TINY, root=root, progress=False)
    _assert_complete(dataset)
    assert (root / "videos" / "train_00000.mp4").read_bytes() != b"truncated"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]  # the dead staging folder is gone


def _generate_in_child(root: str, start) -> list[str]:
    start.wait()  # both processes generate at the same time
    dataset = generate(TINY, root=root, progress=False)
    return [dataset.train_list.read_text(), dataset.val_list.read_text()]


def test_concurrent_generations_of_one_root_both_succeed(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")  # generate needs numpy and PyAV only: forking is safe
    root = tmp_path / "bench"
    with context.Manager() as manager, context.Pool(2) as pool:
        start = manager.Barrier(2)
        results = pool.starmap(_generate_in_child, [(str(root), start)] * 2, chunksize=1)
    assert results[0] == results[1]
    _assert_complete(generate(TINY, root=root, progress=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]  # the loser's copy was discarded


def test_a_larger_validation_split_keeps_the_training_split(tmp_path):
    """evaluate.py --val-videos: another validation size regenerates the benchmark with the same training
    videos (each split from its own seeded stream); a run on a video list is refused."""
    from dataclasses import replace as change

    from adafocus.config import preset
    from adafocus.run_data import with_val_videos

    # 64 px: x264's output on smaller frames differs from run to run
    small = SyntheticConfig(num_classes=4, train_videos=4, val_videos=2, video_frames=4, frame_size=64, tile_size=16)
    config = change(preset("synthetic"), data=change(preset("synthetic").data, synthetic=small))
    larger = with_val_videos(config, 6).data.synthetic
    assert larger == change(small, val_videos=6)
    a, b = generate(small, tmp_path / "a", progress=False), generate(larger, tmp_path / "b", progress=False)
    assert a.train_list.read_text() == b.train_list.read_text()
    assert len(b.val_list.read_text().splitlines()) == 6
    for line in a.train_list.read_text().splitlines():
        path = line.split()[0]
        assert (a.root / path).read_bytes() == (b.root / path).read_bytes()
    with pytest.raises(ValueError, match="synthetic benchmark only"):
        with_val_videos(change(config, data=change(config.data, train_list="train.txt")), 6)


def test_the_cache_folder_names_the_encoding(monkeypatch, tmp_path):
    """Videos of an older encoding (another ENCODING) are never reused for the same config."""
    from adafocus.data import synthetic

    monkeypatch.setenv("ADAFOCUS_CACHE", str(tmp_path))
    now = synthetic._dataset(TINY, None).root
    monkeypatch.setattr(synthetic, "ENCODING", synthetic.ENCODING - 1)
    assert synthetic._dataset(TINY, None).root != now and now.parent == tmp_path / "synthetic"
