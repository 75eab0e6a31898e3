"""The AdaFocus environments: API conformance, batched == single envs, rewards, action checks, costs."""
from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from adafocus.backbones import corner_centres, patch_corners, random_corners
from adafocus.config import preset
from adafocus.data.clips import ClipPool, ClipSet
from adafocus.envs import REWARDS, AdaFocusEnv, AdaFocusVecEnv, EnvConfig, FocusEpisodes

from conftest import slot_sources


ACTIONS = ("grid", "continuous")


def make_env(model, clips, render_mode=None, **config) -> AdaFocusEnv:
    return AdaFocusEnv(FocusEpisodes(model, clips, EnvConfig(**config)), render_mode=render_mode)


def random_actions(rng: np.random.Generator, action: str, n: int) -> np.ndarray:
    if action == "grid":
        return rng.integers(0, 49, size=n)
    return rng.uniform(-1.2, 1.2, size=(n, 2)).astype(np.float32)  # some outside [-1, 1]: clipped


# ---- API conformance -------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ACTIONS)
def test_gymnasium_and_sb3_env_checkers_pass(tiny_model, tiny_clips, action):
    env = make_env(tiny_model, tiny_clips, render_mode="rgb_array", action=action)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings (unbounded glance, image-like Box) are fine; errors are not
        gymnasium_check_env(env)
        sb3_check_env(env)


def test_gymnasium_make_default_env():
    """The embedded default: synthetic benchmark (from the user cache, generated on first use), CPU preset."""
    env = gymnasium.make("adafocus:AdaFocus-v0", split="val")
    episodes, source = env.unwrapped.episodes, env.unwrapped.source
    frames, default = episodes.num_frames, preset("synthetic")
    assert frames == default.data.frames and source.order.size == default.data.synthetic.val_videos
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert 0 <= info["video"] < default.data.synthetic.val_videos
    terminated = [env.step(env.action_space.sample())[2] for _ in range(frames)]
    assert terminated == [False] * (frames - 1) + [True]
    env.close()

    rendered = gymnasium.make("adafocus:AdaFocus-v0", split="val", render_mode="rgb_array")
    rendered.reset(seed=1)
    rendered.step(rendered.action_space.sample())
    frame = rendered.render()
    height, width = episodes.model.frame_shape
    assert frame.shape == (height, width, 3) and frame.dtype == np.uint8
    assert np.all(frame == np.array([255, 255, 0], np.uint8), axis=-1).any()  # the patch outline
    rendered.close()


def test_render_draws_the_patch(tiny_model, tiny_clips):
    env = make_env(tiny_model, tiny_clips, render_mode="rgb_array", action="grid")
    env.reset(seed=0)
    plain = env.render()
    assert plain.shape == (64, 64, 3) and plain.dtype == np.uint8
    _, _, _, _, info = env.step(0)  # top-left patch: its yellow outline starts at (0, 0)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    x0, y0, x1, y1 = info["patch"].astype(int)
    assert (x0, y0) == (0, 0)
    np.testing.assert_array_equal(frame[y0, x0:x1 - 1], np.array([255, 255, 0], np.uint8)[None].repeat(x1 - 1 - x0, 0))
    assert make_env(tiny_model, tiny_clips).render() is None
    with pytest.raises(ValueError):
        make_env(tiny_model, tiny_clips, render_mode="human")


