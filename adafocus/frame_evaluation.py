"""The frame policies of a finished AdaFocus run beside the frame baselines, on one table and one plot.

Every method reads frames with the same backbones and the same frozen pi, and is priced with the same
per-frame GMACs (:func:`adafocus.backbones.step_cost`, pi's and the frame policy's networks by
:func:`adafocus.backbones.count_gmacs`): all frames (AdaFocus), confidence-threshold early exit, uniform K,
oracle K (from the benchmark's per-frame ``readable`` flags), pi', AdaFrame (with its utility stop) and
MultiAgent.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_average_precision

from adafocus.agents import policy_gmacs
from adafocus.agents.frames import FrameAgent, oracle_frames, uniform_frames
from adafocus.envs.frame_episodes import FrameEpisodes, FrameReader

from .cli import print_frame_table
from .evaluation import PolicyResult, early_exit_curve, rollout, summarize
from .frame_training import FrameConfig, frame_reader, load_frame_policy, load_run, policy_name, train_frame_policy
from .plotting import plot_frame_budget
from .run_data import clip_set, data_paths, with_val_videos
from .training import setup_runtime


def _result(logits: torch.Tensor, labels: torch.Tensor, gflops: float, seconds: float,
            curve: list[dict[str, float]] | None = None, **extra: Any) -> dict[str, Any]:
    labels = labels.to(logits.device)
    row = PolicyResult(top1=float((logits.argmax(-1) == labels).float().mean()),
                       mAP=float(multiclass_average_precision(logits.softmax(-1), labels, logits.shape[-1], average="macro")),
                       gflops_per_video=gflops, videos_per_second=len(labels) / max(seconds, 1e-9),
                       curve=curve or []).row()
    return {**row, **extra}


@torch.no_grad()
def run_frame_policy(episodes: FrameEpisodes, agent: FrameAgent, device: torch.device,
                     utility: bool = False) -> dict[str, torch.Tensor]:
    """All videos at once, deterministic actions, until every episode ends. Returns the final logits (V, K),
    GMACs per video (backbones and the frame policy's decisions), and with ``utility`` the trajectory needed
    for AdaFrame's stop rule: logits, utility and GMACs after every read."""
    obs = episodes.begin(torch.arange(episodes.num_videos))
    agent.reset(episodes.num_rows * episodes.agents)
    decision = policy_gmacs(agent, episodes.observation_space, device) * episodes.agents
    trace: dict[str, list[torch.Tensor]] = {"logits": [episodes.logits.clone()], "spent": [episodes.spent.clone()],
                                            "utility": []}
    while not bool(episodes.finished.all()):
        if utility:
            trace["utility"].append(agent.utility(obs))
        result = episodes.step(agent.act(obs))
        obs = result.observation
        trace["logits"].append(result.logits.clone())
        trace["spent"].append(result.spent.clone())
    out = {"logits": episodes.logits.clone(), "gmacs": episodes.spent + decision * episodes.decisions.float(),
           "decisions": episodes.decisions.clone(), "decision_gmacs": torch.tensor(decision)}
    if utility:
        out.update(trace_logits=torch.stack(trace["logits"], 1), trace_spent=torch.stack(trace["spent"], 1),
                   trace_utility=torch.stack(trace["utility"], 1))
    return out


def utility_stop_curve(trace: dict[str, torch.Tensor], labels: torch.Tensor,
                       thresholds: torch.Tensor | None = None) -> list[dict[str, float]]:
    """AdaFrame's stop rule swept: before each next read, stop when the utility is below the threshold."""
    utility, logits, spent = trace["trace_utility"], trace["trace_logits"], trace["trace_spent"]  # (V, S), (V, S+1, K)
    if thresholds is None:
        lo, hi = float(utility.min()), float(utility.max())
        thresholds = torch.cat([torch.linspace(lo, hi, 24), torch.tensor([hi + 1.0])])
    v, s = utility.shape
    batch = torch.arange(v, device=logits.device)
    points = []
    for threshold in thresholds.tolist():
        stop = torch.where(utility < threshold, torch.arange(s, device=utility.device), s).amin(dim=1)  # reads after the first
        gmacs = spent[batch, stop] + float(trace["decision_gmacs"]) * stop.float()
        predicted = logits[batch, stop].argmax(-1)
        points.append({"threshold": threshold, "gflops_per_video": float(gmacs.mean()),
                       "top1": float((predicted == labels.to(predicted.device)).float().mean())})
    return sorted(points, key=lambda p: (p["gflops_per_video"], p["threshold"]))


def interpolate(curve: list[dict[str, float]], gflops: float) -> float | None:
    """Top-1 of a budget curve at ``gflops`` (linear between its points; None outside its range)."""
    xs = np.array([p["gflops_per_video"] for p in curve])
    ys = np.array([p["top1"] for p in curve])
    if len(xs) == 0 or gflops < xs.min() - 1e-12 or gflops > xs.max() + 1e-12:
        return None
    order = np.argsort(xs, kind="stable")
    return float(np.interp(gflops, xs[order], ys[order]))


def selection_curve(reader: FrameReader, frames_for_k: Callable[[int], torch.Tensor], ks: range
                    ) -> tuple[list[dict[str, float]], dict[int, torch.Tensor], dict[int, float]]:
    """Accuracy vs GMACs of reading K chosen frames per video, for every K in ``ks``: the curve's points, and
    per K the logits and the seconds it took (choosing the frames and classifying them)."""
    clips = reader.episodes.clips
    video = torch.arange(len(clips), device=reader.device)
    points, logits, seconds = [], {}, {}
    for k in ks:
        began = time.perf_counter()
        frames = frames_for_k(k).to(reader.device)
        logits[k] = reader.classify_frames(video, frames)[:, -1]
        seconds[k] = time.perf_counter() - began
        points.append({"k": k, "gflops_per_video": k * reader.costs.read,
                       "top1": float((logits[k].argmax(-1) == clips.labels).float().mean())})
    return points, logits, seconds


def evaluate_frame_policies(run: Path, policies: list[Path], k: int | None = None, split: str = "val",
                            progress: bool = True, val_videos: int | None = None) -> dict[str, Any]:
    """Every frame method on one split, priced with the same counter; ``k`` the budget of the uniform and
    oracle rows (default: the mean number of readable frames per clip, at least 1). ``val_videos``
    (synthetic data only) evaluates on a validation split of that many videos from the same generator,
    generated beside the run's (its training split is the same; 128 videos give a standard error of
    about 4 points of top-1, 1024 about 1.5)."""
    device = setup_runtime("auto").device
    loaded = load_run(run, device)
    config = loaded.config
    if val_videos is not None:
        config = with_val_videos(config, val_videos)
    clips = clip_set(config, data_paths(config, progress), split, progress)
    reader = frame_reader(loaded.model, clips, loaded.env_config, loaded.focus, device)
    labels, t = reader.episodes.clips.labels, reader.num_frames
    if k is None:
        k = max(1, round(float(clips.readable.float().sum(1).mean()))) if clips.readable is not None else t // 4
    if not 1 <= k <= t:
        raise ValueError(f"k must be a number of frames in 1..{t}, got {k}")
    results: dict[str, dict[str, Any]] = {}
    full = rollout(reader.episodes, loaded.focus, batch_size=len(clips))
    summary = summarize(full, reader.costs.read, clips.boxes, loaded.model.config.patch_size)
    results["all_frames"] = {**summary.row(), "curve": []}
    results["threshold_exit"] = {**summary.row(), "curve": early_exit_curve(full.logits.float(), labels, reader.costs.read)}
    every_k = range(1, t + 1)
    uniform_curve, logits, seconds = selection_curve(reader, lambda n: uniform_frames(len(clips), t, n), every_k)
    results[f"uniform_k{k}"] = _result(logits[k], labels, k * reader.costs.read, seconds[k], uniform_curve, k=k)
    if clips.readable is not None:
        readable = reader.episodes.clips.readable
        curve, logits, seconds = selection_curve(reader, lambda n: oracle_frames(readable, n), every_k)
        results[f"oracle_k{k}"] = _result(logits[k], labels, k * reader.costs.read, seconds[k], curve, k=k)
    for path in policies:
        kind, settings, episodes, agent = load_frame_policy(path, reader, device, loaded.config.seed)
        began = time.perf_counter()
        out = run_frame_policy(episodes, agent, device, utility=kind == "adaframe")
        seconds_taken = time.perf_counter() - began
        name = policy_name(kind, settings)
        extra: dict[str, Any] = {"kind": kind, "mean_decisions": float(out["decisions"].float().mean())}
        if kind == "pi_prime":
            extra["mean_frames_processed"] = float(episodes.processed.float().mean())
        curve = utility_stop_curve(out, labels) if kind == "adaframe" else []
        results[name] = _result(out["logits"], labels, float(out["gmacs"].mean()), seconds_taken, curve, **extra)
    for name, row in results.items():
        row["uniform_top1_at_equal_gflops"] = interpolate(uniform_curve, row["gflops_per_video"])
        row["threshold_exit_top1_at_equal_gflops"] = interpolate(results["threshold_exit"]["curve"], row["gflops_per_video"])
    return {"policies": results, "frame_gflops": asdict(reader.costs) | {"read": reader.costs.read},
            "videos": len(clips), "frames": t, "k": k, "split": split, "run": str(run)}


def write_frame_report(evaluation: dict[str, Any], out: Path) -> list[Path]:
    """``out/results.json`` and the accuracy-vs-GFLOPs plot of :func:`evaluate_frame_policies`' result."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(evaluation, indent=2))
    return [out / "results.json", *plot_frame_budget(evaluation["policies"], out / "plots" / "accuracy_vs_gflops",
                                                     f"Frame policies ({evaluation['videos']} {evaluation['split']} videos)")]


def frame_job(run: Path, out: Path, kinds: list[str], settings: FrameConfig, lambdas: list[float] | None = None,
              progress: bool = True, val_videos: int | None = None) -> dict[str, Any]:
    """Train the requested frame policies on a finished run (finished ones are reused) and evaluate every
    frame policy found in ``out`` beside the baselines; writes ``out/results.json`` and the plot."""
    for kind in kinds:
        for weight in (lambdas or [settings.cost_weight]) if kind == "pi_prime" else [settings.cost_weight]:
            train_frame_policy(kind, run, out, replace(settings, cost_weight=weight), progress)
    trained = sorted(Path(out).glob("*/policy.zip"))
    evaluation = evaluate_frame_policies(run, trained, progress=progress, val_videos=val_videos)
    written = write_frame_report(evaluation, out)
    print_frame_table(evaluation)
    print("written: " + ", ".join(str(p) for p in written))
    return evaluation
