"""One interface for every focus policy, learned or not."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch


class FocusAgent(ABC):
    """A policy pi over AdaFocus observations.

    ``act`` is the batched path: observations as tensors on the backbones' device in, actions as tensors
    out, no host copy (evaluation and stage III use it). ``predict`` is stable-baselines3's signature on
    numpy, so any agent can drive a VecEnv or ``evaluate_policy`` like an SB3 model.
    """

    @abstractmethod
    def act(self, observation: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        """(N, ...) observations -> (N,) discrete or (N, 2) continuous actions."""

    def reset(self, num_envs: int) -> None:
        """Called before N new episodes start (recurrent agents clear their state)."""

    def predict(self, observation: dict[str, np.ndarray], state=None, episode_start=None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:
        obs = {k: torch.as_tensor(v) for k, v in observation.items()}
        return self.act(obs, deterministic).cpu().numpy(), None
