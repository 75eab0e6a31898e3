"""Ready-made objects on the embedded default: what ``gymnasium.make("adafocus.envs:AdaFocus-v0")`` builds."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from adafocus.backbones import AdaFocusModel, step_cost
from adafocus.envs import AdaFocusEnv, EnvConfig, FocusEpisodes

from . import checkpoint
from .config import preset, to_dict
from .runs import clip_set, data_paths


def make_default_env(checkpoint_path: str | Path | None = None, split: str = "train", preset_name: str = "synthetic",
                     render_mode: str | None = None, device: str = "cpu", seed: int = 0,
                     progress: bool = False, **env_options) -> AdaFocusEnv:
    """An :class:`AdaFocusEnv` on the synthetic benchmark (generated on first use) with the CPU preset's
    backbones: randomly initialised from ``seed``, or loaded from a stage I / III ``checkpoint_path``.
    ``env_options`` override :class:`EnvConfig` fields (``action``, ``grid``, ``reward``, ``observe_memory``).
    """
    config = preset(preset_name)
    torch.manual_seed(seed)
    model = AdaFocusModel(config.model)
    if checkpoint_path is not None:
        checkpoint.load_model_state(model, checkpoint.load(Path(checkpoint_path)), Path(checkpoint_path),
                                    to_dict(config.model))
    clips = clip_set(config, data_paths(config, progress), split, progress)
    env_config = replace(EnvConfig(), **env_options)
    episodes = FocusEpisodes(model, clips, env_config, device, step_cost(model).total)
    return AdaFocusEnv(episodes, render_mode=render_mode)
