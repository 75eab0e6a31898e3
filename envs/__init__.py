"""Video recognition as reinforcement learning: the AdaFocus episode over frozen backbones.

This package sees tensors and networks only: it imports nothing from the layer above it (runs, presets,
data files). The registered ids (``gymnasium.make("adafocus:AdaFocus-v0")``) are registered by that layer,
in :mod:`adafocus`, whose factories know where the embedded benchmark's data lives.
"""
from .adafocus_env import AdaFocusEnv
from .batched_vec_env import BatchedVecEnv
from .boundary import check_actions, to_host
from .clip_episodes import ClipEpisodes
from .episodes import EnvConfig, FocusEpisodes, FocusStep
from .frame_episodes import (FrameCosts, FrameEpisodes, FrameReader, JumpEpisodes, MultiAgentEpisodes,
                             SkipEpisodes)
from .frame_vec_env import FrameEnv, FrameVecEnv
from .reward import REWARDS, confidence, confidence_gain
from .vec_env import AdaFocusVecEnv

__all__ = ["AdaFocusEnv", "AdaFocusVecEnv", "BatchedVecEnv", "ClipEpisodes", "EnvConfig", "FocusEpisodes",
           "FocusStep", "FrameCosts", "FrameEnv", "FrameEpisodes", "FrameReader", "FrameVecEnv", "JumpEpisodes",
           "MultiAgentEpisodes", "REWARDS", "SkipEpisodes", "check_actions", "confidence", "confidence_gain",
           "to_host"]
