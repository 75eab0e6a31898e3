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
from pathlib import Path

import torch

from adafocus.agents.arnet import ARNetConfig
from adafocus.baselines import METHODS, BaselineConfig, compare, with_preset_defaults
from adafocus.cli import add_debug_option, print_results, run_script
from adafocus.config import preset

DEFAULT_RUNS = {"synthetic": "runs/synthetic", "synthetic_temporal": "runs/synthetic_temporal"}  # train_policy's


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_option(parser)
    parser.add_argument("--presets", nargs="+", default=["synthetic", "synthetic_temporal"])
    parser.add_argument("--runs", nargs="+", help="AdaFocus run folder per preset (default: runs/<preset>, as train_policy.py writes)")
    parser.add_argument("--out", default="runs/baselines", help="results go to <out>/<preset>/")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=int, default=BaselineConfig.epochs)
    parser.add_argument("--lr", type=float, default=BaselineConfig.lr)
    parser.add_argument("--batch-size", type=int, default=BaselineConfig.batch_size)
    parser.add_argument("--frames", type=int, default=BaselineConfig.frames, help="K for SCSampler and Listen-to-look")
    parser.add_argument("--resolutions", type=int, nargs="+", help="AR-Net's resolutions (default: the paper's "
                        "224/168/112/84 scaled to the frame size)")
    parser.add_argument("--efficiency-weight", type=float, help="AR-Net's lambda (default: the benchmark's tuned "
                        "value, adafocus.baselines.EFFICIENCY_WEIGHTS)")
    parser.add_argument("--liteeval-weight", type=float, default=BaselineConfig.liteeval_weight)
    parser.add_argument("--liteeval-budget", type=float, default=BaselineConfig.liteeval_budget,
                        help="LiteEval's target fraction of reading every frame; a negative value: linear penalty")
    parser.add_argument("--seed", type=int, help="the baselines' seed (default: the AdaFocus run's)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    runs = args.runs or [DEFAULT_RUNS.get(name, f"runs/{name}") for name in args.presets]
    if len(runs) != len(args.presets):
        parser.error(f"--runs needs one folder per preset: {len(args.presets)} presets, {len(runs)} folders")
    if args.threads:
        torch.set_num_threads(args.threads)
    arnet = ARNetConfig(resolutions=tuple(args.resolutions)) if args.resolutions else ARNetConfig()
    budget = None if args.liteeval_budget is not None and args.liteeval_budget < 0 else args.liteeval_budget
    base = BaselineConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, frames=args.frames, arnet=arnet,
                          liteeval_weight=args.liteeval_weight, liteeval_budget=budget, methods=tuple(args.methods), seed=args.seed)
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
