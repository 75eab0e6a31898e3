"""A run's evaluation: every policy and baseline on one split from the run's checkpoints, and its report
(results.json and the plots)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from adafocus.agents import CenterAgent, FocusAgent, OracleAgent, RandomAgent, policy_gmacs
from adafocus.backbones import ClipFocusModel, full_frame_cost, global_only_cost, tsm_costs
from adafocus.data.clips import ClipSet
from adafocus.envs.clip_episodes import focus_part

from . import plotting
from .config import RunConfig, to_dict
from .evaluation import PolicyResult, Rollout, RolloutStats, clip_rollout, focus_heatmap, per_frame_corners, play
from .models import Model, build_model, clip_level, make_episodes, model_cost
from .run_data import data_paths, evaluation_batches
from .run_folder import load_policy, policy_env_config
from .training import setup_runtime


@dataclass
class Evaluation:
    """Results per policy (JSON-ready), the few videos the pictures show (``clips``, with each policy's
    rollout on them in ``rollouts``) and every policy's patch corners over the whole split (``corners``)."""

    results: dict[str, Any]
    rollouts: dict[str, Rollout]
    clips: ClipSet
    patch_size: int
    corners: dict[str, torch.Tensor]


def _timed(device: torch.device, fn: Any, *args: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    out = fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - began


def evaluate_run(config: RunConfig, model_checkpoint: Path, policy: Path | None, split: str = "val",
                 progress: bool = True, batch_size: int = 64, full_frame: Path | None = None,
                 tsm_plus: Path | None = None, videos: list[int] | None = None) -> Evaluation:
    """Every policy on one split: learned, random, center, oracle (annotated data), global-only, full frame.

    The split is streamed in test mode, ``batch_size`` videos at a time: f_G runs once per batch, then every
    policy and baseline runs on it, and only their metrics (last logits, exit-curve sums, focus hits, patch
    corners) are kept, plus the ``videos`` (positions in the split, default the first four) the pictures show.
    The full-frame baseline is f_L with its whole-frame head as the warm-up left them (``full_frame``, the
    warm-up checkpoint); later stages retrain f_L on patches, which that head never saw. For the clip-level
    model that baseline is TSM (f_L on the glance frames), and ``tsm_plus`` (a TSM+ checkpoint) adds TSM+.
    """
    device = setup_runtime(config.device).device
    paths = data_paths(config, progress)
    model = build_model(config, model_checkpoint, device)
    frames, clip = config.data.frames, clip_level(config)
    env_config = config.env if policy is None else policy_env_config(config, policy)
    episodes = make_episodes(model, None, replace(env_config, reward="conf"), device, num_frames=frames)
    agents: dict[str, FocusAgent] = {}
    if policy is not None:
        agents["learned"] = load_policy(policy, episodes, device, config)
    agents.update(random=RandomAgent(episodes.action_space, config.seed, model.frame_shape, model.config.patch_size,
                                     env_config),
                  center=CenterAgent(episodes.action_space))
    if paths.annotation_root is not None:
        agents["oracle"] = OracleAgent(episodes)
    baselines = _baselines(config, model, full_frame, tsm_plus, device)
    keep = sorted(set(videos if videos is not None else range(4)))
    if keep and min(keep) < 0:
        raise ValueError(f"videos {keep} are not indices of the evaluated videos")
    stats = {name: RolloutStats() for name in [*agents, *baselines]}
    shown: dict[str, list[tuple[torch.Tensor, torch.Tensor | None]]] = {name: [] for name in stats}
    kept: list[ClipSet] = []
    batches, total = evaluation_batches(config, paths, split, batch_size, device, progress)
    seen = 0
    for batch in tqdm(batches, total=-(-total // batch_size), desc=f"evaluating {split}", unit="batch",
                      disable=None if progress else True):  # None: no bar unless stderr is a terminal
        _, load_seconds = _timed(device, episodes.load, batch)
        pick = torch.tensor([i - seen for i in keep if seen <= i < seen + len(batch)], dtype=torch.long)
        for name, agent in agents.items():
            (logits, corners), seconds = _timed(device, play, episodes, agent)
            stats[name].add(logits, batch.labels, corners, batch.boxes, model.config.patch_size, seconds + load_seconds,
                            batch.all_labels)
            shown[name].append((logits[pick.to(logits.device)].cpu(), corners[pick.to(corners.device)].cpu()))
        for name, classify in baselines.items():
            logits, seconds = _timed(device, classify, episodes)
            stats[name].add(logits, batch.labels, seconds=seconds, all_labels=batch.all_labels)
            shown[name].append((logits[pick.to(logits.device)].cpu(), None))
        if len(pick):
            shown_clips = batch.subset(pick.to(batch.frames.device)).to("cpu")
            # clip level: the pictures show the focus frames, which the one patch is read from
            kept.append(focus_part(shown_clips, model.glance_frames) if clip else shown_clips)
        seen += len(batch)
    if not seen:
        raise ValueError(f"no video of the {split} split could be evaluated")
    if videos is not None and keep and max(keep) >= seen:
        raise ValueError(f"videos {keep} are not indices of the {seen} evaluated videos")
    base = model_cost(model, frames)
    results: dict[str, PolicyResult] = {}
    for name, agent in agents.items():
        gmacs = base.total + policy_gmacs(agent, episodes.observation_space, device)
        results[name] = stats[name].result(gmacs, curve=not clip)
    costs = tsm_costs(model, frames) if clip else {"global_only": global_only_cost(model), "full_frame": full_frame_cost(model)}
    for name in baselines:
        results[name] = stats[name].result(costs[name], curve=name == "global_only" and not clip)
    rollouts = {}
    labels = torch.cat([c.labels for c in kept])
    for name in stats:
        logits = torch.cat([lg for lg, _ in shown[name]])
        corners = None if name in baselines else torch.cat([c for _, c in shown[name]])
        if clip and corners is not None:  # one patch place and one prediction for all frames, as per-frame ones
            corners, logits = corners.expand(-1, frames, -1), logits.expand(-1, frames, -1)
        rollouts[name] = Rollout(logits, labels, corners, stats[name].seconds)
    corners = {name: stats[name].all_corners() for name in agents}
    summary = {"policies": {k: v.row() for k, v in results.items()}, "step_gflops": base.as_dict(),
               "videos": seen, "frames": frames, "split": split}
    return Evaluation(summary, {k: rollouts[k] for k in agents}, ClipSet.cat(kept), model.config.patch_size,
                      {k: v for k, v in corners.items() if v is not None})


def _baselines(config: RunConfig, model: Model, warmup: Path | None, tsm_plus: Path | None,
               device: torch.device) -> dict[str, Any]:
    """The policy-free rows, each a function of the loaded episodes -> logits (B, T', K).

    Per frame: f_G + f_C alone (``global_only``) and f_L on every whole frame with the warm-up's head
    (``full_frame``). Per clip (Section 4.2): f_G alone, TSM (the warm-up's f_L on the whole glance frames)
    and TSM+ (its own checkpoint)."""
    rows: dict[str, Any] = {}
    if isinstance(model, ClipFocusModel):
        rows["global_only"] = lambda ep: clip_rollout(model.classify_global_frames, model, ep.clips).logits
        if warmup is not None:
            tsm = build_model(config, warmup, device)
            rows["tsm"] = lambda ep: clip_rollout(tsm.classify_tsm, tsm, ep.clips).logits
        if tsm_plus is not None:
            plus = build_model(config, tsm_plus, device)
            rows["tsm_plus"] = lambda ep: clip_rollout(plus.classify_tsm_plus, plus, ep.clips).logits
        return rows
    rows["global_only"] = lambda ep: ep.model.global_classifier(ep.glance_pooled)[0]
    full = build_model(config, warmup, device) if warmup is not None else model
    rows["full_frame"] = lambda ep: clip_rollout(full.classify_full_frames, full, ep.clips, steps=ep.num_frames).logits
    return rows


def write_report(evaluation: Evaluation, out: Path, config: RunConfig, run: Path | None = None) -> dict[str, list[Path]]:
    """results.json, the accuracy-vs-GFLOPs plot, focus trajectories (strip + GIF) of the videos the evaluation
    kept, heatmaps, learning curves. ``run``: the run folder whose stage logs feed the learning curves
    (default: ``out``)."""
    out = Path(out)
    run = Path(run) if run is not None else out
    results = {**evaluation.results, "config": to_dict(config)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plots = out / "plots"
    written = {"results": [out / "results.json"],
               "budget": plotting.plot_budget_curves(results["policies"], plots / "accuracy_vs_gflops",
                                                     f"{config.preset}: top-1 vs GFLOPs per video")}
    shown = "learned" if "learned" in evaluation.rollouts else next(iter(evaluation.rollouts))
    shown_run, clips = evaluation.rollouts[shown], evaluation.clips
    if len(clips):
        written["trajectories"] = plotting.plot_trajectories(
            clips.frames, shown_run.corners, evaluation.patch_size, shown_run.logits, clips.labels,
            plots / f"trajectories_{shown}", clips.boxes)
        written["gif"] = [plotting.save_gif(clips.frames[0], shown_run.corners[0], evaluation.patch_size,
                                            plots / f"episode_{shown}.gif", None if clips.boxes is None else clips.boxes[0])]
    frame_size = config.model.frame_size, config.model.frame_size
    written["heatmaps"] = plotting.plot_focus_heatmaps(
        {name: focus_heatmap(per_frame_corners(corners, config.data.frames), evaluation.patch_size, frame_size)
         for name, corners in evaluation.corners.items()}, plots / "focus_heatmaps")
    written["learning"] = plotting.plot_learning_curves(
        {"warm-up": run / "warmup" / "log.csv", "stage I": run / "stage1" / "log.csv",
         "stage III": run / "stage3" / "log.csv", "TSM+": run / "tsm_plus" / "log.csv",
         "PPO": run / "policy" / "progress.csv"}, plots / "learning_curves")
    return written
