"""AdaFocus beside AR-Net, SCSampler, LiteEval and Listen-to-look (image-based), on the embedded synthetic
benchmark and on its temporal variant: one table per benchmark (top-1, mAP, GFLOPs per video, videos/s)
and one accuracy-vs-GFLOPs plot.

    python experiments/compare_baselines.py                      # both benchmarks
    python experiments/compare_baselines.py --presets synthetic  # one
    python experiments/compare_baselines.py --out runs/baselines --runs runs/synthetic runs/synthetic_temporal

Each benchmark's AdaFocus run folder (``--runs``, one per preset) is reused when finished (its warm-up gives
every method its backbones); a missing one is trained first by the main job, as ``train_policy.py`` would.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from adafocus.baselines import METHODS, BaselineConfig, compare, with_preset_defaults
from adafocus.cli import add_config_options, add_debug_option, config_from_args, print_results, run_script
from adafocus.config import preset

DEFAULT_RUNS = {"synthetic": "runs/synthetic", "synthetic_temporal": "runs/synthetic_temporal"}  # train_policy's
ALIASES = {"batch_size": "--batch-size", "liteeval_weight": "--liteeval-weight", "liteeval_budget": "--liteeval-budget",
           "arnet.resolutions": "--resolutions"}  # BaselineConfig fields' shorter option names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_option(parser)
    parser.add_argument("--presets", nargs="+", default=["synthetic", "synthetic_temporal"])
    parser.add_argument("--runs", nargs="+", help="AdaFocus run folder per preset (default: runs/<preset>, as train_policy.py writes)")
    parser.add_argument("--out", default="runs/baselines", help="results go to <out>/<preset>/")
    add_config_options(parser, BaselineConfig(), aliases=ALIASES, skip={"arnet.efficiency_weight"},
                       choices={"methods": METHODS})
    parser.add_argument("--efficiency-weight", type=float, help="AR-Net's lambda (default: the benchmark's tuned "
                        "value, adafocus.baselines.EFFICIENCY_WEIGHTS)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    runs = args.runs or [DEFAULT_RUNS.get(name, f"runs/{name}") for name in args.presets]
    if len(runs) != len(args.presets):
        parser.error(f"--runs needs one folder per preset: {len(args.presets)} presets, {len(runs)} folders")
    if args.threads:
        torch.set_num_threads(args.threads)
    base = config_from_args(args, BaselineConfig())
    if base.liteeval_budget is not None and base.liteeval_budget < 0:
        base = replace(base, liteeval_budget=None)
    summary = {}
    for name, run in zip(args.presets, runs):
        config = preset(name)
        results = compare(Path(run), Path(args.out) / name, with_preset_defaults(base, config, args.efficiency_weight),
                          run_config=config, progress=not args.no_progress)
        written = results.pop("written")
        print_results(results, written, f"{name}: AdaFocus and the frame-selection baselines "
                                        f"({results['videos']} validation videos, T = {results['frames']})")
        summary[name] = {k: {m: v[m] for m in ("top1", "mAP", "gflops_per_video", "videos_per_second")}
                         for k, v in results["policies"].items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    run_script(main)
