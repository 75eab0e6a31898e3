"""The AdaFocus pipeline: warm-up -> stage I -> stage II (pi by RL) -> stage III -> evaluation.

Each stage writes into its own folder of the run (``<out>/warmup``, ``stage1``, ``policy``, ``stage3``);
a stage finished by the same command is reused, an interrupted one resumes, and one trained by another
command is refused (:mod:`adafocus.provenance`). Stages II, III and the evaluation stream their videos.
"""
from __future__ import annotations

import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor
from tqdm.auto import tqdm

from adafocus.agents import (CenterAgent, FocusAgent, OracleAgent, RandomAgent, SB3Agent, action_kind, load_agent,
                             make_algorithm, policy_gmacs, restore_algorithm, save_agent)
from adafocus.backbones import (AdaFocusModel, ClipFocusModel, StepCost, clip_cost, full_frame_cost,
                                global_only_cost, step_cost, tsm_costs)
from adafocus.data.clips import ClipSet, VideoSource
from adafocus.data.dataset import collate_videos
from adafocus.envs import AdaFocusVecEnv, ClipEpisodes, EnvConfig, FocusEpisodes
from adafocus.envs.clip_episodes import focus_part

from . import checkpoint, plotting, provenance
from .config import PolicyConfig, RunConfig, from_dict, to_dict
from .evaluation import PolicyResult, Rollout, RolloutStats, clip_rollout, play
from .runs import DataPaths, data_paths, episode_source, evaluation_batches, video_dataset
from .stages import ClipPatchTask, PatchTask, PolicyTask, WarmupTask
from .training import Environment, interactive, setup_environment, train_stage

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


def make_episodes(model: Model, clips: ClipSet | None, env_config: EnvConfig, device: torch.device | str,
                  step_gmacs: float = 0.0, num_frames: int | None = None) -> FocusEpisodes | ClipEpisodes:
    """The batched episodes of the model's form: one step per frame, or one step per clip. With ``clips``
    None, the videos are loaded later (:meth:`~adafocus.envs.FocusEpisodes.load`) and ``num_frames`` gives T."""
    kind = ClipEpisodes if isinstance(model, ClipFocusModel) else FocusEpisodes
    return kind(model, clips, env_config, device, step_gmacs, num_frames=num_frames)


def model_cost(model: Model, frames: int) -> StepCost:
    """GMACs of one env step: one frame (per-frame AdaFocus) or one clip of ``frames`` frames."""
    return clip_cost(model, frames) if isinstance(model, ClipFocusModel) else step_cost(model)


def stage_lists(config: RunConfig, paths: DataPaths) -> dict[str, Path | None]:
    """The data files a stage's record identifies by content."""
    label_file = Path(config.data.label_file) if config.data.label_file else None
    return {"train_list": paths.train_list, "val_list": paths.val_list, "label_file": label_file}


def _policy_inputs(policy: Path) -> dict[str, Path]:
    return {"policy": policy, "policy_meta": Path(policy).with_suffix(".json")}


def _barrier(env: Environment) -> None:
    if env.world_size > 1:
        torch.distributed.barrier()


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


