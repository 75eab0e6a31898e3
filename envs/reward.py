"""The reward of stage II: a gain in f_C's confidence on the true class."""
from __future__ import annotations

from typing import Literal

import torch

Reward = Literal["vs_random", "prev", "conf"]
REWARDS: tuple[str, ...] = ("vs_random", "prev", "conf")


def confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """c_t = softmax(f_C logits)[true class]: (N, K), (N,) -> (N,)."""
    return logits.softmax(dim=-1).gather(-1, labels[:, None])[:, 0]


def confidence_gain(kind: str, chosen: torch.Tensor, reference: torch.Tensor | None,
                    previous: torch.Tensor) -> torch.Tensor:
    """r_t for the patch pi chose.

    ``vs_random``: c_t(chosen) - c_t(a random patch through the same f_C state), the paper code's default;
    ``prev``: c_t - c_{t-1}, the gain over the previous step (GFNet's reward);
    ``conf``: c_t itself.
    """
    if kind == "vs_random":
        if reference is None:
            raise ValueError("reward 'vs_random' needs the random patch's confidence")
        return chosen - reference
    if kind == "prev":
        return chosen - previous
    if kind == "conf":
        return chosen
    raise ValueError(f"unknown reward {kind!r}; choose one of {REWARDS}")
