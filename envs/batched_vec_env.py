"""BatchedVecEnv: the stable-baselines3 VecEnv plumbing shared by the VecEnvs over one batched episode core."""
from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from adafocus.data.clips import ClipPool, VideoSource

from .boundary import check_actions, to_host

if TYPE_CHECKING:
    from .episodes import EpisodeBatch
    from .frame_episodes import FrameEpisodes


class BatchedVecEnv(VecEnv):
    """N slots served by one batched episode core (``episodes``) instead of N sub-envs.

    Videos come from ``source`` (:class:`~adafocus.data.clips.VideoSource`); without one, the slots draw
    from the videos loaded in ``episodes`` (a :class:`~adafocus.data.clips.ClipPool` over them, in epoch
    order from ``seed``). Seeding follows SB3: ``seed(s)`` applies at the next ``reset``, and the source
    is reseeded with the first slot's seed.

    There are no sub-envs, so ``get_attr``, ``set_attr`` and ``env_method`` address this VecEnv itself,
    returning one value per requested index (SB3's ``DummyVecEnv`` forwards them to each sub-env instead);
    no slot is wrapped.

    Subclasses implement :meth:`_begin` (load videos into the core and return the first observation) and
    ``step_wait``; :meth:`_seed_slots` receives the per-slot seeds at a reset.
    """

    def __init__(self, episodes: EpisodeBatch | FrameEpisodes, num_envs: int, seed: int = 0, source: VideoSource | None = None) -> None:
        self.render_mode = None  # read by VecEnv.__init__ through get_attr
        super().__init__(num_envs, episodes.observation_space, episodes.action_space)
        self.episodes = episodes
        self.source: VideoSource = source if source is not None else ClipPool(episodes.clips, seed, episodes.device)
        self.actions: np.ndarray | None = None

    @abstractmethod
    def _begin(self) -> dict[str, torch.Tensor]:
        """Load the next videos into the core and return the first observation of every slot."""

    def _seed_slots(self, seeds: list[int | None]) -> None:
        """Per-slot seeds given by ``seed()``, applied at a reset (nothing to seed by default)."""

    # ---- SB3 VecEnv API --------------------------------------------------------------------------
    def reset(self) -> dict[str, np.ndarray]:
        self._seed_slots(self._seeds)
        if self._seeds and self._seeds[0] is not None:
            self.source.seed(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        return to_host(self._begin())

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = check_actions(actions, self.action_space, self.num_envs)

    def close(self) -> None:
        pass

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))
