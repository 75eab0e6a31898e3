"""Per-algorithm defaults of stage II, read from ``agents/hyperparams/<algo>.yml`` (RL Zoo's format).

Each file holds an ``AdaFocus-v0`` entry (pi) and, for the algorithms that take discrete actions, one entry
shared by the frame policies' ids (``AdaFrame-v0``, ``AdaFocusPlus-v0``, ``MultiAgent-v0``), as RL Zoo keeps one
file per algorithm keyed by env id (a zoo config file is looked up by env id only, whatever ``--algo`` says), so
the same file trains with
``python -m rl_zoo3.train --algo ppo --env AdaFocus-v0 --gym-packages adafocus -conf agents/hyperparams/ppo.yml``.

Precedence in :func:`adafocus.agents.make_algorithm`, lowest first:

1. SB3's own defaults of the class;
2. the project's architecture (pi's :class:`GlanceExtractor`; actor and critic heads straight on its
   features for feed-forward on-policy algorithms; the GRU of ``gru_ppo`` / ``paper_ppo``);
3. the algorithm's file: every value except the keys only RL Zoo reads (:data:`ZOO_ONLY`);
4. the run's :class:`~adafocus.agents.PolicyConfig` for the arguments it names (:func:`governed`):
   ``learning_rate`` and ``gamma`` always, ``gae_lambda``, ``ent_coef``, ``vf_coef`` for on-policy
   algorithms, n_steps (from ``videos_per_update``), batch_size (from ``minibatches``), ``n_epochs``,
   ``clip_range`` for the PPO family (A2C, one gradient step per rollout, takes n_steps from its file), and
   the extractor's widths. The preset sets them and ``--policy.*`` changes them; they are what the stage
   record holds, so the file's copies of them are RL Zoo's (the files mirror the ``synthetic`` preset, which
   is what ``AdaFocus-v0`` builds);
5. ``--policy.hyperparams`` (a YAML mapping, e.g. ``"{learning_starts: 500, buffer_size: 20000}"``): any
   other SB3 argument, over the file. An argument of step 4 is refused there (use its ``--policy.*`` option).

The files' ``n_envs`` is the synthetic preset's 64 slots, so per-step values (``train_freq``,
``gradient_steps``, ``n_steps``) mean the same in RL Zoo and in a run; with another ``--policy.n_envs`` they
count that many slots' steps, as in SB3. ``noise_type`` / ``noise_std`` are RL Zoo's action-noise keys, built
the same way, except that each slot draws its own noise. Stage II records the file's values that change what
trains (:func:`recorded_defaults`): editing a file makes the stage II folders it affects differ from the
command, which refuses them as for any changed option (``--fresh`` retrains).
"""
from __future__ import annotations

import ast
import inspect
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import (NormalActionNoise, OrnsteinUhlenbeckActionNoise,
                                            VectorizedActionNoise)
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from .registry import base_policy_kwargs, resolve_algorithm

ENV_ID = "AdaFocus-v0"
HYPERPARAMS = Path(__file__).with_name("hyperparams")
# read by RL Zoo's experiment manager, not by the algorithm (an AdaFocus run takes them from its config)
ZOO_ONLY = ("n_timesteps", "n_envs", "policy", "normalize", "env_kwargs", "env_wrapper", "vec_env_wrapper",
            "frame_stack", "callback", "monitor_kwargs")
NOISE_KEYS = ("noise_type", "noise_std")
# policy kwargs that the run's PolicyConfig builds (pi's extractor; the paper's GRU width and action std)
ARCHITECTURE_KWARGS = ("features_extractor_class", "features_extractor_kwargs", "lstm_hidden_size", "action_std")


def hyperparams_file(algo: str) -> Path | None:
    """``agents/hyperparams/<algo>.yml`` for a built-in algorithm name, None for ``package.module:Class``."""
    path = HYPERPARAMS / f"{algo.lower()}.yml"
    return path if ":" not in algo and path.is_file() else None


