"""Env throughput: the batched AdaFocusVecEnv against SB3's DummyVecEnv over N single AdaFocusEnv.

For each N it prints env steps/s (vector steps x N per second, whole episodes, auto-reset included) of
both, and the batched env's time per step against the floor of the same network work: f_L over the N
chosen patches (+ the N reference patches of the ``vs_random`` reward, which the env runs in the same
forward) and one f_C step over as many rows, on pre-cropped, pre-normalised tensors already on the
device. Random weights, random uint8 clips of the preset's shape, random valid actions drawn beforehand.
Measurements are interleaved (batched, dummy, floor at each N, every round); each runs whole episodes
(or floor calls) until ``--min-time`` has passed, and the ratios are medians of the per-round ratios.
The last line printed is one JSON object.

    python benchmarks/env_throughput.py --preset synthetic --device cpu --repeats 5
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from dataclasses import replace

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from adafocus.backbones import crop_patches, normalize
from adafocus.envs import REWARDS, AdaFocusEnv, AdaFocusVecEnv, FocusEpisodes

from _common import random_setup, device_and_autocast, synchronize  # benchmarks/_common.py, beside this script

TARGET_OVER_DUMMY = 10.0  # at N = 64 the batched env takes >= 10x the steps/s of DummyVecEnv
TARGET_OVER_FORWARD = 1.25  # ... and its step costs <= 1.25x the bare forward of the same batch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="synthetic", choices=["synthetic", "activitynet"])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--n-envs", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds; figures are medians over them")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds each measurement runs at least")
    p.add_argument("--videos", type=int, default=64, help="random clips the episodes draw from")
    p.add_argument("--reward", default="vs_random", choices=REWARDS)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's; on a CPU shared with other jobs use 1)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def build_episodes(args: argparse.Namespace, device: torch.device) -> FocusEpisodes:
    """The preset's networks with random weights over random uint8 clips of its shape."""
    config, model, clips = random_setup(args.preset, args.videos, args.seed, device)
    return FocusEpisodes(model, clips, replace(config.env, reward=args.reward), device)


def seconds_per_call(fn, device: torch.device, min_time: float) -> float:
    """Mean seconds per call of ``fn``, called (synchronised) until ``min_time`` has passed."""
    synchronize(device)
    calls, began = 0, time.perf_counter()
    while True:
        fn()
        synchronize(device)
        calls += 1
        if time.perf_counter() - began >= min_time:
            return (time.perf_counter() - began) / calls


class EpisodeRunner:
    """Steps a VecEnv through whole episodes with actions drawn beforehand (a pool of 4 episodes' worth)."""

    def __init__(self, vec, frames: int, seed: int) -> None:
        self.vec, self.frames, self.episode = vec, frames, 0
        vec.seed(seed)
        vec.reset()
        n, space = vec.num_envs, vec.action_space
        rng = np.random.default_rng(seed)
        if hasattr(space, "n"):
            self.actions = rng.integers(0, space.n, size=(4, frames, n))
        else:
            self.actions = rng.uniform(-1, 1, size=(4, frames, n, 2)).astype(np.float32)

    def __call__(self) -> None:
        pool = self.actions[self.episode % len(self.actions)]
        for t in range(self.frames):  # the last step auto-resets every slot
            self.vec.step(pool[t])
        self.episode += 1


def forward_floor(ep: FocusEpisodes, n: int, device: torch.device, seed: int):
    """The networks of one batched step alone: f_L over the step's patches and one f_C step over them."""
    rows = 2 * n if ep.config.reward == "vs_random" else n
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, ep.num_videos, (rows,), generator=g).to(device)
    h, w = ep.model.frame_shape
    corners = torch.stack([torch.randint(0, w - ep.patch_size + 1, (rows,), generator=g),
                           torch.randint(0, h - ep.patch_size + 1, (rows,), generator=g)], 1).to(device)
    patches = normalize(crop_patches(ep.clips.frames[video, 0], corners, ep.patch_size))
    pooled = ep.glance_pooled[video, 0]
    hidden = torch.zeros(rows, ep.model.classifier.hidden_size, device=device)
    model = ep.model

    def floor() -> None:
        model.classifier.step(pooled, model.local_encoder(patches), hidden)
    return floor


