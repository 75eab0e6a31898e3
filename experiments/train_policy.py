"""The main job: AdaFocus end to end (warm-up, stage I, stage II by RL, stage III, evaluation).

With no argument it runs on the embedded synthetic benchmark on a CPU in minutes and writes
``runs/synthetic/results.json`` and plots. Stages finished by the same command are reused on the next run, an
interrupted one resumes, and a stage trained by another command is refused; ``--fresh`` retrains.
``--frame-policy pi_prime adaframe multiagent`` then trains those frame policies on the finished run
(stage II', pi frozen; ``--frame.<field>`` options) and writes their table and plot to ``<out>_frames``.
"""
from __future__ import annotations

import os
from pathlib import Path

from adafocus.cli import config_from_args, parse_config, print_results, remove_run_folder, run_script
from adafocus.frame_evaluation import frame_job
from adafocus.frame_training import FrameConfig, add_frame_arguments
from adafocus.pipeline import main_job


def main(argv: list[str] | None = None) -> None:
    def extra(parser):
        parser.add_argument("--out", help="run folder (default: runs/<preset>)")
        parser.add_argument("--fresh", action="store_true", help="delete the run folder first (only a folder this "
                            "project wrote: one holding its config.json)")
        parser.add_argument("--from", dest="start_from", metavar="RUN",
                            help="start the run folder from RUN's finished stages that this command would train the "
                                 "same way (warm-up, stage I, ...): e.g. --algo a2c --out runs/a2c --from runs/synthetic")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")
        add_frame_arguments(parser)

    config, args = parse_config(__doc__, argv, extra=extra)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("train_policy.py runs stage II, which trains in one process: run it without torchrun "
                         "(train_stage1.py and train_stage3.py take torchrun)")
    out = Path(args.out or f"runs/{config.preset}")
    if args.fresh:
        remove_run_folder(out)
    if not (args.frame_policy and (out / "results.json").is_file()):  # a finished run is reused as it is
        evaluation, written = main_job(config, out, progress=not args.no_progress,
                                       start_from=Path(args.start_from) if args.start_from else None)
        print_results(evaluation.results, written,
                      f"AdaFocus on {config.preset} ({evaluation.results['videos']} validation videos)")
    if args.frame_policy:
        frame_out = Path(args.frame_out or f"{out}_frames")
        frame_job(out, frame_out, args.frame_policy, config_from_args(args, FrameConfig(), "frame"), args.frame_lambdas,
                  progress=not args.no_progress, val_videos=args.frame_eval_videos)


if __name__ == "__main__":
    run_script(main)
