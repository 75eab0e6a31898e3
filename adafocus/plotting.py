"""Pictures of a run: accuracy vs GFLOPs, focus trajectories, learning curves. PNG and SVG, matplotlib."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

# Okabe-Ito: distinguishable under the common colour-vision deficiencies
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
STYLE = {"learned": ("#0072B2", "o"), "random": ("#E69F00", "s"), "center": ("#009E73", "^"),
         "oracle": ("#CC79A7", "D"), "global_only": ("#000000", "x"), "full_frame": ("#D55E00", "*"),
         "adafocus": ("#0072B2", "o"), "tsm": ("#D55E00", "P"), "tsm_plus": ("#882255", "*"),
         "arnet": ("#56B4E9", "v"), "scsampler": ("#999933", "<"), "liteeval": ("#44AA99", ">"),
         "listen_to_look": ("#AA4499", "h")}


GFLOPS_AXIS = "GFLOPs per video (multiply-accumulates)"
TOP1_AXIS = "top-1 accuracy (%)"


def save_figure(fig: plt.Figure, path: Path) -> list[Path]:
    """``fig`` as ``path`` with the suffixes .png and .svg (folders made), then closed; returns both files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".svg"):
        target = path.with_suffix(suffix)
        fig.savefig(target, dpi=150, bbox_inches="tight")
        written.append(target)
    plt.close(fig)
    return written


def _label_axes(ax: plt.Axes, xlabel: str, ylabel: str, title: str, legend_size: int = 8,
                legend_loc: str = "lower right") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, loc=legend_loc)


def plot_budget_curves(policies: dict[str, dict[str, Any]], path: Path, title: str = "") -> list[Path]:
    """Top-1 vs GFLOPs per video: each policy's early-exit curve, single-point baselines as markers."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (name, result) in enumerate(policies.items()):
        color, marker = STYLE.get(name, (PALETTE[i % len(PALETTE)], "o"))
        curve = result.get("curve") or []
        if len(curve) > 1:
            ax.plot([p["gflops_per_video"] for p in curve], [100 * p["top1"] for p in curve], color=color,
                    marker=marker, markersize=3, linewidth=1.5, label=f"{name} (early exit)")
        ax.scatter([result["gflops_per_video"]], [100 * result["top1"]], color=color, marker=marker, s=60,
                   zorder=3, linewidth=1.5, label=None if len(curve) > 1 else name)
    ax.set_xscale("log")  # the full-frame baseline costs orders of magnitude more than a patch
    _label_axes(ax, "GFLOPs per video (multiply-accumulates, log scale)", TOP1_AXIS, title or "Accuracy vs compute",
                legend_loc="best")
    return save_figure(fig, path)


def plot_trajectories(frames: torch.Tensor, corners: torch.Tensor, patch_size: int, logits: torch.Tensor,
                      labels: torch.Tensor, path: Path, boxes: torch.Tensor | None = None,
                      class_names: list[str] | None = None) -> list[Path]:
    """One row per video: every frame with pi's patch (blue) and the target (green, synthetic), the
    step's prediction and confidence underneath; a last panel with the path of patch centres."""
    v, t = frames.shape[:2]
    fig, axes = plt.subplots(v, t + 1, figsize=(1.5 * (t + 1), 1.75 * v), squeeze=False)
    probs = logits.float().softmax(-1)
    name = (lambda k: class_names[k]) if class_names else str
    for i in range(v):
        for s in range(t):
            ax = axes[i, s]
            ax.imshow(frames[i, s].permute(1, 2, 0).cpu().numpy())
            if boxes is not None:
                x0, y0, x1, y1 = boxes[i, s].tolist()
                ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="#009E73", linewidth=1.2))
            x, y = corners[i, s].tolist()
            ax.add_patch(plt.Rectangle((x, y), patch_size, patch_size, fill=False, color="#0072B2", linewidth=1.5))
            k = int(probs[i, s].argmax())
            ok = k == int(labels[i])
            ax.set_title(f"t={s}: {name(k)} {probs[i, s, k]:.2f}", fontsize=6, color="black" if ok else "#D55E00")
            ax.axis("off")
        ax = axes[i, t]
        ax.imshow(frames[i, -1].permute(1, 2, 0).cpu().numpy(), alpha=0.6)
        centres = corners[i].float().cpu().numpy() + patch_size / 2
        ax.plot(centres[:, 0], centres[:, 1], "-o", color="#0072B2", markersize=2.5, linewidth=1)
        if boxes is not None:
            target = ((boxes[i, :, :2] + boxes[i, :, 2:]) / 2).cpu().numpy()
            ax.plot(target[:, 0], target[:, 1], "--", color="#009E73", linewidth=1)
        ax.set_title(f"path (label {name(int(labels[i]))})", fontsize=6)
        ax.axis("off")
    fig.suptitle("Focus trajectories: patch (blue), target (green); red title = wrong prediction", fontsize=8)
    return save_figure(fig, path)


def save_gif(frames: torch.Tensor, corners: torch.Tensor, patch_size: int, path: Path,
             boxes: torch.Tensor | None = None, scale: int = 3) -> Path:
    """An animated GIF of one episode: (T, 3, H, W) frames with the patch drawn at every step."""
    from PIL import Image, ImageDraw

    images = []
    for s in range(frames.shape[0]):
        image = Image.fromarray(frames[s].permute(1, 2, 0).cpu().numpy()).resize(
            (frames.shape[-1] * scale, frames.shape[-2] * scale), Image.NEAREST)
        draw = ImageDraw.Draw(image)
        if boxes is not None:
            draw.rectangle([c * scale for c in boxes[s].tolist()], outline=(0, 158, 115), width=2)
        x, y = (c * scale for c in corners[s].tolist())
        draw.rectangle([x, y, x + patch_size * scale, y + patch_size * scale], outline=(0, 114, 178), width=3)
        images.append(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=400, loop=0)
    return path


