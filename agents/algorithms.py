"""Stage II's RL algorithms built, saved and loaded (safely), behind the FocusAgent interface."""
from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.save_util import recursive_getattr
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from .base import FocusAgent
from .config import PolicyConfig
from .defaults import ENV_ID, algorithm_arguments, parse_overrides, ppo_family
from .extractor import GlanceExtractor
from .recurrent import GRUPPO
from .registry import base_policy_kwargs, continuous_only, policy_name, resolve_algorithm


def make_algorithm(algo: str, env: VecEnv, policy: PolicyConfig, num_frames: int, seed: int = 0,
                   device: str | torch.device = "auto", tensorboard_log: str | None = None, *,
                   env_id: str = ENV_ID,
                   extractor: tuple[type[BaseFeaturesExtractor], dict[str, Any]] | None = None) -> BaseAlgorithm:
    """Build an SB3 algorithm on a VecEnv of this project: pi on the AdaFocus VecEnv, or a frame policy.

    The algorithm's values come from the ``env_id`` entry of ``agents/hyperparams/<algo>.yml`` under the
    ``policy`` config (the precedence is in :mod:`adafocus.agents.defaults`). ``extractor`` is the policy's
    features extractor and its kwargs (default: pi's :class:`GlanceExtractor` at ``policy``'s widths).
    The PPO family collects ``videos_per_update`` whole episodes of ``num_frames`` steps per update
    (n_steps = videos * steps / n_envs), as the paper's PPO does with 64 videos, and splits them into
    ``minibatches`` (the paper: one); A2C, which makes one gradient step per rollout, takes n_steps from its
    file like its other arguments. The paper's pi (``gru_ppo``, ``paper_ppo``) runs a GRU as wide as
    its encoder (1024 in the paper). Raises ValueError for an algorithm that cannot take the env's actions.
    """
    if continuous_only(algo) and isinstance(env.action_space, spaces.Discrete):
        raise ValueError(f"{algo} needs continuous actions; this env's are discrete ({env.action_space.n} choices): "
                         f"use ppo, a2c, dqn, qrdqn or recurrent_ppo")
    cls = resolve_algorithm(algo)
    values, file_policy_kwargs = algorithm_arguments(algo, cls, env, parse_overrides(policy.hyperparams), env_id)
    extractor_class, extractor_kwargs = extractor or (GlanceExtractor, dict(
        features_dim=policy.features_dim, conv_channels=policy.conv_channels, glance_norm=policy.glance_norm))
    policy_kwargs: dict[str, Any] = {**base_policy_kwargs(cls), **file_policy_kwargs,
                                     "features_extractor_class": extractor_class,
                                     "features_extractor_kwargs": extractor_kwargs}
    if issubclass(cls, GRUPPO):
        policy_kwargs.update(lstm_hidden_size=policy.features_dim, action_std=policy.action_std)
    elif policy.action_std is not None:
        raise ValueError(f"--policy.action_std is the paper's continuous pi (gru_ppo, paper_ppo), not {algo}")
    kwargs: dict[str, Any] = {**values, "learning_rate": policy.learning_rate, "gamma": policy.gamma, "seed": seed,
                              "device": device, "tensorboard_log": tensorboard_log, "verbose": 0}
    if issubclass(cls, OnPolicyAlgorithm):
        kwargs.update(gae_lambda=policy.gae_lambda, ent_coef=policy.ent_coef, vf_coef=policy.vf_coef)
        if ppo_family(cls):  # PaperPPO and GRUPPO too, whose constructors take PPO's arguments as **kwargs
            n_steps = max(1, policy.videos_per_update * num_frames // env.num_envs)
            kwargs.update(n_steps=n_steps, batch_size=max(1, n_steps * env.num_envs // policy.minibatches),
                          n_epochs=policy.n_epochs, clip_range=policy.clip_range)
    return cls(policy_name(cls), env, policy_kwargs=policy_kwargs, **kwargs)


def log_interval(algo: BaseAlgorithm) -> int:
    """``learn``'s ``log_interval`` that logs every on-policy update (A2C's default of 100 updates would leave a
    stage II of 128 updates with one row of progress) and SB3's 4 episodes for off-policy algorithms."""
    return 1 if isinstance(algo, OnPolicyAlgorithm) else 4


class SB3Agent(FocusAgent):
    """A trained SB3 model as a FocusAgent: ``act`` runs its policy on device tensors, no host copy."""

    def __init__(self, model: BaseAlgorithm) -> None:
        self.model = model
        self.policy = model.policy
        self.recurrent = hasattr(self.policy, "lstm_actor")
        self.action_space = model.action_space
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self, num_envs: int) -> None:
        self.state = None

    @torch.no_grad()
    def act(self, observation: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        self.policy.set_training_mode(False)
        obs = {k: v.to(self.policy.device) for k, v in observation.items()}
        if self.recurrent:
            n = obs["glance"].shape[0]
            starts = torch.zeros(n, device=self.policy.device)
            if self.state is None or self.state[0].shape[1] != n:
                lstm = self.policy.lstm_actor
                zeros = torch.zeros(lstm.num_layers, n, lstm.hidden_size, device=self.policy.device)
                self.state, starts = (zeros, zeros.clone()), torch.ones(n, device=self.policy.device)
            actions, self.state = self.policy._predict(obs, self.state, starts, deterministic)
        else:
            actions = self.policy._predict(obs, deterministic=deterministic)
        if isinstance(self.action_space, spaces.Box):
            actions = actions.clamp(-1, 1)
        return actions.to(observation["glance"].device)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        return self.model.predict(observation, state, episode_start, deterministic)


def save_agent(model: BaseAlgorithm, path: Path, config: dict[str, Any]) -> None:
    """SB3's own zip format, plus the run config beside it (``<path>.json``), each written to a temporary
    file and renamed into place, so a crash never leaves a half-written policy."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    model.save(tmp)
    os.replace(tmp, path)
    meta = path.with_suffix(".json")
    tmp = meta.with_name(f".{meta.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, meta)


class PolicyFileError(ValueError):
    """A policy file that cannot be read as the algorithm its config describes; the message names the file."""


# SB3's ``data`` entries worth restoring when training resumes: plain numbers (everything else is rebuilt
# from the project's config, and the pickled entries are never decoded)
RESUMED_COUNTERS = ("num_timesteps", "_n_updates", "_episode_num")


def read_policy_file(path: Path, device: str | torch.device = "cpu"
                     ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """SB3's zip read without running anything from it: ``(state_dicts, variables, data)``.

    The ``.pth`` members (``policy``, its optimizers, ``pytorch_variables``) go through torch's weights-only
    unpickler; SB3's ``data`` is parsed as JSON and its cloudpickled entries (``":serialized:"``: spaces,
    schedules, policy_kwargs, anything else) are dropped undecoded, since unpickling them could run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"policy file {path} does not exist")
    state_dicts: dict[str, Any] = {}
    variables: dict[str, torch.Tensor] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            raw = json.loads(archive.read("data")) if "data" in names else {}
            for name in names:
                if not name.endswith(".pth"):
                    continue
                value = torch.load(io.BytesIO(archive.read(name)), map_location=device, weights_only=True)
                if name == "pytorch_variables.pth":
                    variables = value if isinstance(value, dict) else {}
                else:
                    state_dicts[name[:-len(".pth")]] = value
    except (zipfile.BadZipFile, pickle.UnpicklingError, ValueError, RuntimeError, EOFError, KeyError) as error:
        # UnpicklingError: torch's weights-only loader refused an object that is not a tensor
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PolicyFileError(f"policy file {path} cannot be read as SB3's zip of tensors: {reason}") from error
    if not isinstance(raw, dict):
        raise PolicyFileError(f"policy file {path}: its 'data' member is not a JSON object")
    data = {k: v for k, v in raw.items() if not (isinstance(v, dict) and ":serialized:" in v)}
    return state_dicts, variables, data


