"""Evaluate a trained run on a validation list: every policy's top-1, mAP, GFLOPs, videos/s, focus hits
and early-exit curve, written to <run>/evaluation/results.json with the accuracy-vs-GFLOPs plot.

    python experiments/evaluate.py --run runs/synthetic
    python experiments/evaluate.py --run runs/synthetic --baselines   # + AR-Net, SCSampler, LiteEval, Listen-to-look
    python experiments/evaluate.py --run runs/my_run --val-list other_val.txt --checkpoint x.pt --policy p.zip
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from adafocus.baselines import BaselineConfig, compare, with_preset_defaults
from adafocus.cli import add_debug_option, print_results, run_script
from adafocus.run_data import with_val_videos
from adafocus.run_evaluation import evaluate_run, write_report
from adafocus.run_folder import open_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_option(parser)
    parser.add_argument("--run", required=True, help="run folder written by train_policy.py")
    parser.add_argument("--checkpoint", help="model checkpoint (default: the run's stage III, else stage I)")
    parser.add_argument("--policy", help="learned policy (default: <run>/policy/policy.zip when present)")
    parser.add_argument("--val-list", help="evaluate on another list (same format and classes)")
    parser.add_argument("--val-videos", type=int,
                        help="synthetic runs: evaluate on a validation split of this many videos from the same generator "
                             "(a smaller standard error than the run's own split)")
    parser.add_argument("--split", default="val", choices=["train", "val"])
    parser.add_argument("--device", help="override the run's device (auto, cpu, cuda)")
    parser.add_argument("--workers", type=int, help="override the run's video-loading processes (data.workers)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", help="output folder (default: <run>/evaluation)")
    parser.add_argument("--baselines", action="store_true",
                        help="also train (frozen backbones, seconds each) and evaluate AR-Net, SCSampler, LiteEval and "
                             "Listen-to-look on the run's backbones, in the same table and plot")
    args = parser.parse_args(argv)

    run = open_run(Path(args.run))
    config = run.config
    if args.val_list:
        config = replace(config, data=replace(config.data, val_list=args.val_list))
    if args.val_videos:
        config = with_val_videos(config, args.val_videos)
    if args.device:
        config = replace(config, device=args.device)
    if args.workers is not None:
        config = replace(config, data=replace(config.data, workers=args.workers))
    out = Path(args.out) if args.out else Path(args.run) / "evaluation"
    if args.baselines:
        results = compare(Path(args.run), out, with_preset_defaults(BaselineConfig(), config), run_config=config)
        written = results.pop("written")
        print_results(results, written, f"{args.run}: AdaFocus and the frame-selection baselines ({results['videos']} videos)")
        return
    evaluation = evaluate_run(config, Path(args.checkpoint) if args.checkpoint else run.checkpoint,
                              Path(args.policy) if args.policy else run.policy, args.split,
                              progress=not args.no_progress, batch_size=args.batch_size, full_frame=run.warmup,
                              tsm_plus=run.tsm_plus)
    written = write_report(evaluation, out, config, run=Path(args.run))
    print_results(evaluation.results, written, f"{args.run} on {args.split} ({evaluation.results['videos']} videos)")


if __name__ == "__main__":
    run_script(main)