def main() -> None:
    args = parse_args()
    device, amp = device_and_autocast(args.device, args.threads)
    episodes = build_episodes(args, device)
    frames = episodes.num_frames
    ns = sorted(set(args.n_envs))
    runners = {}
    for n in ns:  # the single envs share the glance maps, the clips and the networks (shallow copies)
        dummy = DummyVecEnv([lambda: AdaFocusEnv(copy.copy(episodes)) for _ in range(n)])
        runners[n] = {"batched": EpisodeRunner(AdaFocusVecEnv(copy.copy(episodes), n, args.seed), frames, args.seed),
                      "dummy": EpisodeRunner(dummy, frames, args.seed),
                      "floor": forward_floor(episodes, n, device, args.seed)}
    raw = {n: {"batched": [], "dummy": [], "floor": []} for n in ns}  # seconds per episode / per floor call
    with torch.no_grad(), amp:
        for n in ns:  # warm-up: one episode (one call) each
            for fn in runners[n].values():
                fn()
        for _ in range(args.repeats):
            for n in ns:
                for name, fn in runners[n].items():
                    raw[n][name].append(seconds_per_call(fn, device, args.min_time))

    med = statistics.median
    rows = {}
    for n in ns:
        b, d, f = (np.array(raw[n][k]) for k in ("batched", "dummy", "floor"))
        rows[n] = {"batched_steps_per_s": n * frames / med(b), "dummy_steps_per_s": n * frames / med(d),
                   "batched_ms_per_step": 1e3 * med(b) / frames, "floor_ms": 1e3 * med(f),
                   "batched_over_dummy": med(d / b), "step_over_forward": med(b / frames / f)}
    if ns[0] == 1:  # what batching gains the bare networks: the ceiling of batched/dummy when overheads vanish
        for n in ns:
            rows[n]["floor_batching_gain"] = n * rows[1]["floor_ms"] / rows[n]["floor_ms"]

    print(f"AdaFocus env throughput: preset {args.preset}, device {device}, T = {frames}, reward {args.reward}, "
          f"{args.repeats} interleaved rounds, >= {args.min_time:g} s per measurement, torch threads {torch.get_num_threads()}")
    print("floor = f_L over the step's patches (2N with vs_random) + one f_C step, pre-cropped tensors on the device;\n"
          "floor N*t1/tN = N x floor(N=1) / floor(N): the batched/dummy ratio if the envs cost nothing beyond the networks")
    header = f"{'N':>4} | {'batched steps/s':>15} | {'dummy steps/s':>13} | {'batched/dummy':>13} | " \
             f"{'ms/step':>8} | {'floor ms':>8} | {'step/floor':>10} | {'floor N*t1/tN':>13}"
    print(header)
    print("-" * len(header))
    for n, r in rows.items():
        print(f"{n:>4} | {r['batched_steps_per_s']:>15.1f} | {r['dummy_steps_per_s']:>13.1f} | "
              f"{r['batched_over_dummy']:>12.2f}x | {r['batched_ms_per_step']:>8.2f} | {r['floor_ms']:>8.2f} | "
              f"{r['step_over_forward']:>9.3f}x | {r.get('floor_batching_gain', float('nan')):>12.2f}x")
    if 64 in rows:
        r = rows[64]
        for what, value, target, ok in [
                ("batched steps/s over DummyVecEnv", r["batched_over_dummy"], f">= {TARGET_OVER_DUMMY:g}x",
                 r["batched_over_dummy"] >= TARGET_OVER_DUMMY),
                ("batched step over bare forward", r["step_over_forward"], f"<= {TARGET_OVER_FORWARD:g}x",
                 r["step_over_forward"] <= TARGET_OVER_FORWARD)]:
            print(f"target at N = 64: {what} {target}: {value:.3f}x {'met' if ok else 'MISSED'}")

    summary = {f"{key}_n{n}": r[key] for n, r in rows.items() for key in ("batched_over_dummy", "step_over_forward")}
    summary.update({key: {str(n): r[key] for n, r in rows.items()} for key in next(iter(rows.values()))})
    summary.update(device=str(device), preset=args.preset, reward=args.reward, frames=frames, repeats=args.repeats,
                   min_time_s=args.min_time, threads=torch.get_num_threads(),
                   targets={"batched_over_dummy_n64": f">= {TARGET_OVER_DUMMY:g}",
                            "step_over_forward_n64": f"<= {TARGET_OVER_FORWARD:g}"})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