def restore_algorithm(algo: BaseAlgorithm, path: Path, training: bool = False) -> dict[str, Any]:
    """Put a saved policy's tensors into ``algo``, an algorithm built afresh from the project's config.

    Only the modules and variables ``algo`` itself declares are read, each by name: the policy (strictly,
    every key and shape), SB3's tensor variables (SAC's entropy coefficient), and with ``training`` the
    optimizers and the step counters, for resuming. Returns the plain JSON values of SB3's ``data``.
    """
    state_dicts, variables, data = read_policy_file(path, algo.device)
    modules, variable_names = algo._get_torch_save_params()
    for name in modules:
        target = recursive_getattr(algo, name)
        is_optimizer = isinstance(target, torch.optim.Optimizer)
        if is_optimizer and not training:
            continue
        if name not in state_dicts:
            raise PolicyFileError(f"policy file {path} has no {name}.pth: it was not saved by a "
                                  f"{type(algo).__name__} of this project")
        try:
            if is_optimizer:
                target.load_state_dict(state_dicts[name])
            else:
                target.load_state_dict(state_dicts[name], strict=True)
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise PolicyFileError(f"policy file {path}: its {name} does not fit the {type(algo).__name__} its config "
                                  f"describes ({first})") from error
    for name in variable_names:
        value, target = variables.get(name), recursive_getattr(algo, name, None)
        if isinstance(value, torch.Tensor) and isinstance(target, torch.Tensor):
            if value.shape != target.shape:
                raise PolicyFileError(f"policy file {path}: its {name} has shape {tuple(value.shape)}, the "
                                      f"{type(algo).__name__} its config describes {tuple(target.shape)}")
            with torch.no_grad():
                target.copy_(value)
    if training:
        for name in RESUMED_COUNTERS:
            if isinstance(data.get(name), int) and not isinstance(data.get(name), bool):
                setattr(algo, name, data[name])
    return data


