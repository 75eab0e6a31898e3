"""The AdaFocus pipeline's stage runners: warm-up -> stage I -> stage II (pi by RL) -> stage III -> evaluation.

Each stage writes into its own folder of the run (``<out>/warmup``, ``stage1``, ``policy``, ``stage3``);
a stage finished by the same command is reused, an interrupted one resumes, and one trained by another
command is refused (:mod:`adafocus.provenance`). Stages II, III and the evaluation stream their videos.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor

from adafocus.agents import action_kind, log_interval, make_algorithm, restore_algorithm, save_agent
from adafocus.data.dataset import collate_videos
from adafocus.envs import AdaFocusVecEnv

from . import provenance
from .callbacks import ResumeCheckpoint, TrainAccuracy, read_checkpoint_state, sb3_progress
from .config import RunConfig, to_dict
from .models import build_model, clip_level, make_episodes, model_cost
from .run_data import DataPaths, data_paths, episode_source, video_dataset
from .run_evaluation import Evaluation, evaluate_run, write_report
from .run_folder import load_policy, policy_env_config
from .stages import ClipPatchTask, PatchTask, PolicyTask, WarmupTask
from .training import Runtime, setup_runtime, train_stage

SUPERVISED = ("warmup", "stage1", "stage3", "tsm_plus")


def stage_lists(config: RunConfig, paths: DataPaths) -> dict[str, Path | None]:
    """The data files a stage's record identifies by content."""
    label_file = Path(config.data.label_file) if config.data.label_file else None
    return {"train_list": paths.train_list, "val_list": paths.val_list, "label_file": label_file}


def _policy_inputs(policy: Path) -> dict[str, Path]:
    return {"policy": policy, "policy_meta": Path(policy).with_suffix(".json")}


def _barrier(runtime: Runtime) -> None:
    if runtime.world_size > 1:
        torch.distributed.barrier()


def run_supervised(config: RunConfig, stage: str, out: Path, init: Path | None = None,
                   policy: Path | None = None, resume: bool = True, progress: bool = True,
                   runtime: Runtime | None = None) -> Path:
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
    runtime = runtime or setup_runtime(config.device)
    stage_cfg: Any = replace(config.stage1, patches="full") if stage == "tsm_plus" else getattr(config, stage)
    folder = Path(out) / stage
    ckpt = folder / "checkpoint.pt"
    paths = data_paths(config, progress and runtime.is_main)
    inputs = {"init": init, **(_policy_inputs(policy) if policy is not None else {})}
    record = provenance.stage_record(config, stage, stage_lists(config, paths), inputs)
    if provenance.stage_status(folder, record) == "finished":
        return ckpt
    resuming = resume and ckpt.is_file() and provenance.check_partial(folder, record)
    if runtime.is_main and not resuming:
        provenance.begin_stage(folder, record)
    model = build_model(config, init)
    train_set = video_dataset(config, paths, "train", train=True, frames=stage_cfg.frames)
    val_set = video_dataset(config, paths, "val", train=False, frames=stage_cfg.frames)
    if stage == "stage3":
        assert policy is not None
        env_config = replace(policy_env_config(config, policy), reward="conf")  # no reference patch needed
        episodes = make_episodes(model, None, env_config, runtime.device, num_frames=config.data.frames)
        task: Any = PolicyTask(model, load_policy(policy, episodes, runtime.device, config), episodes)
    elif stage == "warmup":
        task = WarmupTask(model, stage_cfg.lr_global > 0)
    else:
        task = (ClipPatchTask if clip_level(config) else PatchTask)(model, stage_cfg.patches)
    folder.mkdir(parents=True, exist_ok=True)
    train_stage(task, stage_cfg, train_set, val_set, folder, runtime, config.model.num_classes, config.seed,
                to_dict(config), collate=collate_videos, workers=config.data.workers, resume=resuming,
                progress=progress, name=stage)
    if runtime.is_main:
        provenance.finish_stage(folder, record, [ckpt])
    _barrier(runtime)
    return ckpt


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
    runtime = setup_runtime(config.device)
    model = build_model(config, model_checkpoint)
    requested = "continuous" if clip_level(config) else (config.env.action if config.env.action != "grid" else None)
    env_config = replace(config.env, action=action_kind(config.policy.algo, requested))
    frames = config.data.frames
    episodes = make_episodes(model, None, env_config, runtime.device, model_cost(model, frames).total, frames)
    seed = config.seed if config.policy.seed is None else config.policy.seed
    source = episode_source(replace(config, seed=seed), paths, "train", config.policy.n_envs, runtime.device, progress)
    videos = source.order.size
    vec = AdaFocusVecEnv(episodes, config.policy.n_envs, seed=seed, source=source)
    steps = config.policy.total_timesteps or int(config.policy.epochs * videos * episodes.num_steps)
    algo = make_algorithm(config.policy.algo, VecMonitor(vec), config.policy, episodes.num_steps, seed, runtime.device)
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
    timer = ResumeCheckpoint(ckpt, config.policy.checkpoint_every, source, vec, float((state or {}).get("seconds", 0.0)))
    callbacks = [TrainAccuracy(), timer, *logs]
    algo.learn(max(steps - done, 0), callback=callbacks, log_interval=log_interval(algo), progress_bar=bar,
               reset_num_timesteps=state is None)
    source.close()
    save_agent(algo, path, {**to_dict(config), "env": to_dict(env_config)})
    # stage.json also notes what training took (not compared): env steps and wall-clock seconds of learn()
    provenance.finish_stage(folder, {**record, "timesteps": int(algo.num_timesteps), "wall_seconds": round(timer.seconds(), 3)},
                            [path, path.with_suffix(".json")])
    ckpt.unlink(missing_ok=True)
    return path


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
