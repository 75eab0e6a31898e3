"""Focus policies: every SB3 algorithm on the VecEnv, SB3Agent, save/load, the baselines, costs, extractor."""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from adafocus.agents import (CenterAgent, FocusAgent, GlanceExtractor, OracleAgent, PolicyFileError, RandomAgent,
                             SB3Agent, action_kind, load_agent, make_algorithm, policy_gmacs, read_policy_file,
                             resolve_algorithm, restore_algorithm, save_agent)
from adafocus.agents.defaults import load_hyperparams
from adafocus.backbones import grid_corners
from adafocus.config import PolicyConfig
from adafocus.data.clips import ClipSet
from adafocus.envs import AdaFocusVecEnv, EnvConfig, FocusEpisodes

from conftest import Marker, poison


N_ENVS = 4
# T = 4, 4 slots: 16 timesteps per round of videos. Off-policy learning starts after 10 rounds (160),
# so these totals give 8 to 24 gradient steps.
TIMESTEPS = {"ppo": 192, "a2c": 192, "recurrent_ppo": 192, "gru_ppo": 192, "paper_ppo": 192, "dqn": 256,
             "qrdqn": 192, "sac": 256, "td3": 256}


# the files' off-policy starts (about 1,000 steps) are sized for 64 slots; SAC's and TD3's 16 gradient steps per
# step too: the tiny runs start after 10 rounds and take one gradient step per step
OFF_POLICY = {"dqn": "{learning_starts: 160}", "qrdqn": "{learning_starts: 160}",
              "sac": "{learning_starts: 160, gradient_steps: 1}", "td3": "{learning_starts: 160, gradient_steps: 1}"}


def small_policy(algo: str = "ppo") -> PolicyConfig:
    return PolicyConfig(algo=algo, n_envs=N_ENVS, videos_per_update=N_ENVS, features_dim=32, learning_rate=1e-3,
                        hyperparams=OFF_POLICY.get(algo))


def make_vec(model, clips, action: str = "grid", n: int = N_ENVS, seed: int = 0, **config) -> AdaFocusVecEnv:
    return AdaFocusVecEnv(FocusEpisodes(model, clips, EnvConfig(action=action, **config)), n, seed=seed)


def build(algo: str, model, clips, **config) -> tuple[BaseAlgorithm, AdaFocusVecEnv]:
    env = make_vec(model, clips, action_kind(algo), **config)
    return make_algorithm(algo, env, small_policy(algo), clips.num_frames, seed=0, device="cpu"), env


def as_tensors(obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v) for k, v in obs.items()}


def check_actions(actions: torch.Tensor, space: spaces.Space, n: int) -> None:
    if isinstance(space, spaces.Discrete):
        assert actions.shape == (n,) and actions.dtype == torch.int64
        assert actions.min() >= 0 and actions.max() < space.n
    else:
        assert actions.shape == (n, 2) and actions.dtype == torch.float32
        assert actions.abs().max() <= 1.0


# ---- every algorithm learns on the tiny VecEnv -------------------------------------------------------
@pytest.mark.parametrize("algo", list(TIMESTEPS))
def test_algorithm_learns_and_acts(tiny_model, tiny_clips, algo):
    model, env = build(algo, tiny_model, tiny_clips)
    assert isinstance(env.action_space, spaces.Discrete if algo not in ("sac", "td3") else spaces.Box)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(TIMESTEPS[algo])
    assert model.num_timesteps >= TIMESTEPS[algo]
    assert model._n_updates > 0  # gradient steps really happened ...
    after = list(model.policy.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))  # ... and moved pi

    agent = SB3Agent(model)
    assert isinstance(agent, FocusAgent)
    obs = env.reset()
    tensors = as_tensors(obs)
    agent.reset(N_ENVS)
    actions = agent.act(tensors, deterministic=True)
    check_actions(actions, env.action_space, N_ENVS)
    assert actions.device == tensors["glance"].device
    check_actions(agent.act(tensors, deterministic=False), env.action_space, N_ENVS)
    env.step(actions.numpy())  # the env accepts them

    predicted, state = agent.predict(obs, deterministic=True)
    assert predicted.shape == tuple(actions.shape)
    assert env.action_space.contains(predicted[0])
    if agent.recurrent:
        assert state is not None
    else:  # the same actions as SB3's predict (which unscales Box actions from [-1, 1]: float rounding)
        np.testing.assert_allclose(actions.numpy(), predicted, rtol=0, atol=1e-6)


