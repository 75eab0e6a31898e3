"""RL algorithms for pi compared from one warm-up and stage I: stage II, stage III and the evaluation per
(algorithm, seed), then one table, ``results.json`` and two figures over them.

Layout of ``out``: ``base/`` holds the shared warm-up and stage I (trained once); ``<algo>/seed<k>/`` is a
whole run folder started from it with ``--from`` (:func:`adafocus.pipeline.main_job`), its stage II seeded
by ``policy.seed = k`` and built from ``agents/hyperparams/<algo>.yml`` under the run's options. A run folder
whose ``results.json`` exists and whose every stage record still matches its command is reused as it is;
a folder trained by another command is refused (:class:`~adafocus.provenance.StageMismatch`).

Per run: the learned policy's top-1, mAP, focus hit rate, GFLOPs per video, the area under its early-exit
curve (:func:`exit_auc`) and its first step's top-1 (measures that still tell policies apart when top-1
saturates), the top-1 of random patches at the same GFLOPs in the same run (what pi must beat), stage II's
env steps and wall-clock seconds (its ``stage.json``). Per algorithm: the mean and
the sample standard deviation (n - 1) over seeds.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from adafocus.agents import action_kind, resolve_algorithm

from . import plotting, provenance
from .config import RunConfig, to_dict
from .models import clip_level
from .pipeline import main_job, run_supervised, stage_records
from .run_data import data_paths

# every per-run measure of the table, in its column order
METRICS = ("top1", "mAP", "hit_rate", "exit_auc", "first_step_top1", "gflops_per_video", "random_top1", "env_steps",
           "stage2_seconds")
BASE = "base"


def run_config(config: RunConfig, algo: str, seed: int) -> RunConfig:
    """The command of one run: ``config`` with pi trained by ``algo`` from its own ``seed``, on the actions
    the algorithm takes (continuous for SAC and TD3; the run's own otherwise, a clip-level run's always
    continuous). Raises ValueError for an unknown algorithm or one that cannot take the run's actions."""
    resolve_algorithm(algo)
    requested = "continuous" if clip_level(config) else (config.env.action if config.env.action != "grid" else None)
    return replace(config, env=replace(config.env, action=action_kind(algo, requested)),
                   policy=replace(config.policy, algo=algo, seed=seed))


def run_folder(out: Path, algo: str, seed: int) -> Path:
    """``<out>/<algo>/seed<k>``; an algorithm given as ``package.module:Class`` is named by its class."""
    return Path(out) / algo.rsplit(":", 1)[-1].replace(".", "_") / f"seed{seed}"


def finished(config: RunConfig, folder: Path) -> bool:
    """A run folder to reuse: its ``results.json`` exists and every stage's record matches ``config``'s
    (StageMismatch when one was trained by another command)."""
    folder = Path(folder)
    if not (folder / "results.json").is_file():
        return False
    records = stage_records(config, folder, data_paths(config, progress=False))
    stages = ["warmup", "stage1", "policy", "stage3"] + (["tsm_plus"] if clip_level(config) else [])
    return all(stage in records and provenance.stage_status(folder / stage, records[stage]) == "finished"
               for stage in stages)


def train_base(config: RunConfig, out: Path, progress: bool = True) -> Path:
    """The shared stages into ``<out>/base``: warm-up and stage I (and TSM+ for the clip-level model); a
    finished base is reused, as any run folder's stages are."""
    base = Path(out) / BASE
    base.mkdir(parents=True, exist_ok=True)
    described = base / "config.json"
    if not described.is_file():  # marks a run folder of this project (--fresh refuses folders without one)
        described.write_text(json.dumps(to_dict(config), indent=2))
    warm = run_supervised(config, "warmup", base, progress=progress)
    run_supervised(config, "stage1", base, init=warm, progress=progress)
    if clip_level(config):
        run_supervised(config, "tsm_plus", base, init=warm, progress=progress)
    return base


