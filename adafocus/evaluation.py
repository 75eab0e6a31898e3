"""Evaluation: every policy on one validation set, batched on the device, with early-exit curves.

A policy's rollout gives f_C's logits at every step; budgeted inference stops a video at the first
step whose top softmax score exceeds a threshold, so one rollout traces a whole accuracy-vs-GFLOPs curve.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_average_precision

from adafocus.agents import FocusAgent
from adafocus.backbones import AdaFocusModel, evaluating
from adafocus.data.clips import ClipSet
from adafocus.envs import FocusEpisodes


@dataclass
class Rollout:
    """One policy over V videos: logits (V, T, K) after every step, patch corners (V, T, 2) or None."""

    logits: torch.Tensor
    labels: torch.Tensor
    corners: torch.Tensor | None
    seconds: float


@dataclass
class PolicyResult:
    top1: float
    mAP: float
    gflops_per_video: float
    videos_per_second: float
    hit_rate: float | None = None
    mean_iou: float | None = None
    curve: list[dict[str, float]] = field(default_factory=list)

    def row(self) -> dict[str, float | None | list]:
        return dict(self.__dict__)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def rollout(episodes: FocusEpisodes, agent: FocusAgent, batch_size: int = 64) -> Rollout:
    """Run ``agent`` deterministically over every video of ``episodes``, ``batch_size`` at a time."""
    logits, corners = [], []
    began = time.perf_counter()
    for start in range(0, episodes.num_videos, batch_size):
        index = torch.arange(start, min(start + batch_size, episodes.num_videos))
        obs = episodes.begin(index)
        agent.reset(len(index))
        step_logits, step_corners = [], []
        for _ in range(episodes.num_steps):
            result = episodes.step(agent.act(obs, deterministic=True))
            obs = result.observation
            step_logits.append(result.logits)
            step_corners.append(result.corners)
        logits.append(torch.stack(step_logits, 1))
        corners.append(torch.stack(step_corners, 1))
    _synchronize(episodes.device)
    return Rollout(torch.cat(logits), episodes.clips.labels, torch.cat(corners), time.perf_counter() - began)


@torch.no_grad()
def global_only_rollout(episodes: FocusEpisodes) -> Rollout:
    """f_G + f_C without any patch (the global-only classifier trained in stage I)."""
    began = time.perf_counter()
    logits = episodes.model.global_classifier(episodes.glance_pooled)[0]
    _synchronize(episodes.device)
    return Rollout(logits, episodes.clips.labels, None, time.perf_counter() - began)


@torch.no_grad()
def clip_rollout(classify: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, clips: ClipSet,
                 batch_size: int = 16, steps: int = 1) -> Rollout:
    """A policy-free baseline: ``classify`` (a method of ``model``) maps clips (B, T, 3, H, W) to logits (B, K);
    the rollout repeats them over ``steps`` steps."""
    device = next(model.parameters()).device
    began = time.perf_counter()
    with evaluating(model):
        logits = torch.cat([classify(clips.frames[i:i + batch_size].to(device)) for i in range(0, len(clips), batch_size)])
    _synchronize(device)
    return Rollout(logits[:, None].expand(-1, steps, -1), clips.labels.to(device), None, time.perf_counter() - began)


def full_frame_rollout(model: AdaFocusModel, clips: ClipSet, batch_size: int = 16) -> Rollout:
    """f_L on every whole frame at full resolution, frame logits averaged (the warm-up's f_L head)."""
    return clip_rollout(model.classify_full_frames, model, clips, batch_size, clips.num_frames)


def exit_steps(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per video, the step at which it exits: the first t with max softmax > threshold, else the last.

    Threshold 0 exits after the first step; threshold 1 never exits early (a softmax score never exceeds 1).
    """
    confident = logits.softmax(-1).amax(-1) > threshold  # (V, T)
    t = logits.shape[1]
    first = torch.where(confident, torch.arange(t, device=logits.device), t - 1).amin(dim=1)
    return first


def early_exit_curve(logits: torch.Tensor, labels: torch.Tensor, step_gmacs: float,
                     thresholds: torch.Tensor | None = None) -> list[dict[str, float]]:
    """Accuracy vs GFLOPs of confidence-threshold early exit, sorted by GFLOPs (the budget axis)."""
    if thresholds is None:
        thresholds = torch.cat([torch.tensor([0.0]), torch.linspace(0.2, 0.99, 24), torch.tensor([1.0])])
    points = []
    batch = torch.arange(len(labels), device=logits.device)
    for threshold in thresholds.tolist():
        steps = exit_steps(logits, threshold)
        predicted = logits[batch, steps].argmax(-1)
        points.append({"threshold": threshold, "gflops_per_video": float((steps + 1).float().mean()) * step_gmacs,
                       "top1": float((predicted == labels).float().mean())})
    return sorted(points, key=lambda p: (p["gflops_per_video"], p["threshold"]))


def focus_hits(corners: torch.Tensor, boxes: torch.Tensor, patch_size: int) -> tuple[float, float]:
    """Hit rate (share of steps whose patch contains the target's centre) and mean IoU with the target box."""
    patch = torch.cat([corners, corners + patch_size], dim=-1).float()
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    inside = ((centre >= patch[..., :2]) & (centre < patch[..., 2:])).all(dim=-1)
    lo = torch.maximum(patch[..., :2], boxes[..., :2])
    hi = torch.minimum(patch[..., 2:], boxes[..., 2:])
    inter = (hi - lo).clamp_min(0).prod(dim=-1)
    area = lambda b: (b[..., 2:] - b[..., :2]).prod(dim=-1)  # noqa: E731
    iou = inter / (area(patch) + area(boxes) - inter)
    return float(inside.float().mean()), float(iou.mean())


def summarize(run: Rollout, step_gmacs: float, boxes: torch.Tensor | None = None,
              patch_size: int | None = None, curve: bool = True) -> PolicyResult:
    """Top-1 and mAP of the last step's prediction, GFLOPs, throughput, focus hits and the exit curve."""
    final = run.logits[:, -1].float()
    labels = run.labels.to(final.device)
    num_classes = final.shape[-1]
    result = PolicyResult(
        top1=float((final.argmax(-1) == labels).float().mean()),
        mAP=float(multiclass_average_precision(final.softmax(-1), labels, num_classes, average="macro")),
        gflops_per_video=step_gmacs * run.logits.shape[1],
        videos_per_second=len(labels) / max(run.seconds, 1e-9),
    )
    if boxes is not None and run.corners is not None and patch_size is not None:
        result.hit_rate, result.mean_iou = focus_hits(run.corners, boxes.to(run.corners.device), patch_size)
    if curve:
        result.curve = early_exit_curve(run.logits.float(), labels, step_gmacs)
    return result