def test_recurrent_agent_carries_and_resets_its_state(tiny_model, tiny_clips):
    model, env = build("recurrent_ppo", tiny_model, tiny_clips)
    agent = SB3Agent(model)
    assert agent.recurrent
    obs = as_tensors(env.reset())
    agent.reset(N_ENVS)
    first = agent.act(obs)
    state = agent.state
    assert state is not None and state[0].shape == (1, N_ENVS, model.policy.lstm_actor.hidden_size)
    agent.act(obs)
    assert not torch.equal(agent.state[0], state[0])  # the LSTM moved on
    agent.reset(N_ENVS)
    assert agent.state is None
    torch.testing.assert_close(agent.act(obs), first)  # a fresh episode acts as the first time
    # SB3's own predict with a fresh state agrees with act from a reset agent
    predicted, _ = model.predict({k: v.numpy() for k, v in obs.items()}, state=None,
                                 episode_start=np.ones(N_ENVS, bool), deterministic=True)
    np.testing.assert_array_equal(predicted, first.numpy())
    agent.act({k: v[:2] for k, v in obs.items()})  # another batch size starts a new state
    assert agent.state[0].shape[1] == 2


def test_on_policy_rollouts_are_whole_videos(tiny_model, tiny_clips):
    model, _ = build("ppo", tiny_model, tiny_clips)
    # videos_per_update * T / n_envs steps per slot, one minibatch of all of them
    assert model.n_steps == N_ENVS * tiny_clips.num_frames // N_ENVS
    assert model.batch_size == model.n_steps * N_ENVS
    assert model.gamma == small_policy().gamma


def test_a2c_takes_n_steps_from_its_file(tiny_model, tiny_clips):
    """A2C's rollout length is its file's n_steps, not whole videos; --policy.hyperparams changes it for A2C and
    is refused for the PPO family, whose n_steps --policy.videos_per_update sets."""
    model, _ = build("a2c", tiny_model, tiny_clips)
    assert model.n_steps == load_hyperparams("a2c")["n_steps"] != tiny_clips.num_frames
    env = make_vec(tiny_model, tiny_clips)
    policy = replace(small_policy("a2c"), hyperparams="{n_steps: 3}")
    assert make_algorithm("a2c", env, policy, tiny_clips.num_frames, device="cpu").n_steps == 3
    with pytest.raises(ValueError, match="n_steps: set by the run's --policy"):
        make_algorithm("ppo", env, replace(small_policy(), hyperparams="{n_steps: 3}"), tiny_clips.num_frames)


def test_extractor_without_memory_trains(tiny_model, tiny_clips):
    model, env = build("ppo", tiny_model, tiny_clips, observe_memory=False)
    assert "memory" not in env.observation_space.spaces
    model.learn(32)
    check_actions(SB3Agent(model).act(as_tensors(env.reset())), env.action_space, N_ENVS)


# ---- algorithm names and action kinds --------------------------------------------------------------
def test_resolve_algorithm():
    assert resolve_algorithm("stable_baselines3:PPO") is PPO
    assert resolve_algorithm("ppo") is PPO and resolve_algorithm("PPO") is PPO
    from sb3_contrib import QRDQN
    assert resolve_algorithm("qrdqn") is QRDQN
    for bad in ("no_such_algo", "stable_baselines3:NoSuchClass", "no_such_module_xyz:PPO",
                "torch.nn:Linear", "stable_baselines3.common.vec_env:DummyVecEnv"):
        with pytest.raises(ValueError, match=r"\S"):
            resolve_algorithm(bad)