class _Spaces(gym.Env):
    """An env that only carries observation and action spaces: what a saved policy is rebuilt on."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        raise RuntimeError("this env only carries the spaces a loaded policy is rebuilt on: it cannot run")

    def step(self, action):
        raise RuntimeError("this env only carries the spaces a loaded policy is rebuilt on: it cannot run")


def spaces_env(observation_space: spaces.Space, action_space: spaces.Space, num_envs: int = 1) -> VecEnv:
    """A VecEnv of ``num_envs`` slots with these spaces, to build an algorithm that will only act."""
    return DummyVecEnv([lambda: _Spaces(observation_space, action_space) for _ in range(num_envs)])


def load_algorithm(path: Path, build: Callable[[VecEnv], BaseAlgorithm], observation_space: spaces.Space,
                   action_space: spaces.Space) -> BaseAlgorithm:
    """The one way a saved policy is loaded to act: ``build`` makes the algorithm from the project's config
    on the spaces the caller knows (its env's), then only the file's tensors are read into it.

    SB3's own ``load`` would unpickle parts of the zip (spaces, schedules, policy_kwargs), which runs
    whatever code a crafted file holds; nothing here decodes a pickle."""
    algo = build(spaces_env(observation_space, action_space))
    restore_algorithm(algo, path)
    return algo


def load_agent(path: Path, policy: PolicyConfig, observation_space: spaces.Space, action_space: spaces.Space,
               num_steps: int, device: str | torch.device = "auto", seed: int = 0) -> SB3Agent:
    """pi saved by :func:`save_agent`, rebuilt by :func:`make_algorithm` from ``policy`` (the
    :class:`~adafocus.agents.PolicyConfig` it was trained with) for the env's spaces and episode length
    ``num_steps``; see :func:`load_algorithm`. ``seed``: the one it was trained with (building seeds torch,
    as SB3's own load does)."""
    if isinstance(policy, str):
        raise TypeError("load_agent needs the PolicyConfig the policy was trained with (its policy.json), "
                        "not only an algorithm name: see adafocus.run_folder.load_policy")
    return SB3Agent(load_algorithm(path, lambda env: make_algorithm(policy.algo, env, policy, num_steps, seed, device),
                                   observation_space, action_space))


def policy_gmacs(agent: FocusAgent, observation_space: spaces.Dict, device: torch.device) -> float:
    """GMACs of one act() of ``agent`` for one observation (0 for the non-learned policies)."""
    from adafocus.backbones import count_gmacs

    obs = {k: torch.as_tensor(np.zeros((1, *s.shape), np.float32), device=device) for k, s in observation_space.spaces.items()}
    agent.reset(1)
    gmacs = count_gmacs(lambda o: agent.act(o, deterministic=True), obs)
    agent.reset(1)
    return gmacs
