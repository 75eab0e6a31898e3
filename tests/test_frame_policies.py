"""Frame policies (pi', AdaFrame, MultiAgent): env conformance, episode lengths, reward signs, GFLOPs of
skipped frames, the uniform and oracle frame baselines, and SB3 training through the registry."""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from adafocus.agents import CenterAgent
from adafocus.agents.frames import FrameAgent, make_frame_algorithm, oracle_frames, uniform_frames
from adafocus.envs import (EnvConfig, FocusEpisodes, FrameCosts, FrameEnv, FrameReader, FrameVecEnv, JumpEpisodes,
                           MultiAgentEpisodes, SkipEpisodes)
from adafocus.evaluation import rollout
from adafocus.frame_evaluation import interpolate, run_frame_policy, utility_stop_curve
from adafocus.frame_training import FrameConfig

from conftest import TINY_CLASSES, TINY_FRAMES

COSTS = FrameCosts(glance=0.01, patch=0.1, classifier=0.001)
KINDS = ("pi_prime", "adaframe", "multiagent")


def make_reader(model, clips, costs: FrameCosts = COSTS) -> FrameReader:
    episodes = FocusEpisodes(model, clips, EnvConfig(reward="conf", observe_memory=False))
    center = CenterAgent(episodes.action_space)
    return FrameReader(episodes, lambda obs: center.act(obs), costs)


def make_episodes(kind: str, reader: FrameReader, **options):
    if kind == "pi_prime":
        return SkipEpisodes(reader, **options)
    if kind == "adaframe":
        return JumpEpisodes(reader, **options)
    return MultiAgentEpisodes(reader, **{"agents": 2, "steps": 3, **options})


class TellingReader(FrameReader):
    """A hand-made reader: frame ``good`` of every video makes f_C certain of the true class, every other
    frame leaves it uniform (zero logits); f_C's state is unchanged. Over a sequence of frames (MultiAgent),
    f_C is certain when the sequence holds frame ``good``."""

    good = 2

    def read(self, video, frame, hidden):
        logits = torch.zeros(len(video), self.num_classes, device=self.device)
        logits[torch.arange(len(video)), self.labels(video)] = 8.0 * (frame == self.good).float()
        return logits, hidden

    def initial_logits(self, n):
        return torch.zeros(n, self.num_classes, device=self.device)

    def frame_logits(self, video, frame, local):
        return self.read(video, frame, None)[0]

    def sequence_logits(self, video, frames, local):
        found = (frames == self.good).any(dim=1)
        logits = torch.zeros(len(video), self.num_classes, device=self.device)
        logits[torch.arange(len(video)), self.labels(video)] = 8.0 * found.float()
        return logits, torch.zeros(len(video), self.hidden_size, device=self.device)


@pytest.fixture
def reader(tiny_model, tiny_clips):  # per test: envs load the videos they draw into it
    return make_reader(tiny_model, tiny_clips)


@pytest.fixture
def telling(tiny_model, tiny_clips):
    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig(reward="conf", observe_memory=False))
    center = CenterAgent(episodes.action_space)
    return TellingReader(episodes, lambda obs: center.act(obs), COSTS)


# ---- API conformance -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_env_checkers_pass(reader, kind):
    env = FrameEnv(make_episodes(kind, reader))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded feature boxes are fine; errors are not
        gymnasium_check_env(env)
        sb3_check_env(env)


def test_pi_prime_without_glance_observes_no_frame(reader):
    episodes = SkipEpisodes(reader, skip="none")
    assert "glance" not in episodes.observation_space.spaces
    with pytest.raises(ValueError, match="skip"):
        SkipEpisodes(reader, skip="blur")
    with pytest.raises(ValueError, match="cost_weight"):
        SkipEpisodes(reader, cost_weight=float("nan"))


@pytest.mark.parametrize("kind", KINDS)
def test_bad_actions_are_refused(reader, kind):
    env = FrameEnv(make_episodes(kind, reader))
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(np.full(env.episodes.agents, 99))


