"""The frame-selection baselines (AR-Net, SCSampler, LiteEval, Listen-to-look) on tiny shapes: forward, GFLOPs
counted (the selector included), selections within the budget, Gumbel paths differentiable, and training
through the shared loop."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import TINY_FRAME_SIZE, TINY_FRAMES, random_clips, tiny_model_config

from adafocus.agents.arnet import PAPER, ARNet, ARNetConfig
from adafocus.agents.liteeval import LiteEval
from adafocus.agents.listen_to_look import ListenToLook
from adafocus.agents.scsampler import SCSampler
from adafocus.backbones import AdaFocusModel, count_gmacs
from adafocus.backbones.selectors import gumbel_choice
from adafocus.baselines import (EFFICIENCY_WEIGHTS, BaselineConfig, build_selector, evaluate_selector, train_selector,
                                with_preset_defaults)
from adafocus.config import preset
from adafocus.training import Runtime

RESOLUTIONS = (64, 48, 32, 24)
K = 2


@pytest.fixture(scope="module")
def model() -> AdaFocusModel:
    torch.manual_seed(0)
    return AdaFocusModel(tiny_model_config()).eval()


@pytest.fixture(scope="module")
def clips():
    return random_clips()


def make(name: str, model: AdaFocusModel):
    torch.manual_seed(1)
    if name == "arnet":
        return ARNet(model, ARNetConfig(resolutions=RESOLUTIONS))
    if name == "scsampler":
        return SCSampler(model, frames=K)
    if name == "liteeval":
        return LiteEval(model)
    return ListenToLook(model, frames=K)


METHODS = ("arnet", "scsampler", "liteeval", "listen_to_look")


@pytest.mark.parametrize("name", METHODS)
def test_predict_matches_features_path_and_counts_every_gmac(name, model, clips):
    selector = make(name, model).eval()
    predicted = selector.predict(clips.frames)
    assert predicted.logits.shape == (len(clips), 5) and torch.isfinite(predicted.logits).all()
    # the training path over precomputed frozen features decides and predicts the same in eval mode
    selected = selector.select(selector.frozen_features(clips.frames))
    assert torch.equal(selected.choices, predicted.choices)
    torch.testing.assert_close(selected.logits, predicted.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(selected.gmacs, predicted.gmacs)
    # the reported GFLOPs of a video are exactly what the shared counter measures over its whole inference,
    # selector, f_G and the expensive network included
    for v in range(2):
        counted = count_gmacs(selector.predict, clips.frames[v:v + 1])
        assert counted == pytest.approx(float(predicted.gmacs[v]), rel=1e-6)
    assert float(predicted.gmacs.min()) > TINY_FRAMES * selector.glance_gmacs  # more than f_G alone


def test_arnet_choices_are_resolutions_or_skip_and_cost_follows_them(model, clips):
    selector = make("arnet", model).eval()
    out = selector.predict(clips.frames)
    assert out.choices.shape == (len(clips), TINY_FRAMES)
    assert ((out.choices >= 0) & (out.choices <= len(RESOLUTIONS))).all()
    read = selector.read_gmacs
    assert read[64] > read[48] > read[32] > read[24] > 0
    expected = selector.decision_gmacs(TINY_FRAMES) + torch.tensor(
        [[read[RESOLUTIONS[c]] if c < len(RESOLUTIONS) else 0.0 for c in row] for row in out.choices.tolist()]).sum(1)
    torch.testing.assert_close(out.gmacs, expected)
    # forcing every frame to one option gives exactly that option's cost
    skip_all = torch.nn.functional.one_hot(torch.full((1, TINY_FRAMES), len(RESOLUTIONS)), len(RESOLUTIONS) + 1).float()
    assert float(selector._video_gmacs(skip_all)) == pytest.approx(selector.decision_gmacs(TINY_FRAMES))
    with pytest.raises(ValueError, match="resolutions"):
        ARNet(model, ARNetConfig(resolutions=(128,)))


@pytest.mark.parametrize("name", ["scsampler", "listen_to_look"])
def test_top_k_methods_read_exactly_k_distinct_frames(name, model, clips):
    selector = make(name, model)
    for mode in (True, False):
        selector.train(mode)
        out = selector.select(selector.frozen_features(clips.frames))
        assert out.choices.shape == (len(clips), K)
        assert all(len(set(row)) == K for row in out.choices.tolist())
        assert ((out.choices >= 0) & (out.choices < TINY_FRAMES)).all()
    read = selector.read_gmacs[TINY_FRAME_SIZE]
    assert float(out.gmacs[0]) == pytest.approx(selector.decision_gmacs(TINY_FRAMES) + K * read)
    assert selector.usage(out)["frames_read"] == K
    with pytest.raises(ValueError, match="frames"):
        type(selector)(model, frames=0)


def test_liteeval_cost_counts_fine_frames(model, clips):
    selector = make("liteeval", model).eval()
    out = selector.predict(clips.frames)
    assert set(out.choices.unique().tolist()) <= {0, 1}
    cost = selector.costs
    expected = TINY_FRAMES * cost["coarse"] + cost["classifier"] + out.choices.sum(1).float() * cost["fine"]
    torch.testing.assert_close(out.gmacs, expected)
    assert selector.usage(out)["frames_read"] == pytest.approx(float(out.choices.sum(1).float().mean()))
    with pytest.raises(ValueError, match="budget"):
        LiteEval(model, budget=1.5)


def test_preset_defaults_scale_arnet_to_the_frames():
    paper = with_preset_defaults(BaselineConfig(), preset("activitynet"))
    assert paper.arnet.resolutions == PAPER.resolutions
    tuned = with_preset_defaults(BaselineConfig(), preset("synthetic"))
    assert tuned.arnet.resolutions == (112, 84, 56, 42)
    assert tuned.arnet.efficiency_weight == EFFICIENCY_WEIGHTS["synthetic"]
    assert with_preset_defaults(BaselineConfig(), preset("synthetic"), 0.1).arnet.efficiency_weight == 0.1


@pytest.mark.parametrize("name", ["arnet", "liteeval", "listen_to_look"])
def test_gumbel_path_is_differentiable(name, model, clips):
    selector = make(name, model).train()
    features = selector.frozen_features(clips.frames)
    out = selector.select(features)
    loss = selector.loss(out, clips.labels)
    loss.backward()
    # the gradient reaches the decision network (policy / gate / attention query) through the Gumbel sample
    decision = getattr(selector, {"arnet": "policy_out", "liteeval": "gate", "listen_to_look": "query"}[name])
    assert decision.weight.grad is not None and decision.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in selector.backbones.parameters())
    if name != "listen_to_look":  # the compute penalty is differentiable in the choices
        assert out.gmacs.requires_grad


def test_gumbel_choice_is_one_hot_with_gradient():
    logits = torch.randn(4, 5, requires_grad=True)
    sample = gumbel_choice(logits, tau=1.0, training=True)
    assert torch.equal(sample.sum(-1), torch.ones(4)) and set(sample.unique().tolist()) <= {0.0, 1.0}
    (sample * torch.arange(5.0)).sum().backward()
    assert logits.grad.abs().sum() > 0
    assert torch.equal(gumbel_choice(logits, 1.0, training=False).argmax(-1), logits.argmax(-1))
    with pytest.raises(ValueError, match="tau"):
        gumbel_choice(logits, tau=0.0, training=True)


def test_bad_frames_are_refused(model, clips):
    selector = make("scsampler", model)
    with pytest.raises(ValueError, match="uint8"):
        selector.predict(clips.frames.float())
    with pytest.raises(ValueError, match="frame_size"):
        selector.predict(clips.frames[..., :32, :32])


def test_training_through_the_shared_loop_changes_only_the_selector(model, tmp_path):
    train, val = random_clips(videos=8, seed=1), random_clips(videos=4, seed=2)
    config = BaselineConfig(epochs=1, batch_size=4, frames=K, arnet=ARNetConfig(resolutions=RESOLUTIONS))
    run = replace(preset("synthetic"), model=tiny_model_config())
    selector = build_selector("arnet", model, config)
    backbone = {k: v.clone() for k, v in selector.backbones.state_dict().items()}
    policy = selector.policy_out.weight.clone()
    feats = {s: (selector.frozen_features(c.frames), c.labels) for s, c in (("train", train), ("val", val))}
    metrics = train_selector(selector, feats["train"], feats["val"], tmp_path / "arnet", config, run,
                             Runtime(torch.device("cpu")), progress=False)
    assert 0.0 <= metrics["top1"] <= 1.0 and (tmp_path / "arnet" / "checkpoint.pt").is_file()
    assert not torch.equal(policy, selector.policy_out.weight)
    assert all(torch.equal(backbone[k], v) for k, v in selector.backbones.state_dict().items())
    # a second run trains afresh over the same seed: the same weights, the log rewritten, not appended
    torch.manual_seed(1)
    again = build_selector("arnet", model, config)
    torch.manual_seed(1)
    first = build_selector("arnet", model, config)
    for s in (first, again):
        torch.manual_seed(3)
        train_selector(s, feats["train"], feats["val"], tmp_path / "arnet", config, run,
                       Runtime(torch.device("cpu")), progress=False)
    assert torch.equal(again.policy_out.weight, first.policy_out.weight)
    assert len((tmp_path / "arnet" / "log.csv").read_text().splitlines()) == 2  # header + one epoch
    result, usage = evaluate_selector(selector.eval(), val)
    assert 0.0 <= result.top1 <= 1.0 and result.gflops_per_video > 0 and result.videos_per_second > 0
    assert 0 <= usage["frames_read"] <= TINY_FRAMES
    assert usage["frames_read"] == pytest.approx(sum(usage[f"frames_at_{r}"] for r in RESOLUTIONS))