# ---- the batched VecEnv replays N single envs ---------------------------------------------------------
@pytest.mark.parametrize("reward", REWARDS)
@pytest.mark.parametrize("action", ACTIONS)
def test_vec_env_equals_dummy_vec_env(tiny_model, tiny_clips, reward, action):
    n, seed = 3, 11
    config = EnvConfig(action=action, reward=reward)
    vec = AdaFocusVecEnv(FocusEpisodes(tiny_model, tiny_clips, config), n, seed=seed)
    # single env i is handed the videos slot i takes: video i of each batch of n the source hands out
    dummy = DummyVecEnv([lambda s=s: AdaFocusEnv(FocusEpisodes(tiny_model, tiny_clips, config), source=s)
                         for s in slot_sources(tiny_clips, n, seed)])
    dummy.seed(seed)
    obs_vec, obs_dummy = vec.reset(), dummy.reset()
    assert set(obs_vec) == set(obs_dummy) == set(vec.observation_space.spaces)
    for key in obs_vec:
        np.testing.assert_allclose(obs_vec[key], obs_dummy[key], atol=1e-5)

    rng = np.random.default_rng(0)
    frames = tiny_clips.num_frames
    episodes_ended, videos = 0, set()
    for step in range(2 * frames + 2):  # more than two episodes: auto-reset is exercised
        actions = random_actions(rng, action, n)
        obs_vec, reward_vec, done_vec, info_vec = vec.step(actions)
        obs_dummy, reward_dummy, done_dummy, info_dummy = dummy.step(actions)
        assert set(obs_vec) == set(obs_dummy)
        for key in obs_vec:
            np.testing.assert_allclose(obs_vec[key], obs_dummy[key], atol=1e-5, err_msg=f"step {step} {key}")
        np.testing.assert_allclose(reward_vec, reward_dummy, atol=1e-5, err_msg=f"step {step} reward")
        assert reward_vec.dtype == np.float32
        np.testing.assert_array_equal(done_vec, done_dummy)
        np.testing.assert_array_equal(done_vec, np.full(n, (step + 1) % frames == 0))
        for iv, idum in zip(info_vec, info_dummy):
            assert iv["video"] == idum["video"]
            videos.add(iv["video"])
            assert iv["prediction"] == idum["prediction"]
            np.testing.assert_allclose(iv["confidence"], idum["confidence"], atol=1e-5)
            np.testing.assert_array_equal(iv["patch"], idum["patch"])
            assert ("terminal_observation" in iv) == bool(done_vec[0])
            if done_vec[0]:
                assert iv["TimeLimit.truncated"] is False and idum["TimeLimit.truncated"] is False
                term_vec, term_dummy = iv["terminal_observation"], idum["terminal_observation"]
                assert set(term_vec) == set(term_dummy)
                for key in term_vec:
                    np.testing.assert_allclose(term_vec[key], term_dummy[key], atol=1e-5)
                assert term_vec["progress"][0] == 1.0
        episodes_ended += int(done_vec[0])
    assert episodes_ended == 2
    assert len(videos) > 1  # slots / episodes draw different videos


def test_vec_env_slots_take_the_sources_videos_in_epoch_order(tiny_model, tiny_clips):
    """One pass over the videos per epoch: with 6 videos and 3 slots, two resets show every video once."""
    vec = AdaFocusVecEnv(FocusEpisodes(tiny_model, tiny_clips, EnvConfig(reward="conf")), 3, seed=2)
    vec.reset()
    seen = []
    for _ in range(2):
        for step in range(tiny_clips.num_frames):
            _, _, dones, infos = vec.step(np.zeros(3, dtype=np.int64))
        seen += [info["video"] for info in infos]
    assert sorted(seen) == list(range(len(tiny_clips)))


def test_vec_env_reset_is_reproducible_and_seed_resets_generators(tiny_model, tiny_clips):
    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig())
    vec = AdaFocusVecEnv(episodes, 4, seed=3)
    first = vec.reset()
    videos = episodes.video_ids().clone()
    vec.seed(3)
    again = vec.reset()
    torch.testing.assert_close(episodes.video_ids(), videos)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])