def test_action_kind():
    assert action_kind("sac") == "continuous" and action_kind("td3") == "continuous"
    assert action_kind("stable_baselines3:SAC") == "continuous"
    assert action_kind("ppo") == "grid" and action_kind("dqn") == "grid"
    assert action_kind("ppo", "continuous") == "continuous"
    assert action_kind("sac", "continuous") == "continuous"
    with pytest.raises(ValueError):
        action_kind("sac", "grid")
    with pytest.raises(ValueError):
        action_kind("dqn", "continuous")
    with pytest.raises(ValueError):
        action_kind("qrdqn", "continuous")


# ---- save / load ---------------------------------------------------------------------------------
def perturbed(model: BaseAlgorithm) -> BaseAlgorithm:
    """``model`` with weights a freshly seeded build would not have."""
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for p in model.policy.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    return model


def reload(path: Path, algo: str, env: AdaFocusVecEnv, **changes) -> SB3Agent:
    """The project's loader: pi rebuilt from its PolicyConfig for the env's spaces, the file's tensors read in."""
    return load_agent(path, replace(small_policy(algo), **changes), env.observation_space, env.action_space,
                      env.episodes.num_steps, device="cpu")


def assert_same_actions(model: BaseAlgorithm, loaded: SB3Agent, env: AdaFocusVecEnv, steps: int = 3) -> None:
    """Deterministic actions step after step (a recurrent pi's state carried by both) are identical."""
    original = SB3Agent(model)
    original.reset(N_ENVS)
    loaded.reset(N_ENVS)
    obs = env.reset()
    for _ in range(steps):
        tensors = as_tensors(obs)
        expected = original.act(tensors, deterministic=True)
        torch.testing.assert_close(loaded.act(tensors, deterministic=True), expected, rtol=0, atol=0)
        obs, *_ = env.step(expected.numpy())


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn", "recurrent_ppo", "paper_ppo", "sac"])
def test_save_load_roundtrip(tiny_model, tiny_clips, tmp_path, algo):
    model, env = build(algo, tiny_model, tiny_clips)
    perturbed(model)
    path = tmp_path / "policy" / "policy.zip"
    path.parent.mkdir()
    config = {"policy": {"algo": algo}, "env": {"action": action_kind(algo)}}
    save_agent(model, path, config)
    assert path.is_file()
    assert json.loads(path.with_suffix(".json").read_text()) == config

    loaded = reload(path, algo, env)
    assert isinstance(loaded, SB3Agent) and type(loaded.model) is type(model)
    saved, restored = model.policy.state_dict(), loaded.policy.state_dict()
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    assert_same_actions(model, loaded, env)
    with pytest.raises(FileNotFoundError):
        reload(tmp_path / "missing.zip", algo, env)
    with pytest.raises(PolicyFileError, match=str(path)):  # a config that does not describe this pi is named
        reload(path, algo, env, features_dim=24)
    with pytest.raises(TypeError, match="PolicyConfig"):  # an algorithm name alone cannot rebuild pi
        load_agent(path, algo, env.observation_space, env.action_space, 4)


@pytest.mark.parametrize("algo", ["ppo", "recurrent_ppo"])
def test_a_crafted_policy_file_runs_nothing_and_still_acts_as_saved(tiny_model, tiny_clips, tmp_path, algo):
    from stable_baselines3.common.save_util import load_from_zip_file

    model, env = build(algo, tiny_model, tiny_clips)
    perturbed(model)
    path, marker = tmp_path / "policy.zip", tmp_path / "marker"
    save_agent(model, path, {})
    poison(path, marker)

    loaded = reload(path, algo, env)
    _, _, data = read_policy_file(path)
    assert not marker.exists()
    assert "policy_kwargs" not in data and "surprise" not in data and data["num_timesteps"] == 0
    assert_same_actions(model, loaded, env)
    assert not marker.exists()
    load_from_zip_file(path, device="cpu")  # SB3's own reader does unpickle the payload: the test file is live
    assert marker.exists()