# ---- episode lengths --------------------------------------------------------------------------------
def _length(episodes, action: int) -> int:
    episodes.begin(torch.arange(3))
    steps = 0
    while not bool(episodes.finished.all()):
        episodes.step(torch.full((3 * episodes.agents,), action))
        steps += 1
    return steps


def test_episode_lengths(reader):
    assert _length(SkipEpisodes(reader), SkipEpisodes.PROCESS) == TINY_FRAMES
    assert _length(SkipEpisodes(reader), SkipEpisodes.SKIP) == TINY_FRAMES
    assert _length(SkipEpisodes(reader), SkipEpisodes.STOP) == 1
    assert _length(JumpEpisodes(reader, max_reads=3), 1) == 2  # a first read, then two choices
    assert _length(MultiAgentEpisodes(reader, agents=2, steps=3), 1) == 3


def test_pi_prime_stop_ends_only_the_rows_that_stop(reader):
    episodes = SkipEpisodes(reader)
    episodes.begin(torch.arange(3))
    result = episodes.step(torch.tensor([SkipEpisodes.STOP, SkipEpisodes.PROCESS, SkipEpisodes.SKIP]))
    assert result.done.tolist() == [True, False, False]
    before = episodes.spent.clone()
    result = episodes.step(torch.tensor([SkipEpisodes.PROCESS] * 3))  # row 0 is over: ignored, reward 0
    assert float(result.reward[0]) == 0.0 and float(episodes.spent[0]) == float(before[0])


# ---- rewards on a hand-made case ----------------------------------------------------------------------
def test_pi_prime_reward_signs(telling):
    cost = 0.5
    episodes = SkipEpisodes(telling, cost_weight=cost)
    episodes.begin(torch.arange(4))
    p, s, x = SkipEpisodes.PROCESS, SkipEpisodes.SKIP, SkipEpisodes.STOP
    # frame 0: read (uniform logits, no gain), skip, stop, read
    r0 = episodes.step(torch.tensor([p, s, x, p])).reward
    assert r0[0] < 0 and r0[3] < 0  # a read that tells nothing costs its GFLOPs
    assert r0[1] == pytest.approx(-cost * COSTS.glance)  # a skip pays f_G of the next frame only
    assert float(r0[2]) == 0.0  # stopping spends nothing
    episodes.step(torch.tensor([s, s, s, s]))
    r2 = episodes.step(torch.tensor([p, p, p, s])).reward  # frame 2 tells the class
    uniform = 1.0 / TINY_CLASSES
    certain = torch.softmax(torch.tensor([8.0] + [0.0] * (TINY_CLASSES - 1)), 0)[0]
    expected = float(certain) - uniform - cost * (COSTS.patch + COSTS.classifier + COSTS.glance)
    assert float(r2[0]) == pytest.approx(expected, abs=1e-5) and expected > 0


def test_adaframe_reward_is_the_margin_gain(telling):
    episodes = JumpEpisodes(telling, max_reads=3, first=0)
    episodes.begin(torch.arange(2))
    r = episodes.step(torch.tensor([TellingReader.good, 1])).reward
    certain = torch.softmax(torch.tensor([8.0] + [0.0] * (TINY_CLASSES - 1)), 0)
    assert float(r[0]) == pytest.approx(float(certain[0] - certain[1]), abs=1e-5)  # margin 0 -> m
    assert float(r[1]) == 0.0  # no better than before: no reward (never negative)
    r = episodes.step(torch.tensor([TellingReader.good, 0])).reward
    assert float(r[0]) == 0.0  # the same margin again is no gain
    assert episodes.visited.sum(1).tolist() == [3, 3]  # re-chosen frames went to the nearest unread ones


