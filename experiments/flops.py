"""GFLOPs (= GMACs, as the AdaFocus papers count) of one AdaFocus step and of a whole video.

    python experiments/flops.py --global-arch mobilenet_v2 --global-size 224 \
        --local-arch resnet50 --patch 128 --frames 16 [--json]
    python experiments/flops.py --glance-frames 8 --frames 12 --shift 0.125 --patch 144   # Section 4.2 (TSM)

Every number is measured by the library's counter (torch.utils.flop_counter) on randomly initialised
networks: only shapes matter, so no weights are read.
"""
from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from adafocus.backbones import (AdaFocusModel, ClipFocusModel, EncoderSpec, ModelConfig, clip_cost, evaluating,
                                step_cost, tsm_costs)
from adafocus.cli import add_debug_option, run_script


# --- policy network -------------------------------------------------------------------------------
# The paper's pi (own GRU) by default, to compare with the paper's table; ``--policy library`` measures
# this project's PPO pi instead: adafocus.agents.GlanceExtractor on (f_G map, f_C memory, progress),
# then SB3's actor head (net_arch=[]: one linear layer to the grid). The critic does not run at test time.
class _PaperPolicy(nn.Module):
    """The paper's pi at inference: 1x1 conv (C_G -> 32) -> ReLU -> linear -> ReLU -> GRU -> actor."""

    def __init__(self, channels: int, height: int, width: int, hidden: int, grid: int) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(channels, 32, 1), nn.ReLU(), nn.Flatten(),
                                    nn.Linear(32 * height * width, hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden)
        self.actor = nn.Linear(hidden, grid * grid)

    def forward(self, maps: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.encode(maps)[None], hidden)  # one step
        return self.actor(out[0])


def policy_module(model: AdaFocusModel, hidden: int, grid: int,
                  kind: str = "paper") -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """pi for ``model``'s f_G feature map, and the inputs of one step (batch of one)."""
    size = model.config.global_size
    with evaluating(model), torch.no_grad():
        maps = model.global_encoder.forward_map(torch.zeros(1, 3, size, size))
    _, channels, height, width = maps.shape
    if kind == "paper":
        return _PaperPolicy(channels, height, width, hidden, grid), (maps, torch.zeros(1, 1, hidden))
    from gymnasium import spaces
    from adafocus.agents import GlanceExtractor

    memory = model.classifier.hidden_size
    space = spaces.Dict({"glance": spaces.Box(-1, 1, (channels, height, width)), "progress": spaces.Box(0, 1, (1,)),
                         "memory": spaces.Box(-1, 1, (memory,))})
    policy = nn.Sequential(GlanceExtractor(space, features_dim=hidden), nn.Linear(hidden, grid * grid))
    return policy, ({"glance": maps, "progress": torch.zeros(1, 1), "memory": torch.zeros(1, memory)},)
