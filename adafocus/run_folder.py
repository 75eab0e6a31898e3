"""A run folder's files: what a run holds, and the policy saved in it (its config, its env, pi itself)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adafocus.agents import SB3Agent, load_agent
from adafocus.envs import ClipEpisodes, EnvConfig, FocusEpisodes

from .config import PolicyConfig, RunConfig, from_dict


@dataclass(frozen=True)
class RunFiles:
    """What a finished (or partly finished) run folder holds."""

    config: RunConfig
    checkpoint: Path  # stage III's when present, else stage I's
    policy: Path | None
    warmup: Path | None
    tsm_plus: Path | None = None  # the TSM+ baseline of a clip-level run


def open_run(run: Path) -> RunFiles:
    """Read a run folder written by ``train_policy.py``; errors name what is missing."""
    run = Path(run)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run}: no config.json (is it a folder written by train_policy.py?)")
    config = from_dict(RunConfig, json.loads((run / "config.json").read_text()))
    found = [p for p in (run / "stage3" / "checkpoint.pt", run / "stage1" / "checkpoint.pt") if p.is_file()]
    if not found:
        raise FileNotFoundError(f"{run}: no stage III or stage I checkpoint yet")
    optional = lambda p: p if p.is_file() else None  # noqa: E731
    return RunFiles(config, found[0], optional(run / "policy" / "policy.zip"), optional(run / "warmup" / "checkpoint.pt"),
                    optional(run / "tsm_plus" / "checkpoint.pt"))


def policy_meta(policy: Path) -> dict[str, Any]:
    """The config saved beside a policy (``policy.json``: the run's config, with the env it was trained in)."""
    meta = Path(policy).with_suffix(".json")
    if not meta.is_file():
        raise FileNotFoundError(f"policy {policy} has no config file {meta} beside it")
    try:
        value = json.loads(meta.read_text())
    except ValueError as error:
        raise ValueError(f"{meta}: not a JSON file ({error})") from None
    if not isinstance(value, dict) or not isinstance(value.get("env"), dict):
        raise ValueError(f"{meta}: not the config a policy is saved with (no 'env' settings)")
    return value


def policy_env_config(config: RunConfig, policy: Path) -> EnvConfig:
    """The env settings a policy was trained with (saved beside it), so it is evaluated in the same env."""
    return EnvConfig(**policy_meta(policy)["env"])


def load_policy(policy: Path, episodes: FocusEpisodes | ClipEpisodes, device: torch.device | str,
                config: RunConfig) -> SB3Agent:
    """pi from a policy file, loaded without running anything in it (:func:`adafocus.agents.load_algorithm`):
    the algorithm is rebuilt from the PolicyConfig in its ``policy.json`` (``config``'s when that has none)
    for ``episodes``' observation and action spaces, and only the file's tensors are read into it."""
    meta = policy_meta(policy)
    settings = from_dict(PolicyConfig, meta["policy"]) if isinstance(meta.get("policy"), dict) else config.policy
    seed = settings.seed if settings.seed is not None else meta.get("seed", config.seed)
    return load_agent(policy, settings, episodes.observation_space, episodes.action_space, episodes.num_steps, device,
                      seed if isinstance(seed, int) else config.seed)

