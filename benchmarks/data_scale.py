"""Data scale: stage II and the evaluation on 1x, 4x, 16x the synthetic training set, streamed and in memory.

For each scale s (``train_videos`` = s x the preset's, 512 by default; ``val_videos`` kept) and each mode
(``stream``: ``--data.stream true``, videos decoded by DataLoader workers as the env slots need them, no
decoded-video cache; ``memory``: ``--data.stream false``, the split decoded once into a ClipPool;
``cached``: streamed through ``--data.cache_videos true``, each video decoded once and kept, workers 0, the
small-set option that keeps training-mode sampling), one
subprocess runs stage II (``run_policy``: ``--steps`` PPO timesteps with the preset's other PPO settings)
and then the evaluation (``evaluate_run``, every policy and baseline on the validation split) over
random-weight backbones (``build_model(config, None)`` saved as the stage I checkpoint they start from).
Each subprocess reports:

- peak RSS of its main process (``ru_maxrss`` of RUSAGE_SELF, after stage II and after the evaluation).
  DataLoader workers are not included there; the largest finished worker's peak (RUSAGE_CHILDREN, which
  counts the copy-on-write pages a forked worker touched) is reported beside it. On CUDA, peak allocated
  CUDA memory of stage II and of the evaluation.
- stage II env steps/s: timesteps / wall time of ``algo.learn`` alone (PPO's rollouts and updates, the
  streaming loader's start and its decoding included; data generation, model building and the in-memory
  decode excluded). The in-memory decode (``episode_source`` building its ClipPool) is timed separately, and
  so is the time the main process spent inside the video source's ``take`` during learn (waiting for
  decoded videos when streaming).
- evaluation videos/s: validation videos / wall time of ``evaluate_run`` (in memory: with and without the
  validation split's decode, timed separately).

The synthetic sets are generated (into ``$ADAFOCUS_CACHE``) before anything is timed. Targets: streaming
peak RSS at 16x within 1.2x of that at 1x, and streaming stage II at 1x at >= 0.8x the in-memory steps/s.
Single runs, no repeats: the ratios are as noisy as the machine. The last line printed is one JSON object.

    python benchmarks/data_scale.py --scales 1 4 16 --steps 16384 --workers 4 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

TARGET_RSS = 1.2  # streaming: peak RSS at 16x <= 1.2 x at 1x
TARGET_STEPS = 0.8  # at 1x: streaming steps/s >= 0.8 x in-memory steps/s
MODES = ("stream", "memory", "cached")
PRESETS = ("synthetic", "synthetic_temporal", "synthetic_tsm")  # the presets whose data is the generator's


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from adafocus.config import DataConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="synthetic", choices=PRESETS)
    p.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16],
                   help="multiples of the preset's train_videos (val_videos stays)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--steps", type=int, default=16384, help="stage II PPO timesteps (policy.total_timesteps)")
    p.add_argument("--workers", type=int, default=DataConfig().workers,
                   help="DataLoader workers (both modes; the in-memory decode uses them too); default: "
                        "DataConfig's, the value for real data")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads of each run's main process")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds over every (scale, mode), interleaved; figures are medians over the rounds")
    p.add_argument("--eval-batch", type=int, default=64, help="evaluation batch size (videos)")
    p.add_argument("--out", default=None, help="run folders (default: a temporary folder, deleted at the end)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one (scale, mode) run may take")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one run, as JSON
    return p.parse_args(argv)


def run_config(preset_name: str, scale: int, mode: str, steps: int, workers: int, device: str):
    """The preset with ``scale`` x its training videos: streamed (no decoded-video cache), in memory, or streamed
    through the decoded-video cache (``cached``: each video decoded once, training sampling kept, workers 0)."""
    from adafocus.config import preset

    config = preset(preset_name)
    syn = config.data.synthetic
    data = replace(config.data, synthetic=replace(syn, train_videos=syn.train_videos * scale),
                   stream=mode != "memory", cache_videos=mode == "cached",
                   workers=0 if mode == "cached" else workers)
    return replace(config, data=data, policy=replace(config.policy, total_timesteps=steps), device=device)


# ------------------------------------------------------------------------------------------------------
# One (scale, mode) run, in its own process


def _rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: kilobytes


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def child(spec: dict) -> dict:
    import torch

    import adafocus.pipeline as pipeline
    import adafocus.run_evaluation as run_evaluation
    from adafocus import checkpoint
    from adafocus.agents import resolve_algorithm
    from adafocus.config import to_dict
    from adafocus.models import build_model
    from adafocus.run_data import data_paths
    from adafocus.training import setup_runtime

    torch.set_num_threads(spec["threads"])
    config = run_config(spec["preset"], spec["scale"], spec["mode"], spec["steps"], spec["workers"], spec["device"])
    out = Path(spec["out"])
    shutil.rmtree(out, ignore_errors=True)  # a finished stage II there would be reused, not timed
    out.mkdir(parents=True)
    data_paths(config, progress=False)  # generated by the parent already: only finds the lists (outside the timing)
    init = out / "random_init.pt"
    checkpoint.save_atomic({"model": build_model(config, None).state_dict(), "config": to_dict(config)}, init)
    device = torch.device(setup_runtime(config.device).device)
    cuda = device.type == "cuda"
    rss_base = _rss_mib(resource.RUSAGE_SELF)

    timing = {"source_s": 0.0, "take_s": 0.0, "takes": 0, "learn_s": None, "timesteps": None, "eval_decode_s": 0.0}

    def timed_source(*args, **kwargs):  # the in-memory decode happens here (ClipPool); streaming: lists only
        began = time.perf_counter()
        source = episode_source(*args, **kwargs)
        timing["source_s"] += time.perf_counter() - began
        take = source.take

        def timed_take(count):
            began = time.perf_counter()
            clips = take(count)
            timing["take_s"] += time.perf_counter() - began
            timing["takes"] += 1
            return clips
        source.take = timed_take
        return source

    algorithm = resolve_algorithm(config.policy.algo)  # its class's learn, patched in this process only
    learn = algorithm.learn  # (an instance attribute would end up in the policy zip SB3 pickles)

    def timed_learn(algo, *a, **k):
        if cuda:
            torch.cuda.synchronize(device)
        began, cpu = time.perf_counter(), _cpu_s(resource.RUSAGE_SELF)
        result = learn(algo, *a, **k)
        if cuda:
            torch.cuda.synchronize(device)
        timing["learn_s"] = time.perf_counter() - began
        timing["learn_cpu_s"] = _cpu_s(resource.RUSAGE_SELF) - cpu
        timing["timesteps"] = int(algo.num_timesteps)
        return result
    algorithm.learn = timed_learn

    def timed_batches(*args, **kwargs):  # in memory: decodes the split here; streaming: builds the loader
        began = time.perf_counter()
        result = evaluation_batches(*args, **kwargs)
        timing["eval_decode_s"] += time.perf_counter() - began
        return result

    episode_source, evaluation_batches = pipeline.episode_source, run_evaluation.evaluation_batches
    pipeline.episode_source, run_evaluation.evaluation_batches = timed_source, timed_batches
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    policy = pipeline.run_policy(config, out, init, resume=False, progress=False)
    stage2_s = time.perf_counter() - began
    load_stage2 = os.getloadavg()[0]
    cpu_children_stage2 = _cpu_s(resource.RUSAGE_CHILDREN)  # the loader workers, reaped when the source closed
    rss_stage2 = _rss_mib(resource.RUSAGE_SELF)
    cuda_stage2 = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    evaluation = run_evaluation.evaluate_run(config, init, policy, progress=False, batch_size=spec["eval_batch"])
    if cuda:
        torch.cuda.synchronize(device)
    eval_s = time.perf_counter() - began
    videos = int(evaluation.results["videos"])
    learn_s, steps = timing["learn_s"], timing["timesteps"]
    return {
        "scale": spec["scale"], "mode": spec["mode"], "train_videos": config.data.synthetic.train_videos,
        "val_videos": videos, "device": str(device), "threads": torch.get_num_threads(), "workers": config.data.workers,
        "timesteps": steps, "learn_s": learn_s, "steps_per_s": steps / learn_s,
        "stage2_s": stage2_s, "decode_s": timing["source_s"] if spec["mode"] == "memory" else 0.0,
        "source_s": timing["source_s"], "take_s": timing["take_s"], "takes": timing["takes"],
        "take_share": timing["take_s"] / learn_s,
        "eval_s": eval_s, "eval_videos_per_s": videos / eval_s, "eval_decode_s": timing["eval_decode_s"],
        "eval_videos_per_s_excl_decode": videos / max(eval_s - timing["eval_decode_s"], 1e-9),
        "rss_base_mib": rss_base, "rss_stage2_mib": rss_stage2, "rss_peak_mib": _rss_mib(resource.RUSAGE_SELF),
        "rss_children_max_mib": _rss_mib(resource.RUSAGE_CHILDREN),
        "learn_cpu_s": timing["learn_cpu_s"], "workers_cpu_stage2_s": cpu_children_stage2,
        "load_before": load_before, "load_after_stage2": load_stage2, "load_after_eval": os.getloadavg()[0],
        "cuda_peak_stage2_mib": cuda_stage2,
        "cuda_peak_eval_mib": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
    }


# ------------------------------------------------------------------------------------------------------
# The driver


def generate_sets(args: argparse.Namespace) -> dict[int, float]:
    """Generate each scale's synthetic set before anything is timed; seconds each took (0 when cached)."""
    from adafocus.data.synthetic import generate

    seconds = {}
    for scale in args.scales:
        syn = run_config(args.preset, scale, "stream", args.steps, args.workers, args.device).data.synthetic
        began = time.perf_counter()
        dataset = generate(syn, progress=False)
        seconds[scale] = time.perf_counter() - began
        print(f"synthetic set {scale}x: {syn.train_videos} + {syn.val_videos} videos in {dataset.root} "
              f"({seconds[scale]:.1f} s)", flush=True)
    return seconds


