"""Temporal adaptivity on a finished AdaFocus run: train the frame policies (pi', AdaFrame, MultiAgent)
with pi and the backbones frozen (stage II'), and compare them with the frame baselines on one table.

Every method reads frames with the same backbones and the same frozen pi, and is priced with the same
per-frame GMACs (:func:`adafocus.backbones.step_cost`, pi's and the frame policy's networks by
:func:`adafocus.backbones.count_gmacs`): all frames (AdaFocus), confidence-threshold early exit, uniform K,
oracle K (from the benchmark's per-frame ``readable`` flags), pi', AdaFrame (with its utility stop) and
MultiAgent.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor
from torchmetrics.functional.classification import multiclass_average_precision

from adafocus.agents import FocusAgent, load_algorithm, policy_gmacs, save_agent
from adafocus.agents.frames import (FrameAgent, frame_policy_gmacs, make_frame_algorithm, oracle_frames,
                                    uniform_frames)
from adafocus.backbones import AdaFocusModel, step_cost
from adafocus.data.clips import ClipSet
from adafocus.envs import EnvConfig, FocusEpisodes
from adafocus.envs.frame_episodes import (FrameCosts, FrameEpisodes, FrameReader, JumpEpisodes,
                                          MultiAgentEpisodes, SkipEpisodes)
from adafocus.envs.frame_vec_env import FrameEnv, FrameVecEnv

from . import plotting, provenance
from .config import PolicyConfig, RunConfig
from .evaluation import PolicyResult, early_exit_curve, rollout, summarize
from .run_data import clip_set, data_paths, episode_source
from .training import setup_environment

KINDS = ("pi_prime", "adaframe", "multiagent")


@dataclass(frozen=True)
class FrameSettings(PolicyConfig):
    """Stage II' (the frame policies): the paper trains pi' with Adam for 10 epochs after pi (appendix B.1).

    ``cost_weight`` is pi''s lambda (reward per GFLOP spent); ``skip`` its skip option (``glance`` or
    ``none``); ``max_reads`` AdaFrame's read budget (0: T); ``agents`` and ``agent_steps`` MultiAgent's.
    gamma 1: every episode is at most T steps and pi''s return is then exactly c_final - c_0 - lambda x GFLOPs.
    """

    # stage II's PPO settings (PolicyConfig) with the frame policies' defaults
    epochs: float = 10.0  # passes over the training videos
    gamma: float = 1.0
    gae_lambda: float = 0.95
    n_epochs: int = 4
    minibatches: int = 4
    features_dim: int = 256
    conv_channels: int = 16
    cost_weight: float = 1.0  # at 2 and above PPO learned to stop at once on the temporal variant (measured)
    skip: str = "glance"
    max_reads: int = 4
    agents: int = 2
    agent_steps: int = 4
    agent_cost_weight: float = 0.0  # MultiAgent: lambda of a cost term the paper does not have (0: none)


@dataclass
class Base:
    """The finished AdaFocus run the frame policies build on: config, trained model, frozen pi."""

    config: RunConfig
    model: AdaFocusModel
    focus: FocusAgent
    env: EnvConfig
    device: torch.device


def load_base(run: Path, device: torch.device | str = "cpu") -> Base:
    """Stage III's (else stage I's) model and the learned pi of a run written by ``train_policy.py``."""
    from .models import build_model, make_episodes
    from .run_folder import load_policy, open_run, policy_env_config

    files = open_run(Path(run))
    if files.policy is None:
        raise FileNotFoundError(f"{run}: no policy/policy.zip: the frame policies need a trained pi")
    device = torch.device(device)
    model = build_model(files.config, files.checkpoint, device)
    env = policy_env_config(files.config, files.policy)
    spaces = make_episodes(model, None, replace(env, reward="conf"), device, num_frames=files.config.data.frames)
    agent = load_policy(files.policy, spaces, device, files.config)
    return Base(files.config, model, agent, env, device)


def frame_reader(model: AdaFocusModel, clips: ClipSet | None, env: EnvConfig, focus: FocusAgent,
                 device: torch.device | str = "cpu", num_frames: int | None = None) -> FrameReader:
    """The AdaFocus frame read over ``clips`` (or over videos loaded later, of ``num_frames`` frames) with its
    measured GMACs (pi's network included)."""
    episodes = FocusEpisodes(model, clips, replace(env, reward="conf"), device, num_frames=num_frames)
    cost = step_cost(model)
    pi = policy_gmacs(focus, episodes.observation_space, episodes.device)
    costs = FrameCosts(glance=cost.global_encoder, patch=cost.local_encoder + pi, classifier=cost.classifier)
    return FrameReader(episodes, lambda obs: focus.act(obs, deterministic=True), costs)


def build_episodes(kind: str, reader: FrameReader, settings: FrameSettings) -> FrameEpisodes:
    if kind == "pi_prime":
        return SkipEpisodes(reader, settings.cost_weight, settings.skip)  # type: ignore[arg-type]
    if kind == "adaframe":
        return JumpEpisodes(reader, settings.max_reads or None)
    if kind == "multiagent":
        return MultiAgentEpisodes(reader, settings.agents, settings.agent_steps, settings.agent_cost_weight)
    raise ValueError(f"frame policy must be one of {KINDS}, got {kind!r}")


def horizon(episodes: FrameEpisodes) -> int:
    """Steps of the longest episode."""
    if isinstance(episodes, JumpEpisodes):
        return episodes.max_reads - 1
    if isinstance(episodes, MultiAgentEpisodes):
        return episodes.steps
    return episodes.num_frames


def policy_name(kind: str, settings: FrameSettings) -> str:
    """The folder of a trained frame policy: pi' carries its lambda and skip option in the name."""
    if kind == "pi_prime":
        return f"pi_prime_lambda{settings.cost_weight:g}_{settings.skip}"
    if kind == "multiagent" and settings.agent_cost_weight > 0:
        return f"multiagent_lambda{settings.agent_cost_weight:g}"
    return kind


def train_frame_policy(kind: str, run: Path, out: Path, settings: FrameSettings, progress: bool = True,
                       resume: bool = True) -> Path:
    """Stage II': train one frame policy by RL over the run's training videos, pi and backbones frozen."""
    folder = Path(out) / policy_name(kind, settings)
    path = folder / "policy.zip"
    from .callbacks import sb3_progress
    from .run_folder import open_run

    files = open_run(Path(run))
    record = {"stage": f"frame_policy:{kind}", "fields": {f"frame.{k}": v for k, v in asdict(settings).items()},
              "data": {}, "inputs": {name: {"sha256": provenance.file_digest(p)} for name, p in
                                     (("checkpoint", files.checkpoint), ("policy", files.policy)) if p is not None}}
    if resume and provenance.stage_status(folder, record) == "finished":
        return path
    provenance.begin_stage(folder, record)
    env = setup_environment("auto")
    base = load_base(run, env.device)
    source = episode_source(base.config, data_paths(base.config, progress), "train", settings.n_envs, env.device,
                            progress)
    frames = base.config.data.frames
    episodes = build_episodes(kind, frame_reader(base.model, None, base.env, base.focus, env.device, frames), settings)
    vec = VecMonitor(FrameVecEnv(episodes, settings.n_envs, seed=base.config.seed, source=source))
    steps_per_episode = horizon(episodes) * episodes.agents
    algo = make_frame_algorithm(settings.algo, vec, settings, horizon(episodes), base.config.seed, env.device)
    folder.mkdir(parents=True, exist_ok=True)
    algo.set_logger(configure(str(folder), ["csv"]))
    steps = settings.total_timesteps or int(settings.epochs * source.order.size * steps_per_episode)
    began = time.perf_counter()
    bar, logs = sb3_progress(progress, f"stage II' {kind}", steps, source.order.size * steps_per_episode)
    algo.learn(steps, callback=logs, progress_bar=bar)
    source.close()
    meta = {"kind": kind, "run": str(run), "settings": asdict(settings), "timesteps": steps,
            "seconds": time.perf_counter() - began}
    save_agent(algo, path, meta)  # policy.zip, then policy.json, each atomically
    provenance.finish_stage(folder, record, [path, path.with_suffix(".json")])
    return path


def load_frame_policy(path: Path, reader: FrameReader, device: torch.device | str = "cpu",
                      seed: int = 0) -> tuple[str, FrameSettings, FrameEpisodes, FrameAgent]:
    """A trained frame policy, with the episodes it acts in over ``reader``: the algorithm rebuilt from the
    settings in its ``policy.json`` for those episodes' spaces, and only the file's tensors read into it
    (:func:`adafocus.agents.load_algorithm`; nothing in the file is unpickled)."""
    meta_path = Path(path).with_suffix(".json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"frame policy {path} has no config file {meta_path} beside it")
    meta = json.loads(meta_path.read_text())
    if not isinstance(meta, dict) or meta.get("kind") not in KINDS or not isinstance(meta.get("settings"), dict):
        raise ValueError(f"{meta_path}: not the config a frame policy is saved with (kind and settings)")
    kind, settings = meta["kind"], FrameSettings(**meta["settings"])
    episodes = build_episodes(kind, reader, settings)
    algo = load_algorithm(path, lambda env: make_frame_algorithm(settings.algo, env, settings, horizon(episodes), seed,
                                                                 device), episodes.observation_space, episodes.action_space)
    return kind, settings, episodes, FrameAgent(algo)


# ---- evaluation ------------------------------------------------------------------------------------
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
    decision = frame_policy_gmacs(agent, episodes.observation_space, device) * episodes.agents
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


def selection_curve(reader: FrameReader, frames_for_k, ks: range) -> tuple[list[dict[str, float]], dict[int, torch.Tensor]]:
    """Accuracy vs GMACs of reading K chosen frames per video, for every K in ``ks``."""
    clips = reader.episodes.clips
    video = torch.arange(len(clips), device=reader.device)
    points, logits = [], {}
    for k in ks:
        frames = frames_for_k(k).to(reader.device)
        logits[k] = reader.classify_frames(video, frames)[:, -1]
        points.append({"k": k, "gflops_per_video": k * reader.costs.read,
                       "top1": float((logits[k].argmax(-1) == clips.labels).float().mean())})
    return points, logits


def evaluate_frame_policies(run: Path, policies: list[Path], k: int | None = None, split: str = "val",
                            progress: bool = True, val_videos: int | None = None) -> dict[str, Any]:
    """Every frame method on one split, priced with the same counter; ``k`` the budget of the uniform and
    oracle rows (default: the mean number of readable frames per clip, at least 1). ``val_videos``
    (synthetic data only) evaluates on a validation split of that many videos from the same generator,
    generated beside the run's (its training split is the same; 128 videos give a standard error of
    about 4 points of top-1, 1024 about 1.5)."""
    device = setup_environment("auto").device
    base = load_base(run, device)
    config = base.config
    if val_videos is not None:
        if config.data.train_list is not None:
            raise ValueError("val_videos applies to the synthetic benchmark only (this run reads a video list)")
        config = replace(config, data=replace(config.data, synthetic=replace(config.data.synthetic, val_videos=val_videos)))
    clips = clip_set(config, data_paths(config, progress), split, progress)
    reader = frame_reader(base.model, clips, base.env, base.focus, device)
    labels, t = reader.episodes.clips.labels, reader.num_frames
    if k is None:
        k = max(1, round(float(clips.readable.float().sum(1).mean()))) if clips.readable is not None else t // 4
    results: dict[str, dict[str, Any]] = {}
    began = time.perf_counter()
    full = rollout(reader.episodes, base.focus, batch_size=len(clips))
    summary = summarize(full, reader.costs.read, clips.boxes, base.model.config.patch_size)
    results["all_frames"] = {**summary.row(), "curve": []}
    results["threshold_exit"] = {**summary.row(), "curve": early_exit_curve(full.logits.float(), labels, reader.costs.read)}
    began = time.perf_counter()
    uniform_curve, uniform_logits = selection_curve(reader, lambda n: uniform_frames(len(clips), t, n), range(k, k + 1))
    results[f"uniform_k{k}"] = _result(uniform_logits[k], labels, k * reader.costs.read, time.perf_counter() - began, k=k)
    uniform_curve, _ = selection_curve(reader, lambda n: uniform_frames(len(clips), t, n), range(1, t + 1))
    results[f"uniform_k{k}"]["curve"] = uniform_curve
    if clips.readable is not None:
        readable = reader.episodes.clips.readable
        began = time.perf_counter()
        _, oracle_logits = selection_curve(reader, lambda n: oracle_frames(readable, n), range(k, k + 1))
        results[f"oracle_k{k}"] = _result(oracle_logits[k], labels, k * reader.costs.read, time.perf_counter() - began, k=k)
        results[f"oracle_k{k}"]["curve"], _ = selection_curve(reader, lambda n: oracle_frames(readable, n), range(1, t + 1))
    for path in policies:
        kind, settings, episodes, agent = load_frame_policy(path, reader, device, base.config.seed)
        began = time.perf_counter()
        out = run_frame_policy(episodes, agent, device, utility=kind == "adaframe")
        seconds = time.perf_counter() - began
        name = policy_name(kind, settings)
        extra: dict[str, Any] = {"kind": kind, "mean_decisions": float(out["decisions"].float().mean())}
        if kind == "pi_prime":
            extra["mean_frames_processed"] = float(episodes.processed.float().mean())
        curve = utility_stop_curve(out, labels) if kind == "adaframe" else []
        results[name] = _result(out["logits"], labels, float(out["gmacs"].mean()), seconds, curve, **extra)
    for name, row in results.items():
        row["uniform_top1_at_equal_gflops"] = interpolate(uniform_curve, row["gflops_per_video"])
        row["threshold_exit_top1_at_equal_gflops"] = interpolate(results["threshold_exit"]["curve"], row["gflops_per_video"])
    return {"policies": results, "frame_gflops": asdict(reader.costs) | {"read": reader.costs.read},
            "videos": len(clips), "frames": t, "k": k, "split": split, "run": str(run)}


def _family(name: str) -> str:
    """Rows of one method (pi' at several lambdas, MultiAgent with and without a cost) share a line."""
    if name.startswith("pi_prime"):
        return "pi' (" + name.rsplit("_", 1)[-1] + " skip, lambda swept)"
    if name.startswith("multiagent"):
        return "MultiAgent (cost weight 0 / swept)"
    return name


def plot_frame_budget(results: dict[str, dict[str, Any]], path: Path, title: str = "") -> list[Path]:
    """Top-1 vs GFLOPs per video: uniform K and oracle K as lines over K, threshold exit and AdaFrame's
    utility stop as swept curves, pi' (one point per lambda) and MultiAgent as connected points."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    families: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, row in results.items():
        families.setdefault(_family(name), []).append((name, row))
    how = {"uniform": "over K = 1..T", "oracle": "over K = 1..T", "threshold_exit": "threshold swept",
           "adaframe": "utility stop swept"}
    colors = [c for c in plotting.PALETTE if c != "#F0E442"]  # yellow is unreadable on white
    for i, (family, rows) in enumerate(families.items()):
        color = colors[i % len(colors)]
        marker = "osD^vP*X"[i % 8]
        if len(rows) > 1 or family != rows[0][0]:  # a family of operating points
            points = sorted((r["gflops_per_video"], 100 * r["top1"], n) for n, r in rows)
            ax.plot([p[0] for p in points], [p[1] for p in points], color=color, marker=marker, markersize=6,
                    linewidth=1.3, linestyle="--", label=family)
            for x, y, n in points:
                if "lambda" in n:
                    ax.annotate(n.split("lambda")[1].split("_")[0], (x, y), textcoords="offset points",
                                xytext=(4, 4), fontsize=6, color=color)
            continue
        name, row = rows[0]
        curve = row.get("curve") or []
        if len(curve) > 1:
            ax.plot([p["gflops_per_video"] for p in curve], [100 * p["top1"] for p in curve], color=color,
                    marker="o", markersize=2.5, linewidth=1.3, label=f"{name} ({how.get(name.split('_k')[0], 'swept')})")
        if name != "threshold_exit":
            ax.scatter([row["gflops_per_video"]], [100 * row["top1"]], color=color, marker=marker, s=55, zorder=3,
                       edgecolor="black", linewidth=0.6, label=None if len(curve) > 1 else name)
    ax.set_xlabel("GFLOPs per video (multiply-accumulates)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title or "Frame policies: accuracy vs compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return plotting._save(fig, path)


def write_frame_report(evaluation: dict[str, Any], out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(evaluation, indent=2))
    return [out / "results.json", *plot_frame_budget(evaluation["policies"], out / "plots" / "accuracy_vs_gflops",
                                                     f"Frame policies ({evaluation['videos']} {evaluation['split']} videos)")]


def print_frame_table(evaluation: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Frame policies on {evaluation['videos']} {evaluation['split']} videos "
                        f"(T = {evaluation['frames']}, K = {evaluation['k']})")
    for column in ("method", "top1", "mAP", "GFLOPs/video", "uniform@=GFLOPs", "exit@=GFLOPs"):
        table.add_column(column, justify="left" if column == "method" else "right")
    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.3f}"

    for name, r in evaluation["policies"].items():
        table.add_row(name, fmt(r["top1"]), fmt(r["mAP"]), f"{r['gflops_per_video']:.4f}",
                      fmt(r["uniform_top1_at_equal_gflops"]), fmt(r["threshold_exit_top1_at_equal_gflops"]))
    Console(width=120).print(table)


# ---- command line and gymnasium entry point --------------------------------------------------------
def add_frame_arguments(parser: argparse.ArgumentParser) -> None:
    """``--frame-policy`` and one ``--frame.<field>`` option per :class:`FrameSettings` field."""
    parser.add_argument("--frame-policy", nargs="+", choices=KINDS,
                        help="train these frame policies (stage II') on the finished run, then evaluate them")
    parser.add_argument("--frame-out", help="folder for the frame policies and their table (default: <out>_frames)")
    parser.add_argument("--frame-lambdas", nargs="+", type=float,
                        help="pi': train one policy per cost weight lambda (default: --frame.cost_weight)")
    parser.add_argument("--frame-eval-videos", type=int,
                        help="evaluate on a synthetic validation split of this many videos (default: the run's)")
    defaults = FrameSettings()
    for f in fields(FrameSettings):
        value = getattr(defaults, f.name)
        kind = float if isinstance(value, float) else int if isinstance(value, int) else str
        parser.add_argument(f"--frame.{f.name}", dest=f"frame__{f.name}", default=None,
                            type=(lambda s: None if s.lower() == "none" else int(s)) if f.name == "total_timesteps" else kind,
                            help=f"(default: {value})")


def frame_settings(args: argparse.Namespace) -> FrameSettings:
    changes = {f.name: getattr(args, f"frame__{f.name}") for f in fields(FrameSettings)
               if getattr(args, f"frame__{f.name}", None) is not None}
    return replace(FrameSettings(), **changes)


def frame_job(run: Path, out: Path, kinds: list[str], settings: FrameSettings, lambdas: list[float] | None = None,
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


def make_frame_env(kind: str = "pi_prime", run: str | Path | None = None, split: str = "train",
                   device: str = "cpu", seed: int = 0, progress: bool = False, **settings: Any) -> FrameEnv:
    """One frame-policy episode as a gymnasium env: on a finished run's model and pi (``run``), or, without
    one, on the ``synthetic_temporal`` preset's randomly initialised backbones with pi at the centre."""
    from adafocus.agents import CenterAgent

    from .config import preset

    frame = replace(FrameSettings(), **settings)
    if run is not None:
        base = load_base(Path(run), device)
        config, model, focus, env = base.config, base.model, base.focus, base.env
    else:
        config = preset("synthetic_temporal")
        torch.manual_seed(seed)
        model, env = AdaFocusModel(config.model), config.env
        focus = None
    clips = clip_set(config, data_paths(config, progress), split, progress)
    if focus is None:
        focus = CenterAgent(FocusEpisodes(model, clips.subset(slice(0, 1)), env, device).action_space)
    return FrameEnv(build_episodes(kind, frame_reader(model, clips, env, focus, device), frame))
