"""Evaluation: every policy on one validation set, batched on the device, with early-exit curves and
where each policy looks (focus heatmaps).

A policy's rollout gives f_C's logits at every step; budgeted inference stops a video at the first
step whose top softmax score exceeds a threshold, so one rollout traces a whole accuracy-vs-GFLOPs curve.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_average_precision, multilabel_average_precision

from adafocus.agents import FocusAgent
from adafocus.backbones import evaluating
from adafocus.data.clips import ClipSet, multi_hot
from adafocus.envs import FocusEpisodes
from adafocus.envs.episodes import EpisodeBatch


@dataclass
class Rollout:
    """One policy over V videos: logits (V, T, K) after every step, patch corners (V, T, 2) or None;
    ``all_labels`` (V, L) every label of each video, padded with -1, for multi-label mAP (see ClipSet)."""

    logits: torch.Tensor
    labels: torch.Tensor
    corners: torch.Tensor | None
    seconds: float
    all_labels: torch.Tensor | None = None


def mean_average_precision(probs: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None = None) -> float:
    """mAP of class scores ``probs`` (V, K): per class, the average precision of ranking the videos by its
    score, averaged over the classes that occur.

    Single-label data (``targets`` None): each video counts for its class ``labels`` (V,). Multi-label
    data: ``targets`` is the bool (V, K) matrix of each video's classes (:func:`multi_hot`), so a video
    counts as a positive of every class it carries, as in the authors' FCVID evaluation (``cal_map``).
    Classes no video carries have no average precision and are left out of the mean in both cases (the
    authors divide by all K, the same when every class occurs in the evaluated split).
    """
    if targets is None:
        return float(multiclass_average_precision(probs, labels, probs.shape[-1], average="macro"))
    present = targets.any(0)
    if not present.any():
        return float("nan")
    return float(multilabel_average_precision(probs[:, present], targets[:, present].long(), int(present.sum()),
                                              average="macro"))


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
def play(episodes: EpisodeBatch, agent: FocusAgent, video: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``agent`` deterministically over loaded videos ``video`` (default: all of them): f_C's logits after
    every step (N, T', K) and the patch corners (N, T', 2)."""
    obs = episodes.begin(video if video is not None else torch.arange(episodes.num_videos))
    agent.reset(episodes.num_envs)
    logits, corners = [], []
    for _ in range(episodes.num_steps):
        result = episodes.step(agent.act(obs, deterministic=True))
        obs = result.observation
        logits.append(result.logits)
        corners.append(result.corners)
    return torch.stack(logits, 1), torch.stack(corners, 1)


@torch.no_grad()
def rollout(episodes: FocusEpisodes, agent: FocusAgent, batch_size: int = 64) -> Rollout:
    """Run ``agent`` deterministically over every loaded video of ``episodes``, ``batch_size`` at a time."""
    began = time.perf_counter()
    runs = [play(episodes, agent, torch.arange(start, min(start + batch_size, episodes.num_videos)))
            for start in range(0, episodes.num_videos, batch_size)]
    _synchronize(episodes.device)
    return Rollout(torch.cat([r[0] for r in runs]), episodes.clips.labels, torch.cat([r[1] for r in runs]),
                   time.perf_counter() - began, episodes.clips.all_labels)


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
    return Rollout(logits[:, None].expand(-1, steps, -1), clips.labels.to(device), None, time.perf_counter() - began,
                   clips.all_labels)


