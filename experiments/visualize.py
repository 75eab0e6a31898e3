"""Pictures of a trained run: focus trajectories of chosen videos (strip, path, GIF), where each policy looks
on average (heatmaps of patch centres, learned against random), accuracy vs GFLOPs, learning curves.

    python experiments/visualize.py --run runs/synthetic --videos 0 5 9
"""
from __future__ import annotations

import argparse
from pathlib import Path

from adafocus.cli import add_debug_option, run_script
from adafocus.run_evaluation import evaluate_run, write_report
from adafocus.run_folder import open_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_option(parser)
    parser.add_argument("--run", required=True, help="run folder written by train_policy.py")
    parser.add_argument("--videos", type=int, nargs="+", default=[0, 1, 2, 3], help="validation video indices")
    parser.add_argument("--out", help="output folder (default: <run>/pictures)")
    args = parser.parse_args(argv)
    run = open_run(Path(args.run))
    evaluation = evaluate_run(run.config, run.checkpoint, run.policy, full_frame=run.warmup, tsm_plus=run.tsm_plus,
                              videos=args.videos)
    written = write_report(evaluation, Path(args.out) if args.out else Path(args.run) / "pictures", run.config,
                           run=Path(args.run))
    for kind, paths in written.items():
        print(f"{kind}: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    run_script(main)