def clip_policy_module(model: ClipFocusModel, hidden: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Section 4.2's pi at inference on the G glance maps concatenated on channels: 1x1 conv -> 32 -> ReLU ->
    linear -> ReLU -> the Gaussian's mean (2): one patch centre per clip."""
    size, glance = model.config.global_size, model.glance_frames
    with evaluating(model), torch.no_grad():
        maps = model.global_encoder.forward_map(torch.zeros(glance, 3, size, size), glance).flatten(0, 1)[None]
    _, channels, height, width = maps.shape
    policy = nn.Sequential(nn.Conv2d(channels, 32, 1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * height * width, hidden),
                           nn.ReLU(), nn.Linear(hidden, 2))
    return policy, (maps,)
# ---------------------------------------------------------------------------------------------------


def _clip_level(args: argparse.Namespace) -> None:
    """Section 4.2: GFLOPs per clip of AdaFocus-TSM and of the TSM and TSM+ baselines."""
    config = ModelConfig(
        global_encoder=EncoderSpec(args.global_arch, None, args.global_blocks, shift=args.shift),
        local_encoder=EncoderSpec(args.local_arch, None, shift=args.shift),
        num_classes=args.num_classes, frame_size=max(args.global_size, args.patch),
        global_size=args.global_size, patch_size=args.patch, glance_frames=args.glance_frames)
    model = ClipFocusModel(config)
    policy, inputs = clip_policy_module(model, args.policy_hidden)
    parts = clip_cost(model, args.frames, policy, inputs).as_dict()
    baselines = tsm_costs(model, args.frames)
    if args.json:
        print(json.dumps({"config": vars(args), "per_clip": parts, "baselines": baselines}))
        return
    from rich.console import Console
    from rich.table import Table

    g = model.glance_frames
    table = Table(title=f"AdaFocus-TSM GFLOPs (GMACs) per clip, P = {args.patch}, {g}+{args.frames} frames, "
                        f"shift {args.shift}")
    table.add_column("part")
    table.add_column("per clip", justify="right")
    names = {"global_encoder": f"f_G {args.global_arch} @ {args.global_size} x {g} (+ head)",
             "local_encoder": f"f_L {args.local_arch} @ {args.patch} x {args.frames}",
             "classifier": "f_C linear", "policy": "pi (one Gaussian centre)", "total": "AdaFocus-TSM total"}
    for part, label in names.items():
        table.add_row(label, _fmt(parts[part], 2), end_section=part == "policy")
    table.add_row(f"TSM: f_L @ {config.frame_size} x {g}", _fmt(baselines["tsm"], 2))
    table.add_row("TSM+: TSM + f_G", _fmt(baselines["tsm_plus"], 2))
    Console().print(table)


def _fmt(gmacs: float, decimals: int) -> str:
    """Fixed decimals as the paper prints them; significant digits for tiny (CPU-preset) networks."""
    return f"{gmacs:.{decimals}f}" if gmacs >= 10 ** -decimals or gmacs == 0 else f"{gmacs:.3g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_option(parser)
    parser.add_argument("--global-arch", default="mobilenet_v2")
    parser.add_argument("--global-size", type=int, default=224)
    parser.add_argument("--global-blocks", type=int, default=None)
    parser.add_argument("--local-arch", default="resnet50")
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--hidden-size", type=int, default=1024, help="f_C's GRU width")
    parser.add_argument("--policy-hidden", type=int, default=1024, help="pi's width")
    parser.add_argument("--grid", type=int, default=7, help="pi's action grid (grid x grid corners)")
    parser.add_argument("--policy", choices=("paper", "library"), default="paper",
                        help="pi as in the paper (own GRU) or this project's PPO pi (GlanceExtractor)")
    parser.add_argument("--glance-frames", type=int, default=None,
                        help="clip-level AdaFocus (Section 4.2): f_G on this many frames, f_L on --frames patches")
    parser.add_argument("--shift", type=float, default=0.0, help="TSM channel fraction shifted each way (1/8 in TSM)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.glance_frames is not None:
        _clip_level(args)
        return

    config = ModelConfig(
        global_encoder=EncoderSpec(args.global_arch, None, args.global_blocks),
        local_encoder=EncoderSpec(args.local_arch, None),
        num_classes=args.num_classes, frame_size=max(args.global_size, args.patch),
        global_size=args.global_size, patch_size=args.patch, hidden_size=args.hidden_size)
    model = AdaFocusModel(config)
    policy, policy_inputs = policy_module(model, args.policy_hidden, args.grid, args.policy)
    per_frame = step_cost(model, policy, policy_inputs).as_dict()
    per_video = {part: gmacs * args.frames for part, gmacs in per_frame.items()}

    if args.json:
        print(json.dumps({"config": vars(args), "per_frame": per_frame, "per_video": per_video}))
        return

    from rich.console import Console
    from rich.table import Table

    names = {"global_encoder": f"f_G {args.global_arch} @ {args.global_size}",
             "local_encoder": f"f_L {args.local_arch} @ {args.patch}",
             "classifier": f"f_C GRU({args.hidden_size})",
             "policy": f"pi {args.policy} ({args.grid}x{args.grid} grid)", "total": "total"}
    table = Table(title=f"AdaFocus GFLOPs (GMACs), P = {args.patch}, T = {args.frames}")
    table.add_column("part")
    table.add_column("per frame", justify="right")
    table.add_column(f"per video (x{args.frames})", justify="right")
    for part, label in names.items():
        table.add_row(label, _fmt(per_frame[part], 4), _fmt(per_video[part], 2), end_section=part == "policy")
    Console().print(table)


if __name__ == "__main__":
    run_script(main)
