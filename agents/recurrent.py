"""The paper's pi with its own memory: f_G's map -> encoder -> GRU -> actor and critic, on sb3-contrib's
recurrent PPO.

The authors' pi (their ``models/ppo.py`` and ``ppo_continuous.py``) is
``1x1 conv (C -> 32) -> ReLU -> linear (32 h w -> 1024) -> ReLU -> GRU(1024) -> actor | critic``, its GRU
state zero at t = 0 and carried across the video's frames; the update replays each whole episode through
the GRU from a zero state. sb3-contrib's :class:`~sb3_contrib.RecurrentPPO` stores the recurrent states,
cuts the rollout into episodes and resets the state at episode starts; this module puts the paper's
network into it:

- :class:`GRUMemory` is ``nn.GRU`` behind ``nn.LSTM``'s call signature (a cell state is carried unused),
  so sb3-contrib's buffer and sequence code drive a GRU;
- :class:`FocusRecurrentPolicy` is the actor-critic: both heads read the GRU's output and the critic's
  loss reaches the GRU and the encoder, as in the authors' single loss (sb3-contrib's ``shared_lstm``
  would detach it);
- continuous actions can follow the authors' parameterisation (``action_std``): the mean is a sigmoid,
  the standard deviation fixed, and a sample is clipped to the action space before its log-probability is
  taken, as their ``ppo_continuous.py`` does.

Because pi's memory is its own, stage III (which fine-tunes f_C under the frozen pi) cannot change what pi
observes.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentMultiInputActorCriticPolicy
from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution
from torch import nn


class GRUMemory(nn.Module):
    """``nn.GRU`` called like ``nn.LSTM``: ``(x, (h, c)) -> (out, (h', c))``; ``c`` is passed through."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        hidden, cell = state
        out, hidden = self.gru(x, hidden.contiguous())
        return out, (hidden, cell)


class ClippedDiagGaussian(DiagGaussianDistribution):
    """A diagonal Gaussian whose samples are clipped to [-1, 1] before their log-probability is taken."""

    def sample(self) -> torch.Tensor:
        return super().sample().clamp(-1.0, 1.0)


class FocusRecurrentPolicy(RecurrentMultiInputActorCriticPolicy):
    """The paper's pi: the features extractor (its encoder), a GRU of ``lstm_hidden_size``, linear actor and
    critic heads on the GRU's output.

    ``action_std`` (continuous actions only): ``None`` keeps SB3's Gaussian (free mean, learned log-std);
    a value is the authors' parameterisation, given in their units (a fraction of the corner's range
    S - P): mean ``sigmoid``, standard deviation fixed at ``action_std``, samples clipped. The env's Box
    [-1, 1] spans that range, so the mean is ``2 sigmoid(x) - 1`` and the standard deviation ``2 action_std``.
    """

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Space, lr_schedule: Any,
                 action_std: float | None = None, **kwargs: Any) -> None:
        if action_std is not None and not isinstance(action_space, spaces.Box):
            raise ValueError("action_std is the continuous policy's fixed standard deviation: it needs Box actions")
        if action_std is not None and not action_std > 0:
            raise ValueError(f"action_std must be > 0, got {action_std}")
        self.action_std = action_std
        kwargs.update(net_arch=[], shared_lstm=True, enable_critic_lstm=False)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
        lstm = self.lstm_actor
        self.lstm_actor = GRUMemory(lstm.input_size, lstm.hidden_size, lstm.num_layers)
        if action_std is not None:
            self.action_dist = ClippedDiagGaussian(self.action_dist.action_dim)
            self.log_std.requires_grad_(False).fill_(math.log(2 * action_std))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> Distribution:
        if self.action_std is None:
            return super()._get_action_dist_from_latent(latent_pi)
        mean = 2 * torch.sigmoid(self.action_net(latent_pi)) - 1
        return self.action_dist.proba_distribution(mean, self.log_std)

    def evaluate_actions(self, obs: dict[str, torch.Tensor], actions: torch.Tensor, lstm_states: Any,
                         episode_starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As sb3-contrib's, but the value's gradient reaches the GRU and the encoder (one shared trunk)."""
        latent, _ = self._process_sequence(self.extract_features(obs), lstm_states.pi, episode_starts,
                                           self.lstm_actor)
        distribution = self._get_action_dist_from_latent(latent)
        return self.value_net(latent), distribution.log_prob(actions), distribution.entropy()


class GRUPPO(RecurrentPPO):
    """sb3-contrib's recurrent PPO (SB3's update rules) with the paper's pi (:class:`FocusRecurrentPolicy`)."""

    policy_aliases = {"MultiInputLstmPolicy": FocusRecurrentPolicy, "MultiInputPolicy": FocusRecurrentPolicy}