def test_adaframe_never_rereads_a_frame(reader):
    episodes = JumpEpisodes(reader, max_reads=TINY_FRAMES, first=1)
    episodes.begin(torch.arange(2))
    for _ in range(TINY_FRAMES - 1):
        episodes.step(torch.tensor([1, 3]))
    assert bool((episodes.visited == 1).all()) and bool(episodes.finished.all())
    with pytest.raises(ValueError, match="max_reads"):
        JumpEpisodes(reader, max_reads=TINY_FRAMES + 1)


def test_adaframe_overview_standardises_every_frame_of_the_video(reader):
    episodes = JumpEpisodes(reader, max_reads=2)
    obs = episodes.begin(torch.arange(2))
    frames = reader.episodes.glance_pooled[:2]  # (2, T, C)
    overview = obs["overview"].view(frames.shape)
    assert torch.allclose(overview.mean(1), torch.zeros_like(overview.mean(1)), atol=1e-4)
    expected = (frames - frames.mean(1, keepdim=True)) / (frames.std(1, keepdim=True) + 1e-6)
    assert torch.allclose(overview, expected)


def test_multiagent_reward_is_shared(telling):
    episodes = MultiAgentEpisodes(telling, agents=2, steps=2)
    episodes.begin(torch.arange(2))
    r = episodes.step(torch.tensor([1, 1, 2, 1])).reward  # video 0 stays, video 1's first agent moves right
    assert r.shape == (4,) and r[0] == r[1] and r[2] == r[3]


def test_multiagent_reward_finds_the_telling_frame_and_prices_reads(telling):
    # 2 agents on 4 frames start at frames 1 and 3; the first moving right lands on frame 2, which tells
    for weight in (0.0, 0.5):
        episodes = MultiAgentEpisodes(telling, agents=2, steps=2, cost_weight=weight)
        episodes.begin(torch.arange(2))
        r = episodes.step(torch.tensor([2, 1, 1, 1])).reward
        assert float(r[0]) > 0 and float(r[2]) == 0.0  # a found class pays; staying costs and gains nothing
        last = episodes.step(torch.tensor([1, 1, 0, 1])).reward  # video 1 moves onto frame 0: a new read
        final = 2 * COSTS.classifier  # the last step pays f_C over the two agents' frames
        assert float(last[0]) == pytest.approx(-weight * final, abs=1e-6)
        assert float(last[2]) == pytest.approx(-weight * (COSTS.read + final), abs=1e-6)


# ---- GFLOPs accounting ----------------------------------------------------------------------------
def _spent(episodes, action: int) -> torch.Tensor:
    episodes.begin(torch.arange(2))
    while not bool(episodes.finished.all()):
        episodes.step(torch.full((2 * episodes.agents,), action))
    return episodes.spent


def test_skipped_frames_cost_only_what_runs(reader):
    t = TINY_FRAMES
    assert _spent(SkipEpisodes(reader, skip="glance"), SkipEpisodes.SKIP).tolist() == pytest.approx([t * COSTS.glance] * 2)
    assert _spent(SkipEpisodes(reader, skip="none"), SkipEpisodes.SKIP).tolist() == [0.0, 0.0]
    for skip in ("glance", "none"):
        assert _spent(SkipEpisodes(reader, skip=skip), SkipEpisodes.PROCESS).tolist() == pytest.approx([t * COSTS.read] * 2)
    assert _spent(SkipEpisodes(reader), SkipEpisodes.STOP).tolist() == pytest.approx([COSTS.glance] * 2)
    overview = TINY_FRAMES * COSTS.glance  # AdaFrame's global memory: f_G on every frame, once
    assert _spent(JumpEpisodes(reader, max_reads=3), 0).tolist() == pytest.approx(
        [overview + 3 * (COSTS.read - COSTS.glance)] * 2)


