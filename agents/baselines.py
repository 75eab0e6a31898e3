"""Non-learned focus policies: random, center, oracle. They are baselines in every evaluation."""
from __future__ import annotations

import torch
from gymnasium import spaces

from adafocus.backbones import patch_corners, random_corners
from adafocus.envs import EnvConfig
from adafocus.envs.episodes import corner_actions

from .base import FocusAgent


class RandomAgent(FocusAgent):
    """A random patch location at every step: a uniform grid cell, or, for continuous actions, the authors'
    uniform top-left corner (:func:`~adafocus.backbones.random_corners`) when the frame and patch sizes are
    given, as an action of the env's ``continuous`` kind (else a uniform action in [-1, 1]^2, which clamps
    most large centred patches onto a border)."""

    def __init__(self, action_space: spaces.Space, seed: int = 0, frame_size: tuple[int, int] | None = None,
                 patch_size: int | None = None, env_config: EnvConfig = EnvConfig()) -> None:
        self.action_space = action_space
        self.generator = torch.Generator().manual_seed(seed)
        self.geometry = (frame_size, patch_size) if frame_size is not None and patch_size is not None else None
        self.env_config = env_config

    def act(self, observation: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        n = observation["glance"].shape[0]
        if isinstance(self.action_space, spaces.Discrete):
            actions = torch.randint(self.action_space.n, (n,), generator=self.generator)
        elif self.geometry is not None:
            frame_size, patch_size = self.geometry
            corners = random_corners(torch.rand(n, 2, generator=self.generator), frame_size, patch_size)
            actions = corner_actions(corners, self.env_config, frame_size, patch_size)
        else:
            actions = torch.rand(n, 2, generator=self.generator) * 2 - 1
        return actions.to(observation["glance"].device)


class CenterAgent(FocusAgent):
    """The patch at the centre of the frame (on a grid: the cell closest to it)."""

    def __init__(self, action_space: spaces.Space) -> None:
        self.action_space = action_space

    def act(self, observation: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        n, device = observation["glance"].shape[0], observation["glance"].device
        if isinstance(self.action_space, spaces.Discrete):
            grid = int(round(self.action_space.n ** 0.5))
            middle = (grid - 1) // 2
            return torch.full((n,), middle * grid + middle, dtype=torch.long, device=device)
        return torch.zeros(n, 2, device=device)


class OracleAgent(FocusAgent):
    """Follows the annotated target: the patch whose centre is nearest the target's centre (synthetic data).

    It reads the ground truth from the episodes it acts in, not from the observation.
    """

    def __init__(self, episodes) -> None:
        self.episodes = episodes
        self.action_space = episodes.action_space

    def act(self, observation: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        ep = self.episodes
        boxes = ep.target_boxes()
        height, width = ep.model.frame_shape
        size = torch.tensor([width, height], device=boxes.device, dtype=torch.float32)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / size
        wanted = patch_corners(centres, (height, width), ep.patch_size)  # (N, 2) x0, y0
        if isinstance(self.action_space, spaces.Box):
            return corner_actions(wanted, ep.config, (height, width), ep.patch_size)
        wanted = wanted.float()
        cells = torch.arange(self.action_space.n, device=boxes.device)
        lattice = ep.corners(cells).float()  # (G^2, 2)
        return torch.cdist(wanted, lattice).argmin(dim=1)