def plot_focus_heatmaps(maps: dict[str, np.ndarray], path: Path) -> list[Path]:
    """Where each policy looks on average: per pixel, the share of steps it lies inside the patch."""
    fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 3.0), squeeze=False, layout="constrained")
    for ax, (name, heat) in zip(axes[0], maps.items()):
        im = ax.imshow(heat, cmap="viridis", origin="upper", vmin=0)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.85)
    fig.suptitle("Where each policy looks: share of steps a pixel lies inside the patch", fontsize=9)
    return save_figure(fig, path)


def plot_learning_curves(logs: dict[str, Path], path: Path) -> list[Path]:
    """Validation top-1 of each supervised stage (log.csv) and PPO's reward / train accuracy (progress.csv)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, log) in enumerate(logs.items()):
        if not log.is_file():
            continue
        rows = list(csv.DictReader(log.open()))
        if not rows:
            continue
        color = PALETTE[i % len(PALETTE)]
        if "top1" in rows[0]:
            axes[0].plot([int(r["epoch"]) for r in rows], [100 * float(r["top1"]) for r in rows], "-o", color=color,
                         markersize=3, label=name)
        else:
            steps = [float(r["time/total_timesteps"]) for r in rows if r.get("rollout/ep_rew_mean")]
            reward = [float(r["rollout/ep_rew_mean"]) for r in rows if r.get("rollout/ep_rew_mean")]
            axes[1].plot(steps, reward, color=color, label=f"{name}: episode reward")
            acc = [(float(r["time/total_timesteps"]), float(r["rollout/train_top1"])) for r in rows
                   if r.get("rollout/train_top1")]
            if acc:
                twin = axes[1].twinx()
                twin.plot(*zip(*acc), color=PALETTE[(i + 1) % len(PALETTE)], linestyle="--", label="train top-1")
                twin.set_ylabel("train top-1")
                twin.legend(fontsize=8, loc="center right")
    axes[0].set(xlabel="epoch", ylabel="validation top-1 (%)", title="Supervised stages")
    axes[1].set(xlabel="environment steps", ylabel="episode reward", title="Stage II (RL)")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def algorithm_colors(names: list[str]) -> dict[str, str]:
    """One colour per algorithm, in the order given: the same algorithm has the same colour in every figure
    of a comparison."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def plot_reward_bands(curves: dict[str, list[tuple[np.ndarray, np.ndarray]]], path: Path,
                      title: str = "", points: int = 100) -> list[Path]:
    """Stage II's episode reward against env steps, one colour per algorithm: the mean over seeds as a line
    and mean ± std as a band, on a common grid of ``points`` steps over the range every seed logged
    (each seed's curve interpolated linearly; a single seed is drawn as its line)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = algorithm_colors(list(curves))
    for name, runs in curves.items():
        runs = [(np.asarray(s, float), np.asarray(r, float)) for s, r in runs if len(s)]
        if not runs:
            continue
        lo, hi = max(s[0] for s, _ in runs), min(s[-1] for s, _ in runs)
        grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
        values = np.stack([np.interp(grid, s, r) for s, r in runs])
        mean, std = values.mean(0), values.std(0, ddof=1) if len(runs) > 1 else np.zeros(len(grid))
        ax.plot(grid, mean, color=colors[name], linewidth=1.5, label=f"{name} ({len(runs)} seed{'s' * (len(runs) > 1)})")
        if len(runs) > 1:
            ax.fill_between(grid, mean - std, mean + std, color=colors[name], alpha=0.2, linewidth=0)
    _label_axes(ax, "environment steps", "mean episode reward", title or "Stage II: episode reward (mean ± std over seeds)")
    return save_figure(fig, path)


def plot_algorithm_budgets(curves: dict[str, list[dict[str, float]]], path: Path, title: str = "") -> list[Path]:
    """Top-1 vs GFLOPs per video: every algorithm's early-exit curve (already averaged over seeds), with its
    full-length point (the dearest) as a marker, in the colours of :func:`plot_reward_bands`."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = algorithm_colors(list(curves))
    for name, curve in curves.items():
        if not curve:
            continue
        x = [p["gflops_per_video"] for p in curve]
        y = [100 * p["top1"] for p in curve]
        ax.plot(x, y, color=colors[name], marker="o", markersize=3, linewidth=1.5, label=name)
        ax.scatter([x[-1]], [y[-1]], color=colors[name], s=50, zorder=3)
    _label_axes(ax, GFLOPS_AXIS, TOP1_AXIS, title or "Accuracy vs compute by algorithm (early exit)")
    return save_figure(fig, path)


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
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    families: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, row in results.items():
        families.setdefault(_family(name), []).append((name, row))
    how = {"uniform": "over K = 1..T", "oracle": "over K = 1..T", "threshold_exit": "threshold swept",
           "adaframe": "utility stop swept"}
    colors = [c for c in PALETTE if c != "#F0E442"]  # yellow is unreadable on white
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
    _label_axes(ax, GFLOPS_AXIS, TOP1_AXIS, title or "Frame policies: accuracy vs compute", legend_size=7)
    return save_figure(fig, path)