# ---- cost structure: f_G once per video, one f_L forward per step --------------------------------------
def counting(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def wrapped(*args, **kwargs):
        calls.append(args[0].shape[0] if args and hasattr(args[0], "shape") else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


def test_glance_computed_once_per_video_held_and_once_per_episode_streamed(tiny_model, tiny_clips, monkeypatch):
    """Clips held by the episodes pay f_G once; videos from a source pay it once per episode; never per step."""
    glance_calls = counting(monkeypatch, tiny_model.global_encoder, "forward_map")
    frames = tiny_clips.num_frames
    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig(), batch_size=4)
    assert glance_calls == [4 * frames, 2 * frames]  # 6 videos in chunks of 4, all frames at once
    glance_calls.clear()
    rng = np.random.default_rng(0)
    vec = AdaFocusVecEnv(episodes, 3, seed=0)  # its videos: the ones the episodes hold, with their f_G maps
    vec.reset()
    for _ in range(3 * frames):  # three episodes, so three auto-resets
        vec.step(random_actions(rng, "grid", 3))
    env = AdaFocusEnv(episodes)
    env.reset(seed=0)
    env.step(3)
    assert glance_calls == []
    streamed = AdaFocusVecEnv(episodes, 3, seed=0, source=ClipPool(tiny_clips, 0))  # as a stream hands them out
    streamed.reset()
    for _ in range(3 * frames):
        streamed.step(random_actions(rng, "grid", 3))
    assert glance_calls == [3 * frames] * 4  # one f_G pass when each batch of videos is loaded


@pytest.mark.parametrize("reward", REWARDS)
def test_one_local_forward_per_step(tiny_model, tiny_clips, monkeypatch, reward):
    n = 4
    vec = AdaFocusVecEnv(FocusEpisodes(tiny_model, tiny_clips, EnvConfig(reward=reward)), n, seed=0)
    vec.reset()
    local_calls = counting(monkeypatch, tiny_model.local_encoder, "forward")
    rng = np.random.default_rng(0)
    for _ in range(tiny_clips.num_frames + 1):
        local_calls.clear()
        vec.step(random_actions(rng, "grid", n))
        # vs_random: the chosen and the random patch of all N slots in the same forward
        assert local_calls == [2 * n if reward == "vs_random" else n]


# ---- rewards -------------------------------------------------------------------------------------
def play(env: AdaFocusEnv, actions, seed=0):
    env.reset(seed=seed)
    out = []
    for action in actions:
        out.append(env.step(action))
    return out


def test_reward_conf_is_the_confidence(tiny_model, tiny_clips):
    env = make_env(tiny_model, tiny_clips, reward="conf")
    steps = play(env, [0, 10, 24, 48])
    assert steps[-1][2] is True
    for _, reward, _, _, info in steps:
        assert reward == pytest.approx(info["confidence"], abs=1e-6)
        assert 0.0 < reward < 1.0


def test_reward_prev_telescopes(tiny_model, tiny_clips):
    env = make_env(tiny_model, tiny_clips, reward="prev")
    for seed in (0, 1):
        steps = play(env, [5, 17, 30, 44], seed=seed)
        assert steps[-1][2] is True
        total = sum(reward for _, reward, *_ in steps)
        assert total == pytest.approx(steps[-1][4]["confidence"] - 1 / 5, abs=1e-5)
        assert steps[0][1] == pytest.approx(steps[0][4]["confidence"] - 1 / 5, abs=1e-6)


def test_reward_vs_random_zero_when_the_patch_is_the_reference(tiny_model, tiny_clips):
    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig(action="continuous", reward="vs_random"))
    frames = tiny_clips.num_frames
    reference = torch.tensor([[0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [0.625, 0.375]])  # exact in binary
    reference = reference[None].repeat(2, 1, 1)  # (N=2, T, 2): two slots, same reference
    episodes.begin(torch.tensor([1, 4]), reference)
    for t in range(frames):
        corners = random_corners(reference[:, t], tiny_model.frame_shape, 24)
        result = episodes.step(corner_centres(corners, tiny_model.frame_shape, 24) * 2 - 1)  # the reference's place
        torch.testing.assert_close(result.corners, corners)
        torch.testing.assert_close(result.reward, torch.zeros(2), atol=1e-6, rtol=0)
        assert result.confidence.min() > 0
    assert result.done


def test_reward_vs_random_is_the_gain_over_the_reference_patch(tiny_model, tiny_clips):
    """By hand: c(chosen) - c(reference) through the same f_C state, at every step."""
    config = EnvConfig(action="continuous", reward="vs_random")
    episodes = FocusEpisodes(tiny_model, tiny_clips, config)
    rng = torch.Generator().manual_seed(0)
    reference = torch.rand(3, tiny_clips.num_frames, 2, generator=rng)
    video = torch.tensor([0, 2, 5])
    episodes.begin(video, reference)
    hidden = torch.zeros(3, tiny_model.classifier.hidden_size)
    labels = tiny_clips.labels[video]
    nonzero = False
    for t in range(tiny_clips.num_frames):
        actions = torch.rand(3, 2, generator=rng) * 2 - 1
        result = episodes.step(actions)
        with torch.no_grad():
            frames, pooled = tiny_clips.frames[video, t], episodes.glance_pooled[video, t]
            chosen = tiny_model.focus(frames, patch_corners((actions + 1) / 2, tiny_model.frame_shape, 24))
            ref = tiny_model.focus(frames, random_corners(reference[:, t], tiny_model.frame_shape, 24))
            logits, new_hidden = tiny_model.classifier.step(pooled, chosen, hidden)
            ref_logits, _ = tiny_model.classifier.step(pooled, ref, hidden)
        conf = logits.softmax(-1)[torch.arange(3), labels]
        ref_conf = ref_logits.softmax(-1)[torch.arange(3), labels]
        torch.testing.assert_close(result.confidence, conf, atol=1e-5, rtol=0)
        torch.testing.assert_close(result.reward, conf - ref_conf, atol=1e-5, rtol=0)
        torch.testing.assert_close(episodes.hidden, new_hidden, atol=1e-5, rtol=0)  # f_C follows the chosen patch
        nonzero |= bool((conf - ref_conf).abs().max() > 1e-6)
        hidden = new_hidden
    assert nonzero


def test_episodes_cannot_step_past_the_end(tiny_model, tiny_clips):
    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig())
    episodes.begin(torch.tensor([0]))
    for _ in range(tiny_clips.num_frames):
        episodes.step(torch.tensor([0]))
    with pytest.raises(RuntimeError):
        episodes.step(torch.tensor([0]))


