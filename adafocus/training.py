"""The one supervised training loop, shared by the warm-up, stage I and stage III.

A stage is a :class:`StageTask`: an ``nn.Module`` whose ``forward(batch)`` returns the loss and the
video-level logits, and which names its parameter groups. The loop owns everything else: SGD with
Nesterov momentum and cosine annealing, mixed precision on CUDA, DistributedDataParallel under torchrun,
per-epoch validation (top-1, mAP), atomic checkpoints, exact resume, progress bars, TensorBoard and CSV logs.
"""
from __future__ import annotations

import csv
from abc import ABC, abstractmethod
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.classification import MulticlassAccuracy, MulticlassAveragePrecision
from tqdm.auto import tqdm

from .checkpoint import check_architecture, load, save_atomic
from .config import StageConfig


class StageTask(nn.Module, ABC):
    """A supervised stage. Subclasses set ``self.model`` and implement ``forward`` and ``param_groups``."""

    model: nn.Module

    @abstractmethod
    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (loss, video logits (B, K), labels (B,))."""

    @abstractmethod
    def param_groups(self, stage: StageConfig) -> list[dict[str, Any]]:
        """Optimizer groups ``{"params": [...], "lr": ...}``; parts with lr 0 are frozen instead."""


@dataclass(frozen=True)
class Environment:
    """Where the loop runs: device, distributed rank and world size."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def setup_environment(device: str) -> Environment:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Environment(resolve_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Environment(dev, rank, world)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + rank) % (2 ** 63)


class Metrics:
    """Top-1 and mAP over a validation pass (torchmetrics; synchronised across processes)."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.top1 = MulticlassAccuracy(num_classes, average="micro").to(device)
        self.map = MulticlassAveragePrecision(num_classes, average="macro").to(device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        probs = logits.float().softmax(-1)
        self.top1.update(probs, labels)
        self.map.update(probs, labels)

    def compute(self) -> dict[str, float]:
        return {"top1": float(self.top1.compute()), "mAP": float(self.map.compute())}


def train_stage(task: StageTask, stage: StageConfig, train_set: Dataset, val_set: Dataset, out: Path,
                env: Environment, num_classes: int, seed: int, config: dict[str, Any],
                collate=None, workers: int = 0, resume: bool = False, progress: bool = True,
                name: str = "stage") -> dict[str, float]:
    """Train ``task`` for ``stage.epochs`` epochs; write ``out/checkpoint.pt`` after every epoch.

    With ``resume`` an interrupted run continues from its last checkpoint; because every epoch reseeds
    its randomness from (seed, epoch, rank), the resumed run ends where an uninterrupted one would.
    Returns the last epoch's validation metrics.
    """
    out = Path(out)
    task.to(env.device)
    groups = [g for g in task.param_groups(stage) if g["lr"] > 0]
    trained = {id(p) for g in groups for p in g["params"]}
    for p in task.parameters():
        p.requires_grad_(id(p) in trained)
    optimizer = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=stage.momentum, nesterov=True,
                                weight_decay=stage.weight_decay)
    batch_size = max(1, stage.batch_size // env.world_size)
    train_sampler = DistributedSampler(train_set, env.world_size, env.rank, shuffle=True, seed=seed, drop_last=True)
    val_sampler = DistributedSampler(val_set, env.world_size, env.rank, shuffle=False)
    pin = env.device.type == "cuda"
    loader_args = dict(batch_size=batch_size, num_workers=workers, collate_fn=collate, pin_memory=pin,
                       persistent_workers=False)  # workers must see set_epoch()
    train_loader = DataLoader(train_set, sampler=train_sampler, drop_last=True, **loader_args)
    val_loader = DataLoader(val_set, sampler=val_sampler, **loader_args)
    steps = max(1, len(train_loader)) * stage.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    model = nn.parallel.DistributedDataParallel(task, find_unused_parameters=True) if env.world_size > 1 else task

    start, metrics, ckpt_path = 0, {}, out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = load(ckpt_path, env.device)
        check_architecture(state, config.get("model", {}), ckpt_path)
        task.load_state_dict(state["task"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, metrics = state["epoch"] + 1, state["metrics"]
    writer = SummaryWriter(out / "tensorboard") if env.is_main else None
    log_path = out / "log.csv"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if env.device.type == "cuda" else torch.autocast("cpu", enabled=False)
    show = progress and env.is_main
    epochs = tqdm(range(start, stage.epochs), desc=name, disable=not show, initial=start, total=stage.epochs)
    for epoch in epochs:
        torch.manual_seed(_epoch_seed(seed, epoch, env.rank))
        train_sampler.set_epoch(epoch)
        for ds in (train_set, val_set):
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)
        model.train()
        began, total_loss, seen, skipped = time.time(), 0.0, 0, 0
        for batch in tqdm(train_loader, desc=f"epoch {epoch + 1}", leave=False, disable=not show):
            skipped += batch.pop("skipped", 0)
            if "label" not in batch:
                continue
            batch = _to_device(batch, env.device)
            with amp:
                loss, _, _ = model(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(batch["label"])
            seen += len(batch["label"])
        metrics = {"epoch": epoch + 1, "train_loss": total_loss / max(seen, 1),
                   **evaluate_task(model, val_loader, env, num_classes, amp),
                   "lr": scheduler.get_last_lr()[0], "seconds": time.time() - began, "skipped": skipped}
        if env.is_main:
            save_atomic({"task": task.state_dict(), "model": task.model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch, "config": config, "metrics": metrics},
                        ckpt_path)
            _log(metrics, log_path, writer, epoch)
            epochs.set_postfix(loss=f"{metrics['train_loss']:.3f}", top1=f"{metrics['top1']:.3f}")
    if writer is not None:
        writer.close()
    return metrics


@torch.no_grad()
def evaluate_task(model: nn.Module, loader: Iterable, env: Environment, num_classes: int, amp) -> dict[str, float]:
    model.eval()
    metrics = Metrics(num_classes, env.device)
    for batch in loader:
        batch.pop("skipped", 0)
        if "label" not in batch:
            continue
        batch = _to_device(batch, env.device)
        with amp:
            _, logits, labels = model(batch)
        metrics.update(logits, labels)
    return metrics.compute()


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _log(metrics: dict[str, float], path: Path, writer: SummaryWriter | None, epoch: int) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(metrics))
        if new:
            w.writeheader()
        w.writerow(metrics)
    if writer is not None:
        for key, value in metrics.items():
            if key != "epoch":
                writer.add_scalar(key, value, epoch + 1)
    (path.parent / "metrics.json").write_text(json.dumps(metrics, indent=2))
