"""AdaFocusVecEnv: N AdaFocus episodes as one stable-baselines3 VecEnv, stepped as tensors on the device."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from adafocus.data.clips import ClipPool, VideoSource

from .boundary import check_actions, host_step, to_host
from .episodes import EpisodeBatch


class AdaFocusVecEnv(VecEnv):
    """N slots over one batched episode core: one f_L forward for all N patches per step.

    Videos come from ``source`` (:class:`~adafocus.data.clips.VideoSource`): at every reset the N slots
    take the source's next N videos, slot i the i-th, and f_G runs on them once. Without a source the slots
    draw from the videos loaded in ``episodes`` (a :class:`~adafocus.data.stream.ClipPool` over them).
    Slot i draws its ``vs_random`` reference patches from its own generator, seeded with ``seed + i`` as
    ``DummyVecEnv.seed`` seeds its i-th env, so it replays N single :class:`AdaFocusEnv` given the same
    videos exactly. All episodes last T steps, so all slots end together and are auto-reset together, with
    ``terminal_observation`` and ``TimeLimit.truncated`` (False: the video ended) in their infos.
    """

    def __init__(self, episodes: EpisodeBatch, num_envs: int, seed: int = 0, source: VideoSource | None = None) -> None:
        self.render_mode = None  # read by VecEnv.__init__ through get_attr
        super().__init__(num_envs, episodes.observation_space, episodes.action_space)
        self.episodes = episodes
        self.source: VideoSource = source if source is not None else ClipPool(episodes.clips, seed, episodes.device)
        self.rngs = [np.random.default_rng(seed + i) for i in range(num_envs)]
        self.actions: np.ndarray | None = None

    # ---- SB3 VecEnv API --------------------------------------------------------------------------
    def reset(self) -> dict[str, np.ndarray]:
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                self.rngs[i] = np.random.default_rng(seed)
        if self._seeds and self._seeds[0] is not None:
            self.source.seed(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        return to_host(self._begin())

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = check_actions(actions, self.action_space, self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        result = self.episodes.step(torch.as_tensor(self.actions))
        obs, rewards, infos = host_step(self.episodes, result)
        dones = np.full(self.num_envs, result.done)
        if result.done:
            for i, info in enumerate(infos):
                info["terminal_observation"] = {key: value[i] for key, value in obs.items()}
                info["TimeLimit.truncated"] = False
            obs = to_host(self._begin())
        return obs, rewards, dones, infos

    def _begin(self) -> dict[str, torch.Tensor]:
        """The source's next N videos, and new reference patches for every slot from its own generator."""
        self.episodes.load(self.source.take(self.num_envs))
        frames = self.episodes.num_steps
        reference = np.stack([rng.random((frames, 2)) for rng in self.rngs]).astype(np.float32)
        return self.episodes.begin(torch.arange(self.num_envs), torch.from_numpy(reference))

    def rng_state(self) -> list[dict[str, Any]]:
        """The slots' generator states (JSON-ready), for a checkpoint."""
        return [rng.bit_generator.state for rng in self.rngs]

    def set_rng_state(self, states: list[dict[str, Any]]) -> None:
        if len(states) != self.num_envs:
            raise ValueError(f"{len(states)} saved generator states for {self.num_envs} slots")
        for rng, state in zip(self.rngs, states):
            rng.bit_generator.state = state

    def close(self) -> None:
        pass

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)