# ---- action checks -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,bad_batch", [
    (-1, np.array([0, -1])), (49, np.array([49, 0])),  # out of range
    (1.5, np.array([1.0, 2.5])), (np.nan, np.array([np.nan, 1.0])),  # not integers
    (np.array([1, 2]), np.array([1, 2, 3])), (np.array([[3, 4]]), np.array([[3, 4], [5, 6]])),  # wrong shape
])
def test_bad_discrete_actions_raise(tiny_model, tiny_clips, bad, bad_batch):
    env = make_env(tiny_model, tiny_clips, action="grid")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\S"):
        env.step(bad)
    vec = AdaFocusVecEnv(env.episodes, 2, seed=0)
    vec.reset()
    with pytest.raises(ValueError, match=r"\S"):
        vec.step(bad_batch)


@pytest.mark.parametrize("bad", [[np.nan, 0.0], [0.0, np.inf], [0.5], [0.1, 0.2, 0.3]])
def test_bad_continuous_actions_raise(tiny_model, tiny_clips, bad):
    env = make_env(tiny_model, tiny_clips, action="continuous")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\S"):
        env.step(np.array(bad, np.float32))
    vec = AdaFocusVecEnv(env.episodes, 2, seed=0)
    vec.reset()
    with pytest.raises(ValueError, match=r"\S"):
        vec.step(np.array([bad, bad], np.float32))


def test_integral_float_discrete_actions_are_accepted(tiny_model, tiny_clips):
    env = make_env(tiny_model, tiny_clips, action="grid")
    env.reset(seed=0)
    _, _, _, _, as_float = env.step(np.float32(24.0))
    env.reset(seed=0)
    _, _, _, _, as_int = env.step(24)
    np.testing.assert_array_equal(as_float["patch"], as_int["patch"])


def test_continuous_actions_outside_the_box_are_clipped(tiny_model, tiny_clips):
    env = make_env(tiny_model, tiny_clips, action="continuous")
    for outside, inside in [([2.0, -3.0], [1.0, -1.0]), ([-1.5, 0.25], [-1.0, 0.25]), ([7.0, 7.0], [1.0, 1.0])]:
        env.reset(seed=0)
        _, reward_out, _, _, info_out = env.step(np.array(outside, np.float32))
        env.reset(seed=0)
        _, reward_in, _, _, info_in = env.step(np.array(inside, np.float32))
        np.testing.assert_array_equal(info_out["patch"], info_in["patch"])
        assert reward_out == pytest.approx(reward_in, abs=1e-6)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1.0, -1.0], np.float32))
    np.testing.assert_array_equal(info["patch"], [40, 0, 64, 24])  # right edge, top edge


# ---- info and observations ---------------------------------------------------------------------------
@pytest.mark.parametrize("action", ACTIONS)
def test_info_contents(tiny_model, tiny_clips, action):
    gmacs = 0.125
    env = AdaFocusEnv(FocusEpisodes(tiny_model, tiny_clips, EnvConfig(action=action), step_gmacs=gmacs))
    _, reset_info = env.reset(seed=2)
    rng = np.random.default_rng(0)
    for t in range(1, tiny_clips.num_frames + 1):
        _, _, terminated, truncated, info = env.step(random_actions(rng, action, 1)[0])
        assert isinstance(info["prediction"], int) and 0 <= info["prediction"] < 5
        assert isinstance(info["confidence"], float) and 0.0 < info["confidence"] < 1.0
        x0, y0, x1, y1 = info["patch"]
        assert x1 - x0 == 24 and y1 - y0 == 24
        assert 0 <= x0 and 0 <= y0 and x1 <= 64 and y1 <= 64
        assert info["gflops"] == pytest.approx(gmacs * t)
        assert info["video"] == reset_info["video"]
        assert terminated == (t == tiny_clips.num_frames) and truncated is False


