"""The one supervised training loop, shared by the warm-up, stage I and stage III.

A stage is a :class:`StageTask`: an ``nn.Module`` whose ``forward(batch)`` returns the loss and the
video-level logits, and which names its parameter groups. The loop owns everything else: SGD with
Nesterov momentum and cosine annealing, mixed precision on CUDA, DistributedDataParallel under torchrun,
per-epoch validation (top-1, mAP), atomic checkpoints, exact resume, progress bars, TensorBoard and CSV logs.
"""
from __future__ import annotations

import csv
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
import json
import math
import os
import sys
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

from adafocus.data.clips import multi_hot

from .checkpoint import check_architecture, load, save_atomic
from .config import StageConfig
from .evaluation import mean_average_precision


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
class Runtime:
    """Where the loop runs: device, distributed rank and world size."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def interactive(stream: Any = None) -> bool:
    """Whether ``stream`` (default stderr, where tqdm draws) is a terminal: live bars there; in a log file a
    redrawn bar is thousands of carriage returns, so logs get one line per epoch instead."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def setup_runtime(device: str) -> Runtime:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Runtime(resolve_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, rank, world)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + rank) % (2 ** 63)


class Metrics:
    """Top-1 and mAP over a validation pass (torchmetrics), over every process's predictions.

    The predictions are gathered here rather than by torchmetrics' own sync: that issues fewer collectives
    on a rank that saw no valid batch (all skipped as corrupt), which then aborts or hangs the others.
    With ``multi_label`` (data whose mAP counts every label of a video, FCVID) each batch also gives every
    video's labels, and mAP counts them all (:func:`~adafocus.evaluation.mean_average_precision`); top-1
    stays on the first label.
    """

    def __init__(self, num_classes: int, device: torch.device, world_size: int = 1, multi_label: bool = False) -> None:
        self.top1 = MulticlassAccuracy(num_classes, average="micro", sync_on_compute=False).to(device)
        self.map = MulticlassAveragePrecision(num_classes, average="macro", sync_on_compute=False).to(device)
        self.num_classes, self.device, self.world_size = num_classes, device, world_size
        self.multi_label = multi_label
        self.probs: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []  # multi_label: uint8 (B, K) classes of each video

    def update(self, logits: torch.Tensor, labels: torch.Tensor, all_labels: torch.Tensor | None = None) -> None:
        """One batch: logits (B, K), labels (B,) and, for multi-label data, every label (B, L) padded with -1."""
        if self.multi_label != (all_labels is not None):
            raise ValueError("multi-label metrics need every video's labels (all_labels) with each batch"
                             if self.multi_label else "all_labels given to single-label metrics")
        self.probs.append(logits.float().softmax(-1))
        self.labels.append(labels)
        if all_labels is not None:
            # uint8 rather than bool: the gather below goes through all_gather
            self.targets.append(multi_hot(all_labels, self.num_classes).to(torch.uint8))

    def compute(self) -> dict[str, float]:
        probs = torch.cat(self.probs) if self.probs else torch.empty(0, self.num_classes, device=self.device)
        labels = torch.cat(self.labels) if self.labels else torch.empty(0, dtype=torch.long, device=self.device)
        if self.world_size > 1:
            probs, labels = _gather_rows(probs, self.world_size), _gather_rows(labels, self.world_size)
        self.top1.update(probs, labels)
        if self.multi_label:
            targets = torch.cat(self.targets) if self.targets else \
                torch.empty(0, self.num_classes, dtype=torch.uint8, device=self.device)
            if self.world_size > 1:
                targets = _gather_rows(targets, self.world_size)
            return {"top1": float(self.top1.compute()), "mAP": mean_average_precision(probs, labels, targets.bool())}
        self.map.update(probs, labels)
        return {"top1": float(self.top1.compute()), "mAP": float(self.map.compute())}


