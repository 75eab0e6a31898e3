"""Video sources and streaming: epoch order, positions that resume, workers, skipped videos, memory refusals,
and an evaluation that streams giving what the in-memory one gives."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from adafocus import checkpoint
from adafocus.config import to_dict
from adafocus.data import memory
from adafocus.data.clips import ClipPool, EpochOrder
from adafocus.data.stream import ClipStream
from adafocus.data.dataset import VideoDataset
from adafocus.models import build_model
from adafocus.run_data import clip_set, data_paths, video_dataset
from adafocus.run_evaluation import evaluate_run

from conftest import random_clips, tiny_run_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAFOCUS_CACHE", str(tmp_path_factory.mktemp("cache")))
        config = tiny_run_config()
        yield config, data_paths(config, progress=False)


def _ids(clips) -> list[int]:
    return clips.index.tolist()


# ---- the order -----------------------------------------------------------------------------------------
def test_each_epoch_is_a_permutation_and_epochs_differ():
    order = EpochOrder(7, seed=3)
    first = [order[p] for p in range(7)]
    second = [order[p] for p in range(7, 14)]
    assert sorted(i for i, _ in first) == list(range(7)) and {e for _, e in first} == {0}
    assert sorted(i for i, _ in second) == list(range(7)) and {e for _, e in second} == {1}
    assert [i for i, _ in first] != [i for i, _ in second]
    assert [order[p] for p in range(7)] == first  # a position always maps to the same video


def test_pool_hands_out_epochs_resumes_from_its_state_and_reseeds():
    clips = random_clips(videos=6)
    pool = ClipPool(clips, seed=1)
    taken = [_ids(pool.take(4)) for _ in range(3)]  # 12 videos: two epochs
    flat = sum(taken, [])
    assert sorted(flat[:6]) == sorted(flat[6:]) == list(range(6))
    again = ClipPool(clips, seed=1)
    again.take(4)
    state = again.state_dict()
    resumed = ClipPool(clips, seed=1)
    resumed.load_state_dict(state)
    assert _ids(resumed.take(8)) == flat[4:]
    resumed.seed(1)
    assert _ids(resumed.take(4)) == taken[0]
    torch.testing.assert_close(ClipPool(clips, seed=1).take(2).frames, clips.frames[flat[:2]])
    with pytest.raises(ValueError, match="seed"):
        ClipPool(clips, seed=2).load_state_dict(state)


# ---- the stream ----------------------------------------------------------------------------------------
def test_stream_hands_out_the_pools_order_across_loader_batches(tiny):
    config, paths = tiny
    dataset = video_dataset(config, paths, "train", train=True)
    stream = ClipStream(dataset, batch_size=3, seed=4)
    pool_order = EpochOrder(len(dataset), seed=4)
    taken = [stream.take(n) for n in (2, 5, 1, 16)]  # counts that cut loader batches anywhere
    ids = sum((_ids(t) for t in taken), [])
    assert ids == [pool_order[p][0] for p in range(24)]
    assert stream.position == 24 and stream.epoch == 24 / len(dataset)
    item = dataset.load(ids[0], 0)  # a video is sampled as the dataset samples it in the epoch it is drawn in
    torch.testing.assert_close(taken[0].frames[0], item["frames"])
    torch.testing.assert_close(taken[0].boxes[0], item["boxes"])
    later = dataset.load(ids[17], 1)
    torch.testing.assert_close(taken[3].frames[17 - 8], later["frames"])


def test_stream_resumes_from_its_state_and_workers_change_nothing(tiny):
    config, paths = tiny
    dataset = video_dataset(config, paths, "train", train=True)
    stream = ClipStream(dataset, batch_size=4, seed=0)
    stream.take(6)
    state = stream.state_dict()
    expected = stream.take(7)
    resumed = ClipStream(video_dataset(config, paths, "train", train=True), batch_size=4, seed=0, workers=2)
    resumed.load_state_dict(state)
    got = resumed.take(7)
    assert _ids(got) == _ids(expected)
    torch.testing.assert_close(got.frames, expected.frames)
    resumed.close()


def test_stream_passes_over_corrupt_videos_and_refuses_a_list_with_none(tiny, tmp_path):
    config, paths = tiny
    lines = paths.train_list.read_text().splitlines()[:4]
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    root = paths.train_list.parent
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("\n".join([f"{root / lines[0].split()[0]} 1", f"{tmp_path / 'broken.mp4'} 0",
                                f"{root / lines[1].split()[0]} 2"]) + "\n")
    dataset = VideoDataset(mixed, num_frames=4, train=True, skip_corrupt=True)
    ids = _ids(ClipStream(dataset, batch_size=2, seed=0).take(4))
    assert 1 not in ids and sorted(ids[:2]) == [0, 2]
    only = tmp_path / "only.txt"
    only.write_text(f"{tmp_path / 'broken.mp4'} 0\n")
    with pytest.raises(ValueError, match="no video could be decoded"):
        ClipStream(VideoDataset(only, num_frames=4, skip_corrupt=True), batch_size=1).take(1)


# ---- memory refusals -----------------------------------------------------------------------------------
def test_holding_a_split_in_memory_is_refused_up_front_when_it_would_not_fit(tiny, monkeypatch):
    config, paths = tiny
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 18)  # 256 KiB: less than the tiny split
    in_memory = replace(config, data=replace(config.data, stream=False))
    with pytest.raises(MemoryError) as error:
        clip_set(in_memory, paths, "train", progress=False)
    message = str(error.value)
    assert str(paths.train_list) in message and "--data.stream true" in message and "GiB" in message
    cached = video_dataset(config, paths, "train", train=True)  # cache_videos=True in the tiny config
    with pytest.raises(MemoryError, match="--data.cache_videos false"):
        cached[0]
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 40)
    assert len(clip_set(in_memory, paths, "val", progress=False)) == config.data.synthetic.val_videos


# ---- evaluation --------------------------------------------------------------------------------------
def test_streamed_evaluation_equals_the_in_memory_one(tiny, tmp_path):
    config, _ = tiny
    model = build_model(config, None)
    path = tmp_path / "model.pt"
    checkpoint.save_atomic({"model": model.state_dict(), "config": to_dict(config)}, path)
    runs = {}
    for stream in (True, False):
        run_config = replace(config, data=replace(config.data, stream=stream))
        runs[stream] = evaluate_run(run_config, path, None, progress=False, batch_size=3, videos=[1, 6])
    streamed, held = runs[True], runs[False]
    assert streamed.results["videos"] == held.results["videos"] == config.data.synthetic.val_videos
    for name, row in held.results["policies"].items():
        other = streamed.results["policies"][name]
        for key in ("top1", "mAP", "gflops_per_video", "hit_rate", "mean_iou"):
            assert other[key] == pytest.approx(row[key], abs=1e-6), (name, key)
        assert [p["top1"] for p in other["curve"]] == pytest.approx([p["top1"] for p in row["curve"]])
    for name in held.rollouts:
        torch.testing.assert_close(streamed.rollouts[name].logits, held.rollouts[name].logits, atol=1e-5, rtol=1e-5)
    assert streamed.clips.index.tolist() == [1, 6]
    np.testing.assert_array_equal(streamed.corners["center"].numpy(), held.corners["center"].numpy())
    assert streamed.corners["random"].shape == (config.data.synthetic.val_videos, config.data.frames, 2)
    with pytest.raises(ValueError, match="not indices"):
        evaluate_run(config, path, None, progress=False, videos=[100])
    assert Path(path).is_file()
