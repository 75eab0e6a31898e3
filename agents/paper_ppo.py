"""PPO as the AdaFocus authors run it (their ``models/ppo.py``): the paper's pi with its own GRU
(:mod:`adafocus.agents.recurrent`) and the authors' update.

Where the update differs from SB3's PPO, each as the authors' update does it:

- returns (Monte-Carlo, discounted by gamma) are z-normalised over the whole batch, T x B steps, with 1e-5 in
  the denominator;
- the value head regresses those normalised returns, and the advantage is normalised return - V (SB3 instead
  regresses raw returns and normalises the advantages);
- no gradient clipping (SB3 clips at 0.5);
- Adam with eps 1e-8 (SB3's default is 1e-5).

Everything else (clipped surrogate, value and entropy coefficients, epochs and minibatches) is SB3's PPO with
the run's settings.
"""
from __future__ import annotations

from typing import Any

from .recurrent import GRUPPO

RETURN_EPS = 1e-5  # the authors' (rewards - mean) / (std + 1e-5)


class PaperPPO(GRUPPO):
    """The paper's recurrent pi, trained with the authors' return normalisation, no gradient clipping and
    Adam eps 1e-8."""

    def __init__(self, policy: Any, env: Any, **kwargs: Any) -> None:
        kwargs.setdefault("normalize_advantage", False)
        kwargs.setdefault("max_grad_norm", float("inf"))
        policy_kwargs = dict(kwargs.pop("policy_kwargs", None) or {})
        policy_kwargs.setdefault("optimizer_kwargs", {"eps": 1e-8})
        super().__init__(policy, env, policy_kwargs=policy_kwargs, **kwargs)

    def train(self) -> None:
        buffer = self.rollout_buffer
        returns = buffer.returns
        normalised = (returns - returns.mean()) / (returns.std(ddof=1) + RETURN_EPS)  # torch.std: unbiased
        buffer.returns = normalised
        buffer.advantages = normalised - buffer.values
        super().train()
