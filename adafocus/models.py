"""The run's network: an AdaFocus model built from a run config and a checkpoint, its episodes and step cost."""
from __future__ import annotations

from pathlib import Path

import torch

from adafocus.backbones import AdaFocusModel, ClipFocusModel, StepCost, clip_cost, step_cost
from adafocus.data.clips import ClipSet
from adafocus.envs import ClipEpisodes, EnvConfig, FocusEpisodes

from . import checkpoint
from .config import RunConfig, to_dict

Model = AdaFocusModel | ClipFocusModel


def clip_level(config: RunConfig) -> bool:
    """Whether the run is clip-level AdaFocus (Section 4.2: one patch per clip, linear f_C)."""
    return config.model.glance_frames is not None


def build_model(config: RunConfig, init: Path | None, device: torch.device | str = "cpu") -> Model:
    """An AdaFocus network of the run's shape (initialised from the run's seed), with weights from a
    checkpoint of an earlier stage: per frame (Section 4.1) or per clip (Section 4.2, ``glance_frames``)."""
    torch.manual_seed(config.seed)
    model = (ClipFocusModel if clip_level(config) else AdaFocusModel)(config.model)
    if init is not None:
        state = checkpoint.load(init)
        checkpoint.load_model_state(model, state, init, to_dict(config.model))
    return model.to(device)


def make_episodes(model: Model, clips: ClipSet | None, env_config: EnvConfig, device: torch.device | str,
                  step_gmacs: float = 0.0, num_frames: int | None = None) -> FocusEpisodes | ClipEpisodes:
    """The batched episodes of the model's form: one step per frame, or one step per clip. With ``clips``
    None, the videos are loaded later (:meth:`~adafocus.envs.FocusEpisodes.load`) and ``num_frames`` gives T."""
    kind = ClipEpisodes if isinstance(model, ClipFocusModel) else FocusEpisodes
    return kind(model, clips, env_config, device, step_gmacs, num_frames=num_frames)


def model_cost(model: Model, frames: int) -> StepCost:
    """GMACs of one env step: one frame (per-frame AdaFocus) or one clip of ``frames`` frames."""
    return clip_cost(model, frames) if isinstance(model, ClipFocusModel) else step_cost(model)

