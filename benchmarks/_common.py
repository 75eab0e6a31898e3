"""What both speed scripts share: the device, synchronised timing, and random networks and clips of a preset."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import torch

from adafocus.backbones import AdaFocusModel
from adafocus.config import RunConfig, preset
from adafocus.data.clips import ClipSet
from adafocus.training import resolve_device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call, synchronised on CUDA."""
    synchronize(device)
    began = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - began


def random_setup(preset_name: str, videos: int, seed: int, device: torch.device) -> tuple[RunConfig, AdaFocusModel, ClipSet]:
    """The preset's networks with random weights (only shapes matter for speed) and random uint8 clips."""
    config = preset(preset_name)
    m = config.model
    m = replace(m, global_encoder=replace(m.global_encoder, weights=None),
                local_encoder=replace(m.local_encoder, weights=None))
    torch.manual_seed(seed)
    model = AdaFocusModel(m).to(device).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    shape = (videos, config.data.frames, 3, m.frame_size, m.frame_size)
    clips = ClipSet(torch.randint(0, 256, shape, generator=g, dtype=torch.uint8),
                    torch.randint(0, m.num_classes, (videos,), generator=g)).to(device)
    return replace(config, model=m), model, clips


def device_and_autocast(device_name: str, threads: int | None) -> tuple[torch.device, torch.autocast]:
    """The device to time on, and bf16 autocast there when it is CUDA (mixed precision, as in training)."""
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device_name)
    return device, torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