def exit_steps(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per video, the step at which it exits: the first t with max softmax > threshold, else the last.

    Threshold 0 exits after the first step; threshold 1 never exits early (a softmax score never exceeds 1).
    """
    confident = logits.softmax(-1).amax(-1) > threshold  # (V, T)
    t = logits.shape[1]
    first = torch.where(confident, torch.arange(t, device=logits.device), t - 1).amin(dim=1)
    return first


EXIT_THRESHOLDS = torch.cat([torch.tensor([0.0]), torch.linspace(0.2, 0.99, 24), torch.tensor([1.0])])


def _exit_sums(logits: torch.Tensor, labels: torch.Tensor,
               thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per threshold: steps taken (summed over videos) and videos right, with confidence-threshold exit."""
    batch = torch.arange(len(labels), device=logits.device)
    steps, correct = [], []
    for threshold in thresholds.tolist():
        exit_at = exit_steps(logits, threshold)
        steps.append(float((exit_at + 1).sum()))
        correct.append(float((logits[batch, exit_at].argmax(-1) == labels).sum()))
    return torch.tensor(steps, dtype=torch.float64), torch.tensor(correct, dtype=torch.float64)


def _curve(thresholds: torch.Tensor, steps: torch.Tensor, correct: torch.Tensor, videos: int,
           step_gmacs: float) -> list[dict[str, float]]:
    points = [{"threshold": th, "gflops_per_video": float(s) / videos * step_gmacs, "top1": float(c) / videos}
              for th, s, c in zip(thresholds.tolist(), steps, correct)]
    return sorted(points, key=lambda p: (p["gflops_per_video"], p["threshold"]))


def early_exit_curve(logits: torch.Tensor, labels: torch.Tensor, step_gmacs: float,
                     thresholds: torch.Tensor | None = None) -> list[dict[str, float]]:
    """Accuracy vs GFLOPs of confidence-threshold early exit, sorted by GFLOPs (the budget axis)."""
    thresholds = EXIT_THRESHOLDS if thresholds is None else thresholds
    return _curve(thresholds, *_exit_sums(logits, labels.to(logits.device), thresholds), len(labels), step_gmacs)


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


class RolloutStats:
    """One policy's results accumulated batch by batch, so an evaluation never holds the clips: the last
    step's logits (V, K) for top-1 and mAP (with every video's classes where the data is multi-label), each
    threshold's exit steps and hits for the early-exit curve, the patch corners (V, T, 2) for the heatmaps,
    focus hits against the target boxes, and the seconds spent."""

    def __init__(self, thresholds: torch.Tensor = EXIT_THRESHOLDS) -> None:
        self.thresholds = thresholds
        self.final: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.targets: list[torch.Tensor | None] = []  # per batch, bool (B, K) classes of each video, or None
        self.corners: list[torch.Tensor] = []
        self.exit_steps = torch.zeros(len(thresholds), dtype=torch.float64)
        self.exit_correct = torch.zeros(len(thresholds), dtype=torch.float64)
        self.hits, self.iou, self.steps_seen = 0.0, 0.0, 0
        self.num_steps = 0
        self.seconds = 0.0

    @property
    def videos(self) -> int:
        return sum(len(x) for x in self.labels)

    def add(self, logits: torch.Tensor, labels: torch.Tensor, corners: torch.Tensor | None = None,
            boxes: torch.Tensor | None = None, patch_size: int | None = None, seconds: float = 0.0,
            all_labels: torch.Tensor | None = None) -> "RolloutStats":
        """One batch: logits (B, T, K) after every step, labels (B,), patch corners (B, T, 2) and target
        boxes (B, T, 4) when known, and every label of each video (B, L), padded with -1, for multi-label
        data (top-1 stays on ``labels``, mAP counts them all)."""
        logits, labels = logits.float(), labels.to(logits.device)
        self.num_steps = logits.shape[1]
        self.final.append(logits[:, -1].cpu())
        self.labels.append(labels.cpu())
        self.targets.append(None if all_labels is None else multi_hot(all_labels.cpu(), logits.shape[-1]))
        steps, correct = _exit_sums(logits, labels, self.thresholds)
        self.exit_steps += steps
        self.exit_correct += correct
        if corners is not None:
            self.corners.append(corners.to(torch.int32).cpu())
            if boxes is not None and patch_size is not None:
                hit, iou = focus_hits(corners, boxes.to(corners.device), patch_size)
                n = corners.shape[0] * corners.shape[1]
                self.hits, self.iou, self.steps_seen = self.hits + hit * n, self.iou + iou * n, self.steps_seen + n
        self.seconds += seconds
        return self

    def all_corners(self) -> torch.Tensor | None:
        return torch.cat(self.corners) if self.corners else None

    def result(self, step_gmacs: float, curve: bool = True) -> PolicyResult:
        """Top-1 and mAP of the last step's prediction, GFLOPs, throughput, focus hits and the exit curve."""
        final, labels = torch.cat(self.final), torch.cat(self.labels)
        if any(t is None for t in self.targets) and not all(t is None for t in self.targets):
            raise ValueError("some batches carry every label of their videos (all_labels) and others do not")
        targets = None if not self.targets or self.targets[0] is None else torch.cat(self.targets)
        result = PolicyResult(
            top1=float((final.argmax(-1) == labels).float().mean()),
            mAP=mean_average_precision(final.softmax(-1), labels, targets),
            gflops_per_video=step_gmacs * self.num_steps,
            videos_per_second=len(labels) / max(self.seconds, 1e-9),
        )
        if self.steps_seen:
            result.hit_rate, result.mean_iou = self.hits / self.steps_seen, self.iou / self.steps_seen
        if curve:
            result.curve = _curve(self.thresholds, self.exit_steps, self.exit_correct, len(labels), step_gmacs)
        return result


def summarize(run: Rollout, step_gmacs: float, boxes: torch.Tensor | None = None,
              patch_size: int | None = None, curve: bool = True) -> PolicyResult:
    """Top-1 and mAP of the last step's prediction, GFLOPs, throughput, focus hits and the exit curve."""
    stats = RolloutStats().add(run.logits, run.labels, run.corners, boxes, patch_size, run.seconds, run.all_labels)
    return stats.result(step_gmacs, curve)


def per_frame_corners(corners: torch.Tensor, frames: int) -> torch.Tensor:
    """A clip-level policy's one place per clip, counted for every frame as a per-frame policy's are."""
    return corners.expand(-1, frames, -1) if corners.shape[1] == 1 else corners


def focus_heatmap(corners: torch.Tensor, patch_size: int, frame_size: tuple[int, int]) -> np.ndarray:
    """Share of steps in which each pixel lies inside the patch: where a policy looks, (H, W)."""
    h, w = frame_size
    flat = corners.reshape(-1, 2).long()
    starts = torch.zeros(h - patch_size + 1, w - patch_size + 1)
    starts.index_put_((flat[:, 1], flat[:, 0]), torch.ones(len(flat)), accumulate=True)
    box = torch.ones(1, 1, patch_size, patch_size)
    coverage = torch.nn.functional.conv_transpose2d(starts[None, None], box)[0, 0]  # spread each corner over its patch
    return (coverage / max(len(flat), 1)).numpy()

