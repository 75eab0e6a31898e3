"""The algorithms stage II can use: SB3 and sb3-contrib classes by name, the actions each takes, and the
policy each builds on a dict observation."""
from __future__ import annotations

import importlib
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

ALGORITHMS: dict[str, str] = {
    "ppo": "stable_baselines3:PPO",
    "paper_ppo": "adafocus.agents.paper_ppo:PaperPPO",  # the paper's pi (own GRU) and the authors' PPO update
    "gru_ppo": "adafocus.agents.recurrent:GRUPPO",  # the paper's pi (own GRU), SB3's PPO update
    "a2c": "stable_baselines3:A2C",
    "sac": "stable_baselines3:SAC",
    "td3": "stable_baselines3:TD3",
    "dqn": "stable_baselines3:DQN",
    "qrdqn": "sb3_contrib:QRDQN",
    "recurrent_ppo": "sb3_contrib:RecurrentPPO",
}
CONTINUOUS_ONLY = {"sac", "td3", "ddpg"}  # SB3 gives them Box action spaces only
DISCRETE_ONLY = {"dqn", "qrdqn"}


def resolve_algorithm(name: str) -> type[BaseAlgorithm]:
    """``ppo``, ``sac``, ... or any SB3-compatible class as ``package.module:Class``."""
    target = ALGORITHMS.get(name.lower(), name)
    if ":" not in target:
        raise ValueError(f"unknown algorithm {name!r}: use one of {sorted(ALGORITHMS)} or 'package.module:Class'")
    module, _, cls = target.partition(":")
    try:
        algo = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"algorithm {name!r}: cannot import {target} ({error})") from error
    if not (isinstance(algo, type) and issubclass(algo, BaseAlgorithm)):
        raise ValueError(f"algorithm {name!r}: {target} is not a stable-baselines3 algorithm class")
    return algo


def action_kind(algo: str, requested: str | None = None) -> str:
    """The action space an algorithm can use: the grid unless it only handles continuous actions."""
    name = algo.lower()
    if continuous_only(algo):
        if requested == "grid":
            raise ValueError(f"{algo} needs continuous actions: use --env.action continuous")
        return "continuous"
    if name in DISCRETE_ONLY and requested == "continuous":
        raise ValueError(f"{algo} needs discrete actions: use --env.action grid")
    return requested or "grid"


def base_policy_kwargs(cls: type[BaseAlgorithm]) -> dict[str, Any]:
    """The project's policy kwargs besides pi's extractor: feed-forward on-policy algorithms put their actor
    and critic heads straight on pi's features (the paper's pi has no hidden layer after its encoder)."""
    if issubclass(cls, OnPolicyAlgorithm) and "Lstm" not in policy_name(cls):
        return {"net_arch": []}
    return {}


def continuous_only(algo: str) -> bool:
    """An algorithm that SB3 builds for Box action spaces only (SAC, TD3, DDPG)."""
    return algo.lower() in CONTINUOUS_ONLY or algo.rsplit(":", 1)[-1].lower() in CONTINUOUS_ONLY


def policy_name(cls: type[BaseAlgorithm]) -> str:
    """SB3's policy name for a dict observation: the LSTM one for recurrent algorithms."""
    return "MultiInputLstmPolicy" if "MultiInputLstmPolicy" in getattr(cls, "policy_aliases", {}) else "MultiInputPolicy"
