"""Inference throughput: whole AdaFocus inference (glance + rollout) against the bare backbone forwards.

Timed: building ``FocusEpisodes`` over the V clips (which runs f_G on all V*T frames, 64 videos per
forward) followed by ``adafocus.evaluation.rollout`` of a non-learned agent, ``--batch-size`` videos at a
time, with the ``conf`` reward as evaluation uses (no reference patch). Floor: the same backbone work
alone on tensors prepared beforehand on the device: f_G over all V*T frames already resized to
global_size and normalised (the same chunks of videos), and f_L over all V*T patches already cropped and
normalised (``--batch-size`` patches per forward, one forward per step as in the rollout). f_C is not
in the floor. Random weights, random uint8 clips of the preset's shape. Runs are interleaved; the ratio
is the median of the per-round ratios. The last line printed is one JSON object.

    python benchmarks/inference.py --preset synthetic --device cpu --videos 128 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import numpy as np
import torch

from adafocus.agents.baselines import CenterAgent, RandomAgent
from adafocus.backbones import crop_patches, normalize
from adafocus.data.clips import ClipSet
from adafocus.envs import FocusEpisodes
from adafocus.evaluation import rollout

from _common import random_setup, device_and_autocast, timed  # benchmarks/_common.py, beside this script

TARGET = 1.15  # inference within 1.15x of the bare backbone forwards


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="synthetic", choices=["synthetic", "activitynet"])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--videos", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--agent", default="center", choices=["center", "random"])
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds; figures are medians over them")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's; on a CPU shared with other jobs use 1)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    device, amp = device_and_autocast(args.device, args.threads)
    config, model, clips = random_setup(args.preset, args.videos, args.seed, device)
    m = config.model
    g = torch.Generator().manual_seed(args.seed)
    v, t, b, p = args.videos, config.data.frames, args.batch_size, m.patch_size
    env_config = replace(config.env, reward="conf")  # evaluation's setting: no reference patch

    def inference(subset: ClipSet = clips) -> None:
        episodes = FocusEpisodes(model, subset, env_config, device, batch_size=b)  # f_G over every frame
        agent = CenterAgent(episodes.action_space) if args.agent == "center" else RandomAgent(episodes.action_space, args.seed)
        rollout(episodes, agent, b)

    # the floor's inputs, prepared untimed: resized + normalised frames, cropped + normalised patches
    glance_in = [model.global_view(clips.frames[i:i + b].flatten(0, 1)) for i in range(0, v, b)]
    corners = torch.stack([torch.randint(0, m.frame_size - p + 1, (v, t), generator=g) for _ in range(2)], -1).to(device)
    patches = [normalize(crop_patches(clips.frames[i:i + b, s], corners[i:i + b, s], p))
               for i in range(0, v, b) for s in range(t)]

    def floor(glance_in=glance_in, patches=patches) -> None:
        for x in glance_in:
            model.global_encoder.forward_map(x)
        for x in patches:
            model.local_encoder(x)

    runs = {"inference": [], "floor": []}
    with torch.no_grad(), amp:
        inference(clips.subset(slice(0, b)))  # warm-up on one batch of videos (the full batches' shapes)
        floor(glance_in[:1], patches[:t])
        for _ in range(args.repeats):
            runs["inference"].append(timed(inference, device))
            runs["floor"].append(timed(floor, device))

    med = statistics.median
    inf_s, floor_s = med(runs["inference"]), med(runs["floor"])
    ratio = med(np.array(runs["inference"]) / np.array(runs["floor"]))
    print(f"AdaFocus inference: preset {args.preset}, device {device}, {v} videos x T = {t}, batch {b}, "
          f"{args.agent} agent, {args.repeats} interleaved rounds, torch threads {torch.get_num_threads()}")
    print("timed: FocusEpisodes construction (f_G glance over all V*T frames) + rollout; "
          "floor: f_G on resized, normalised frames + f_L on cropped, normalised patches")
    print(f"{'':>10} | {'seconds':>8} | {'videos/s':>9}")
    print(f"{'inference':>10} | {inf_s:>8.3f} | {v / inf_s:>9.1f}")
    print(f"{'floor':>10} | {floor_s:>8.3f} | {v / floor_s:>9.1f}")
    print(f"target: inference over floor <= {TARGET:g}x: {ratio:.3f}x {'met' if ratio <= TARGET else 'MISSED'}")
    print(json.dumps({"inference_over_floor": ratio, "inference_videos_per_s": v / inf_s,
                      "floor_videos_per_s": v / floor_s, "inference_s": inf_s, "floor_s": floor_s,
                      "videos": v, "frames": t, "batch_size": b, "agent": args.agent, "device": str(device),
                      "preset": args.preset, "repeats": args.repeats, "threads": torch.get_num_threads(),
                      "target": f"<= {TARGET:g}"}))


if __name__ == "__main__":
    main()
