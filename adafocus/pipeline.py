"""The AdaFocus pipeline: warm-up -> stage I -> stage II (pi by RL) -> stage III -> evaluation.

Each stage writes into its own folder of the run (``<out>/warmup``, ``stage1``, ``policy``, ``stage3``);
a stage whose checkpoint is complete is reused, an interrupted one resumes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor
from torch.utils.data import Dataset

from adafocus.agents import (CenterAgent, FocusAgent, OracleAgent, RandomAgent, action_kind, load_agent,
                             make_algorithm, policy_gmacs, save_agent)
from adafocus.backbones import (AdaFocusModel, ClipFocusModel, StepCost, clip_cost, full_frame_cost, global_only_cost,
                                step_cost, tsm_costs)
from adafocus.data.clips import ClipSet
from adafocus.data.video import collate_videos
from adafocus.envs import AdaFocusVecEnv, ClipEpisodes, EnvConfig, FocusEpisodes

from . import checkpoint, plotting
from .config import RunConfig, to_dict
from .evaluation import (PolicyResult, Rollout, clip_rollout, full_frame_rollout, global_only_rollout, rollout,
                         summarize)
from .runs import clip_set, data_paths, video_dataset
from .stages import ClipPatchTask, PatchTask, PolicyTask, WarmupTask
from .training import Environment, setup_environment, train_stage

SUPERVISED = ("warmup", "stage1", "stage3", "tsm_plus")
Model = AdaFocusModel | ClipFocusModel


def clip_level(config: RunConfig) -> bool:
    """Whether the run is clip-level AdaFocus (Section 4.2: one patch per clip, linear f_C)."""
    return config.model.glance_frames is not None


def build_model(config: RunConfig, init: Path | None, device: torch.device | str = "cpu") -> Model:
    """An AdaFocus network of the run's shape (initialised from the run's seed), with weights from a
    checkpoint of an earlier stage: per frame (Section 4.1) or per clip (Section 4.2, ``glance_frames``)."""
    torch.manual_seed(config.seed)
    model = (ClipFocusModel if clip_level(config) else AdaFocusModel)(config.model)
    if init is not None:
        state = checkpoint.load(init)
        checkpoint.load_model_state(model, state, init, to_dict(config.model))
    return model.to(device)


def make_episodes(model: Model, clips: ClipSet, env_config: EnvConfig, device: torch.device | str,
                  step_gmacs: float = 0.0) -> FocusEpisodes | ClipEpisodes:
    """The batched episodes of the model's form: one step per frame, or one step per clip."""
    kind = ClipEpisodes if isinstance(model, ClipFocusModel) else FocusEpisodes
    return kind(model, clips, env_config, device, step_gmacs)


def model_cost(model: Model, frames: int) -> StepCost:
    """GMACs of one env step: one frame (per-frame AdaFocus) or one clip of ``frames`` frames."""
    return clip_cost(model, frames) if isinstance(model, ClipFocusModel) else step_cost(model)


def stage_done(path: Path, epochs: int) -> bool:
    """A stage checkpoint that has run all its epochs."""
    if not path.is_file():
        return False
    return checkpoint.load(path)["epoch"] + 1 >= epochs


class _IndexSet(Dataset):
    """Video indices into clip tensors, with labels: the batches of stage III."""

    def __init__(self, clips: ClipSet) -> None:
        self.labels = clips.labels.cpu()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i, "label": self.labels[i]}


def policy_env_config(config: RunConfig, policy: Path) -> EnvConfig:
    """The env settings a policy was trained with (saved beside it), so it is evaluated in the same env."""
    meta = Path(policy).with_suffix(".json")
    if not meta.is_file():
        raise FileNotFoundError(f"policy {policy} has no config file {meta} beside it")
    return EnvConfig(**json.loads(meta.read_text())["env"])


