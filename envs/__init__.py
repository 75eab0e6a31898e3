"""Video recognition as reinforcement learning: the AdaFocus episode over frozen backbones.

``gymnasium.make("adafocus.envs:AdaFocus-v0")`` builds the embedded default (synthetic videos, CPU
preset backbones). The entry point lives in :mod:`adafocus.presets`, which knows where data lives;
this package itself only sees tensors and networks.
"""
import gymnasium

from .adafocus_env import AdaFocusEnv
from .boundary import check_actions, to_host
from .clip_episodes import ClipEpisodes
from .episodes import EnvConfig, FocusEpisodes, StepResult
from .frame_episodes import (FrameCosts, FrameEpisodes, FrameReader, JumpEpisodes, MultiAgentEpisodes,
                             SkipEpisodes)
from .frame_vec_env import FrameEnv, FrameVecEnv
from .reward import REWARDS, confidence, confidence_gain
from .vec_env import AdaFocusVecEnv

if "AdaFocus-v0" not in gymnasium.registry:
    gymnasium.register("AdaFocus-v0", entry_point="adafocus.presets:make_default_env")
if "AdaFocusTSM-v0" not in gymnasium.registry:  # Section 4.2: one patch per clip, on the motion variant
    gymnasium.register("AdaFocusTSM-v0", entry_point="adafocus.presets:make_default_env",
                       kwargs={"preset_name": "synthetic_tsm"})
for _name, _kind in (("AdaFocusPlus-v0", "pi_prime"), ("AdaFrame-v0", "adaframe"), ("MultiAgent-v0", "multiagent")):
    if _name not in gymnasium.registry:  # frame policies on the temporal synthetic variant (adafocus.frame_training)
        gymnasium.register(_name, entry_point="adafocus.frame_training:make_frame_env", kwargs={"kind": _kind})

__all__ = ["AdaFocusEnv", "AdaFocusVecEnv", "ClipEpisodes", "EnvConfig", "FocusEpisodes", "FrameCosts", "FrameEnv", "FrameEpisodes",
           "FrameReader", "FrameVecEnv", "JumpEpisodes", "MultiAgentEpisodes", "REWARDS", "SkipEpisodes", "StepResult",
           "check_actions", "confidence", "confidence_gain", "to_host"]