@lru_cache(maxsize=None)
def _read(path: Path, mtime: float, env_id: str) -> dict[str, Any]:
    entry = (yaml.safe_load(path.read_text()) or {}).get(env_id)
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: no '{env_id}' entry (RL Zoo's format: the env id, then the algorithm's values)")
    return entry


def load_hyperparams(algo: str, env_id: str = ENV_ID) -> dict[str, Any]:
    """The algorithm's entry for ``env_id`` as written (RL Zoo's keys included); {} without a file."""
    path = hyperparams_file(algo)
    return {} if path is None else dict(_read(path, path.stat().st_mtime, env_id))


def init_defaults(cls: type[BaseAlgorithm]) -> dict[str, Any]:
    """Every constructor argument of ``cls`` with its default, along its bases: a subclass that takes
    ``**kwargs`` (PaperPPO) still has PPO's arguments."""
    out: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            for name, parameter in inspect.signature(klass.__init__).parameters.items():
                if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                    out.setdefault(name, parameter.default)
    return out


def ppo_family(cls: type[BaseAlgorithm]) -> bool:
    """An on-policy algorithm with PPO's epochs, minibatches and clipping."""
    return issubclass(cls, OnPolicyAlgorithm) and "n_epochs" in init_defaults(cls)


def governed(cls: type[BaseAlgorithm]) -> tuple[str, ...]:
    """The SB3 arguments the run's PolicyConfig sets for this class (they override the file)."""
    names = ["learning_rate", "gamma"]
    if issubclass(cls, OnPolicyAlgorithm):
        names += ["gae_lambda", "ent_coef", "vf_coef"]
        if ppo_family(cls):  # whole videos per update, split into minibatches; A2C's n_steps is its file's
            names += ["n_steps", "batch_size", "n_epochs", "clip_range"]
    return tuple(names)


def _literal(node: ast.AST) -> Any:
    """A Python literal, or ``dict(key=literal, ...)`` as RL Zoo's policy_kwargs strings write them."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {k.arg: _literal(k.value) for k in node.keywords if k.arg is not None}
    return ast.literal_eval(node)


def parse_policy_kwargs(value: Any) -> dict[str, Any]:
    """RL Zoo's ``policy_kwargs`` (a ``"dict(...)"`` string or a mapping) without evaluating code: the
    architecture keys that PolicyConfig builds are skipped, every other value must be a literal."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in ARCHITECTURE_KWARGS}
    call = ast.parse(str(value), mode="eval").body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "dict" and not call.args):
        raise ValueError(f"policy_kwargs must read dict(key=value, ...), got {value!r}")
    out = {}
    for keyword in call.keywords:
        if keyword.arg is None or keyword.arg in ARCHITECTURE_KWARGS:
            continue
        try:
            out[keyword.arg] = _literal(keyword.value)
        except ValueError:
            raise ValueError(f"policy_kwargs {keyword.arg}: only literal values are read here, got "
                             f"{ast.unparse(keyword.value)!r}") from None
    return out


def parse_overrides(text: str | None) -> dict[str, Any]:
    """``--policy.hyperparams``: a YAML mapping of SB3 arguments (None or empty: none)."""
    if not text:
        return {}
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise ValueError(f"--policy.hyperparams must be a YAML mapping such as '{{learning_starts: 500}}', got {text!r}")
    return value


