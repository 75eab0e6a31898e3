"""The batched episode: N videos stepped together as tensors over frozen backbones.

This is the one implementation of the AdaFocus step. :class:`~adafocus.envs.AdaFocusEnv` is a view of it
with N = 1 and :class:`~adafocus.envs.AdaFocusVecEnv` a view with N slots; evaluation drives it directly.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from gymnasium import spaces

from adafocus.backbones import (AdaFocusModel, ClipFocusModel, corner_centres, corner_span, fraction_corners,
                                grid_corners, patch_boxes, patch_corners, random_corners)
from adafocus.data.clips import ClipSet

from .reward import REWARDS, confidence, confidence_gain


@dataclass(frozen=True)
class EnvConfig:
    """How the episode is presented to a policy (the Action and Observation sections of
    :class:`~adafocus.envs.AdaFocusEnv`)."""

    action: Literal["grid", "continuous"] = "grid"
    """``grid``: Discrete(grid^2) patch corners on a grid x grid lattice (the authors' ActivityNet code, 7 x 7);
    ``continuous``: Box([-1, 1]^2) (their Something-Something code; what SAC and TD3 need), values outside
    [-1, 1] clipped"""
    continuous: Literal["centre", "corner"] = "centre"
    """what a continuous action places: ``centre`` the patch centre over the whole frame, the patch clamped
    inside it; ``corner`` the top-left corner as a fraction of its range S - P, as the authors' continuous pi
    (no action pushes the patch against a border)"""
    grid: int = 7
    """the lattice of ``grid`` actions: grid x grid corners"""
    reward: str = "vs_random"
    """``vs_random``, ``prev`` or ``conf`` (:mod:`adafocus.envs.reward`)"""
    observe_memory: bool = True
    """add f_C's recurrent state h_{t-1} to the observation: the history any SB3 algorithm then sees as a
    Markov observation (the paper's pi carries its own GRU instead: ``gru_ppo``, ``paper_ppo``)"""

    def __post_init__(self) -> None:
        if self.action not in ("grid", "continuous"):
            raise ValueError(f"action must be 'grid' or 'continuous', got {self.action!r}")
        if self.continuous not in ("centre", "corner"):
            raise ValueError(f"continuous must be 'centre' or 'corner', got {self.continuous!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        if self.grid < 2:
            raise ValueError(f"grid must be >= 2, got {self.grid}")


def continuous_corners(actions: torch.Tensor, config: EnvConfig, frame_shape: tuple[int, int],
                       patch_size: int) -> torch.Tensor:
    """Continuous actions (N, 2) in [-1, 1] (clipped) -> patch top-left corners (N, 2), as ``config.continuous``
    reads them."""
    fractions = (actions.float().clamp(-1, 1) + 1) / 2
    if config.continuous == "corner":
        return fraction_corners(fractions, frame_shape, patch_size)
    return patch_corners(fractions, frame_shape, patch_size)


def corner_actions(corners: torch.Tensor, config: EnvConfig, frame_shape: tuple[int, int],
                   patch_size: int) -> torch.Tensor:
    """The continuous actions (N, 2) that :func:`continuous_corners` maps to these in-frame corners (N, 2)."""
    if config.continuous == "corner":
        span = corner_span(frame_shape, patch_size, corners.device)
        fractions = ((corners.float() + 0.5) / span).clamp(max=1.0)  # + 0.5: the middle of the cell floor reads
    else:
        fractions = corner_centres(corners, frame_shape, patch_size)
    return fractions * 2 - 1


@dataclass
class FocusStep:
    """What one step of N focus episodes produced (one patch per episode), as tensors on the backbones'
    device; a frame-selection step is :class:`~adafocus.envs.frame_episodes.FrameStep`."""

    observation: dict[str, torch.Tensor]
    reward: torch.Tensor  # (N,)
    logits: torch.Tensor  # (N, K) f_C's prediction after this step
    confidence: torch.Tensor  # (N,) c_t on the true class
    corners: torch.Tensor  # (N, 2) top-left of the patch taken
    local: torch.Tensor  # (N, D_L) f_L's features of that patch
    done: bool


class EpisodeBatch:
    """What every kind of batched episode shares: the frozen model, the videos in play on the device
    (``clips``, replaced by :meth:`load` as a stream hands out new ones) and f_G's maps of those videos,
    computed once when they are loaded (``glance_maps``, as ``model.glance`` returns them), never per step.

    ``begin(video)`` starts episodes on loaded videos by position, so the in-memory face (load a set once,
    begin on any of its videos) and the streaming face (load the next N videos, begin on all of them) are
    the same code.
    """

    num_steps: int  # episode length

    def __init__(self, model: AdaFocusModel | ClipFocusModel, clips: ClipSet | None, config: EnvConfig,
                 device: torch.device | str, step_gmacs: float, batch_size: int, num_frames: int | None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.config = config
        self.step_gmacs = step_gmacs
        self.batch_size = batch_size
        self.patch_size = model.config.patch_size
        if clips is None:  # no videos yet: load one black video of the right shape, which sets the spaces
            if num_frames is None:
                raise ValueError("episodes built without clips need num_frames")
            h, w = model.frame_shape
            clips = ClipSet(torch.zeros(1, num_frames, 3, h, w, dtype=torch.uint8), torch.zeros(1, dtype=torch.long))
        self.num_frames = clips.num_frames
        self.load(clips)
        self.video = torch.zeros(0, dtype=torch.long, device=self.device)
        self.t = 0

    # ---- videos ---------------------------------------------------------------------------------
    def load(self, clips: ClipSet, rows: torch.Tensor | None = None) -> None:
        """Put ``clips`` in play: all of them replacing the loaded ones, or into the loaded videos ``rows``
        (in place, for frame policies whose rows restart one by one). f_G runs on them here."""
        if tuple(clips.frame_size) != self.model.frame_shape:
            raise ValueError(f"clips are {clips.frame_size[0]}x{clips.frame_size[1]} but the model expects "
                             f"{self.model.frame_shape[0]}x{self.model.frame_shape[1]} frames")
        if clips.num_frames != self.num_frames:
            raise ValueError(f"clips have {clips.num_frames} frames, these episodes {self.num_frames}")
        clips = clips.to(self.device)
        features = clips.features
        reuse = (features is not None and clips.features_of is self.model  # computed by this frozen model before
                 and set(features) == getattr(self, "_feature_names", None))  # for episodes of this kind
        if not reuse:
            with torch.no_grad():
                features = self.video_features(clips)
            self._feature_names = set(features)
        clips = replace(clips, features=features, features_of=self.model)
        if rows is None:
            self.clips = clips
            for name, value in features.items():  # the same tensors: a row load updates both
                setattr(self, name, value)
            return
        self.clips.assign(rows.to(self.device), clips)

    def video_features(self, clips: ClipSet) -> dict[str, torch.Tensor]:
        """Per-video tensors computed once when videos are loaded: f_G's maps (``glance_maps``)."""
        return {"glance_maps": torch.cat([self.model.glance(clips.frames[i:i + self.batch_size])
                                          for i in range(0, len(clips), self.batch_size)])}

    @property
    def num_envs(self) -> int:
        return len(self.video)

    @property
    def num_videos(self) -> int:
        """Videos loaded now."""
        return len(self.clips)

    def video_ids(self) -> torch.Tensor:
        """The dataset index of each episode's video (its loaded position when unknown)."""
        return self.clips.video_ids()[self.video]

    def patch_boxes(self, corners: torch.Tensor) -> torch.Tensor:
        return patch_boxes(corners, self.patch_size)


class FocusEpisodes(EpisodeBatch):
    """N AdaFocus episodes over the loaded videos, with f_G's features computed once per video when it is loaded.

    At step t the observation is f_G's spatial map of frame t (``glance``), f_C's state (``memory``) and
    t / T (``progress``); the action places a P x P patch; f_L reads the patch at full resolution and f_C
    fuses [f_G pooled, f_L]; the reward is a confidence gain. Every episode lasts T steps.
    """

    def __init__(self, model: AdaFocusModel, clips: ClipSet | None = None, config: EnvConfig = EnvConfig(),
                 device: torch.device | str = "cpu", step_gmacs: float = 0.0, batch_size: int = 64,
                 num_frames: int | None = None) -> None:
        super().__init__(model, clips, config, device, step_gmacs, batch_size, num_frames)
        self.num_steps = self.num_frames  # one step per frame
        self.observation_space, self.action_space = self._spaces()

    def video_features(self, clips: ClipSet) -> dict[str, torch.Tensor]:
        features = super().video_features(clips)  # glance_maps: (V, T, C, h, w)
        return {**features, "glance_pooled": features["glance_maps"].mean(dim=(-2, -1))}

    def _spaces(self) -> tuple[spaces.Dict, spaces.Space]:
        channels, h, w = self.glance_maps.shape[2:]
        obs = {"glance": spaces.Box(-np.inf, np.inf, (channels, h, w), np.float32),
               "progress": spaces.Box(0.0, 1.0, (1,), np.float32)}
        if self.config.observe_memory:
            obs["memory"] = spaces.Box(-1.0, 1.0, (self.model.classifier.hidden_size,), np.float32)
        if self.config.action == "grid":
            action = spaces.Discrete(self.config.grid ** 2)
        else:
            action = spaces.Box(-1.0, 1.0, (2,), np.float32)
        return spaces.Dict(obs), action

    # ---- actions -------------------------------------------------------------------------------
    def corners(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions (N,) or (N, 2) -> patch top-left corners (N, 2)."""
        if self.config.action == "grid":
            return grid_corners(actions.long(), self.config.grid, self.model.frame_shape, self.patch_size)
        return continuous_corners(actions, self.config, self.model.frame_shape, self.patch_size)

    def target_boxes(self) -> torch.Tensor:
        """Ground-truth target boxes (N, 4) of the current frame (synthetic data only)."""
        if self.clips.boxes is None:
            raise ValueError("these clips have no target boxes: the oracle needs annotated (synthetic) videos")
        return self.clips.boxes[self.video, min(self.t, self.num_frames - 1)]

    # ---- episode -------------------------------------------------------------------------------
    def observation(self) -> dict[str, torch.Tensor]:
        t = min(self.t, self.num_frames - 1)  # the terminal observation repeats the last frame's glance
        n = len(self.video)
        obs = {"glance": self.glance_maps[self.video, t],
               "progress": torch.full((n, 1), self.t / self.num_frames, device=self.device)}
        if self.config.observe_memory:
            obs["memory"] = self.hidden
        return obs

    def begin(self, video: torch.Tensor, reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Start N episodes on loaded videos ``video`` (N,); ``reference`` (N, T, 2) are uniform draws in [0, 1)
        placing the random patches the ``vs_random`` reward compares against (:func:`random_corners`, the
        authors' uniform top-left corners; drawn here when not given)."""
        self.video = video.to(self.device).long()
        n = len(self.video)
        if reference is None and self.config.reward == "vs_random":
            reference = torch.rand(n, self.num_frames, 2, device=self.device)
        self.reference = None if reference is None else reference.to(self.device, torch.float32)
        self.labels = self.clips.labels[self.video]
        self.hidden = torch.zeros(n, self.model.classifier.hidden_size, device=self.device)
        self.previous = torch.full((n,), 1.0 / self.model.config.num_classes, device=self.device)
        self.t = 0
        return self.observation()

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> FocusStep:
        """Advance all N episodes by one frame with the given actions (validated by the caller)."""
        if self.t >= self.num_frames:
            raise RuntimeError("the episodes are over: call begin() first")
        n, t = len(self.video), self.t
        frames = self.clips.frames[:, t]  # a view: patches are gathered from it by video index, no frame copy
        corners = self.corners(actions.to(self.device))
        pooled = self.glance_pooled[self.video, t]
        hidden = self.hidden
        if self.config.reward == "vs_random":
            # chosen and random patch in ONE f_L / f_C pass, through the same f_C state
            ref = random_corners(self.reference[:, t], self.model.frame_shape, self.patch_size)
            local = self.model.focus(frames, torch.cat([corners, ref]), self.video.repeat(2))
            logits2, hidden2 = self.model.classifier.step(pooled.repeat(2, 1), local, hidden.repeat(2, 1))
            logits, self.hidden, local = logits2[:n], hidden2[:n], local[:n]
            reference_conf = confidence(logits2[n:], self.labels)
        else:
            local = self.model.focus(frames, corners, self.video)
            logits, self.hidden = self.model.classifier.step(pooled, local, hidden)
            reference_conf = None
        conf = confidence(logits, self.labels)
        reward = confidence_gain(self.config.reward, conf, reference_conf, self.previous)
        self.previous = conf
        self.t += 1
        return FocusStep(self.observation(), reward, logits, conf, corners, local, self.t >= self.num_frames)

    def replay_logits(self, local: list[torch.Tensor]) -> torch.Tensor:
        """f_C (with gradients) over the f_L features a rollout produced, [(N, D_L)] * T -> logits (N, T, K):
        stage III trains f_C on what the policy showed it."""
        return self.model.classifier(self.glance_pooled[self.video], torch.stack(local, dim=1))[0]