def exit_auc(curve: list[dict[str, float]]) -> float | None:
    """The early-exit curve's mean top-1 over its budget range: the area under top-1 vs GFLOPs (trapezoids)
    divided by the range from its cheapest to its dearest point. 1 is right at every budget; a policy whose
    first steps already find the class scores above one that is right only after all T steps."""
    if not curve:
        return None
    points = sorted(curve, key=lambda p: (p["gflops_per_video"], p.get("threshold", 0.0)))
    x = np.array([p["gflops_per_video"] for p in points], dtype=float)
    y = np.array([p["top1"] for p in points], dtype=float)
    span = x[-1] - x[0]
    if span <= 0:
        return float(y.mean())
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / span)


def first_step_top1(curve: list[dict[str, float]]) -> float | None:
    """Top-1 after pi's first patch alone: the curve's threshold-0 point (every video exits after step 1)."""
    firsts = [p["top1"] for p in curve if p.get("threshold") == 0.0]
    return firsts[0] if firsts else None


def reward_curve(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Stage II's mean episode reward against env steps from SB3's ``progress.csv`` (with the history kept
    beside it when stage II resumed), one point per logged step (the last row of a step that logged twice)."""
    policy = Path(folder) / "policy"
    files = sorted(policy.glob("progress_until_*.csv"), key=lambda p: int(p.stem.rsplit("_", 1)[-1]))
    points: dict[float, float] = {}
    for path in [*files, policy / "progress.csv"]:
        if not path.is_file():
            continue
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("rollout/ep_rew_mean") and row.get("time/total_timesteps"):
                    points[float(row["time/total_timesteps"])] = float(row["rollout/ep_rew_mean"])
    steps = np.array(sorted(points), dtype=float)
    return steps, np.array([points[s] for s in steps], dtype=float)


def run_measures(folder: Path) -> dict[str, Any]:
    """The learned policy's measures of one finished run folder, and its early-exit curve."""
    folder = Path(folder)
    policies = json.loads((folder / "results.json").read_text())["policies"]
    learned = policies["learned"]
    record = json.loads((folder / "policy" / provenance.FINISHED).read_text())
    steps, _ = reward_curve(folder)
    env_steps = record.get("timesteps", int(steps[-1]) if len(steps) else None)
    curve = learned.get("curve") or []
    return {"top1": learned["top1"], "mAP": learned["mAP"], "hit_rate": learned.get("hit_rate"),
            "exit_auc": exit_auc(curve), "first_step_top1": first_step_top1(curve),
            "gflops_per_video": learned["gflops_per_video"], "random_top1": policies.get("random", {}).get("top1"),
            "env_steps": env_steps,
            "stage2_seconds": record.get("wall_seconds"), "curve": curve}


def mean_std(values: list[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation (n - 1; 0 for one value) of the values given (None: not measured)."""
    known = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not known:
        return {"mean": None, "std": None, "values": list(values)}
    std = float(np.std(known, ddof=1)) if len(known) > 1 else 0.0
    return {"mean": float(np.mean(known)), "std": std, "values": list(values)}


def mean_curve(curves: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Early-exit curves of several seeds averaged point by point (same exit threshold), sorted by GFLOPs."""
    by_threshold: dict[float, list[dict[str, float]]] = {}
    for curve in curves:
        for point in curve:
            by_threshold.setdefault(point["threshold"], []).append(point)
    points = [{"threshold": th, "gflops_per_video": float(np.mean([p["gflops_per_video"] for p in ps])),
               "top1": float(np.mean([p["top1"] for p in ps]))}
              for th, ps in by_threshold.items() if len(ps) == len(curves)]
    return sorted(points, key=lambda p: (p["gflops_per_video"], p["threshold"]))


@dataclass
class Comparison:
    """``results`` (what ``results.json`` holds) and the files written."""

    results: dict[str, Any]
    written: dict[str, list[Path]]


def summarize(config: RunConfig, out: Path, algos: list[str], seeds: list[int]) -> dict[str, Any]:
    """Per algorithm: every measure's mean, std and per-seed values, the mean early-exit curve, the run folders."""
    algorithms: dict[str, Any] = {}
    for algo in algos:
        folders = {seed: run_folder(out, algo, seed) for seed in seeds}
        runs = {seed: run_measures(folder) for seed, folder in folders.items()}
        algorithms[algo] = {
            "action": run_config(config, algo, seeds[0]).env.action,
            "seeds": list(seeds),
            "runs": {str(seed): str(folder.relative_to(out)) for seed, folder in folders.items()},
            "metrics": {m: mean_std([runs[s][m] for s in seeds]) for m in METRICS},
            "curve": mean_curve([runs[s]["curve"] for s in seeds]),
        }
    return {"algorithms": algorithms, "metrics": list(METRICS), "base": BASE, "seeds": list(seeds),
            "std": "sample standard deviation over seeds (n - 1)", "config": to_dict(config)}


def write_outputs(results: dict[str, Any], out: Path) -> dict[str, list[Path]]:
    """``results.json``, the reward curves (seeds as a band) and the accuracy-vs-GFLOPs figure."""
    out = Path(out)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    rewards = {algo: [reward_curve(out / folder) for folder in entry["runs"].values()]
               for algo, entry in results["algorithms"].items()}
    return {"results": [out / "results.json"],
            "learning": plotting.plot_reward_bands(rewards, out / "plots" / "reward_vs_steps"),
            "budget": plotting.plot_algorithm_budgets(
                {algo: entry["curve"] for algo, entry in results["algorithms"].items()},
                out / "plots" / "accuracy_vs_gflops",
                f"{results['config']['preset']}: learned pi by algorithm, mean over seeds {results['seeds']}")}


def compare(config: RunConfig, algos: list[str], seeds: list[int], out: Path, progress: bool = True) -> Comparison:
    """Train the base once, then every (algorithm, seed) from it (finished folders reused), and write the
    comparison into ``out``. Every algorithm is checked against the run's actions before anything trains."""
    if not algos or not seeds:
        raise ValueError("give at least one algorithm and one seed")
    if len(set(algos)) != len(algos) or len(set(seeds)) != len(seeds):
        raise ValueError(f"algorithms and seeds must be distinct: {algos}, {seeds}")
    out = Path(out)
    configs = {(algo, seed): run_config(config, algo, seed) for algo in algos for seed in seeds}
    base: Path | None = None  # trained (or found finished) before the first run that needs it, not at all on a re-run
    for (algo, seed), run in configs.items():
        folder = run_folder(out, algo, seed)
        try:
            done = finished(run, folder)
        except provenance.StageMismatch as error:  # the run option changed since: say how out of a comparison
            raise ValueError(f"{error}\nIn this comparison: give a new --out (its base is trained there again), "
                             f"or delete {folder} to train that run anew from {out / BASE}.") from error
        if done:
            print(f"{folder}: finished, reused")
            continue
        base = base or train_base(config, out, progress)
        main_job(run, folder, progress=progress, start_from=base)
    results = summarize(config, out, algos, seeds)
    return Comparison(results, write_outputs(results, out))


def print_comparison(results: dict[str, Any], written: dict[str, list[Path]], title: str) -> None:
    """The per-algorithm table (mean ± std over seeds) and the files written, with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    columns = {"top1": ("top-1", 3), "mAP": ("mAP", 3), "hit_rate": ("hit rate", 3), "exit_auc": ("exit AUC", 3),
               "first_step_top1": ("step-1 top-1", 3), "gflops_per_video": ("GFLOPs/video", 4),
               "random_top1": ("random top-1", 3),
               "env_steps": ("env steps", 0), "stage2_seconds": ("stage II s", 0)}
    table.add_column("algorithm")
    table.add_column("action")
    table.add_column("seeds", justify="right")
    for name, _ in columns.values():
        table.add_column(name, justify="right")

    def cell(entry: dict[str, Any], digits: int) -> str:
        if entry["mean"] is None:
            return ""
        if digits == 0:
            return f"{entry['mean']:,.0f} ± {entry['std']:,.0f}"
        return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"

    for algo, entry in results["algorithms"].items():
        table.add_row(algo, entry["action"], str(len(entry["seeds"])),
                      *(cell(entry["metrics"][m], digits) for m, (_, digits) in columns.items()))
    console = Console(width=160)
    console.print(table)
    console.print(f"mean ± {results['std']}; exit AUC: mean top-1 over the early-exit curve's GFLOPs range; "
                  "step-1 top-1: after the first patch alone; random top-1: random patches at the same GFLOPs")
    for kind, paths in written.items():
        console.print(f"{kind}: " + ", ".join(str(p) for p in paths), soft_wrap=True)
