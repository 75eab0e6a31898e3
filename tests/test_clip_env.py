"""The clip-level env of Section 4.2 (one patch per clip) and its presets: env checkers, rewards, batched ==
single, SB3 algorithms unchanged, and the TSM pipeline end to end on a tiny instance."""
from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv

from adafocus.backbones import ClipFocusModel, patch_corners, random_corners
from adafocus.config import DataConfig, PolicyConfig, RunConfig, StageConfig, preset
from adafocus.data.sampling import sample_indices
from adafocus.data.synthetic import SyntheticConfig
from adafocus.envs import AdaFocusEnv, AdaFocusVecEnv, ClipEpisodes, EnvConfig, confidence
from adafocus.models import build_model
from adafocus.pipeline import main_job, run_supervised
from adafocus.run_data import DataPaths, video_dataset
from adafocus.run_evaluation import evaluate_run

from conftest import random_clips, slot_sources
from test_tsm import tiny_clip_config


@pytest.fixture(scope="module")
def clip_model() -> ClipFocusModel:
    torch.manual_seed(0)
    return ClipFocusModel(tiny_clip_config()).eval()


def episodes(model, clips, **config) -> ClipEpisodes:
    return ClipEpisodes(model, clips, EnvConfig(**{"action": "continuous", **config}))


def test_env_checkers_pass(clip_model, tiny_clips):
    env = AdaFocusEnv(episodes(clip_model, tiny_clips), render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gymnasium_check_env(env)
        sb3_check_env(env)


def test_one_step_episode_observes_all_glance_frames(clip_model, tiny_clips):
    ep = episodes(clip_model, tiny_clips)
    channels = clip_model.global_encoder.out_channels
    assert ep.observation_space["glance"].shape[0] == clip_model.glance_frames * channels
    env = AdaFocusEnv(ep)
    obs, _ = env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert terminated and not truncated and info["gflops"] == ep.step_gmacs


def test_rewards_are_confidence_gains_over_a_random_patch(clip_model, tiny_clips):
    ep = episodes(clip_model, tiny_clips)
    video = torch.arange(4)
    reference = torch.rand(4, 1, 2)
    ep.begin(video, reference)
    actions = torch.rand(4, 2) * 2 - 1
    result = ep.step(actions)
    with torch.no_grad():  # naive: the whole model on each clip at each place
        frames = tiny_clips.frames[video]
        chosen = clip_model.classify_patches(frames, patch_corners((actions + 1) / 2, (64, 64), 24))
        random = clip_model.classify_patches(frames, random_corners(reference[:, 0], (64, 64), 24))
    labels = tiny_clips.labels[video]
    assert torch.allclose(result.logits, chosen, atol=1e-5)
    assert torch.allclose(result.reward, confidence(chosen, labels) - confidence(random, labels), atol=1e-5)
    conf = episodes(clip_model, tiny_clips, reward="conf")
    conf.begin(video)
    assert torch.allclose(conf.step(actions).reward, confidence(chosen, labels), atol=1e-5)
    with pytest.raises(RuntimeError, match="over"):
        conf.step(actions)


def test_bad_settings_fail_clearly(clip_model, tiny_clips):
    with pytest.raises(ValueError, match="continuous"):
        ClipEpisodes(clip_model, tiny_clips, EnvConfig(action="grid"))
    with pytest.raises(ValueError, match="one step long"):
        episodes(clip_model, tiny_clips, reward="prev")
    env = AdaFocusEnv(episodes(clip_model, tiny_clips))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0], np.float32))


def test_batched_env_replays_single_envs(clip_model):
    clips = random_clips(videos=6)
    vec = AdaFocusVecEnv(episodes(clip_model, clips), 3, seed=5)
    singles = DummyVecEnv([lambda s=s: AdaFocusEnv(episodes(clip_model, clips), source=s)
                           for s in slot_sources(clips, 3, seed=5)])
    singles.seed(5)
    a, b = vec.reset(), singles.reset()
    assert np.allclose(a["glance"], b["glance"])
    rng = np.random.default_rng(0)
    for _ in range(3):
        actions = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
        (_, ra, da, ia), (_, rb, db, ib) = vec.step(actions), singles.step(actions)
        assert np.allclose(ra, rb, atol=1e-5) and da.all() and db.all()
        assert [i["video"] for i in ia] == [i["video"] for i in ib]


