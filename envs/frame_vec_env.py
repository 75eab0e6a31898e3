"""Frame policies as environments: an SB3 VecEnv over batched :class:`FrameEpisodes`, and its N = 1 view.

MultiAgent is served the same way, one VecEnv slot per agent: the agents of a video are ``agents``
consecutive slots, each observing its own frame plus the shared context, so one SB3 policy (the
paper's shared policy) is trained on all agents' experience by any single-agent algorithm. (PettingZoo
would add a dependency and a wrapper layer to reach SB3 again, for the same thing.) The single-env view
of MultiAgent is the joint one: one video, all agents' observations stacked, a MultiDiscrete action.
"""
from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from adafocus.data.clips import ClipPool, VideoSource

from .batched_vec_env import BatchedVecEnv
from .boundary import check_actions, to_host
from .frame_episodes import FrameEpisodes, FrameStep


def _host(episodes: FrameEpisodes, result: FrameStep) -> tuple[dict[str, np.ndarray], np.ndarray, list[dict]]:
    """Observations, rewards and per-slot infos on the host, from one packed transfer."""
    a = episodes.agents
    host = to_host({**result.observation, "reward": result.reward,
                    "prediction": result.logits.argmax(-1).repeat_interleave(a),
                    "gflops": result.spent.repeat_interleave(a), "video": episodes.video_ids().repeat_interleave(a),
                    "decisions": episodes.decisions.repeat_interleave(a)})
    infos = [{"prediction": int(host["prediction"][i]), "gflops": float(host["gflops"][i]),
              "video": int(host["video"][i]), "decisions": int(host["decisions"][i])}
             for i in range(len(host["video"]))]
    return {key: host[key] for key in result.observation}, host["reward"].astype(np.float32), infos


class FrameVecEnv(BatchedVecEnv):
    """``rows`` videos stepped together; ``rows * agents`` slots. A row whose episode ends takes the next
    video of ``source`` at once (SB3's auto-reset); without a source, rows draw from the videos loaded in
    ``episodes`` (a pool over them, in epoch order from ``seed``)."""

    def __init__(self, episodes: FrameEpisodes, rows: int, seed: int = 0, source: VideoSource | None = None) -> None:
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        self.rows = rows
        super().__init__(episodes, rows * episodes.agents, seed, source)

    def _begin(self) -> dict[str, torch.Tensor]:
        self.episodes.load(self.source.take(self.rows))
        return self.episodes.begin(torch.arange(self.rows))

    def step_wait(self) -> VecEnvStepReturn:
        result = self.episodes.step(torch.as_tensor(self.actions))
        obs, rewards, infos = _host(self.episodes, result)
        ended = result.done.nonzero()[:, 0].cpu()
        dones = np.repeat(result.done.cpu().numpy(), self.episodes.agents)
        if len(ended):
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = {key: value[i] for key, value in obs.items()}
                infos[i]["TimeLimit.truncated"] = False
            self.episodes.load(self.source.take(len(ended)), rows=ended)
            self.episodes.restart(ended, ended)
            obs = to_host(self.episodes.observation())
        return obs, rewards, dones, infos


class FrameEnv(gym.Env):
    """One frame-policy episode as a gymnasium.Env (the batched core with one row).

    With one agent per video the spaces are the VecEnv's; with A agents (MultiAgent) the observation
    stacks the A agents' observations (A, ...) and the action is MultiDiscrete([n] * A).
    ``info`` holds the prediction, the GFLOPs spent on the video so far, the video and the decisions taken.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, episodes: FrameEpisodes, source: VideoSource | None = None, seed: int = 0) -> None:
        self.episodes = episodes
        # without a source: the videos loaded in the episodes, in epoch order from ``seed``
        self.source: VideoSource = source if source is not None else ClipPool(episodes.clips, seed, episodes.device)
        a = episodes.agents
        if a == 1:
            self.observation_space, self.action_space = episodes.observation_space, episodes.action_space
        else:
            self.observation_space = spaces.Dict({
                key: spaces.Box(np.broadcast_to(box.low, (a, *box.shape)).copy(),
                                np.broadcast_to(box.high, (a, *box.shape)).copy(), dtype=np.float32)
                for key, box in episodes.observation_space.spaces.items()})
            self.action_space = spaces.MultiDiscrete([int(episodes.action_space.n)] * a)

    def _view(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.episodes.agents == 1:
            return {key: value[0] for key, value in batch.items()}
        return batch

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.source.seed(seed)
        self.episodes.load(self.source.take(1))
        obs = self.episodes.begin(torch.tensor([0]))
        return self._view(to_host(obs)), {"video": int(self.episodes.video_ids()[0])}

    def step(self, action):
        a = self.episodes.agents
        actions = check_actions(np.asarray(action).reshape(-1), spaces.Discrete(int(self.episodes.action_space.n)), a)
        if bool(self.episodes.finished[0]):
            raise RuntimeError("the episode is over: call reset() first")
        result = self.episodes.step(torch.as_tensor(actions))
        obs, rewards, infos = _host(self.episodes, result)
        return self._view(obs), float(rewards[0]), bool(result.done[0]), False, infos[0]
