"""AdaFocusEnv: one AdaFocus episode as a plain gymnasium.Env (a view of the batched core with N = 1)."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes

from adafocus.data.clips import ClipPool, VideoSource

from .boundary import check_actions, host_step, to_host
from .episodes import EpisodeBatch


class AdaFocusEnv(gym.Env):
    """Video recognition as an MDP: observe f_G's features of frame t, place a patch, earn a confidence gain.

    ## Description
    One episode is one video of T frames. At step t the policy pi sees the glance of frame t (f_G's
    features of the whole frame at low resolution) and places a P x P patch; f_L reads the patch at full
    resolution and the recurrent classifier f_C updates its prediction. The episode is the paper's
    (Wang et al., ICCV 2021), with the backbones frozen as in its stage II.

    ## Action Space
    ``EnvConfig.action = "grid"``: ``Discrete(grid**2)``, patch top-left corners on a grid x grid lattice of
    the frame (the authors' 7 x 7). ``"continuous"``: ``Box(-1, 1, (2,))``, the patch centre over the frame
    (``continuous="centre"``, the patch clamped inside) or its top-left corner as a fraction of S - P
    (``continuous="corner"``, the authors' continuous pi); values outside [-1, 1] are clipped, NaN or
    wrongly shaped actions raise ValueError.

    ## Observation Space
    A ``Dict``: ``glance`` (C, h, w) f_G's map of frame t (1280 x 7 x 7 in the paper), ``progress`` (1,) t / T,
    and with ``observe_memory`` ``memory`` (H,) f_C's recurrent state h_{t-1} in [-1, 1].

    ## Rewards
    A gain in f_C's confidence c_t on the true class (:mod:`adafocus.envs.reward`): ``vs_random`` (default)
    c_t(chosen patch) - c_t(a random patch through the same f_C state), ``prev`` c_t - c_{t-1}, or ``conf`` c_t.

    ## Starting State
    ``reset`` takes the next video of ``source`` (default: the videos loaded in ``episodes``, in epoch order
    from ``seed``); f_G runs on it once, and f_C's state starts at zero.

    ## Episode End
    Terminated after T steps, one per frame (the video ended); never truncated.

    ## Arguments
    ``episodes`` (the batched core, e.g. :class:`FocusEpisodes` with its :class:`EnvConfig`),
    ``render_mode`` (None or ``"rgb_array"``: the current frame with the patch in yellow and, on synthetic
    data, the target in green), ``source`` and ``seed``. ``info`` carries the prediction, its confidence,
    the patch box (x0, y0, x1, y1), the GFLOPs spent so far, the video's index and its label.
    Registered as ``gymnasium.make("adafocus:AdaFocus-v0")`` on the embedded synthetic benchmark.

    ## Version History
    * v0: the initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, episodes: EpisodeBatch, render_mode: str | None = None, source: VideoSource | None = None,
                 seed: int = 0) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.episodes = episodes
        # without a source: the videos loaded in the episodes, in epoch order from ``seed``
        self.source: VideoSource = source if source is not None else ClipPool(episodes.clips, seed, episodes.device)
        self.observation_space = episodes.observation_space
        self.action_space = episodes.action_space
        self.render_mode = render_mode
        self._last_corners: torch.Tensor | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.source.seed(seed)
        self.episodes.load(self.source.take(1))
        reference = self.np_random.random((self.episodes.num_steps, 2)).astype(np.float32)  # as a VecEnv slot draws
        obs = self.episodes.begin(torch.tensor([0]), torch.from_numpy(reference[None]))
        self._last_corners = None
        return self._single(to_host(obs)), {"video": int(self.episodes.video_ids()[0])}

    def step(self, action):
        actions = check_actions(np.asarray(action)[None], self.action_space, 1)
        result = self.episodes.step(torch.as_tensor(actions))
        self._last_corners = result.corners
        obs, rewards, infos = host_step(self.episodes, result)
        return self._single(obs), float(rewards[0]), result.done, False, infos[0]

    @staticmethod
    def _single(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in batch.items()}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        ep = self.episodes
        t = max(ep.t - 1, 0)
        frame = ep.clips.frames[ep.video[0], t].cpu()
        boxes, colors = [], []
        if ep.clips.boxes is not None:
            boxes.append(ep.clips.boxes[ep.video[0], t].cpu())
            colors.append("lime")
        if self._last_corners is not None:
            boxes.append(ep.patch_boxes(self._last_corners)[0].cpu())
            colors.append("yellow")
        if boxes:
            frame = draw_bounding_boxes(frame, torch.stack(boxes), colors=colors, width=1)
        return frame.permute(1, 2, 0).numpy()