def test_a_policy_file_whose_tensors_hold_objects_is_refused(tiny_model, tiny_clips, tmp_path):
    model, env = build("ppo", tiny_model, tiny_clips)
    path, marker = tmp_path / "policy.zip", tmp_path / "marker"
    save_agent(model, path, {})
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO()
    torch.save({"state": Marker(marker)}, buffer)  # an optimizer state that is a pickled object
    members["policy.optimizer.pth"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(PolicyFileError, match="policy.zip"):
        reload(path, "ppo", env)
    assert not marker.exists()
    (tmp_path / "cut.zip").write_bytes(path.read_bytes()[:200])
    with pytest.raises(PolicyFileError, match="cut.zip"):
        reload(tmp_path / "cut.zip", "ppo", env)


def test_a_resume_restores_weights_optimizer_and_counters_from_tensors_only(tiny_model, tiny_clips, tmp_path):
    """Stage II's resume: a fresh build from the config, then the checkpoint's tensors and step counters."""
    from adafocus.callbacks import save_checkpoint

    model, env = build("ppo", tiny_model, tiny_clips)
    model.learn(2 * model.n_steps * N_ENVS)
    path, marker = tmp_path / "checkpoint.zip", tmp_path / "marker"
    save_checkpoint(model, path, {"num_timesteps": model.num_timesteps})
    poison(path, marker)
    fresh, _ = build("ppo", tiny_model, tiny_clips)
    restore_algorithm(fresh, path, training=True)
    assert not marker.exists()
    assert (fresh.num_timesteps, fresh._n_updates) == (model.num_timesteps, model._n_updates) and fresh._n_updates > 0
    saved, restored = model.policy.optimizer.state_dict(), fresh.policy.optimizer.state_dict()
    for key, state in saved["state"].items():
        assert all(torch.equal(state[name], restored["state"][key][name]) for name in state)
    assert all(torch.equal(a, b) for a, b in zip(model.policy.parameters(), fresh.policy.parameters()))


# ---- baselines -----------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["grid", "continuous"])
def test_random_agent(tiny_model, tiny_clips, action):
    env = make_vec(tiny_model, tiny_clips, action)
    obs = as_tensors(env.reset())
    sequences = []
    for seed in (0, 0, 1):
        agent = RandomAgent(env.action_space, seed=seed)
        sequences.append(torch.stack([agent.act(obs) for _ in range(5)]))
        check_actions(sequences[-1][0], env.action_space, N_ENVS)
    torch.testing.assert_close(sequences[0], sequences[1])
    assert not torch.equal(sequences[0], sequences[2])
    many = torch.cat(list(sequences[0]))
    if action == "grid":
        assert len(many.unique()) > 5  # spread over the grid
    else:
        assert many.min() < -0.5 and many.max() > 0.5


def test_center_agent(tiny_model, tiny_clips):
    grid_env = make_vec(tiny_model, tiny_clips, "grid")
    obs = as_tensors(grid_env.reset())
    actions = CenterAgent(grid_env.action_space).act(obs)
    check_actions(actions, grid_env.action_space, N_ENVS)
    assert actions.tolist() == [24] * N_ENVS
    corners = grid_env.episodes.corners(actions)
    assert corners.tolist() == [[20, 20]] * N_ENVS  # (64 - 24) / 2: centred in the frame
    lattice = grid_env.episodes.corners(torch.arange(49)).float()
    centre = torch.tensor([20.0, 20.0])
    assert (lattice - centre).norm(dim=1).argmin() == 24  # the centre-most cell of the lattice

    box_env = make_vec(tiny_model, tiny_clips, "continuous")
    actions = CenterAgent(box_env.action_space).act(as_tensors(box_env.reset()))
    check_actions(actions, box_env.action_space, N_ENVS)
    assert box_env.episodes.corners(actions).tolist() == [[20, 20]] * N_ENVS


def hand_made_clips() -> ClipSet:
    """Two videos of T = 4 whose target boxes (16 px) move; corners chosen by hand."""
    corners = torch.tensor([[[40.0, 8.0], [2.0, 44.0], [24.0, 24.0], [46.0, 46.0]],
                            [[0.0, 0.0], [10.0, 30.0], [30.0, 10.0], [47.0, 3.0]]])
    boxes = torch.cat([corners, corners + 16], dim=-1)
    frames = torch.zeros(2, 4, 3, 64, 64, dtype=torch.uint8)
    return ClipSet(frames, torch.tensor([1, 3]), boxes)


def test_oracle_agent_on_the_grid(tiny_model):
    clips = hand_made_clips()
    episodes = FocusEpisodes(tiny_model, clips, EnvConfig(action="grid", reward="conf"))
    agent = OracleAgent(episodes)
    obs = episodes.begin(torch.tensor([0, 1]))
    lattice = grid_corners(torch.arange(49), 7, (64, 64), 24).float()  # (49, 2) x0, y0
    for t in range(clips.num_frames):
        actions = agent.act(obs)
        check_actions(actions, episodes.action_space, 2)
        centres = (clips.boxes[:, t, :2] + clips.boxes[:, t, 2:]) / 2
        for i in range(2):
            x0, y0 = lattice[actions[i]]
            # the cell's patch contains the target centre, and is the cell centred nearest to it
            assert x0 <= centres[i, 0] <= x0 + 24 and y0 <= centres[i, 1] <= y0 + 24
            assert actions[i] == ((lattice + 12) - centres[i]).norm(dim=1).argmin()
        obs = episodes.step(actions).observation
    # the hand-made case of frame 2 of video 0: target centre (32, 32) -> the middle cell
    episodes.begin(torch.tensor([0]))
    episodes.t = 2
    assert agent.act(episodes.observation()).tolist() == [24]


@pytest.mark.parametrize("continuous", ["centre", "corner"])
def test_oracle_agent_continuous(tiny_model, continuous):
    clips = hand_made_clips()
    episodes = FocusEpisodes(tiny_model, clips, EnvConfig(action="continuous", reward="conf", continuous=continuous))
    agent = OracleAgent(episodes)
    obs = episodes.begin(torch.tensor([1, 0]))
    for t in range(clips.num_frames):
        actions = agent.act(obs)
        check_actions(actions, episodes.action_space, 2)
        boxes = clips.boxes[[1, 0], t]
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        result = episodes.step(actions)
        # the patch is centred on the target, moved inward at the border
        expected = (centres - 12).round().clamp(0, 40)
        torch.testing.assert_close(result.corners.float(), expected)
        obs = result.observation
    assert OracleAgent(episodes).predict({k: v.numpy() for k, v in obs.items()})[1] is None


def test_oracle_needs_boxes(tiny_model, tiny_clips):
    clips = ClipSet(tiny_clips.frames, tiny_clips.labels)
    episodes = FocusEpisodes(tiny_model, clips, EnvConfig())
    obs = episodes.begin(torch.tensor([0]))
    with pytest.raises(ValueError, match="boxes"):
        OracleAgent(episodes).act(obs)


@pytest.mark.parametrize("action", ["grid", "continuous"])
def test_baselines_follow_the_focus_agent_interface(tiny_model, tiny_clips, action):
    env = make_vec(tiny_model, tiny_clips, action)
    obs = env.reset()
    for agent in (RandomAgent(env.action_space, 0), CenterAgent(env.action_space), OracleAgent(env.episodes)):
        assert isinstance(agent, FocusAgent)
        agent.reset(N_ENVS)
        actions, state = agent.predict(obs, deterministic=True)
        assert state is None and isinstance(actions, np.ndarray) and len(actions) == N_ENVS
        assert all(env.action_space.contains(a) for a in actions)
        env.step(actions)


# ---- costs and the extractor ----------------------------------------------------------------------
def test_policy_gmacs(tiny_model, tiny_clips):
    model, env = build("ppo", tiny_model, tiny_clips)
    space = env.observation_space
    gmacs = policy_gmacs(SB3Agent(model), space, torch.device("cpu"))
    channels, h, w = space["glance"].shape  # 24 x 4 x 4
    extra = space["memory"].shape[0] + 1
    conv, fc = channels * 32 * h * w, (32 * h * w + extra) * 32
    actor = 32 * 49  # net_arch [] : the action head reads pi's features directly; no value head in act()
    assert gmacs == pytest.approx((conv + fc + actor) / 1e9, rel=0.02)
    assert policy_gmacs(RandomAgent(env.action_space), space, torch.device("cpu")) == 0.0
    assert policy_gmacs(CenterAgent(env.action_space), space, torch.device("cpu")) == 0.0


@pytest.mark.parametrize("observe_memory", [True, False])
def test_glance_extractor(tiny_model, tiny_clips, observe_memory):
    env = make_vec(tiny_model, tiny_clips, observe_memory=observe_memory)
    space = env.observation_space
    torch.manual_seed(0)
    extractor = GlanceExtractor(space, features_dim=48, conv_channels=8)
    assert extractor.features_dim == 48
    obs = as_tensors(env.reset())
    env.step(np.arange(N_ENVS))
    obs = as_tensors(env.step(np.arange(N_ENVS))[0])
    out = extractor(obs)
    assert out.shape == (N_ENVS, 48) and (out >= 0).all()
    assert set(obs) == ({"glance", "progress", "memory"} if observe_memory else {"glance", "progress"})
    # pi reads every observed key: changing any one changes its features (a random perturbation: the
    # glance map is normalised per observation, so a uniform shift of it is invisible by design)
    noise = torch.Generator().manual_seed(1)
    for key in obs:
        changed = dict(obs)
        changed[key] = obs[key] + torch.randn(obs[key].shape, generator=noise)
        assert not torch.allclose(extractor(changed), out), key
    # once the map's variance is well above GroupNorm's eps, its scale and offset do not matter
    big = {**obs, "glance": obs["glance"] * 1000.0}
    torch.testing.assert_close(extractor({**obs, "glance": obs["glance"] * 3000.0 + 2.0}), extractor(big),
                               atol=1e-4, rtol=1e-4)
    if not observe_memory:  # an extra key it was not built for is ignored
        memory = torch.randn(N_ENVS, tiny_model.classifier.hidden_size)
        torch.testing.assert_close(extractor({**obs, "memory": memory}), out)


def test_random_agent_places_continuous_patches_at_uniform_corners(tiny_model, tiny_clips):
    """With the frame and patch sizes, a continuous random action lands on the authors' uniform top-left corner,
    which the env maps back exactly; without them it is a uniform action (clamped near the borders)."""
    from adafocus.backbones import random_corners

    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig(action="continuous", reward="conf"))
    obs = {"glance": torch.zeros(4000, 1)}
    agent = RandomAgent(episodes.action_space, 3, tiny_model.frame_shape, 24)
    corners = episodes.corners(agent.act(obs))
    expected = random_corners(torch.rand(4000, 2, generator=torch.Generator().manual_seed(3)), (64, 64), 24)
    torch.testing.assert_close(corners, expected)
    plain = episodes.corners(RandomAgent(episodes.action_space, 3).act(obs))
    assert float((plain == 0).any(-1).float().mean()) > 2 * float((corners == 0).any(-1).float().mean())
    # the same corners when the env reads continuous actions as corner fractions
    config = EnvConfig(action="continuous", reward="conf", continuous="corner")
    corner_env = FocusEpisodes(tiny_model, tiny_clips, config)
    agent = RandomAgent(corner_env.action_space, 3, tiny_model.frame_shape, 24, config)
    torch.testing.assert_close(corner_env.corners(agent.act(obs)), expected)


