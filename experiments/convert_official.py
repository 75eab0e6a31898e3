"""Turn the AdaFocus authors' released checkpoints into a run folder that evaluate.py and visualize.py read.

    python experiments/convert_official.py --files DIR --dataset activitynet --patch 128 --out runs/official_anet_128 \\
        --train-list anet/actnet_train_split.txt --val-list anet/actnet_val_split.txt --data-root anet/frames
    python experiments/evaluate.py --run runs/official_anet_128

Files are found in --files DIR by the authors' release names (their READMEs), or given one by one:

    activitynet / fcvid / minikinetics:  {P}s3_checkpoint.pth.tar    (f_G, f_L, f_C and pi; stage III)
                                         globalcnn.pth.tar, localcnn.pth.tar  (warm-up f_G, f_L; optional)
    sthv1 / sthv2:                       {P}x{P}.pth.tar             (f_G, f_L, f_C and pi)
                                         mobilenetv2_segment8.pth.tar, resnet50_segment12.pth.tar  (optional)

The warm-up pair, when present, becomes warmup/checkpoint.pt: the full-frame baseline (Section 4.1) or the
TSM baseline (Section 4.2) of the evaluation. Evaluation reads videos through the run's lists: pass them here
(--train-list, --val-list, --data-root, --label-file) as for train_policy.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from adafocus.cli import add_debug_option, run_script
from adafocus.official import DATASETS, DEFAULT_ACTION_STD, convert_official, find_files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_option(parser)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--patch", type=int, required=True,
                        help="patch size P of the checkpoint (released: 128, 160, 192 for activitynet; "
                             "144, 160, 176 for sthv1 / sthv2)")
    parser.add_argument("--out", required=True, help="run folder to write (must not exist, or be empty)")
    parser.add_argument("--files", help="folder holding the released files under the authors' names")
    parser.add_argument("--checkpoint", help="the stage checkpoint, instead of its release name in --files")
    parser.add_argument("--warmup-glancer", help="warm-up f_G file (globalcnn.pth.tar / mobilenetv2_segment8.pth.tar)")
    parser.add_argument("--warmup-focuser", help="warm-up f_L file (localcnn.pth.tar / resnet50_segment12.pth.tar)")
    parser.add_argument("--frame-size", type=int, default=224,
                        help="frame side S the checkpoint was trained on, f_G's input too (their input_size and "
                             "glance_size: 224 in every release)")
    parser.add_argument("--action-std", type=float, default=DEFAULT_ACTION_STD,
                        help="Section 4.2 pi's fixed std (their evaluate.sh: 0.25); only further training uses it")
    parser.add_argument("--train-list")
    parser.add_argument("--val-list")
    parser.add_argument("--data-root")
    parser.add_argument("--label-file", help="labels file of sthv1 / sthv2")
    args = parser.parse_args(argv)

    path = lambda value: Path(value) if value else None  # noqa: E731
    files = find_files(args.dataset, args.patch, path(args.files), path(args.checkpoint), path(args.warmup_glancer),
                       path(args.warmup_focuser))
    data = {"train_list": args.train_list, "val_list": args.val_list, "data_root": args.data_root,
            "label_file": args.label_file}
    done = convert_official(args.dataset, args.patch, Path(args.out), files, args.frame_size, args.action_std, data)
    print(f"{done.out}: {', '.join(done.stages)} converted from")
    for role, digest in done.digests.items():
        print(f"  {role}: {getattr(done.files, role)} (sha256 {digest[:16]})")
    for note in done.notes:
        print(f"  - {note}")
    if done.config.data.val_list is None:
        print("  no data lists given: add --train-list / --val-list here (or in config.json) before evaluate.py")
    print(f"evaluate with: python experiments/evaluate.py --run {done.out}")


if __name__ == "__main__":
    run_script(main)
