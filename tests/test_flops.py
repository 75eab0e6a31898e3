"""The GFLOPs counter against the paper's Compute table (GFLOPs = GMACs, as the papers count)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from adafocus.backbones import (AdaFocusModel, EncoderSpec, ModelConfig, count_gmacs, full_frame_cost,
                                global_only_cost, step_cost)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "flops.py"
PAPER_VIDEO_GFLOPS = {96: 17.6, 128: 27.0, 160: 39.0}  # T = 16, f_G + f_L + pi + f_C


def paper_model(patch: int) -> AdaFocusModel:
    return AdaFocusModel(ModelConfig(EncoderSpec("mobilenet_v2"), EncoderSpec("resnet50"), patch_size=patch))


def load_script():
    spec = importlib.util.spec_from_file_location("experiments_flops", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_128() -> AdaFocusModel:
    return paper_model(128)


def test_paper_per_frame_backbones(model_128):
    cost = step_cost(model_128)
    assert cost.global_encoder == pytest.approx(0.2995, rel=0.01)  # MobileNet-V2 @ 224, no classifier
    assert cost.local_encoder == pytest.approx(1.3346, rel=0.01)  # ResNet-50 @ 128, no classifier
    # f_C: GRU(1280 + 2048 -> 1024) and the linear head to 200 classes
    assert cost.classifier == pytest.approx((3 * (3328 + 1024) * 1024 + 1024 * 200) / 1e9, rel=1e-3)
    assert cost.policy == 0.0
    assert cost.total == pytest.approx(cost.global_encoder + cost.local_encoder + cost.classifier)


def test_paper_policy_cost(model_128):
    policy, inputs = load_script().policy_module(model_128, hidden=1024, grid=7)
    assert inputs[0].shape == (1, 1280, 7, 7)
    # 1x1 conv 1280 -> 32 on 7x7, linear 1568 -> 1024, GRU(1024, 1024), actor 1024 -> 49
    expected = 1280 * 32 * 49 + 32 * 49 * 1024 + 3 * 2 * 1024 * 1024 + 1024 * 49
    assert step_cost(model_128, policy, inputs).policy == pytest.approx(expected / 1e9, rel=1e-3)


def test_library_policy_variant(model_128):
    """``--policy library``: this project's PPO pi (adafocus.agents.GlanceExtractor + actor head)."""
    policy, inputs = load_script().policy_module(model_128, hidden=1024, grid=7, kind="library")
    cost = step_cost(model_128, policy, inputs)
    assert cost.policy > 2e-3  # at least the 1x1 conv and the 1568 -> 1024 linear
    assert 16 * cost.total == pytest.approx(PAPER_VIDEO_GFLOPS[128], rel=0.03)


@pytest.mark.parametrize("patch", [96, 160])
def test_paper_video_totals_library(patch):
    model = paper_model(patch)
    policy, inputs = load_script().policy_module(model, hidden=1024, grid=7)
    cost = step_cost(model, policy, inputs)
    assert cost.policy > 0
    assert 16 * cost.total == pytest.approx(PAPER_VIDEO_GFLOPS[patch], rel=0.03)


def test_paper_video_total_script():
    cmd = [sys.executable, str(SCRIPT), "--global-arch", "mobilenet_v2", "--global-size", "224",
           "--local-arch", "resnet50", "--patch", "128", "--frames", "16", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    frame, video = report["per_frame"], report["per_video"]
    assert frame["global_encoder"] == pytest.approx(0.2995, rel=0.01)
    assert frame["local_encoder"] == pytest.approx(1.3346, rel=0.01)
    assert frame["policy"] > 0 and frame["classifier"] > 0
    assert video["total"] == pytest.approx(16 * frame["total"])
    assert video["total"] == pytest.approx(PAPER_VIDEO_GFLOPS[128], rel=0.03)


def test_count_gmacs_linear():
    assert count_gmacs(nn.Linear(10, 20), torch.zeros(1, 10)) == pytest.approx(200e-9, rel=1e-12)
    assert count_gmacs(nn.Linear(10, 20), torch.zeros(3, 10)) == pytest.approx(600e-9, rel=1e-12)


def tiny_model() -> AdaFocusModel:
    return AdaFocusModel(ModelConfig(EncoderSpec("mobilenet_v3_small", blocks=4), EncoderSpec("resnet18"),
                                     num_classes=5, frame_size=64, global_size=32, patch_size=32, hidden_size=16))


def test_counting_keeps_batchnorm_stats_and_mode():
    torch.manual_seed(0)
    model = tiny_model()
    policy = nn.Sequential(nn.Conv2d(24, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 9))
    bns = [m for m in [*model.modules(), *policy.modules()] if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:  # non-trivial statistics, so any update would show
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    model.train()
    policy.train()
    before = [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()) for bn in bns]
    cost = step_cost(model, policy, (torch.randn(1, 24, 4, 4),))
    assert cost.global_encoder > 0 and cost.local_encoder > 0 and cost.policy > 0
    assert full_frame_cost(model) > 0 and global_only_cost(model) > 0
    assert all(m.training for m in model.modules()) and all(m.training for m in policy.modules())
    for bn, (mean, var, n) in zip(bns, before):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
        assert torch.equal(bn.num_batches_tracked, n)
    # the check can fail: a forward in train mode does move the statistics
    with torch.no_grad():
        model.global_encoder(torch.randn(2, 3, 32, 32))
    assert not torch.equal(bns[0].running_mean, before[0][0])


def test_counting_restores_mixed_modes():
    model = tiny_model()
    model.train()
    model.local_encoder.eval()  # e.g. a frozen f_L
    step_cost(model)
    assert model.training and model.global_encoder.training and model.classifier.training
    assert not any(m.training for m in model.local_encoder.modules())