def run_supervised(config: RunConfig, stage: str, out: Path, init: Path | None = None,
                   policy: Path | None = None, resume: bool = True, progress: bool = True,
                   env: Environment | None = None) -> Path:
    """Train one supervised stage into ``out/<stage>/checkpoint.pt`` and return that path.

    ``tsm_plus`` is stage I of the clip-level model on whole frames (the TSM+ baseline, Section 4.2).
    """
    if stage not in SUPERVISED:
        raise ValueError(f"stage must be one of {SUPERVISED}, got {stage!r}")
    if stage == "tsm_plus" and not clip_level(config):
        raise ValueError("TSM+ is the clip-level baseline of Section 4.2: set --model.glance_frames (e.g. --preset sthsth)")
    env = env or setup_environment(config.device)
    stage_cfg: Any = replace(config.stage1, patches="full") if stage == "tsm_plus" else getattr(config, stage)
    folder = Path(out) / stage
    ckpt = folder / "checkpoint.pt"
    if resume and stage_done(ckpt, stage_cfg.epochs):
        return ckpt
    paths = data_paths(config, progress and env.is_main)
    model = build_model(config, init)
    if stage == "stage3":
        if policy is None:
            raise ValueError("stage III needs a trained policy (--policy)")
        agent = load_agent(policy, config.policy.algo, env.device)
        train_clips, val_clips = clip_set(config, paths, "train", progress), clip_set(config, paths, "val", progress)
        env_config = replace(policy_env_config(config, policy), reward="conf")  # no reference patch needed
        episodes = [make_episodes(model, c, env_config, env.device) for c in (train_clips, val_clips)]
        task = PolicyTask(model, agent, *episodes)
        train_set, val_set, collate = _IndexSet(train_clips), _IndexSet(val_clips), None
    else:
        if stage == "warmup":
            task = WarmupTask(model, stage_cfg.lr_global > 0)
        else:
            task = (ClipPatchTask if clip_level(config) else PatchTask)(model, stage_cfg.patches)
        train_set = video_dataset(config, paths, "train", train=True, frames=stage_cfg.frames)
        val_set = video_dataset(config, paths, "val", train=False, frames=stage_cfg.frames)
        collate = collate_videos
    folder.mkdir(parents=True, exist_ok=True)
    train_stage(task, stage_cfg, train_set, val_set, folder, env, config.model.num_classes, config.seed,
                to_dict(config), collate=collate, workers=config.data.workers if stage != "stage3" else 0,
                resume=resume, progress=progress, name=stage)
    return ckpt


