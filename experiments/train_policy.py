"""The main job: AdaFocus end to end (warm-up, stage I, stage II by RL, stage III, evaluation).

With no argument it runs on the embedded synthetic benchmark on a CPU in minutes and writes
``runs/synthetic/results.json`` and plots. Finished stages are reused on the next run; ``--fresh`` retrains.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from adafocus.cli import parse_config, print_results
from adafocus.pipeline import main_job


def main() -> None:
    def extra(parser):
        parser.add_argument("--out", help="run folder (default: runs/<preset>)")
        parser.add_argument("--fresh", action="store_true", help="delete the run folder first")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    config, args = parse_config(__doc__, extra=extra)
    out = Path(args.out or f"runs/{config.preset}")
    if args.fresh and out.exists():
        shutil.rmtree(out)
    evaluation, written = main_job(config, out, progress=not args.no_progress)
    print_results(evaluation.results, written,
                  f"AdaFocus on {config.preset} ({evaluation.results['videos']} validation videos)")


if __name__ == "__main__":
    main()