def run_supervised(config: RunConfig, stage: str, out: Path, init: Path | None = None,
                   policy: Path | None = None, resume: bool = True, progress: bool = True,
                   env: Environment | None = None) -> Path:
    """Train one supervised stage into ``out/<stage>/checkpoint.pt`` and return that path.

    A stage finished by the same command (its ``stage.json`` record: config fields, data lists, the
    checkpoint it started from) is reused; one finished or interrupted under another command is refused
    (:class:`~adafocus.provenance.StageMismatch`). ``tsm_plus`` is stage I of the clip-level model on whole
    frames (the TSM+ baseline, Section 4.2). Stage III streams its videos like stage I: each batch is
    rolled out under the frozen policy, f_G running on it once.
    """
    if stage not in SUPERVISED:
        raise ValueError(f"stage must be one of {SUPERVISED}, got {stage!r}")
    if stage == "tsm_plus" and not clip_level(config):
        raise ValueError("TSM+ is the clip-level baseline of Section 4.2: set --model.glance_frames (e.g. --preset sthsth)")
    if stage == "stage3" and policy is None:
        raise ValueError("stage III needs a trained policy (--policy)")
    env = env or setup_environment(config.device)
    stage_cfg: Any = replace(config.stage1, patches="full") if stage == "tsm_plus" else getattr(config, stage)
    folder = Path(out) / stage
    ckpt = folder / "checkpoint.pt"
    paths = data_paths(config, progress and env.is_main)
    inputs = {"init": init, **(_policy_inputs(policy) if policy is not None else {})}
    record = provenance.stage_record(config, stage, stage_lists(config, paths), inputs)
    if provenance.stage_status(folder, record) == "finished":
        return ckpt
    resuming = resume and ckpt.is_file() and provenance.check_partial(folder, record)
    if env.is_main and not resuming:
        provenance.begin_stage(folder, record)
    model = build_model(config, init)
    train_set = video_dataset(config, paths, "train", train=True, frames=stage_cfg.frames)
    val_set = video_dataset(config, paths, "val", train=False, frames=stage_cfg.frames)
    if stage == "stage3":
        assert policy is not None
        env_config = replace(policy_env_config(config, policy), reward="conf")  # no reference patch needed
        episodes = make_episodes(model, None, env_config, env.device, num_frames=config.data.frames)
        task: Any = PolicyTask(model, load_policy(policy, episodes, env.device, config), episodes)
    elif stage == "warmup":
        task = WarmupTask(model, stage_cfg.lr_global > 0)
    else:
        task = (ClipPatchTask if clip_level(config) else PatchTask)(model, stage_cfg.patches)
    folder.mkdir(parents=True, exist_ok=True)
    train_stage(task, stage_cfg, train_set, val_set, folder, env, config.model.num_classes, config.seed,
                to_dict(config), collate=collate_videos, workers=config.data.workers, resume=resuming,
                progress=progress, name=stage)
    if env.is_main:
        provenance.finish_stage(folder, record, [ckpt])
    _barrier(env)
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
                self.correct += int(info["prediction"] == info["label"])
        return True

    def _on_rollout_end(self) -> None:
        if self.seen:
            self.logger.record("rollout/train_top1", self.correct / self.seen)
        self.correct, self.seen = 0, 0


STATE_NAME = "adafocus_state.json"  # inside the checkpoint zip, beside SB3's own files


class _Checkpoint(BaseCallback):
    """Every ``every`` updates, pi with its optimizer and step count (SB3's zip), the video source's position
    and the slots' generators, as one file written atomically: what a crashed stage II resumes from.

    Saved when a rollout starts, so the last update is in it and no half-collected rollout is."""

    def __init__(self, path: Path, every: int, source: VideoSource, vec: AdaFocusVecEnv, seconds: float = 0.0) -> None:
        super().__init__()
        self.path, self.every, self.source, self.vec = path, every, source, vec
        self.updates = -1
        self.seconds_before, self.began = seconds, time.perf_counter()  # training time of the runs it resumes

    def _on_training_start(self) -> None:
        self.began = time.perf_counter()

    def seconds(self) -> float:
        """Wall-clock seconds of training so far, over every resumed part."""
        return self.seconds_before + time.perf_counter() - self.began

    def _on_rollout_start(self) -> None:
        self.updates += 1
        if self.updates and self.updates % self.every == 0:
            save_checkpoint(self.model, self.path, {"num_timesteps": self.model.num_timesteps, "seconds": self.seconds(),
                                                    "source": self.source.state_dict(), "rngs": self.vec.rng_state()})

    def _on_step(self) -> bool:
        return True


class StepLog(BaseCallback):
    """Stage II's progress in a log (output that is not a terminal): one line every ``every`` timesteps (a
    pass over the training videos) and one at the end, instead of a bar redrawn at every step."""

    def __init__(self, name: str, total: int, every: int) -> None:
        super().__init__()
        self.name, self.total, self.every = name, total, max(1, every)
        self.began, self.last = time.perf_counter(), -1

    def _on_training_start(self) -> None:
        self.began, self.last = time.perf_counter(), self.num_timesteps // self.every

    def _line(self) -> None:
        rewards = [info["r"] for info in self.model.ep_info_buffer or []]
        reward = f", mean episode reward {np.mean(rewards):.4f}" if rewards else ""
        print(f"{self.name}: {self.num_timesteps:,}/{self.total:,} steps ({100 * self.num_timesteps / max(self.total, 1):.0f}%)"
              f"{reward}, {time.perf_counter() - self.began:.0f} s", file=sys.stderr, flush=True)

    def _on_step(self) -> bool:
        if self.num_timesteps // self.every > self.last:
            self.last = self.num_timesteps // self.every
            self._line()
        return True

    def _on_training_end(self) -> None:
        if self.num_timesteps % self.every:
            self._line()