class _Progress(BaseCallback):
    """Episode reward and accuracy of the training episodes, logged at the end of every rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.correct, self.seen = 0, 0

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"]):
            if done:
                self.seen += 1
                self.correct += int(info["prediction"] == int(self.training_env.episodes.clips.labels[info["video"]]))
        return True

    def _on_rollout_end(self) -> None:
        if self.seen:
            self.logger.record("rollout/train_top1", self.correct / self.seen)
        self.correct, self.seen = 0, 0


def run_policy(config: RunConfig, out: Path, model_checkpoint: Path, resume: bool = True,
               progress: bool = True) -> Path:
    """Stage II: train pi with an SB3 algorithm on the batched env over frozen backbones."""
    folder = Path(out) / "policy"
    path = folder / "policy.zip"
    if resume and path.is_file():
        return path
    env = setup_environment(config.device)
    folder.mkdir(parents=True, exist_ok=True)
    paths = data_paths(config, progress)
    model = build_model(config, model_checkpoint)
    clips = clip_set(config, paths, "train", progress)
    requested = "continuous" if clip_level(config) else (config.env.action if config.env.action != "grid" else None)
    env_config = replace(config.env, action=action_kind(config.policy.algo, requested))
    episodes = make_episodes(model, clips, env_config, env.device, model_cost(model, clips.num_frames).total)
    vec = VecMonitor(AdaFocusVecEnv(episodes, config.policy.n_envs, seed=config.seed))
    algo = make_algorithm(config.policy.algo, vec, config.policy, episodes.num_steps, config.seed, env.device)
    algo.set_logger(configure(str(folder), ["csv", "tensorboard"]))
    steps = config.policy.total_timesteps or int(config.policy.epochs * len(clips) * episodes.num_steps)
    algo.learn(steps, callback=_Progress(), progress_bar=progress)
    save_agent(algo, path, {**to_dict(config), "env": to_dict(env_config)})
    return path


@dataclass
class Evaluation:
    """Results per policy (JSON-ready) and the rollouts and clips behind them (for the pictures)."""

    results: dict[str, Any]
    rollouts: dict[str, Rollout]
    clips: ClipSet
    patch_size: int


def evaluate_run(config: RunConfig, model_checkpoint: Path, policy: Path | None, split: str = "val",
                 progress: bool = True, batch_size: int = 64, full_frame: Path | None = None,
                 tsm_plus: Path | None = None) -> Evaluation:
    """Every policy on one split: learned, random, center, oracle (annotated data), global-only, full frame.

    The full-frame baseline is f_L with its whole-frame head as the warm-up left them (``full_frame``, the
    warm-up checkpoint); later stages retrain f_L on patches, which that head never saw. For the clip-level
    model that baseline is TSM (f_L on the glance frames), and ``tsm_plus`` (a TSM+ checkpoint) adds TSM+.
    """
    device = setup_environment(config.device).device
    paths = data_paths(config, progress)
    model = build_model(config, model_checkpoint, device)
    clips = clip_set(config, paths, split, progress)
    env_config = config.env
    agents: dict[str, FocusAgent] = {}
    if policy is not None:
        env_config = policy_env_config(config, policy)
        agents["learned"] = load_agent(policy, config.policy.algo, device)
    episodes = make_episodes(model, clips, replace(env_config, reward="conf"), device)
    agents.update(random=RandomAgent(episodes.action_space, config.seed), center=CenterAgent(episodes.action_space))
    if clips.boxes is not None:
        agents["oracle"] = OracleAgent(episodes)
    clip = clip_level(config)
    base = model_cost(model, clips.num_frames)
    results: dict[str, PolicyResult] = {}
    rollouts = {name: rollout(episodes, agent, batch_size) for name, agent in agents.items()}
    for name, agent in agents.items():
        gmacs = base.total + policy_gmacs(agent, episodes.observation_space, device)
        results[name] = summarize(rollouts[name], gmacs, clips.boxes, model.config.patch_size, curve=not clip)
        if clip:  # one patch place and one prediction for all frames: as per-frame ones for the pictures
            run = rollouts[name]
            run.corners = run.corners.expand(-1, clips.num_frames, -1)
            run.logits = run.logits.expand(-1, clips.num_frames, -1)
    if clip:
        results.update(_tsm_baselines(config, model, episodes.clips, full_frame, tsm_plus, device))
    else:
        results["global_only"] = summarize(global_only_rollout(episodes), global_only_cost(model))
        full = build_model(config, full_frame, device) if full_frame is not None else model
        results["full_frame"] = summarize(full_frame_rollout(full, episodes.clips), full_frame_cost(model), curve=False)
    summary = {"policies": {k: v.row() for k, v in results.items()}, "step_gflops": base.as_dict(),
               "videos": len(clips), "frames": clips.num_frames, "split": split}
    return Evaluation(summary, rollouts, clips.to("cpu"), model.config.patch_size)


def _tsm_baselines(config: RunConfig, model: ClipFocusModel, clips: ClipSet, warmup: Path | None,
                   tsm_plus: Path | None, device: torch.device) -> dict[str, PolicyResult]:
    """The clip-level model's policy-free rows: f_G alone, TSM (the warm-up's f_L on whole glance frames)
    and TSM+ (its own checkpoint), each at its measured GMACs per clip."""
    costs = tsm_costs(model, clips.num_frames)
    rows = {"global_only": summarize(clip_rollout(model.classify_global_frames, model, clips), costs["global_only"],
                                     curve=False)}
    if warmup is not None:
        tsm = build_model(config, warmup, device)
        glance = lambda frames: tsm.classify_full_frames(frames[:, tsm.glance_index(frames.shape[1])])  # noqa: E731
        rows["tsm"] = summarize(clip_rollout(glance, tsm, clips), costs["tsm"], curve=False)
    if tsm_plus is not None:
        plus = build_model(config, tsm_plus, device)
        rows["tsm_plus"] = summarize(clip_rollout(plus.classify_tsm_plus, plus, clips), costs["tsm_plus"], curve=False)
    return rows


def write_report(evaluation: Evaluation, out: Path, config: RunConfig,
                 videos: list[int] | None = None, run: Path | None = None) -> dict[str, list[Path]]:
    """results.json, the accuracy-vs-GFLOPs plot, focus trajectories (strip + GIF), heatmaps, learning curves.

    ``videos``: which validation videos the trajectory strip shows (default: the first four);
    ``run``: the run folder whose stage logs feed the learning curves (default: ``out``).
    """
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
    pick = torch.tensor(videos if videos is not None else range(min(4, len(clips))))
    if pick.numel() == 0 or int(pick.max()) >= len(clips) or int(pick.min()) < 0:
        raise ValueError(f"videos {pick.tolist()} are not indices of the {len(clips)} evaluated videos")
    boxes = None if clips.boxes is None else clips.boxes[pick]
    corners = shown_run.corners.cpu()[pick]
    written["trajectories"] = plotting.plot_trajectories(
        clips.frames[pick], corners, evaluation.patch_size, shown_run.logits.cpu()[pick], clips.labels[pick],
        plots / f"trajectories_{shown}", boxes)
    written["gif"] = [plotting.save_gif(clips.frames[pick[0]], corners[0], evaluation.patch_size,
                                        plots / f"episode_{shown}.gif", None if boxes is None else boxes[0])]
    written["heatmaps"] = plotting.plot_focus_heatmaps(
        {name: focus_heatmap(r.corners.cpu(), evaluation.patch_size, clips.frame_size)
         for name, r in evaluation.rollouts.items()}, plots / "focus_heatmaps")
    written["learning"] = plotting.plot_learning_curves(
        {"warm-up": run / "warmup" / "log.csv", "stage I": run / "stage1" / "log.csv",
         "stage III": run / "stage3" / "log.csv", "TSM+": run / "tsm_plus" / "log.csv",
         "PPO": run / "policy" / "progress.csv"}, plots / "learning_curves")
    return written


def focus_heatmap(corners: torch.Tensor, patch_size: int, frame_size: tuple[int, int]) -> np.ndarray:
    """Share of steps in which each pixel lies inside the patch: where a policy looks, (H, W)."""
    h, w = frame_size
    flat = corners.reshape(-1, 2).long()
    starts = torch.zeros(h - patch_size + 1, w - patch_size + 1)
    starts.index_put_((flat[:, 1], flat[:, 0]), torch.ones(len(flat)), accumulate=True)
    box = torch.ones(1, 1, patch_size, patch_size)
    coverage = torch.nn.functional.conv_transpose2d(starts[None, None], box)[0, 0]  # spread each corner over its patch
    return (coverage / max(len(flat), 1)).numpy()


def main_job(config: RunConfig, out: Path, progress: bool = True) -> tuple[Evaluation, dict[str, list[Path]]]:
    """The whole pipeline on one config; finished stages are reused, interrupted ones resume."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(config), indent=2))
    warm = run_supervised(config, "warmup", out, progress=progress)
    stage1 = run_supervised(config, "stage1", out, init=warm, progress=progress)
    policy = run_policy(config, out, stage1, progress=progress)
    stage3 = run_supervised(config, "stage3", out, init=stage1, policy=policy, progress=progress)
    plus = run_supervised(config, "tsm_plus", out, init=warm, progress=progress) if clip_level(config) else None
    evaluation = evaluate_run(config, stage3, policy, progress=progress, full_frame=warm, tsm_plus=plus)
    return evaluation, write_report(evaluation, out, config)


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
    from .config import from_dict

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