def run_one(args: argparse.Namespace, scale: int, mode: str, out: Path) -> dict:
    spec = {"preset": args.preset, "scale": scale, "mode": mode, "steps": args.steps, "workers": args.workers,
            "threads": args.threads, "device": args.device, "eval_batch": args.eval_batch,
            "out": str(out / f"{scale}x_{mode}")}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=args.timeout, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
        raise SystemExit(f"the {scale}x {mode} run failed (exit {done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - began
    return result


def _median(results: list[dict]) -> dict:
    """Per key, the median over rounds of the numeric figures (None stays None); other fields of the first."""
    out = dict(results[0])
    for key, value in out.items():
        if isinstance(value, float):
            out[key] = statistics.median(r[key] for r in results)
    return out


def _fmt(value, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def main() -> None:
    args = parse_args()
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    args.scales = sorted(set(args.scales))
    if min(args.scales) < 1:
        raise SystemExit("--scales must be >= 1")
    began = time.perf_counter()
    temporary = args.out is None
    out = Path(tempfile.mkdtemp(prefix="adafocus_data_scale_") if temporary else args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        generation = generate_sets(args)
        rounds: dict[tuple[int, str], list[dict]] = {(s, m): [] for s in args.scales for m in args.modes}
        for round_ in range(args.repeats):
            for (scale, mode), done in rounds.items():
                done.append(r := run_one(args, scale, mode, out))
                print(f"  round {round_ + 1}/{args.repeats}, {scale}x {mode}: {r['steps_per_s']:.1f} steps/s, "
                      f"peak RSS {r['rss_peak_mib']:.0f} MiB, eval {r['eval_videos_per_s']:.1f} videos/s, "
                      f"load {r['load_before']:.1f} -> {r['load_after_eval']:.1f}, {r['process_s']:.0f} s", flush=True)
    finally:
        if temporary:
            shutil.rmtree(out, ignore_errors=True)
    runs = {key: _median(done) for key, done in rounds.items()}

    first = next(iter(runs.values()))
    print(f"\nData scale: preset {args.preset}, device {first['device']}, {args.steps} PPO timesteps, "
          f"workers {args.workers}, torch threads {first['threads']}, {first['val_videos']} validation videos, "
          f"{args.repeats} round(s) (medians), {os.cpu_count()} CPUs")
    print("RSS = peak RSS of the run's main process (DataLoader workers not included; 'worker RSS' is the largest\n"
          "finished worker's peak, shared copy-on-write pages counted); steps/s = timesteps / algo.learn wall time;\n"
          "decode = in-memory decode of the training split (outside learn); wait = time in the source's take "
          "during learn;\neval = evaluate_run wall time (in memory: including the validation decode)")
    header = (f"{'scale':>5} | {'videos':>6} | {'mode':>6} | {'RSS MiB':>7} | {'after II':>8} | {'worker RSS':>10} | "
              f"{'steps/s':>7} | {'learn s':>7} | {'wait s':>6} | {'decode s':>8} | {'eval vid/s':>10} | "
              f"{'CUDA MiB':>8}")
    print(header)
    print("-" * len(header))
    for (scale, mode), r in runs.items():
        cuda = None if r["cuda_peak_stage2_mib"] is None else max(r["cuda_peak_stage2_mib"], r["cuda_peak_eval_mib"])
        print(f"{scale:>4}x | {r['train_videos']:>6} | {mode:>6} | {r['rss_peak_mib']:>7.0f} | "
              f"{r['rss_stage2_mib']:>8.0f} | {r['rss_children_max_mib']:>10.0f} | {r['steps_per_s']:>7.1f} | "
              f"{r['learn_s']:>7.1f} | {r['take_s']:>6.1f} | {_fmt(r['decode_s'] if mode == 'memory' else None, '.1f', 8)} | "
              f"{r['eval_videos_per_s']:>10.1f} | {_fmt(cuda, '.0f', 8)}")

    print(f"\n{'scale':>5} | {'mode':>6} | {'main CPU s in learn':>19} | {'worker CPU s (stage II)':>23} | "
          f"{'eval s':>6} | {'eval decode s':>13} | {'load avg before / after II / after eval':>38}")
    for (scale, mode), r in runs.items():
        print(f"{scale:>4}x | {mode:>6} | {r['learn_cpu_s']:>19.1f} | {r['workers_cpu_stage2_s']:>23.1f} | "
              f"{r['eval_s']:>6.1f} | {r['eval_decode_s']:>13.1f} | "
              f"{r['load_before']:>12.1f} / {r['load_after_stage2']:>9.1f} / {r['load_after_eval']:>10.1f}")

    def ratio(a, b):
        return None if a is None or b is None else a / b

    def get(scale, mode, key):
        return runs[(scale, mode)][key] if (scale, mode) in runs else None

    lo, hi = min(args.scales), max(args.scales)
    summary = {
        "rss_16x_over_1x": ratio(get(16, "stream", "rss_peak_mib"), get(1, "stream", "rss_peak_mib")),
        "stream_over_memory_steps": ratio(get(1, "stream", "steps_per_s"), get(1, "memory", "steps_per_s")),
        "rss_16x_over_1x_memory": ratio(get(16, "memory", "rss_peak_mib"), get(1, "memory", "rss_peak_mib")),
        f"rss_{hi}x_over_{lo}x_stream": ratio(get(hi, "stream", "rss_peak_mib"), get(lo, "stream", "rss_peak_mib")),
        f"stream_over_memory_steps_{lo}x": ratio(get(lo, "stream", "steps_per_s"), get(lo, "memory", "steps_per_s")),
        "cached_over_memory_steps": ratio(get(1, "cached", "steps_per_s"), get(1, "memory", "steps_per_s")),
    }
    for (scale, mode), r in runs.items():
        for key in ("rss_peak_mib", "rss_stage2_mib", "rss_base_mib", "rss_children_max_mib", "steps_per_s",
                    "learn_s", "take_s", "take_share", "stage2_s", "decode_s", "eval_s", "eval_videos_per_s",
                    "eval_decode_s", "eval_videos_per_s_excl_decode", "cuda_peak_stage2_mib", "cuda_peak_eval_mib",
                    "process_s", "learn_cpu_s", "workers_cpu_stage2_s", "load_before", "load_after_stage2",
                    "load_after_eval"):
            summary[f"{key}_{scale}x_{mode}"] = r[key]
        if args.repeats > 1:
            summary[f"steps_per_s_rounds_{scale}x_{mode}"] = [d["steps_per_s"] for d in rounds[(scale, mode)]]
            summary[f"rss_peak_mib_rounds_{scale}x_{mode}"] = [d["rss_peak_mib"] for d in rounds[(scale, mode)]]
    for what, key, target, ok in [
            ("streaming peak RSS at 16x over 1x", "rss_16x_over_1x", f"<= {TARGET_RSS:g}",
             lambda v: v <= TARGET_RSS),
            ("stage II steps/s at 1x, streaming over in memory", "stream_over_memory_steps", f">= {TARGET_STEPS:g}",
             lambda v: v >= TARGET_STEPS)]:
        value = summary[key]
        verdict = "not measured (needs scales 1 and 16 / both modes)" if value is None else \
            f"{value:.3f}x {'met' if ok(value) else 'MISSED'}"
        print(f"target: {what} {target}: {verdict}")
    total = time.perf_counter() - began
    print(f"total {total:.0f} s (generation {sum(generation.values()):.0f} s)")
    summary.update(preset=args.preset, scales=args.scales, modes=args.modes, steps=args.steps, workers=args.workers,
                   repeats=args.repeats,
                   threads=first["threads"], device=first["device"], val_videos=first["val_videos"],
                   train_videos={str(s): get(s, args.modes[0], "train_videos") for s in args.scales},
                   generation_s={str(s): v for s, v in generation.items()}, total_s=total,
                   rss_note="main process ru_maxrss (RUSAGE_SELF); DataLoader workers excluded, their largest peak "
                            "in rss_children_max_mib",
                   targets={"rss_16x_over_1x": f"<= {TARGET_RSS:g}",
                            "stream_over_memory_steps": f">= {TARGET_STEPS:g}"})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
