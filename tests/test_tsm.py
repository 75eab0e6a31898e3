"""The temporal shift module and the clip-level model of Section 4.2: exact shift, no extra parameters or
FLOPs, time actually mixed, and the clip model's costs against the paper's GFLOPs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from adafocus.backbones import (AdaFocusModel, ClipFocusModel, Encoder, EncoderSpec, ModelConfig, TemporalShift,
                                add_temporal_shift, clip_cost, count_gmacs, temporal_shift, tsm_costs)
from adafocus.backbones.encoders import _trunk, build_torchvision_model

from conftest import tiny_model_config


def naive_shift(x: torch.Tensor, segments: int, fraction: float) -> torch.Tensor:
    """The TSM definition, one frame and one channel at a time."""
    out = torch.zeros_like(x)
    channels = x.shape[1]
    fold = int(channels * fraction)
    for i in range(x.shape[0]):
        clip, t = divmod(i, segments)
        for c in range(channels):
            source = t + 1 if c < fold else t - 1 if c < 2 * fold else t
            if 0 <= source < segments:
                out[i, c] = x[clip * segments + source, c]
    return out


def test_shift_semantics_on_a_hand_made_tensor():
    # value = 100 * frame + channel: every output element says where it came from
    segments, channels = 3, 8
    frame = torch.arange(2 * segments).remainder(segments).view(-1, 1, 1, 1).float()
    x = 100 * frame + torch.arange(channels).view(1, -1, 1, 1).float() + torch.zeros(2 * segments, channels, 2, 2)
    out = temporal_shift(x, segments, 1 / 8)  # fold = 1 channel each way
    assert torch.equal(out, naive_shift(x, segments, 1 / 8))
    assert out[0, 0, 0, 0] == 100 and out[1, 0, 0, 0] == 200 and out[2, 0, 0, 0] == 0  # from the future; zero at the end
    assert out[0, 1, 0, 0] == 0 and out[1, 1, 0, 0] == 1 and out[2, 1, 0, 0] == 101  # from the past; zero at the start
    assert torch.equal(out[:, 2:], x[:, 2:])  # the rest untouched
    assert torch.equal(out[3:], out[:3])  # clips do not leak into each other
    with pytest.raises(ValueError, match="whole number of clips"):
        temporal_shift(x[:5], segments, 1 / 8)


@pytest.mark.parametrize("fraction", [1 / 8, 1 / 4])
def test_shift_matches_naive_on_random_input(fraction):
    x = torch.randn(8, 16, 3, 3)
    assert torch.equal(temporal_shift(x, 4, fraction), naive_shift(x, 4, fraction))


@pytest.mark.parametrize("arch,blocks,expected", [("resnet18", None, 8), ("mobilenet_v2", None, 10),
                                                  ("mobilenet_v3_small", 4, 1)])
def test_zero_extra_parameters_and_unchanged_flops(arch, blocks, expected):
    plain = Encoder(EncoderSpec(arch, None, blocks))
    torch.manual_seed(0)
    shifted = Encoder(EncoderSpec(arch, None, blocks, shift=1 / 8))
    assert len(shifted.shifts) == expected  # one per residual block
    assert sum(p.numel() for p in shifted.parameters()) == sum(p.numel() for p in plain.parameters())
    images = torch.zeros(4, 3, 64, 64)
    before = count_gmacs(plain.forward_map, images)
    after = count_gmacs(lambda x: shifted.forward_map(x, 4), images)
    assert after == pytest.approx(before, rel=1e-9)


def test_shift_mixes_neighbouring_frames_and_2d_does_not():
    torch.manual_seed(0)
    spec = EncoderSpec("resnet18", None)
    plain, shifted = Encoder(spec).eval(), Encoder(EncoderSpec("resnet18", None, shift=1 / 8)).eval()
    shifted.load_state_dict(plain.state_dict(), strict=False)  # same weights: the shift is the only difference
    clip = torch.randn(3, 3, 32, 32)
    changed = clip.clone()
    changed[1] += 1.0  # only the middle frame changes
    with torch.no_grad():
        for encoder, moves in ((plain, False), (shifted, True)):
            a, b = encoder(clip, 3), encoder(changed, 3)
            assert torch.allclose(a[0], b[0]) is not moves and torch.allclose(a[2], b[2]) is not moves


def test_placements_and_bad_options():
    trunk = _trunk(build_torchvision_model("resnet18"), "resnet18")
    shifts = add_temporal_shift(trunk, placement="block")
    assert len(shifts) == 8 and all(isinstance(m, TemporalShift) for m in trunk[4])  # layer1's blocks wrapped whole
    for fraction in (0.0, 0.6):
        with pytest.raises(ValueError, match="fraction"):
            add_temporal_shift(_trunk(build_torchvision_model("resnet18"), "resnet18"), fraction)
    with pytest.raises(ValueError, match="placement"):
        add_temporal_shift(_trunk(build_torchvision_model("resnet18"), "resnet18"), placement="input")
    with pytest.raises(ValueError, match="no residual block"):
        add_temporal_shift(nn.Sequential(nn.Conv2d(3, 8, 3)))
    with pytest.raises(ValueError, match="segments"):
        Encoder(EncoderSpec("resnet18", None, shift=1 / 8))(torch.zeros(2, 3, 32, 32))


def tiny_clip_config(**changes) -> ModelConfig:
    base = tiny_model_config()
    tsm = 1 / 8
    config = ModelConfig(global_encoder=EncoderSpec("mobilenet_v3_small", None, blocks=4, shift=tsm),
                         local_encoder=EncoderSpec("resnet18", None, shift=tsm), num_classes=base.num_classes,
                         frame_size=base.frame_size, global_size=base.global_size, patch_size=base.patch_size,
                         dropout=0.0, glance_frames=2)
    return ModelConfig(**{**config.__dict__, **changes})


def test_per_frame_model_refuses_temporal_encoders():
    with pytest.raises(ValueError, match="clip-level"):
        AdaFocusModel(tiny_clip_config())
    with pytest.raises(ValueError, match="glance_frames"):
        ClipFocusModel(tiny_clip_config(glance_frames=None))


def test_clip_model_shapes_and_one_patch_for_the_whole_clip():
    torch.manual_seed(0)
    model = ClipFocusModel(tiny_clip_config()).eval()
    g, t = model.glance_frames, 4
    frames = torch.randint(0, 256, (3, g + t, 3, 64, 64), dtype=torch.uint8)  # G glance frames, then T focus frames
    glance, focus = model.split(frames)
    assert torch.equal(glance, frames[:, :g]) and torch.equal(focus, frames[:, g:])
    maps = model.glance(frames)
    assert maps.shape[:2] == (3, g)
    corners = torch.tensor([[0, 0], [40, 40], [10, 30]])
    from adafocus.backbones import normalize
    with torch.no_grad():
        logits = model.classify_patches(frames, corners)
        assert logits.shape == (3, model.config.num_classes)
        # f_G reads only the glance frames
        alone = model.global_encoder.forward_map(model.global_view(frames[:, :g].flatten(0, 1)), g).unflatten(0, (3, g))
        assert torch.allclose(maps, alone)
        # f_C is linear in f_L's mean over the focus frames plus f_G's mean logits: recompute it from the crops
        patches = torch.stack([frames[b, g:, :, y:y + 24, x:x + 24] for b, (x, y) in enumerate(corners.tolist())])
        local = model.local_encoder(normalize(patches.flatten(0, 1)), t).unflatten(0, (3, t))
        expected = model.classifier(local.mean(1)) + model.global_logits(maps)
        assert torch.allclose(logits, expected, atol=1e-5)
        # TSM and TSM+ run f_L on the whole glance frames; the warm-up's full-frame head on the focus frames
        whole = model.local_encoder(normalize(frames[:, :g].flatten(0, 1)), g).unflatten(0, (3, g))
        assert torch.allclose(model.classify_tsm(frames), model.local_head(whole.mean(1)), atol=1e-5)
        assert torch.allclose(model.classify_tsm_plus(frames), model.classifier(whole.mean(1)) + model.global_logits(maps),
                              atol=1e-5)
        every = model.local_encoder(normalize(frames[:, g:].flatten(0, 1)), t).unflatten(0, (3, t))
        assert torch.allclose(model.classify_full_frames(frames), model.local_head(every.mean(1)), atol=1e-5)
    with pytest.raises(ValueError, match="glance frames"):
        model.glance(frames[:, :g])  # no focus frame


def test_clip_costs_add_up():
    model = ClipFocusModel(tiny_clip_config()).eval()
    cost = clip_cost(model, 4)
    one_patch = count_gmacs(lambda x: model.local_encoder(x, 1), torch.zeros(1, 3, 24, 24))
    assert cost.local_encoder == pytest.approx(4 * one_patch, rel=1e-6)  # f_L on every frame's patch
    costs = tsm_costs(model, 4)
    assert costs["global_only"] == pytest.approx(cost.global_encoder, rel=1e-6)
    assert costs["tsm_plus"] == pytest.approx(costs["tsm"] + costs["global_only"], rel=1e-3)  # + f_C's linear


@pytest.mark.parametrize("patch,paper", [(144, 23.5), (160, 27.5), (176, 33.7)])
def test_paper_configuration_gflops(patch, paper):
    """8+12 frames, TSM-MobileNet-V2 + TSM-ResNet-50 at 224: the paper's GFLOPs per clip, within 1% without pi."""
    model = ClipFocusModel(ModelConfig(global_encoder=EncoderSpec("mobilenet_v2", None, shift=1 / 8),
                                       local_encoder=EncoderSpec("resnet50", None, shift=1 / 8), num_classes=174,
                                       patch_size=patch, glance_frames=8))
    total = clip_cost(model, 12).total
    assert total == pytest.approx(paper, rel=0.01)
    if patch == 144:
        costs = tsm_costs(model, 12)
        assert costs["tsm"] == pytest.approx(32.7, rel=0.005) and costs["tsm_plus"] == pytest.approx(35.1, rel=0.005)
