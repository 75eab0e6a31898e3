"""RL algorithms for pi compared from one shared warm-up and stage I, over several seeds of stage II.

    python experiments/compare_algorithms.py --algos ppo a2c dqn qrdqn recurrent_ppo sac td3 --seeds 0 1 2 --out runs/compare
    python experiments/compare_algorithms.py --algos ppo sac --seeds 0 1 --policy.total_timesteps 16384

Trains <out>/base (warm-up, stage I) once, then each (algorithm, seed) in <out>/<algo>/seed<k> from it
(stage II with --policy.seed k and the algorithm's agents/hyperparams/<algo>.yml, stage III, evaluation),
reusing finished folders; writes <out>/results.json, a table (mean ± std over seeds), the episode reward
against env steps (<out>/plots/reward_vs_steps) and every algorithm's early-exit curve
(<out>/plots/accuracy_vs_gflops). Every other option is a run option (--preset, --policy.*, --env.*, ...),
applied to every run; SAC and TD3 get continuous actions.
"""
from __future__ import annotations

import os
from pathlib import Path

from adafocus.cli import parse_config, run_script
from adafocus.comparison import compare, print_comparison

ALGORITHMS = ["ppo", "a2c", "dqn", "qrdqn", "recurrent_ppo", "sac", "td3"]


def main(argv: list[str] | None = None) -> None:
    def extra(parser):
        parser.add_argument("--algos", nargs="+", default=ALGORITHMS,
                            help="algorithms of pi: built-in names or package.module:Class")
        parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="stage II seeds (--policy.seed)")
        parser.add_argument("--out", default="runs/compare", help="comparison folder")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    config, args = parse_config(__doc__, argv, extra=extra)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("compare_algorithms.py runs stage II, which trains in one process: run it without torchrun")
    comparison = compare(config, args.algos, args.seeds, Path(args.out), progress=not args.no_progress)
    print_comparison(comparison.results, comparison.written,
                     f"pi by algorithm on {config.preset}, seeds {' '.join(map(str, args.seeds))}")


if __name__ == "__main__":
    run_script(main)
