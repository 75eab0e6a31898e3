"""The numpy boundary of the envs: action checks and one packed device-to-host copy per step."""
from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces


def check_actions(actions: np.ndarray, space: spaces.Space, num_envs: int) -> np.ndarray:
    """Validate a batch of actions before they reach the crop: a wrong action must not become a wrong crop.

    Discrete: integers in [0, n). Box: finite, shape (N, 2); values outside [-1, 1] are clipped later
    (documented in :class:`EnvConfig`). Raises ValueError naming the problem otherwise.
    """
    actions = np.asarray(actions)
    if isinstance(space, spaces.Discrete):
        actions = actions.reshape(-1) if actions.size == num_envs else actions
        if actions.shape != (num_envs,):
            raise ValueError(f"expected {num_envs} discrete actions, got an array of shape {actions.shape}")
        if not np.issubdtype(actions.dtype, np.integer):
            if not np.all(np.isfinite(actions)) or np.any(actions != np.round(actions)):
                raise ValueError(f"discrete actions must be integers, got {actions}")
        if np.any(actions < 0) or np.any(actions >= space.n):
            raise ValueError(f"discrete actions must lie in [0, {space.n}), got {actions}")
        return actions.astype(np.int64)
    actions = actions.reshape(num_envs, -1) if actions.size == num_envs * 2 else actions
    if actions.shape != (num_envs, 2):
        raise ValueError(f"expected continuous actions of shape ({num_envs}, 2), got {actions.shape}")
    if not np.all(np.isfinite(actions)):
        raise ValueError(f"continuous actions must be finite, got {actions}")
    return actions.astype(np.float32)


def host_step(episodes, result) -> tuple[dict[str, np.ndarray], np.ndarray, list[dict]]:
    """A step's observation, rewards and per-episode infos (prediction, confidence, patch box, GFLOPs so
    far, the video's dataset index, its label) on the host, from one packed transfer: what both env faces return."""
    host = to_host({**result.observation, "reward": result.reward, "prediction": result.logits.argmax(-1),
                    "confidence": result.confidence, "patch": episodes.patch_boxes(result.corners),
                    "video": episodes.video_ids(), "label": episodes.labels})
    gflops = episodes.step_gmacs * episodes.t
    infos = [{"prediction": int(host["prediction"][i]), "confidence": float(host["confidence"][i]),
              "patch": host["patch"][i], "gflops": gflops, "video": int(host["video"][i]),
              "label": int(host["label"][i])}
             for i in range(len(host["video"]))]
    return {key: host[key] for key in result.observation}, host["reward"].astype(np.float32), infos


def to_host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Copy named (N, ...) tensors to numpy in ONE device-to-host transfer (packed, then split)."""
    n = next(iter(tensors.values())).shape[0]
    flat = [t.reshape(n, -1).float() for t in tensors.values()]
    packed = torch.cat(flat, dim=1).cpu().numpy()
    out, start = {}, 0
    for (name, tensor), part in zip(tensors.items(), flat):
        out[name] = packed[:, start:start + part.shape[1]].reshape(tensor.shape)
        start += part.shape[1]
    return out