def test_multiagent_pays_each_distinct_frame_once(reader):
    episodes = MultiAgentEpisodes(reader, agents=2, steps=3)
    # staying: 2 distinct frames; moving left 3 times from frames 1 and 3 of 4: frames 1, 0, 3, 2 -> 4
    stay, left = _spent(episodes, 1), _spent(episodes, 0)
    final = 2 * COSTS.classifier
    assert stay.tolist() == pytest.approx([2 * COSTS.read + final] * 2)
    assert left.tolist() == pytest.approx([4 * COSTS.read + final] * 2)


# ---- the frame baselines ----------------------------------------------------------------------------
def test_uniform_and_oracle_frames():
    assert uniform_frames(2, 8, 2).tolist() == [[2, 6], [2, 6]]
    assert uniform_frames(1, 8, 8).tolist() == [list(range(8))]
    readable = torch.tensor([[False, False, True, True, False, False, False, False],
                             [True, False, False, False, False, False, False, True]])
    assert oracle_frames(readable, 2).tolist() == [[2, 3], [0, 7]]
    assert oracle_frames(readable, 3).tolist() == [[0, 2, 3], [0, 1, 7]]
    with pytest.raises(ValueError, match="k must be"):
        uniform_frames(1, 8, 0)


def test_reading_every_frame_matches_the_adafocus_rollout(tiny_model, tiny_clips, reader):
    """The frame reader composes the same step as FocusEpisodes: all T frames in order give its logits."""
    episodes = reader.episodes
    full = rollout(episodes, CenterAgent(episodes.action_space), batch_size=len(tiny_clips))
    video = torch.arange(len(tiny_clips))
    read = reader.classify_frames(video, uniform_frames(len(tiny_clips), TINY_FRAMES, TINY_FRAMES))
    torch.testing.assert_close(read, full.logits, atol=1e-5, rtol=1e-4)


def test_oracle_reads_the_telling_frame(telling, tiny_clips):
    readable = torch.zeros(len(tiny_clips), TINY_FRAMES, dtype=torch.bool)
    readable[:, TellingReader.good] = True
    video = torch.arange(len(tiny_clips))
    oracle = telling.classify_frames(video, oracle_frames(readable, 2))[:, -1]  # frames 0 and 2
    uniform = telling.classify_frames(video, uniform_frames(len(tiny_clips), TINY_FRAMES, 2))[:, -1]  # 1 and 3
    assert bool((oracle.argmax(-1) == tiny_clips.labels).all())
    assert not bool((uniform.softmax(-1).amax(-1) > 0.5).any())


# ---- SB3 through the registry, evaluation helpers ----------------------------------------------------
@pytest.mark.parametrize("kind,algo", [("pi_prime", "ppo"), ("adaframe", "a2c"), ("multiagent", "dqn"),
                                       ("pi_prime", "recurrent_ppo")])
def test_sb3_trains_on_the_vec_env(reader, kind, algo):
    episodes = make_episodes(kind, reader)
    vec = FrameVecEnv(episodes, rows=3, seed=0)
    settings = FrameConfig(videos_per_update=3, features_dim=16, conv_channels=4, minibatches=1, n_epochs=1)
    model = make_frame_algorithm(algo, vec, settings, horizon=4, seed=0, device="cpu")
    model.learn(24)
    agent = FrameAgent(model)
    obs = episodes.begin(torch.arange(2))
    assert agent.act(obs).shape == (2 * episodes.agents,)
    if algo == "recurrent_ppo":
        assert agent.act(obs).shape == (2,)  # the LSTM state carries over between calls
        with pytest.raises(ValueError, match="utility"):
            agent.utility(obs)
    else:
        assert agent.utility(obs).shape == (2 * episodes.agents,)
    with pytest.raises(ValueError, match="discrete"):
        make_frame_algorithm("sac", vec, settings, horizon=4)


