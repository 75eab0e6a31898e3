"""Checkpoints: written atomically (temporary file, then rename), read with ``weights_only=True``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adafocus.backbones import ModelConfig

from .config import from_dict, to_dict


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to ``path`` so that a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file: name it
        raise ValueError(f"checkpoint {path} cannot be read: {error}") from error


def _differences(expected: dict[str, Any], found: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(expected) | set(found)):
        if key in ("weights", "dropout"):  # initialisation and regularisation, not architecture
            continue
        a, b = expected.get(key), found.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: run has {a!r}, checkpoint has {b!r}")
    return out


def check_architecture(checkpoint: dict[str, Any], model_config: dict[str, Any], path: Path) -> None:
    """Fail with the differing fields when a checkpoint was written for another architecture."""
    saved = checkpoint.get("config", {}).get("model")
    if saved is not None:
        # fields added since the checkpoint was written take their defaults (what that code built)
        saved = to_dict(from_dict(ModelConfig, saved))
        diffs = _differences(model_config, saved)
        if diffs:
            raise ValueError(f"checkpoint {path} was written for another architecture:\n  " + "\n  ".join(diffs))


def load_model_state(model: nn.Module, checkpoint: dict[str, Any], path: Path,
                     model_config: dict[str, Any] | None = None) -> None:
    """Load a checkpoint's ``model`` weights, failing with the differing architecture fields rather
    than a wall of missing keys."""
    if model_config is not None:
        check_architecture(checkpoint, model_config, path)
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError) as error:
        raise ValueError(f"checkpoint {path} does not fit this model ({str(error).splitlines()[0]})") from error
