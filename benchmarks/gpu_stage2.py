"""GPU check of stage II and the evaluation at a preset's shapes, random weights, on generated videos.

No dataset and no pretrained weights exist on the GPU machine, so this generates a small video list with the
synthetic generator at the preset's frame size (224 for ``activitynet``: H.264 mp4s of moving textured tiles
with target boxes, ``path label`` lists), and runs the real pipeline functions on it with both encoders
randomly initialised (``weights None``), saved as the stage I checkpoint stage II starts from:

    --part data    generate the videos (into $ADAFOCUS_CACHE) and write the random-weight checkpoint
    --part stage2  ``run_policy``: ``--steps`` PPO timesteps at N = ``--n-envs`` slots, videos streamed
                   (``data.stream`` true, DataLoader workers, the training transform: multi-scale crop + flip)
    --part eval    ``evaluate_run`` on the validation list (the stage II policy when it finished, plus random,
                   center, oracle, global-only, full-frame), streamed

Precision: stage II runs in fp32. Neither the env step (``envs/episodes.py``, ``envs/vec_env.py``) nor
``run_policy`` / ``evaluate_run`` has an autocast option (only the supervised stages in
``adafocus/training.py`` use bf16 autocast on CUDA), and wrapping SB3's ``learn`` in autocast from outside
would also run PPO's own update in bf16, which is not what the pipeline does; so this measures what the
pipeline runs today. Each part prints its figures (wall time, env steps/s of ``algo.learn``, videos/s,
peak CUDA memory) and, last, one JSON object.

    python benchmarks/gpu_stage2.py --part data --out /tmp/gpu_check
    python benchmarks/gpu_stage2.py --part stage2 --out /tmp/gpu_check --steps 20480 --n-envs 64
    python benchmarks/gpu_stage2.py --part eval --out /tmp/gpu_check
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from dataclasses import replace
from pathlib import Path

import torch

import adafocus.pipeline as pipeline
from adafocus import checkpoint
from adafocus.agents import resolve_algorithm
from adafocus.config import RunConfig, preset, to_dict
from adafocus.data.synthetic import SyntheticConfig, generate
from adafocus.models import build_model
from adafocus.run_evaluation import evaluate_run
from adafocus.training import setup_runtime


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", required=True, choices=["data", "stage2", "eval"])
    p.add_argument("--out", required=True, help="run folder (random checkpoint, policy/)")
    p.add_argument("--preset", default="activitynet", help="whose model, frames T and PPO settings")
    p.add_argument("--device", default="cuda", help="cuda[:N], cpu (a dry run) or auto")
    p.add_argument("--steps", type=int, default=20480, help="stage II timesteps (20480 = 320 steps of N = 64 slots)")
    p.add_argument("--n-envs", type=int, default=64, help="env slots N")
    p.add_argument("--videos-per-update", type=int, default=None, help="PPO videos per update (preset's: 64)")
    p.add_argument("--train-videos", type=int, default=128)
    p.add_argument("--val-videos", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (preset's: 4)")
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return p.parse_args()


def synthetic_config(config: RunConfig, args: argparse.Namespace) -> SyntheticConfig:
    """Videos of the preset's frame size and T frames; the tile scaled with the frame (24 px at 112)."""
    size = config.model.frame_size
    return SyntheticConfig(train_videos=args.train_videos, val_videos=args.val_videos, frame_size=size,
                           tile_size=max(24, 24 * size // 112), video_frames=max(16, config.data.frames),
                           speed=2.5 * size / 112)


def run_config(args: argparse.Namespace) -> tuple[RunConfig, SyntheticConfig]:
    """The preset with random-weight encoders, its data the generated lists (streamed), the check's PPO size."""
    config = preset(args.preset)
    m = config.model
    model = replace(m, global_encoder=replace(m.global_encoder, weights=None),
                    local_encoder=replace(m.local_encoder, weights=None))
    config = replace(config, model=model)
    syn = synthetic_config(config, args)
    data = generate(syn, progress=False)  # cached under $ADAFOCUS_CACHE after --part data
    config = replace(config, device=args.device,
                     data=replace(config.data, train_list=str(data.train_list), val_list=str(data.val_list),
                                  list_format="auto", image_template=None,  # the generator's lists, not the preset's
                                  annotation_root=str(data.annotation_root), stream=True, cache_videos=False,
                                  workers=config.data.workers if args.workers is None else args.workers),
                     policy=replace(config.policy, total_timesteps=args.steps, n_envs=args.n_envs,
                                    videos_per_update=args.videos_per_update or config.policy.videos_per_update))
    return config, syn


def cuda_peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    init = out / "random_init.pt"
    began = time.perf_counter()
    config, syn = run_config(args)
    device = setup_runtime(config.device).device
    m = config.model
    summary: dict = {"part": args.part, "preset": args.preset, "device": str(device),
                     "model": f"f_G {m.global_encoder.arch} at {m.global_size}, f_L {m.local_encoder.arch} on "
                              f"P = {m.patch_size} of {m.frame_size}, T = {config.data.frames}, "
                              f"{m.num_classes} classes, random weights",
                     "precision": "fp32 (no autocast option in the env step)"}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        summary["gpu"] = torch.cuda.get_device_name(device)

    if args.part == "data":
        summary["data_s"] = time.perf_counter() - began  # generation (or finding the cached set)
        checkpoint.save_atomic({"model": build_model(config, None).state_dict(), "config": to_dict(config)},
                               init)
        summary.update(train_list=config.data.train_list, val_list=config.data.val_list,
                       train_videos=syn.train_videos, val_videos=syn.val_videos, frame_size=syn.frame_size,
                       video_frames=syn.video_frames, checkpoint=str(init))
        print(f"videos: {syn.train_videos} train + {syn.val_videos} val, {syn.video_frames} frames at "
              f"{syn.frame_size}x{syn.frame_size}, in {summary['data_s']:.1f} s; random-weight checkpoint {init}")

    elif args.part == "stage2":
        timing: dict = {}
        algorithm = resolve_algorithm(config.policy.algo)
        learn = algorithm.learn  # patched on the class: an instance attribute would be pickled into policy.zip

        def timed_learn(algo, *a, **k):
            sync(device)
            start = time.perf_counter()
            result = learn(algo, *a, **k)
            sync(device)
            timing["learn_s"], timing["timesteps"] = time.perf_counter() - start, int(algo.num_timesteps)
            return result
        algorithm.learn = timed_learn
        episode_source = pipeline.episode_source
        timing["take_s"] = 0.0

        def timed_source(*a, **k):  # time the main process spends getting decoded videos (waiting on workers)
            source = episode_source(*a, **k)
            take = source.take

            def timed_take(count):
                start = time.perf_counter()
                clips = take(count)
                sync(device)
                timing["take_s"] += time.perf_counter() - start
                return clips
            source.take = timed_take
            return source
        pipeline.episode_source = timed_source
        policy = pipeline.run_policy(config, out, init, resume=False, progress=False)
        wall = time.perf_counter() - began
        n, steps = config.policy.n_envs, timing["timesteps"]
        summary.update(policy=str(policy), n_envs=n, timesteps=steps, vector_steps=steps // n,
                       learn_s=timing["learn_s"], steps_per_s=steps / timing["learn_s"],
                       vector_steps_per_s=steps / n / timing["learn_s"], wall_s=wall,
                       cuda_peak_mib=cuda_peak_mib(device), workers=config.data.workers,
                       take_s=timing["take_s"], take_share=timing["take_s"] / timing["learn_s"])
        print(f"stage II: {steps} timesteps ({steps // n} steps of N = {n}) in {timing['learn_s']:.1f} s of learn: "
              f"{summary['steps_per_s']:.1f} env steps/s ({summary['vector_steps_per_s']:.2f} vector steps/s); "
              f"wall {wall:.1f} s; streamed with {config.data.workers} workers, {timing['take_s']:.1f} s of learn "
              f"spent getting videos ({100 * summary['take_share']:.0f}%: more workers if high, WORKERS=...)")

    else:
        policy = out / "policy" / "policy.zip"
        policy = policy if policy.is_file() else None
        start = time.perf_counter()
        evaluation = evaluate_run(config, init, policy, progress=False, batch_size=args.eval_batch)
        sync(device)
        seconds = time.perf_counter() - start
        videos = int(evaluation.results["videos"])
        rows = evaluation.results["policies"]
        summary.update(videos=videos, eval_s=seconds, videos_per_s=videos / seconds, learned_policy=policy is not None,
                       policies=sorted(rows), cuda_peak_mib=cuda_peak_mib(device),
                       top1={name: row.get("top1") for name, row in rows.items()})
        print(f"evaluation: {videos} videos in {seconds:.1f} s ({videos / seconds:.1f} videos/s), "
              f"policies {', '.join(sorted(rows))}{'' if policy else ' (no stage II policy found: learned row absent)'}")

    summary["rss_peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if summary.get("cuda_peak_mib") is not None:
        print(f"peak CUDA memory allocated: {summary['cuda_peak_mib']:.0f} MiB")
    print(f"peak RSS (main process): {summary['rss_peak_mib']:.0f} MiB")
    print(json.dumps(summary))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
