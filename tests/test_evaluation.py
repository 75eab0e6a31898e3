"""Evaluation: early exit, the budget curve, focus hits, and the pictures."""
from __future__ import annotations

import numpy as np
import torch

from adafocus import plotting
from adafocus.agents import CenterAgent, OracleAgent
from adafocus.envs import EnvConfig, FocusEpisodes
from adafocus.evaluation import early_exit_curve, exit_steps, focus_hits, rollout, summarize


def test_exit_steps_at_the_extreme_thresholds():
    logits = torch.randn(7, 5, 4) * 3
    assert torch.equal(exit_steps(logits, 0.0), torch.zeros(7, dtype=torch.long))  # stops after the first step
    assert torch.equal(exit_steps(logits, 1.0), torch.full((7,), 4))  # never exits early: full processing


def test_exit_step_is_the_first_confident_one():
    logits = torch.zeros(1, 4, 3)
    logits[0, 2, 1] = 10.0  # confident only at t = 2
    assert exit_steps(logits, 0.9).tolist() == [2]


def test_budget_curve_is_sorted_and_its_ends_match_first_and_full_processing():
    torch.manual_seed(0)
    logits, labels = torch.randn(20, 6, 5), torch.randint(0, 5, (20,))
    curve = early_exit_curve(logits, labels, step_gmacs=2.0)
    gflops = [p["gflops_per_video"] for p in curve]
    assert gflops == sorted(gflops)
    full = next(p for p in curve if p["threshold"] == 1.0)
    first = next(p for p in curve if p["threshold"] == 0.0)
    assert full["gflops_per_video"] == 12.0 and first["gflops_per_video"] == 2.0
    assert full["top1"] == int((logits[:, -1].argmax(-1) == labels).sum()) / 20
    assert first["top1"] == int((logits[:, 0].argmax(-1) == labels).sum()) / 20


def test_focus_hits_on_hand_made_boxes():
    corners = torch.tensor([[[0, 0], [10, 10]]])  # patch 8: [0, 8) and [10, 18)
    boxes = torch.tensor([[[2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 4.0, 4.0]]])  # inside the 1st patch, outside the 2nd
    hit, iou = focus_hits(corners, boxes, 8)
    assert hit == 0.5
    assert np.isclose(iou, (16 / 64 + 0.0) / 2)


def test_rollout_is_batched_and_oracle_hits_every_step(tiny_model, tiny_clips):
    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig(reward="conf"))
    calls = {"n": 0}
    forward = tiny_model.local_encoder.forward

    def counting(x):
        calls["n"] += 1
        return forward(x)

    tiny_model.local_encoder.forward = counting
    try:
        run = rollout(episodes, OracleAgent(episodes), batch_size=64)
    finally:
        del tiny_model.local_encoder.forward
    assert calls["n"] == tiny_clips.num_frames  # one f_L forward per step for all videos
    assert run.logits.shape == (len(tiny_clips), tiny_clips.num_frames, 5)
    result = summarize(run, step_gmacs=0.5, boxes=tiny_clips.boxes, patch_size=tiny_model.config.patch_size)
    assert result.hit_rate == 1.0 and result.gflops_per_video == 0.5 * tiny_clips.num_frames
    assert result.curve[-1]["gflops_per_video"] <= result.gflops_per_video


def test_every_plot_is_written_and_non_empty(tiny_model, tiny_clips, tmp_path):
    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig(reward="conf"))
    run = rollout(episodes, CenterAgent(episodes.action_space))
    result = summarize(run, 0.5, tiny_clips.boxes, 24).row()
    files = plotting.plot_budget_curves({"center": result, "full_frame": {**result, "curve": []}}, tmp_path / "budget")
    files += plotting.plot_trajectories(tiny_clips.frames[:2], run.corners[:2], 24, run.logits[:2],
                                        tiny_clips.labels[:2], tmp_path / "strip", tiny_clips.boxes[:2])
    files.append(plotting.save_gif(tiny_clips.frames[0], run.corners[0], 24, tmp_path / "episode.gif", tiny_clips.boxes[0]))
    files += plotting.plot_focus_heatmaps({"center": np.eye(4)}, tmp_path / "heat")
    log = tmp_path / "log.csv"
    log.write_text("epoch,train_loss,top1\n1,2.0,0.3\n2,1.5,0.5\n")
    files += plotting.plot_learning_curves({"stage I": log}, tmp_path / "curves")
    assert {f.suffix for f in files} == {".png", ".svg", ".gif"}
    for f in files:
        assert f.is_file() and f.stat().st_size > 1000, f