def _gather_rows(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` (same trailing shape, any number of rows, zero included)."""
    count = torch.tensor([len(tensor)], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    rows = [int(c) for c in counts]
    padded = tensor.new_zeros((max(rows), *tensor.shape[1:]))  # all_gather needs equal shapes
    padded[:len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, rows)])


@contextmanager
def stage_dropout(model: nn.Module, rate: float | None) -> Iterator[None]:
    """Every dropout layer of ``model`` at ``rate`` inside the block, then back at the rate each had before,
    even when the block raises: a stage's own dropout never reaches the next stage. None changes nothing.

    All of an AdaFocus network's dropout layers are the ones :attr:`ModelConfig.dropout` sets (f_C's and
    the heads'), so this is that rate, for one stage.
    """
    if rate is None:
        yield
        return
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"a stage's dropout must be in [0, 1), got {rate}")
    layers = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    before = [m.p for m in layers]
    for m in layers:
        m.p = rate
    try:
        yield
    finally:
        for m, p in zip(layers, before):
            m.p = p


def train_stage(task: StageTask, stage: StageConfig, train_set: Dataset, val_set: Dataset, out: Path,
                runtime: Runtime, num_classes: int, seed: int, config: dict[str, Any],
                collate=None, workers: int = 0, resume: bool = False, progress: bool = True,
                name: str = "stage", batch_option: str | None = None) -> dict[str, float]:
    """Train ``task`` for ``stage.epochs`` epochs; write ``out/checkpoint.pt`` after every epoch.

    ``stage.dropout`` (when set) is the model's dropout rate for this stage only (:func:`stage_dropout`).

    With ``resume`` an interrupted run continues from its last checkpoint; because every epoch reseeds
    its randomness from (seed, epoch, rank), the resumed run ends where an uninterrupted one would.
    Under DDP, a step where any rank's batch is empty (every item skipped as corrupt) is skipped by all
    ranks, so their gradient all-reduces and schedulers stay in step. Raises ValueError when the training
    set is smaller than one batch per process (incomplete batches are dropped, so nothing would train).
    ``batch_option`` names the option that sets ``stage.batch_size`` in that error (default
    ``--<name>.batch_size`` for the pipeline's stages). Returns the last epoch's validation metrics.
    """
    with stage_dropout(task.model, stage.dropout):
        return _train_stage(task, stage, train_set, val_set, out, runtime, num_classes, seed, config, collate, workers,
                            resume, progress, name, batch_option)


def _train_stage(task: StageTask, stage: StageConfig, train_set: Dataset, val_set: Dataset, out: Path,
                 runtime: Runtime, num_classes: int, seed: int, config: dict[str, Any], collate, workers: int,
                 resume: bool, progress: bool, name: str, batch_option: str | None) -> dict[str, float]:
    out = Path(out)
    _check_batch_fits(train_set, stage.batch_size, runtime.world_size, batch_option or _batch_option(name))
    task.to(runtime.device)
    groups = [g for g in task.param_groups(stage) if g["lr"] > 0]
    trained = {id(p) for g in groups for p in g["params"]}
    for p in task.parameters():
        p.requires_grad_(id(p) in trained)
    optimizer = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=stage.momentum, nesterov=True,
                                weight_decay=stage.weight_decay)
    batch_size = max(1, stage.batch_size // runtime.world_size)
    train_sampler = DistributedSampler(train_set, runtime.world_size, runtime.rank, shuffle=True, seed=seed, drop_last=True)
    val_sampler = DistributedSampler(val_set, runtime.world_size, runtime.rank, shuffle=False)
    pin = runtime.device.type == "cuda"
    loader_args = dict(batch_size=batch_size, num_workers=workers, collate_fn=collate, pin_memory=pin,
                       persistent_workers=False)  # workers must see set_epoch()
    train_loader = DataLoader(train_set, sampler=train_sampler, drop_last=True, **loader_args)
    val_loader = DataLoader(val_set, sampler=val_sampler, **loader_args)
    steps = max(1, len(train_loader)) * stage.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    model = nn.parallel.DistributedDataParallel(task, find_unused_parameters=True) if runtime.world_size > 1 else task

    start, metrics, ckpt_path = 0, {}, out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = load(ckpt_path, runtime.device)
        check_architecture(state, config.get("model", {}), ckpt_path)
        task.load_state_dict(state["task"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, metrics = state["epoch"] + 1, state["metrics"]
    writer = SummaryWriter(out / "tensorboard") if runtime.is_main else None
    log_path = out / "log.csv"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if runtime.device.type == "cuda" else torch.autocast("cpu", enabled=False)
    show = progress and runtime.is_main
    live = show and interactive()
    epochs = tqdm(range(start, stage.epochs), desc=name, disable=not live, initial=start, total=stage.epochs)
    for epoch in epochs:
        torch.manual_seed(_epoch_seed(seed, epoch, runtime.rank))
        train_sampler.set_epoch(epoch)
        for ds in (train_set, val_set):
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)
        model.train()
        began, total_loss, seen, skipped = time.time(), 0.0, 0, 0
        for batch in tqdm(train_loader, desc=f"epoch {epoch + 1}", leave=False, disable=not live):
            skipped += batch.pop("skipped", 0)
            if not _all_have_batch("label" in batch, runtime):
                continue
            batch = _to_device(batch, runtime.device)
            with amp:
                loss, _, _ = model(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(batch["label"])
            seen += len(batch["label"])
        metrics = {"epoch": epoch + 1, "train_loss": total_loss / max(seen, 1),
                   **evaluate_task(model, val_loader, runtime, num_classes, amp),
                   "lr": scheduler.get_last_lr()[0], "seconds": time.time() - began, "skipped": skipped}
        if runtime.is_main:
            save_atomic({"task": task.state_dict(), "model": task.model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch, "config": config, "metrics": metrics},
                        ckpt_path)
            _log(metrics, log_path, writer, epoch)
            epochs.set_postfix(loss=f"{metrics['train_loss']:.3f}", top1=f"{metrics['top1']:.3f}")
            if show and not live:
                print(f"{name}: epoch {epoch + 1}/{stage.epochs}, loss {metrics['train_loss']:.4f}, top1 "
                      f"{metrics['top1']:.4f}, {metrics['seconds']:.0f} s", file=sys.stderr, flush=True)
    if writer is not None:
        writer.close()
    return metrics


def _batch_option(name: str) -> str:
    if name in ("warmup", "stage1", "stage3", "tsm_plus"):
        return f"--{'stage1' if name == 'tsm_plus' else name}.batch_size"  # TSM+ runs on stage I's settings
    return f"the batch size of {name}"


def _check_batch_fits(train_set: Dataset, batch_size: int, world_size: int, option: str) -> None:
    """Refuse a training split smaller than one per-process batch: drop_last would leave no step at all."""
    size, per_rank = len(train_set), max(1, batch_size // world_size)
    if size // world_size >= per_rank:
        return
    where = getattr(train_set, "list_file", None)
    what = f"the training list {where}" if where is not None else "the training set"
    fix = f"lower {option} to at most {size // world_size * world_size}" if size >= world_size \
        else "use fewer processes or more training videos"
    raise ValueError(f"{what} has {size} videos, fewer than one batch of {per_rank} per process ({option} "
                     f"{batch_size} over world size {world_size}); incomplete batches are dropped, so nothing would "
                     f"train: {fix}")


def _all_have_batch(has_batch: bool, runtime: Runtime) -> bool:
    """Whether every rank has a batch this step (MIN all-reduce under DDP); alone, whether this one has.

    A rank that skipped a step on its own would leave the others blocked in the gradient all-reduce.
    """
    if runtime.world_size == 1:
        return has_batch
    flag = torch.tensor([int(has_batch)], device=runtime.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


@torch.no_grad()
def evaluate_task(model: nn.Module, loader: Iterable, runtime: Runtime, num_classes: int, amp) -> dict[str, float]:
    if isinstance(model, nn.parallel.DistributedDataParallel):
        # Evaluate the plain module: DDP's forward may broadcast buffers, a collective that hangs when a
        # rank has no valid batch to forward. Broadcasting rank 0's buffers here is what DDP would do.
        model = model.module
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
    model.eval()
    # Decided by the dataset, not by the batches, so that every rank agrees (one may see no valid batch).
    multi_label = getattr(getattr(loader, "dataset", None), "label_width", 0) > 0
    metrics = Metrics(num_classes, runtime.device, runtime.world_size, multi_label)
    for batch in loader:
        batch.pop("skipped", 0)
        if "label" not in batch:
            continue
        batch = _to_device(batch, runtime.device)
        with amp:
            _, logits, labels = model(batch)
        metrics.update(logits, labels, batch.get("all_labels"))
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