def file_values(algo: str, cls: type[BaseAlgorithm], overrides: dict[str, Any] | None = None,
                env_id: str = ENV_ID) -> dict[str, Any]:
    """The file's values for ``env_id`` (``overrides`` on top) that the algorithm takes, as written: RL Zoo's
    own keys and the PolicyConfig-governed ones left out, ``policy_kwargs`` parsed (:func:`parse_policy_kwargs`)."""
    entry = {k: v for k, v in load_hyperparams(algo, env_id).items() if k not in ZOO_ONLY and k not in governed(cls)}
    overrides = dict(overrides or {})
    refused = sorted(set(overrides) & set(governed(cls)))
    if refused:
        raise ValueError(f"--policy.hyperparams {', '.join(refused)}: set by the run's --policy.* options "
                         f"(e.g. --policy.learning_rate), not here")
    unknown = sorted(set(overrides) & set(ZOO_ONLY))
    if unknown:
        raise ValueError(f"--policy.hyperparams {', '.join(unknown)}: RL Zoo's keys, not SB3 arguments")
    policy_kwargs = {**parse_policy_kwargs(entry.pop("policy_kwargs", None)),
                     **parse_policy_kwargs(overrides.pop("policy_kwargs", None))}
    values = {**entry, **overrides}
    known = init_defaults(cls)
    for where, given in ((hyperparams_file(algo), entry), ("--policy.hyperparams", overrides)):
        strange = sorted(k for k in given if k not in known and k not in NOISE_KEYS)
        if strange:  # caught here, with where it was written, not as a TypeError deep in SB3
            raise ValueError(f"{where}: {', '.join(strange)} is not an argument of {cls.__name__}")
    if policy_kwargs:
        values["policy_kwargs"] = policy_kwargs
    return values


def _action_noise(kind: str, std: float, action_space: Any, num_envs: int) -> Any:
    n = int(np.prod(action_space.shape))
    if "normal" in kind:
        noise: Any = NormalActionNoise(np.zeros(n), std * np.ones(n))
    elif "ornstein-uhlenbeck" in kind:
        noise = OrnsteinUhlenbeckActionNoise(np.zeros(n), std * np.ones(n))
    else:
        raise ValueError(f"noise_type {kind!r}: RL Zoo knows 'normal' and 'ornstein-uhlenbeck'")
    return VectorizedActionNoise(noise, num_envs) if num_envs > 1 else noise  # each slot its own draw


def algorithm_arguments(algo: str, cls: type[BaseAlgorithm], env: Any, overrides: dict[str, Any] | None = None,
                        env_id: str = ENV_ID) -> tuple[dict[str, Any], dict[str, Any]]:
    """(SB3 keyword arguments, policy kwargs) from the file's ``env_id`` entry and ``overrides`` for a run on
    ``env``: ``train_freq`` lists as tuples (as RL Zoo reads them), the zoo's noise keys turned into an action noise."""
    values = file_values(algo, cls, overrides, env_id)
    policy_kwargs = values.pop("policy_kwargs", {})
    if isinstance(values.get("train_freq"), list):
        values["train_freq"] = tuple(values["train_freq"])
    kind, std = values.pop("noise_type", None), values.pop("noise_std", None)
    if kind is not None:
        values["action_noise"] = _action_noise(str(kind).strip(), float(std if std is not None else 0.1),
                                               env.action_space, env.num_envs)
    return values, policy_kwargs


def recorded_defaults(algo: str) -> dict[str, Any]:
    """What stage II's record holds of the file: ``{"policy.defaults.<key>": value}`` for each value that
    differs from what the algorithm would do without the file (SB3's default, or the project's architecture
    of :func:`~adafocus.agents.registry.base_policy_kwargs`); --policy.hyperparams is a recorded config field.

    Values equal to those defaults change nothing, so a stage II trained before its algorithm had a file
    (or before a value was written down at its default) still matches."""
    try:
        cls = resolve_algorithm(algo)
    except ValueError:
        return {}  # the stage fails with that error when it builds the algorithm
    values = file_values(algo, cls)
    base = base_policy_kwargs(cls)
    defaults = init_defaults(cls)
    out: dict[str, Any] = {}
    for key, value in sorted(values.items()):
        if key == "policy_kwargs":
            out.update({f"policy.defaults.policy_kwargs.{k}": v for k, v in sorted(value.items()) if base.get(k) != v})
        elif defaults.get(key, inspect.Parameter.empty) != value:
            out[f"policy.defaults.{key}"] = value
    return out