def test_info_prediction_and_confidence_match_the_logits(tiny_model, tiny_clips):
    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig(reward="conf"), step_gmacs=0.5)
    vec = AdaFocusVecEnv(episodes, 3, seed=1)
    vec.reset()
    labels = episodes.labels.clone()
    actions = np.array([3, 24, 40])
    corners = episodes.corners(torch.as_tensor(actions))
    result_logits = []
    original = episodes.step

    def spy(a):
        result = original(a)
        result_logits.append(result.logits)
        return result

    episodes.step = spy
    _, rewards, _, infos = vec.step(actions)
    logits = result_logits[0]
    for i, info in enumerate(infos):
        assert info["prediction"] == int(logits[i].argmax())
        assert info["confidence"] == pytest.approx(float(logits[i].softmax(-1)[labels[i]]), abs=1e-6)
        assert info["confidence"] == pytest.approx(float(rewards[i]), abs=1e-6)
        np.testing.assert_array_equal(info["patch"], torch.cat([corners[i], corners[i] + 24]).numpy())
        assert info["gflops"] == pytest.approx(0.5)


def test_vec_monitor_reports_episodes(tiny_model, tiny_clips):
    n, frames = 3, tiny_clips.num_frames
    vec = VecMonitor(AdaFocusVecEnv(FocusEpisodes(tiny_model, tiny_clips, EnvConfig(reward="prev")), n, seed=0))
    vec.reset()
    rng = np.random.default_rng(0)
    returns = np.zeros(n)
    for t in range(1, 2 * frames + 1):
        _, rewards, dones, infos = vec.step(random_actions(rng, "grid", n))
        returns += rewards
        for info in infos:
            assert ("episode" in info) == (t % frames == 0)
        if t % frames == 0:
            assert dones.all()
            for i, info in enumerate(infos):
                assert info["episode"]["l"] == frames
                assert info["episode"]["r"] == pytest.approx(returns[i], abs=1e-5)
                assert info["episode"]["r"] == pytest.approx(info["confidence"] - 1 / 5, abs=1e-5)
            returns[:] = 0


@pytest.mark.parametrize("observe_memory", [True, False])
def test_observation_is_the_glance_of_the_current_frame(tiny_model, tiny_clips, observe_memory):
    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig(observe_memory=observe_memory))
    env = AdaFocusEnv(episodes)
    expected_keys = {"glance", "progress"} | ({"memory"} if observe_memory else set())
    frames = tiny_clips.num_frames
    for seed in (0, 4):
        obs, info = env.reset(seed=seed)
        video = info["video"]
        with torch.no_grad():
            maps = tiny_model.glance(tiny_clips.frames[video][None])[0].numpy()
        assert set(obs) == expected_keys and env.observation_space.contains(obs)
        if observe_memory:
            np.testing.assert_array_equal(obs["memory"], 0.0)
        for t in range(frames):
            np.testing.assert_allclose(obs["glance"], maps[t], atol=1e-5)
            assert obs["progress"][0] == pytest.approx(t / frames)
            obs, _, terminated, _, info = env.step(t)
            assert info["video"] == video
            if observe_memory:
                np.testing.assert_allclose(obs["memory"], episodes.hidden[0].numpy(), atol=1e-6)
                assert np.abs(obs["memory"]).max() > 0
        assert terminated and obs["progress"][0] == 1.0
        np.testing.assert_allclose(obs["glance"], maps[frames - 1], atol=1e-5)  # terminal repeats the last glance


def test_vec_env_observation_is_each_slots_glance(tiny_model, tiny_clips):
    vec = AdaFocusVecEnv(FocusEpisodes(tiny_model, tiny_clips, EnvConfig()), 4, seed=5)
    obs = vec.reset()
    with torch.no_grad():
        maps = tiny_model.glance(tiny_clips.frames).numpy()
    rng = np.random.default_rng(0)
    for t in range(tiny_clips.num_frames - 1):
        obs, _, _, infos = vec.step(random_actions(rng, "grid", 4))
        for i, info in enumerate(infos):
            np.testing.assert_allclose(obs["glance"][i], maps[info["video"], t + 1], atol=1e-5)


def test_episodes_reject_clips_of_the_wrong_size(tiny_model):
    clips = ClipSet(torch.zeros(2, 4, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="32x32"):
        FocusEpisodes(tiny_model, clips)


def test_env_config_validates():
    for bad in (dict(action="polar"), dict(reward="accuracy"), dict(grid=1)):
        with pytest.raises(ValueError):
            EnvConfig(**bad)
