"""Smoke tests of the benchmark scripts: tiny settings, the last line is the JSON summary.

No assertions on the speed ratios: timings on a shared machine are too noisy for a test.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), "--preset", "synthetic", "--device", "cpu",
                           "--repeats", "1", "--threads", "1", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) > 1, "a readable table comes before the JSON line"
    return json.loads(lines[-1])


def positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.mark.parametrize("n_envs", [("1", "4")])
def test_env_throughput(n_envs):
    summary = run_script("env_throughput.py", "--n-envs", *n_envs, "--videos", "8", "--min-time", "0")
    for n in n_envs:
        assert positive(summary[f"batched_over_dummy_n{n}"])
        assert positive(summary[f"step_over_forward_n{n}"])
        for key in ("batched_steps_per_s", "dummy_steps_per_s", "batched_ms_per_step", "floor_ms"):
            assert positive(summary[key][n])
    assert summary["device"] == "cpu" and summary["preset"] == "synthetic"


def test_inference():
    summary = run_script("inference.py", "--videos", "8", "--batch-size", "4")
    for key in ("inference_over_floor", "inference_videos_per_s", "floor_videos_per_s"):
        assert positive(summary[key])
    assert summary["device"] == "cpu" and summary["preset"] == "synthetic"
