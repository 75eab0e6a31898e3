"""Ready-made objects on the embedded default: what ``gymnasium.make("adafocus:AdaFocus-v0")`` (and
``AdaFocusTSM-v0``, the clip-level env of Section 4.2 on the motion variant) builds."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from adafocus.envs import AdaFocusEnv, EnvConfig

from .config import preset
from .models import build_model, clip_level, make_episodes, model_cost
from .run_data import data_paths, episode_source


def make_default_env(checkpoint_path: str | Path | None = None, split: str = "train", preset_name: str = "synthetic",
                     render_mode: str | None = None, device: str = "cpu", seed: int = 0,
                     progress: bool = False, **env_options) -> AdaFocusEnv:
    """An :class:`AdaFocusEnv` streaming a synthetic preset's benchmark (generated on first use) with its backbones:
    randomly initialised from ``seed``, or loaded from a stage I / III ``checkpoint_path``. ``env_options``
    override :class:`EnvConfig` fields (``action``, ``grid``, ``reward``, ``observe_memory``); the per-frame
    env starts from :class:`EnvConfig`'s defaults, the clip-level one from its preset's (continuous actions).
    """
    config = replace(preset(preset_name), seed=seed)
    model = build_model(config, Path(checkpoint_path) if checkpoint_path is not None else None)
    source = episode_source(config, data_paths(config, progress), split, 1, device, progress)
    env_config = replace(config.env if clip_level(config) else EnvConfig(), **env_options)
    frames = config.data.frames
    episodes = make_episodes(model, None, env_config, device, model_cost(model, frames).total, frames)
    return AdaFocusEnv(episodes, render_mode=render_mode, source=source, seed=seed)