def sb3_progress(progress: bool, name: str, total: int, every: int) -> tuple[bool, list[BaseCallback]]:
    """SB3's ``progress_bar`` and the extra callbacks for ``learn``: its live bar on a terminal, else
    :class:`StepLog`'s lines (SB3's bar is rich's, drawn on stdout)."""
    if not progress:
        return False, []
    if interactive(sys.stdout):
        return True, []
    return False, [StepLog(name, total, every)]


def save_checkpoint(algo: Any, path: Path, state: dict[str, Any]) -> None:
    """SB3's zip of ``algo`` with ``state`` (JSON) added, written to a temporary file and renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    algo.save(tmp)
    with zipfile.ZipFile(tmp, "a") as archive:
        archive.writestr(STATE_NAME, json.dumps(state))
    os.replace(tmp, path)


def read_checkpoint_state(path: Path) -> dict[str, Any] | None:
    """The state saved beside pi in a stage II checkpoint, or None when the file is missing or unreadable
    (a file cut short by a crash mid-write never replaces the previous one, but a foreign one may be there)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(STATE_NAME))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def run_policy(config: RunConfig, out: Path, model_checkpoint: Path, resume: bool = True,
               progress: bool = True) -> Path:
    """Stage II: train pi with an SB3 algorithm on the batched env over frozen backbones, its videos streamed.

    Checkpoints every ``policy.checkpoint_every`` updates into ``policy/checkpoint.zip``; a re-run resumes
    from it. ``policy.zip`` and ``policy.json`` are written atomically, then ``stage.json`` last: only that
    marks the stage finished, and a policy file whose digest no longer matches is retrained.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError("stage II runs in one process: run it (train_policy.py) without torchrun; "
                           "train_stage1.py and train_stage3.py take torchrun")
    folder = Path(out) / "policy"
    path, ckpt = folder / "policy.zip", folder / "checkpoint.zip"
    paths = data_paths(config, progress)
    record = provenance.stage_record(config, "policy", stage_lists(config, paths), {"init": model_checkpoint})
    status = provenance.stage_status(folder, record)
    if status == "finished":
        return path
    if status == "incomplete":
        print(f"{folder}: policy.zip or policy.json does not match its record (cut short?): training stage II again")
    state = read_checkpoint_state(ckpt) if resume and provenance.check_partial(folder, record) else None
    if state is None:
        provenance.begin_stage(folder, record)
    env = setup_environment(config.device)
    model = build_model(config, model_checkpoint)
    requested = "continuous" if clip_level(config) else (config.env.action if config.env.action != "grid" else None)
    env_config = replace(config.env, action=action_kind(config.policy.algo, requested))
    frames = config.data.frames
    episodes = make_episodes(model, None, env_config, env.device, model_cost(model, frames).total, frames)
    seed = config.seed if config.policy.seed is None else config.policy.seed
    source = episode_source(replace(config, seed=seed), paths, "train", config.policy.n_envs, env.device, progress)
    videos = source.order.size
    vec = AdaFocusVecEnv(episodes, config.policy.n_envs, seed=seed, source=source)
    steps = config.policy.total_timesteps or int(config.policy.epochs * videos * episodes.num_steps)
    algo = make_algorithm(config.policy.algo, VecMonitor(vec), config.policy, episodes.num_steps, seed, env.device)
    done = 0
    if state is not None:
        # a resume rebuilds pi from the config like a fresh start, then reads the checkpoint's tensors
        # (weights, optimizer) and step counters only: SB3's load would unpickle parts of the file
        restore_algorithm(algo, ckpt, training=True)
        done = int(state["num_timesteps"])
        algo.num_timesteps = done
        source.load_state_dict(state["source"])
        vec.set_rng_state(state["rngs"])
        print(f"resuming stage II from step {done:,} of {steps:,} ({ckpt})")
        if (folder / "progress.csv").is_file():  # SB3's logger starts the file anew: keep the history beside it
            os.replace(folder / "progress.csv", folder / f"progress_until_{done}.csv")
    algo.set_logger(configure(str(folder), ["csv", "tensorboard"]))
    bar, logs = sb3_progress(progress, "stage II", steps, videos * episodes.num_steps)
    timer = _Checkpoint(ckpt, config.policy.checkpoint_every, source, vec, float((state or {}).get("seconds", 0.0)))
    callbacks = [_Progress(), timer, *logs]
    algo.learn(max(steps - done, 0), callback=callbacks, progress_bar=bar, reset_num_timesteps=state is None)
    source.close()
    save_agent(algo, path, {**to_dict(config), "env": to_dict(env_config)})
    # stage.json also notes what training took (not compared): env steps and wall-clock seconds of learn()
    provenance.finish_stage(folder, {**record, "timesteps": int(algo.num_timesteps), "wall_seconds": round(timer.seconds(), 3)},
                            [path, path.with_suffix(".json")])
    ckpt.unlink(missing_ok=True)
    return path


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
    device = setup_environment(config.device).device
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
        {name: focus_heatmap(_per_frame(corners, config.data.frames), evaluation.patch_size, frame_size)
         for name, corners in evaluation.corners.items()}, plots / "focus_heatmaps")
    written["learning"] = plotting.plot_learning_curves(
        {"warm-up": run / "warmup" / "log.csv", "stage I": run / "stage1" / "log.csv",
         "stage III": run / "stage3" / "log.csv", "TSM+": run / "tsm_plus" / "log.csv",
         "PPO": run / "policy" / "progress.csv"}, plots / "learning_curves")
    return written


def _per_frame(corners: torch.Tensor, frames: int) -> torch.Tensor:
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


def stage_records(config: RunConfig, run: Path, paths: DataPaths) -> dict[str, dict[str, Any]]:
    """The record each stage of ``config`` would have if trained from ``run``'s upstream files (only the
    stages whose upstream files ``run`` holds: ``--from`` a run with only a warm-up and stage I works)."""
    run, lists = Path(run), stage_lists(config, paths)
    warm, stage1, policy = run / "warmup" / "checkpoint.pt", run / "stage1" / "checkpoint.pt", run / "policy" / "policy.zip"
    inputs = {"warmup": {"init": None}, "stage1": {"init": warm}, "tsm_plus": {"init": warm}, "policy": {"init": stage1},
              "stage3": {"init": stage1, **_policy_inputs(policy)}}
    return {stage: provenance.stage_record(config, stage, lists, files) for stage, files in inputs.items()
            if all(p is None or p.is_file() for p in files.values())}  # without its inputs a stage is not there to adopt


def main_job(config: RunConfig, out: Path, progress: bool = True,
             start_from: Path | None = None) -> tuple[Evaluation, dict[str, list[Path]]]:
    """The whole pipeline on one config. Stages finished by the same command are reused, interrupted ones
    resume, and one trained by another command is refused (:class:`~adafocus.provenance.StageMismatch`).
    ``start_from``: another run folder whose finished stages that this config would train the same way
    (warm-up, stage I, ...) are copied in first. ``config.json`` is rewritten only once every stage agrees."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if start_from is not None:
        records = stage_records(config, start_from, data_paths(config, progress))
        adopted = provenance.adopt_stages(Path(start_from), out, config, records)
        print(f"from {start_from}: reusing {', '.join(adopted) if adopted else 'no stage (none matches this command)'}")
    described = out / "config.json"
    if not described.is_file():
        described.write_text(json.dumps(to_dict(config), indent=2))
    warm = run_supervised(config, "warmup", out, progress=progress)
    stage1 = run_supervised(config, "stage1", out, init=warm, progress=progress)
    policy = run_policy(config, out, stage1, progress=progress)
    stage3 = run_supervised(config, "stage3", out, init=stage1, policy=policy, progress=progress)
    plus = run_supervised(config, "tsm_plus", out, init=warm, progress=progress) if clip_level(config) else None
    described.write_text(json.dumps(to_dict(config), indent=2))
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
