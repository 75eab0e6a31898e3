"""The main job: AdaFocus end to end (warm-up, stage I, stage II by RL, stage III, evaluation).

With no argument it runs on the embedded synthetic benchmark on a CPU in minutes and writes
``runs/synthetic/results.json`` and plots. Finished stages are reused on the next run; ``--fresh`` retrains.
``--frame-policy pi_prime adaframe multiagent`` then trains those frame policies on the finished run
(stage II', pi frozen; ``--frame.<field>`` options) and writes their table and plot to ``<out>_frames``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from adafocus.cli import parse_config, print_results
from adafocus.pipeline import main_job
from adafocus.temporal import add_frame_arguments, frame_job, frame_settings


def main() -> None:
    def extra(parser):
        parser.add_argument("--out", help="run folder (default: runs/<preset>)")
        parser.add_argument("--fresh", action="store_true", help="delete the run folder first")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")
        add_frame_arguments(parser)

    config, args = parse_config(__doc__, extra=extra)
    out = Path(args.out or f"runs/{config.preset}")
    if args.fresh and out.exists():
        shutil.rmtree(out)
    if not (args.frame_policy and (out / "results.json").is_file()):  # a finished run is reused as it is
        evaluation, written = main_job(config, out, progress=not args.no_progress)
        print_results(evaluation.results, written,
                      f"AdaFocus on {config.preset} ({evaluation.results['videos']} validation videos)")
    if args.frame_policy:
        frame_out = Path(args.frame_out or f"{out}_frames")
        frame_job(out, frame_out, args.frame_policy, frame_settings(args), args.frame_lambdas,
                  progress=not args.no_progress, val_videos=args.frame_eval_videos)


if __name__ == "__main__":
    main()