@pytest.mark.parametrize("algo", [PPO, SAC])
def test_sb3_algorithms_run_unchanged(clip_model, tiny_clips, algo):
    vec = AdaFocusVecEnv(episodes(clip_model, tiny_clips), 4)
    kwargs = dict(n_steps=4, batch_size=8) if algo is PPO else dict(learning_starts=8, batch_size=8, buffer_size=64)
    model = algo("MultiInputPolicy", vec, seed=0, device="cpu", **kwargs)
    model.learn(16)
    action, _ = model.predict(vec.reset(), deterministic=True)
    assert action.shape == (4, 2)


def test_gymnasium_make_tsm_env():
    env = gymnasium.make("adafocus:AdaFocusTSM-v0", split="val")
    ep = env.unwrapped.episodes
    config = preset("synthetic_tsm")
    assert isinstance(ep, ClipEpisodes) and ep.focus_frames == config.data.frames
    assert ep.num_frames == config.model.glance_frames + config.data.frames  # clips hold G glance + T focus frames
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.step(env.action_space.sample())[2]


def test_presets_of_section_4_2():
    sth = preset("sthsth")
    assert sth.model.glance_frames == 8 and sth.data.frames == 12 and not sth.data.flip
    assert sth.model.global_encoder.shift == sth.model.local_encoder.shift == 1 / 8
    assert (sth.model.global_encoder.arch, sth.model.local_encoder.arch) == ("mobilenet_v2", "resnet50")
    assert (sth.stage1.epochs, sth.stage1.lr_local, sth.stage1.lr_classifier, sth.stage3.lr_classifier) == (10, 1e-5, 0.01, 5e-4)
    # the authors' train_stage1.sh / train_stage3.sh: dropout 0.5, then batch 32, f_L frozen and dropout 0
    assert (sth.stage1.dropout, sth.stage3.dropout, sth.stage3.batch_size, sth.stage3.lr_local) == (0.5, 0.0, 32, 0.0)
    assert sth.warmup.dropout is None and sth.data.short_videos == "first"
    assert sth.env.action == "continuous" and sth.model.num_classes == 174
    jester = preset("jester")
    assert jester.model.num_classes == 27 and jester.data.list_format == "jester" and not jester.data.flip
    assert (jester.stage1, jester.stage3, jester.data.short_videos) == (sth.stage1, sth.stage3, "first")
    tsm = preset("synthetic_tsm")
    assert tsm.data.synthetic.readable_frames == 4 and not tsm.data.flip and tsm.model.glance_frames < tsm.data.frames
    # the preset's premise: in test, the focus frames read every aligned pair, the glance frames (TSM+) half
    frames = tsm.data.synthetic.video_frames
    pairs_read = {name: set(sample_indices(frames, count, train=False) // 2)
                  for name, count in (("focus", tsm.data.frames), ("glance", tsm.model.glance_frames))}
    assert pairs_read["focus"] == set(range(frames // 2)) and len(pairs_read["glance"]) == frames // 4
    flipped = replace(sth, data=replace(sth.data, flip=True, train_list="train.csv", val_list="val.csv"))
    with pytest.raises(ValueError, match="flip"):  # refused before any file is read
        video_dataset(flipped, DataPaths(Path("train.csv"), Path("val.csv"), None, None), "train", train=True)


@pytest.fixture(scope="module")
def tiny_tsm_config(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAFOCUS_CACHE", str(tmp_path_factory.mktemp("cache")))
        syn = SyntheticConfig(num_classes=4, train_videos=8, val_videos=4, video_frames=8, frame_size=64,
                              tile_size=16, distractors=1, drift=True, speed=1.0)
        stage = StageConfig(epochs=1, lr_local=0.01, lr_classifier=0.05, batch_size=4)
        yield RunConfig(preset="synthetic_tsm", model=replace(tiny_clip_config(), num_classes=4),
                        data=DataConfig(frames=4, augment=False, flip=False, workers=0, synthetic=syn),
                        warmup=replace(stage, frames=2), stage1=stage, stage3=replace(stage, lr_local=0.0),
                        env=EnvConfig(action="continuous", observe_memory=False),
                        policy=PolicyConfig(n_envs=4, videos_per_update=4, features_dim=16, total_timesteps=8),
                        device="cpu")


def test_tsm_pipeline_end_to_end(tiny_tsm_config, tmp_path):
    evaluation, written = main_job(tiny_tsm_config, tmp_path, progress=False)
    rows = evaluation.results["policies"]
    assert set(rows) == {"learned", "random", "center", "oracle", "global_only", "tsm", "tsm_plus"}
    assert rows["oracle"]["hit_rate"] == 1.0
    assert rows["global_only"]["gflops_per_video"] < rows["random"]["gflops_per_video"] < rows["tsm_plus"]["gflops_per_video"]
    assert rows["learned"]["gflops_per_video"] > rows["random"]["gflops_per_video"]  # pi's own cost counted
    assert (tmp_path / "tsm_plus" / "checkpoint.pt").is_file() and written["trajectories"][0].is_file()
    # TSM+ trains f_L on whole frames from the warm-up; stage I on patches: two different f_L
    plus, stage1 = build_model(tiny_tsm_config, tmp_path / "tsm_plus" / "checkpoint.pt"), \
        build_model(tiny_tsm_config, tmp_path / "stage1" / "checkpoint.pt")
    assert not torch.equal(plus.local_encoder.trunk[0].weight, stage1.local_encoder.trunk[0].weight)
    again = evaluate_run(tiny_tsm_config, tmp_path / "stage3" / "checkpoint.pt", tmp_path / "policy" / "policy.zip",
                         progress=False)
    assert again.results["policies"]["learned"]["top1"] == rows["learned"]["top1"]  # deterministic evaluation
    with pytest.raises(ValueError, match="clip-level"):
        run_supervised(replace(tiny_tsm_config, model=replace(tiny_tsm_config.model, glance_frames=None)), "tsm_plus",
                       tmp_path)


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # torchvision.io's JPEG codec, still ours
def test_sthsth_preset_end_to_end_on_published_v1_files(tmp_path):
    """The real-data preset of Section 4.2 on a tiny Something-Something V1 layout (csv lists, labels csv,
    JPEG folders), with tiny backbones and no pretrained weights: every stage, TSM+ and the evaluation run."""
    from torchvision.io import encode_jpeg, write_file

    from adafocus.cli import parse_config

    generator = torch.Generator().manual_seed(0)
    labels = ["Holding something", "Pushing something from left to right", "Putting something into something"]
    (tmp_path / "labels.csv").write_text("".join(f"{name}\n" for name in labels))
    for split, count in (("train", 6), ("validation", 3)):
        lines = []
        for i in range(count):
            video = f"{split}{i}"
            folder = tmp_path / "frames" / video
            folder.mkdir(parents=True)
            for f in range(6):
                image = torch.randint(0, 256, (3, 72, 80), generator=generator, dtype=torch.uint8)
                write_file(str(folder / f"{f + 1:05d}.jpg"), encode_jpeg(image))
            lines.append(f"{video};{labels[i % 3]}\n")
        (tmp_path / f"{split}.csv").write_text("".join(lines))
    tiny = ["--model.global_encoder.arch", "mobilenet_v3_small", "--model.global_encoder.blocks", "4",
            "--model.global_encoder.weights", "none", "--model.local_encoder.arch", "resnet18",
            "--model.local_encoder.weights", "none", "--model.frame_size", "64", "--model.global_size", "32",
            "--patch", "24", "--num-classes", "3", "--frames", "4", "--model.glance_frames", "2", "--workers", "0",
            "--warmup.epochs", "1", "--stage1.epochs", "1", "--stage3.epochs", "1", "--warmup.batch_size", "3",
            "--stage1.batch_size", "3", "--stage3.batch_size", "3", "--total-timesteps", "8", "--n-envs", "4",
            "--policy.videos_per_update", "4", "--policy.features_dim", "16", "--device", "cpu"]
    config, _ = parse_config("", ["--preset", "sthsth", "--label-file", str(tmp_path / "labels.csv"),
                                  "--train-list", str(tmp_path / "train.csv"),
                                  "--val-list", str(tmp_path / "validation.csv"),
                                  "--data-root", str(tmp_path / "frames"), *tiny])
    assert config.data.list_format == "sthv1" and not config.data.flip and config.model.local_encoder.shift == 1 / 8
    evaluation, _ = main_job(config, tmp_path / "run", progress=False)
    assert {"learned", "random", "center", "tsm", "tsm_plus", "global_only"} <= set(evaluation.results["policies"])
    assert evaluation.results["videos"] == 3 and evaluation.results["frames"] == 4
