"""The clip-level episode of Section 4.2: one action places one patch for the whole clip.

Same contract as :class:`~adafocus.envs.FocusEpisodes` (``begin`` / ``step`` / spaces / ``num_steps``), so
:class:`~adafocus.envs.AdaFocusVecEnv`, :class:`~adafocus.envs.AdaFocusEnv`, the SB3 algorithms and the
evaluation drive it unchanged; an episode is one step long. Clips hold the G glance frames and then the T
focus frames (:meth:`~adafocus.backbones.ClipFocusModel.split`).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from gymnasium import spaces

from adafocus.backbones import ClipFocusModel, random_corners
from adafocus.data.clips import ClipSet

from .episodes import EnvConfig, EpisodeBatch, FocusStep, continuous_corners
from .reward import confidence


def focus_part(clips: ClipSet, glance_frames: int) -> ClipSet:
    """Clip-level clips (G glance frames, then T focus frames) cut to their T focus frames, boxes and readable
    flags: the frames the one patch is read from, and those pictures show it on."""
    cut = lambda x: None if x is None else x[:, glance_frames:]  # noqa: E731
    return replace(clips, frames=clips.frames[:, glance_frames:], boxes=cut(clips.boxes), readable=cut(clips.readable))


class ClipEpisodes(EpisodeBatch):
    """N clip-level AdaFocus episodes over the loaded videos, f_G run once per video when it is loaded.

    Observation: f_G's maps of the G glance frames concatenated on channels, ``glance`` (G * C, h, w), as the
    paper's pi reads them. Action: a continuous patch centre in [-1, 1]^2 (the paper's Gaussian policy
    with a sigmoid mean; here SB3's Gaussian, clipped). f_L then reads that patch in all T focus frames, f_C
    predicts, and the reward is the clip's confidence on the true class minus the confidence with a random
    patch (``vs_random``) or the confidence itself (``conf``).

    ``num_frames`` (needed without ``clips``) is T, the focus frames per clip; the loaded clips hold G + T
    frames, which is what the inherited ``self.num_frames`` counts. ``focus_frames`` is T.
    """

    num_steps = 1

    def __init__(self, model: ClipFocusModel, clips: ClipSet | None = None,
                 config: EnvConfig = EnvConfig(action="continuous"), device: torch.device | str = "cpu",
                 step_gmacs: float = 0.0, batch_size: int = 32, num_frames: int | None = None) -> None:
        if config.action != "continuous":
            raise ValueError("the clip-level env takes a continuous patch centre: use --env.action continuous")
        if config.reward not in ("vs_random", "conf"):
            raise ValueError(f"the clip-level env is one step long: reward 'vs_random' or 'conf', got {config.reward!r}")
        clip_frames = None if num_frames is None else model.glance_frames + num_frames
        super().__init__(model, clips, config, device, step_gmacs, batch_size, clip_frames)
        self.focus_frames = self.num_frames - model.glance_frames
        self.observation_space = spaces.Dict({"glance": spaces.Box(-np.inf, np.inf, tuple(self.glance_maps.shape[1:]),
                                                                   np.float32)})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def video_features(self, clips: ClipSet) -> dict[str, torch.Tensor]:
        maps = super().video_features(clips)["glance_maps"]  # (V, G, C, h, w)
        # pi reads the G maps concatenated on channels: (V, G * C, h, w)
        return {"glance_maps": maps.flatten(1, 2), "glance_logits": self.model.global_logits(maps)}

    def corners(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions (N, 2) in [-1, 1] (clipped) -> patch top-left corners (N, 2)."""
        return continuous_corners(actions, self.config, self.model.frame_shape, self.patch_size)

    def target_boxes(self) -> torch.Tensor:
        """The target's box averaged over the clip's focus frames (N, 4): where one patch for them should go."""
        if self.clips.boxes is None:
            raise ValueError("these clips have no target boxes: the oracle needs annotated (synthetic) videos")
        return self.clips.boxes[self.video, self.model.glance_frames:].mean(dim=1)

    def observation(self) -> dict[str, torch.Tensor]:
        return {"glance": self.glance_maps[self.video]}

    def begin(self, video: torch.Tensor, reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Start N episodes on loaded videos ``video`` (N,); ``reference`` (N, 1, 2) are uniform draws in [0, 1)
        placing the random patch of the ``vs_random`` reward (:func:`random_corners`; drawn when not given)."""
        self.video = video.to(self.device).long()
        if reference is None and self.config.reward == "vs_random":
            reference = torch.rand(len(self.video), 1, 2, device=self.device)
        self.reference = None if reference is None else reference.to(self.device, torch.float32)
        self.labels = self.clips.labels[self.video]
        self.t = 0
        return self.observation()

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> FocusStep:
        """Focus every clip at its action's place; the episode ends here."""
        if self.t >= self.num_steps:
            raise RuntimeError("the episodes are over: call begin() first")
        n, length, g = len(self.video), self.num_frames, self.model.glance_frames
        corners = self.corners(actions.to(self.device))
        frames = self.clips.frames.flatten(0, 1)  # a view; patches are gathered by (video, frame) index
        index = self.video[:, None] * length + g + torch.arange(self.focus_frames, device=self.device)  # focus frames
        global_logits = self.glance_logits[self.video]
        if self.config.reward == "vs_random":  # chosen and random patches in ONE f_L pass
            ref = random_corners(self.reference[:, 0], self.model.frame_shape, self.patch_size)
            local2 = self.model.focus(frames, torch.cat([corners, ref]), index.repeat(2, 1))
            logits2 = self.model.classify(global_logits.repeat(2, 1), local2)
            logits, local = logits2[:n], local2[:n]
            reward = confidence(logits, self.labels) - confidence(logits2[n:], self.labels)
        else:
            local = self.model.focus(frames, corners, index)
            logits = self.model.classify(global_logits, local)
            reward = confidence(logits, self.labels)
        self.t = 1
        return FocusStep(self.observation(), reward, logits, confidence(logits, self.labels), corners, local, True)

    def replay_logits(self, local: list[torch.Tensor]) -> torch.Tensor:
        """f_C (with gradients) on the f_L features a rollout produced: [(N, T, D_L)] -> logits (N, 1, K)."""
        return self.model.classify(self.glance_logits[self.video], local[0])[:, None]