def test_vec_env_resets_rows_that_stop(reader):
    vec = FrameVecEnv(SkipEpisodes(reader), rows=2, seed=0)
    vec.reset()
    _, _, dones, infos = vec.step(np.array([SkipEpisodes.STOP, SkipEpisodes.PROCESS]))
    assert dones.tolist() == [True, False]
    assert "terminal_observation" in infos[0] and "terminal_observation" not in infos[1]
    assert not bool(vec.episodes.finished[0]) and int(vec.episodes.t[0]) == 0  # a fresh episode in slot 0


def test_utility_stop_curve_and_interpolation():
    labels = torch.tensor([0, 1])
    logits = torch.zeros(2, 3, 2)
    logits[:, 1:, :] = torch.tensor([[[5.0, 0.0]], [[0.0, 5.0]]])  # right from the second read on
    trace = {"trace_utility": torch.tensor([[1.0, 0.0], [1.0, 0.0]]), "trace_logits": logits,
             "trace_spent": torch.tensor([[1.0, 2.0, 3.0]] * 2), "decision_gmacs": torch.tensor(0.0)}
    curve = utility_stop_curve(trace, labels, torch.tensor([2.0, 0.5, -1.0]))
    assert [(p["gflops_per_video"], p["top1"]) for p in curve] == [(1.0, 0.5), (2.0, 1.0), (3.0, 1.0)]
    assert interpolate(curve, 1.5) == pytest.approx(0.75) and interpolate(curve, 9.0) is None


def test_run_frame_policy_counts_decisions(reader):
    episodes = SkipEpisodes(reader)

    class Stopper(FrameAgent):
        def __init__(self):
            self.state, self.recurrent = None, False

        def act(self, observation, deterministic=True):
            return torch.full((observation["memory"].shape[0],), SkipEpisodes.STOP)

    out = run_frame_policy(episodes, Stopper(), torch.device("cpu"))
    assert out["decisions"].tolist() == [1] * episodes.num_videos
    assert out["gmacs"].tolist() == pytest.approx([COSTS.glance] * episodes.num_videos)  # the agent costs 0 MACs


def test_frame_plot_writes_png_and_svg(tmp_path):
    from adafocus.plotting import plot_frame_budget

    curve = [{"gflops_per_video": g, "top1": a} for g, a in ((0.1, 0.2), (0.2, 0.4))]
    row = lambda g, a, c=None: {"gflops_per_video": g, "top1": a, "curve": c or []}  # noqa: E731
    results = {"all_frames": row(0.2, 0.4), "uniform_k1": row(0.1, 0.2, curve), "threshold_exit": row(0.2, 0.4, curve),
               "pi_prime_lambda0.5_glance": row(0.15, 0.35), "pi_prime_lambda1_glance": row(0.1, 0.3)}
    written = plot_frame_budget(results, tmp_path / "budget")
    assert [p.suffix for p in written] == [".png", ".svg"] and all(p.stat().st_size > 0 for p in written)


def test_frame_algorithms_read_the_frame_entry_of_the_hyperparameter_files(reader):
    """One builder for pi and the frame policies: a frame policy takes the files' frame entry (not pi's),
    its own extractor, and --frame.hyperparams over the file."""
    vec = FrameVecEnv(make_episodes("pi_prime", reader), rows=2, seed=0)
    settings = FrameConfig(features_dim=16, conv_channels=4)
    dqn = make_frame_algorithm("dqn", vec, settings, horizon=4, seed=0, device="cpu")
    assert (dqn.learning_starts, dqn.batch_size, dqn.buffer_size) == (1000, 256, 100_000)
    assert type(dqn.policy.q_net.features_extractor).__name__ == "FrameExtractor"
    ppo = make_frame_algorithm("ppo", vec, settings, horizon=4, seed=0, device="cpu")
    assert [layer.out_features for layer in ppo.policy.mlp_extractor.policy_net if hasattr(layer, "out_features")] == [64]
    tuned = make_frame_algorithm("dqn", vec, replace(settings, hyperparams="{learning_starts: 7}"), horizon=4, device="cpu")
    assert tuned.learning_starts == 7