def test_paper_ppo_regresses_normalised_returns_without_clipping(tiny_model, tiny_clips, monkeypatch):
    """The authors' update: returns z-normalised over all T x B steps (unbiased std, + 1e-5), advantage =
    normalised return - V, no gradient clipping, Adam eps 1e-8; through the registry like any algorithm."""
    from sb3_contrib import RecurrentPPO

    from adafocus.agents import resolve_algorithm
    from adafocus.agents.paper_ppo import PaperPPO

    assert resolve_algorithm("paper_ppo") is PaperPPO
    vec = AdaFocusVecEnv(FocusEpisodes(tiny_model, tiny_clips, EnvConfig(reward="conf")), 4, seed=0)
    seen = {}

    def record(self):
        buffer = self.rollout_buffer
        seen.update(returns=buffer.returns.copy(), advantages=buffer.advantages.copy(), values=buffer.values.copy())

    algo = PaperPPO("MultiInputPolicy", vec, n_steps=tiny_clips.num_frames, batch_size=8, seed=0, device="cpu")
    assert algo.max_grad_norm == float("inf") and not algo.normalize_advantage
    assert algo.policy.optimizer.defaults["eps"] == 1e-8
    monkeypatch.setattr(RecurrentPPO, "train", record)
    algo.learn(4 * tiny_clips.num_frames)
    returns = seen["returns"]
    assert returns.mean() == pytest.approx(0.0, abs=1e-6)
    assert returns.std(ddof=1) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(seen["advantages"], returns - seen["values"], atol=1e-6)


