"""Two gloo processes on this CPU (torch.multiprocessing, a file:// rendezvous): the synthetic benchmark is
generated once under torchrun, and a rank whose batch is all corrupt does not desynchronise DDP.

Each run has a deadline: a hang fails the test instead of blocking the suite.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import Dataset

from adafocus.config import StageConfig
from adafocus.training import Runtime, StageTask, train_stage

WORLD = 2
DEADLINE_S = 120  # generous for a loaded 2-core box (a run takes ~15 s); a hang otherwise blocks forever


def _run_ranks(worker: Callable[..., None], *args: Any) -> None:
    """Run ``worker(rank, *args)`` on WORLD spawned processes; fail on an error or past the deadline."""
    context = mp.spawn(worker, args=args, nprocs=WORLD, join=False)
    deadline = time.monotonic() + DEADLINE_S
    while not context.join(timeout=1.0):  # raises if a rank failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
                process.join()
            pytest.fail(f"the {WORLD} ranks did not finish within {DEADLINE_S} s: they hang")


def _init(rank: int, store: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)


# --- the synthetic benchmark under torchrun -------------------------------------------------------------

def _data_paths_worker(rank: int, store: str, cache: str, out: str) -> None:
    os.environ["ADAFOCUS_CACHE"] = cache
    os.environ.pop("LOCAL_RANK", None)
    from dataclasses import replace

    import adafocus.data.synthetic as synthetic
    from adafocus.run_data import data_paths
    from conftest import tiny_run_config

    written = []
    original = synthetic.write_mp4

    def counting_write(path, *args, **kwargs):  # counts the videos this rank renders
        written.append(str(path))
        return original(path, *args, **kwargs)

    synthetic.write_mp4 = counting_write
    _init(rank, store)
    try:
        config = tiny_run_config()
        # fewer videos than the training tests' benchmark: only the orchestration is under test here
        config = replace(config, data=replace(config.data, synthetic=replace(config.data.synthetic, train_videos=6,
                                                                              val_videos=4)))
        paths = data_paths(config, progress=False)
        result = {"train": paths.train_list.read_text(), "val": paths.val_list.read_text(),
                  "root": str(paths.data_root), "written": len(written)}
    finally:
        dist.destroy_process_group()
    Path(out, f"{rank}.json").write_text(json.dumps(result))


def test_synthetic_benchmark_is_generated_once_under_torchrun(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    _run_ranks(_data_paths_worker, str(tmp_path / "store"), str(cache), str(out))
    results = [json.loads((out / f"{rank}.json").read_text()) for rank in range(WORLD)]
    assert results[0]["written"] == 6 + 4 and results[1]["written"] == 0  # rank 0 rendered, rank 1 waited
    assert all(r == {**results[0], "written": r["written"]} for r in results)  # same lists, same root
    root = Path(results[0]["root"])
    assert root.parent.parent == cache
    for split, count in (("train", 6), ("val", 4)):
        lines = results[0][split].splitlines()
        assert len(lines) == count
        for line in lines:
            assert (root / line.split()[0]).is_file(), line
    assert [p.name for p in root.parent.iterdir()] == [root.name]  # no staging folder left behind


# --- DDP with a rank whose batch is all corrupt ---------------------------------------------------------

class _LinearTask(StageTask):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # the same initial weights on every rank
        self.model = nn.Linear(4, 3)

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.model(batch["frames"])
        return F.cross_entropy(logits, batch["label"]), logits, batch["label"]

    def param_groups(self, stage: StageConfig) -> list[dict[str, Any]]:
        return [{"params": list(self.model.parameters()), "lr": stage.lr_classifier}]


class _FlakySet(Dataset):
    """Random features; the items fetched at the given (1-based) calls come back None (skipped as corrupt)."""

    def __init__(self, size: int, corrupt_calls: set[int]) -> None:
        generator = torch.Generator().manual_seed(1)
        self.x, self.y = torch.randn(size, 4, generator=generator), torch.randint(0, 3, (size,), generator=generator)
        self.corrupt_calls, self.calls = corrupt_calls, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        self.calls += 1
        return None if self.calls in self.corrupt_calls else {"frames": self.x[index], "label": int(self.y[index])}


TRAIN_VIDEOS, BATCH, EPOCHS = 16, 8, 2  # 4 per rank per step: 2 steps per epoch


def _corrupt_batch_worker(rank: int, store: str, out: str) -> None:
    from adafocus.data.dataset import collate_videos  # drops None items; an all-None batch has no "label"

    _init(rank, store)
    steps = []
    handle = register_optimizer_step_post_hook(lambda *_: steps.append(1))
    per_rank = BATCH // WORLD
    # rank 1: the whole second batch of epoch 1 is corrupt, and so is its whole validation share
    train_corrupt = set(range(per_rank + 1, 2 * per_rank + 1)) if rank == 1 else set()
    val_corrupt = set(range(1, 100)) if rank == 1 else set()
    task = _LinearTask()
    stage = StageConfig(epochs=EPOCHS, lr_classifier=0.1, batch_size=BATCH)
    try:
        metrics = train_stage(task, stage, _FlakySet(TRAIN_VIDEOS, train_corrupt), _FlakySet(8, val_corrupt),
                              Path(out) / "run", Runtime(torch.device("cpu"), rank, WORLD), num_classes=3,
                              seed=0, config={}, collate=collate_videos, progress=False, name="stage1")
    finally:
        handle.remove()
        dist.destroy_process_group()
    weights = torch.cat([p.detach().flatten() for p in task.parameters()]).tolist()
    Path(out, f"{rank}.json").write_text(json.dumps({"steps": len(steps), "weights": weights, "metrics": metrics}))


def test_a_rank_with_an_all_corrupt_batch_skips_the_step_with_the_others(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _run_ranks(_corrupt_batch_worker, str(tmp_path / "store"), str(out))
    results = [json.loads((out / f"{rank}.json").read_text()) for rank in range(WORLD)]
    expected = EPOCHS * (TRAIN_VIDEOS // BATCH) - 1  # every rank skips the one step rank 1 had no batch for
    assert [r["steps"] for r in results] == [expected] * WORLD
    assert results[0]["weights"] == results[1]["weights"]  # the ranks stayed in step
    assert results[0]["metrics"]["top1"] == results[1]["metrics"]["top1"]  # validation synchronised
    assert results[0]["metrics"]["epoch"] == EPOCHS
    state = torch.load(out / "run" / "checkpoint.pt", weights_only=True)
    assert state["scheduler"]["last_epoch"] == expected
