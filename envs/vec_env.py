"""AdaFocusVecEnv: N AdaFocus episodes as one stable-baselines3 VecEnv, stepped as tensors on the device."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from adafocus.data.clips import VideoSource

from .batched_vec_env import BatchedVecEnv
from .boundary import host_step, to_host
from .episodes import EpisodeBatch


class AdaFocusVecEnv(BatchedVecEnv):
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
        super().__init__(episodes, num_envs, seed, source)
        self.rngs = [np.random.default_rng(seed + i) for i in range(num_envs)]

    def _seed_slots(self, seeds: list[int | None]) -> None:
        for i, seed in enumerate(seeds):
            if seed is not None:
                self.rngs[i] = np.random.default_rng(seed)

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