# ---- the paper's pi: its own GRU ------------------------------------------------------------------------
def paper_pi_reference(policy, glances: torch.Tensor, progress: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' pi written from its equations over an episode: encoder (1x1 conv, ReLU, linear on
    [map, t/T], ReLU), GRU from a zero state, actor logits and critic value at every step.
    glances (T, N, C, h, w), progress (T, N, 1) -> logits (T, N, A), values (T, N)."""
    conv = policy.features_extractor.conv[-3]
    linear = policy.features_extractor.fuse[0]
    gru = policy.lstm_actor.gru
    w_ih, w_hh, b_ih, b_hh = gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0
    h = torch.zeros(glances.shape[1], gru.hidden_size)
    logits, values = [], []
    for glance, p in zip(glances, progress):
        x = torch.relu(torch.einsum("oc,nchw->nohw", conv.weight[:, :, 0, 0], glance) + conv.bias[:, None, None])
        x = torch.relu(torch.cat([x.flatten(1), p], 1) @ linear.weight.T + linear.bias)
        r_i, z_i, n_i = (x @ w_ih.T + b_ih).chunk(3, 1)
        r_h, z_h, n_h = (h @ w_hh.T + b_hh).chunk(3, 1)
        r, z = torch.sigmoid(r_i + r_h), torch.sigmoid(z_i + z_h)
        h = (1 - z) * torch.tanh(n_i + r * n_h) + z * h
        logits.append(h @ policy.action_net.weight.T + policy.action_net.bias)
        values.append((h @ policy.value_net.weight.T + policy.value_net.bias)[:, 0])
    return torch.stack(logits), torch.stack(values)


def test_paper_pi_equals_its_equations_step_by_step_and_replayed(tiny_model, tiny_clips):
    """Acting (one step at a time, carrying the GRU state) and the update's replay of a whole episode from a
    zero state both compute the authors' pi."""
    from sb3_contrib.common.recurrent.type_aliases import RNNStates

    env = make_vec(tiny_model, tiny_clips, reward="conf", observe_memory=False)
    model = make_algorithm("paper_ppo", env, replace(small_policy("paper_ppo"), glance_norm=False),  # the authors' layout
                           tiny_clips.num_frames, seed=0, device="cpu")
    policy = model.policy
    policy.set_training_mode(False)
    episodes = env.episodes
    obs = episodes.begin(torch.arange(N_ENVS))
    agent = SB3Agent(model)
    agent.reset(N_ENVS)
    glances, progress, actions, probs = [], [], [], []
    for _ in range(tiny_clips.num_frames):
        glances.append(obs["glance"])
        progress.append(obs["progress"])
        features = policy.extract_features(obs)
        with torch.no_grad():
            hidden = agent.state[0] if agent.state is not None else torch.zeros(1, N_ENVS, policy.lstm_actor.hidden_size)
            out, _ = policy.lstm_actor.gru(features[None], hidden)
            probs.append(torch.softmax(policy.action_net(out[0]), -1))
        action = agent.act(obs, deterministic=True)
        actions.append(action)
        obs = episodes.step(action).observation
    logits, values = paper_pi_reference(policy, torch.stack(glances), torch.stack(progress))
    torch.testing.assert_close(torch.stack(probs), logits.softmax(-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.stack(actions), logits.argmax(-1))  # pi's argmax, as the authors evaluate

    # the update's replay: the whole sequence (sequences of one env are contiguous), reset at its start
    t = tiny_clips.num_frames
    flat = {k: torch.stack(v).transpose(0, 1).flatten(0, 1) for k, v in (("glance", glances), ("progress", progress))}
    zeros = torch.zeros(1, N_ENVS, policy.lstm_actor.hidden_size)
    starts = torch.zeros(N_ENVS, t)
    starts[:, 0] = 1
    chosen = torch.stack(actions).T.flatten()
    value, log_prob, _ = policy.evaluate_actions(flat, chosen, RNNStates((zeros, zeros), (zeros, zeros)),
                                                 starts.flatten())
    expected = logits.log_softmax(-1).gather(-1, torch.stack(actions)[..., None])[..., 0]
    torch.testing.assert_close(log_prob.view(N_ENVS, t), expected.T, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(value.view(N_ENVS, t), values.T, atol=1e-5, rtol=1e-4)
    value.sum().backward()  # the critic's loss reaches the GRU and the encoder (one trunk, as the authors')
    assert policy.lstm_actor.gru.weight_hh_l0.grad.abs().sum() > 0
    assert policy.features_extractor.fuse[0].weight.grad.abs().sum() > 0


def test_paper_continuous_pi_has_sigmoid_mean_fixed_std_and_clipped_samples(tiny_model, tiny_clips):
    """--policy.action_std: the authors' parameterisation (mean 2 sigmoid - 1 on [-1, 1], std 2 x action_std
    in those units, fixed; samples clipped before their log-probability)."""
    env = make_vec(tiny_model, tiny_clips, "continuous", continuous="corner")
    policy = replace(small_policy("paper_ppo"), action_std=0.25)
    model = make_algorithm("paper_ppo", env, policy, tiny_clips.num_frames, seed=0, device="cpu")
    pi = model.policy
    assert not pi.log_std.requires_grad
    torch.testing.assert_close(pi.log_std.exp(), torch.full((2,), 0.5))
    latent = torch.randn(4096, pi.lstm_actor.hidden_size) * 5
    dist = pi._get_action_dist_from_latent(latent)
    mean = 2 * torch.sigmoid(pi.action_net(latent)) - 1
    torch.testing.assert_close(dist.mode(), mean)
    samples = dist.get_actions()
    assert samples.abs().max() <= 1.0 and (samples.abs() == 1.0).any()  # clipped, and clipping happens
    with pytest.raises(ValueError, match="action_std"):
        make_algorithm("ppo", env, policy, tiny_clips.num_frames, device="cpu")
    with pytest.raises(ValueError, match="Box"):
        make_algorithm("paper_ppo", make_vec(tiny_model, tiny_clips), policy, tiny_clips.num_frames, device="cpu")


def test_stage3_rollouts_start_a_recurrent_pi_from_its_zero_state(tiny_model, tiny_clips):
    """Stage III rolls pi out batch after batch: a recurrent pi must start every video from its zero state,
    so the same batch gives the same patches and loss whatever came before."""
    import copy

    from adafocus.stages import PolicyTask

    env = make_vec(tiny_model, tiny_clips, reward="conf", observe_memory=False)
    agent = SB3Agent(make_algorithm("gru_ppo", env, small_policy("gru_ppo"), tiny_clips.num_frames, device="cpu"))
    model = copy.deepcopy(tiny_model)
    task = PolicyTask(model, agent, FocusEpisodes(model, tiny_clips, EnvConfig(reward="conf", observe_memory=False)))
    batch = {"frames": tiny_clips.frames, "label": tiny_clips.labels}
    first = task(batch)[0]
    other = {"frames": tiny_clips.frames.flip(0), "label": tiny_clips.labels.flip(0)}
    task(other)
    torch.testing.assert_close(task(batch)[0], first)
