"""f_G / f_L encoders, their weights, the recurrent classifier f_C and the AdaFocus network."""
import pytest
import torch
import torchvision
from torch import nn

from adafocus.backbones import (AdaFocusModel, Encoder, EncoderSpec, ModelConfig, RecurrentClassifier,
                                imagenet_weights_path)


@pytest.mark.parametrize("arch,blocks", [("mobilenet_v2", None), ("mobilenet_v3_small", None),
                                         ("mobilenet_v3_small", 4), ("resnet18", None),
                                         ("shufflenet_v2_x0_5", None), ("efficientnet_b0", None),
                                         # blocks that concatenate: ShuffleNet unit, Fire, dense block
                                         ("shufflenet_v2_x0_5", 3), ("squeezenet1_1", None), ("densenet121", 5)])
def test_encoder_channels_without_forward(arch, blocks):
    torch.manual_seed(0)
    encoder = Encoder(EncoderSpec(arch, blocks=blocks)).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = encoder.forward_map(images)
        pooled = encoder(images)
    assert maps.dim() == 4 and maps.shape[1] == encoder.out_channels
    assert pooled.shape == (1, encoder.out_channels)
    assert torch.allclose(pooled, maps.mean(dim=(2, 3)), atol=1e-6)


def test_encoder_known_widths_and_truncation():
    assert Encoder(EncoderSpec("mobilenet_v2")).out_channels == 1280
    assert Encoder(EncoderSpec("resnet18")).out_channels == 512
    small = Encoder(EncoderSpec("mobilenet_v3_small", blocks=4))
    assert len(small.trunk) == 4 and small.out_channels == 24
    with torch.no_grad():  # stride 8 after four blocks
        assert small.eval().forward_map(torch.zeros(1, 3, 32, 32)).shape == (1, 24, 4, 4)


def test_encoder_rejects_unknown_arch_and_bad_blocks():
    with pytest.raises(ValueError):
        Encoder(EncoderSpec("no_such_net"))
    depth = len(Encoder(EncoderSpec("mobilenet_v3_small")).trunk)
    for blocks in (0, -1, depth + 1):
        with pytest.raises(ValueError):
            Encoder(EncoderSpec("mobilenet_v3_small", blocks=blocks))
    assert len(Encoder(EncoderSpec("mobilenet_v3_small", blocks=depth)).trunk) == depth


# --- weights ---------------------------------------------------------------------------------------
ARCH = "mobilenet_v3_small"


def randomised_model(arch: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.get_model(arch, weights=None)
    for module in model.modules():  # non-default BatchNorm statistics, so loading them shows
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return model


def assert_trunk_equals(encoder: Encoder, model: nn.Module) -> None:
    ours, theirs = encoder.trunk.state_dict(), model.features.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_imagenet_weights_missing_file_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = imagenet_weights_path(ARCH)
    assert tmp_path in expected.parents and expected.parent.name == "checkpoints"
    with pytest.raises(FileNotFoundError) as info:
        Encoder(EncoderSpec(ARCH, weights="imagenet"))
    assert str(expected) in str(info.value)
    with pytest.raises(FileNotFoundError):
        Encoder(EncoderSpec(ARCH, weights="IMAGENET1K_V1"))


def test_imagenet_weights_loaded_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = randomised_model(ARCH, seed=1)
    path = imagenet_weights_path(ARCH)
    path.parent.mkdir(parents=True)
    torch.save(model.state_dict(), path)
    encoder = Encoder(EncoderSpec(ARCH, weights="imagenet"))
    assert_trunk_equals(encoder, model)
    assert not torch.equal(Encoder(EncoderSpec(ARCH)).trunk[0][0].weight, model.features[0][0].weight)


def test_weights_from_a_state_dict_path(tmp_path):
    model = randomised_model(ARCH, seed=2)
    plain, wrapped = tmp_path / "plain.pt", tmp_path / "wrapped.pth"
    torch.save(model.state_dict(), plain)
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, wrapped)
    assert_trunk_equals(Encoder(EncoderSpec(ARCH, weights=str(plain))), model)
    assert_trunk_equals(Encoder(EncoderSpec(ARCH, weights=str(wrapped), blocks=None)), model)
    with pytest.raises(FileNotFoundError):
        Encoder(EncoderSpec(ARCH, weights=str(tmp_path / "absent.pt")))


def test_weights_of_another_arch_are_rejected(tmp_path):
    path = tmp_path / "shufflenet.pt"
    torch.save(torchvision.models.get_model("shufflenet_v2_x0_5", weights=None).state_dict(), path)
    with pytest.raises(ValueError) as info:
        Encoder(EncoderSpec(ARCH, weights=str(path)))
    assert "missing" in str(info.value) and "unexpected" in str(info.value)


# --- f_C -------------------------------------------------------------------------------------------
def test_classifier_step_equals_forward():
    torch.manual_seed(0)
    b, t, dg, dl, k, hidden = 3, 5, 6, 4, 7, 8
    fc = RecurrentClassifier(dg, dl, k, hidden_size=hidden).eval()
    g, l = torch.randn(b, t, dg), torch.randn(b, t, dl)
    with torch.no_grad():
        logits, last = fc(g, l)
        assert logits.shape == (b, t, k) and last.shape == (b, hidden)
        h, steps = None, []
        for i in range(t):
            step_logits, h = fc.step(g[:, i], l[:, i], h)
            assert step_logits.shape == (b, k) and h.shape == (b, hidden)
            steps.append(step_logits)
        assert torch.allclose(torch.stack(steps, dim=1), logits, atol=1e-6)
        assert torch.allclose(h, last, atol=1e-6)
        # a given initial hidden state is used: the two halves chain into the whole
        first, mid = fc(g[:, :2], l[:, :2])
        second, end = fc(g[:, 2:], l[:, 2:], mid)
        assert torch.allclose(torch.cat([first, second], dim=1), logits, atol=1e-6)
        assert torch.allclose(end, last, atol=1e-6)


def test_classifier_needs_local_feats_when_fusing():
    fc = RecurrentClassifier(6, 4, 3, hidden_size=8)
    with pytest.raises(ValueError):
        fc(torch.randn(2, 3, 6))
    with pytest.raises(ValueError):
        fc.step(torch.randn(2, 6), None, None)


def test_global_only_classifier():
    torch.manual_seed(0)
    fc = RecurrentClassifier(6, 0, 3, hidden_size=8).eval()
    assert fc.gru.input_size == 6
    g = torch.randn(2, 4, 6)
    with torch.no_grad():
        logits, last = fc(g)
        assert logits.shape == (2, 4, 3) and last.shape == (2, 8)
        step_logits, h = fc.step(g[:, 0], None, None)
        assert step_logits.shape == (2, 3) and h.shape == (2, 8)
        assert torch.allclose(step_logits, logits[:, 0], atol=1e-6)


# --- the AdaFocus network --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = ModelConfig(EncoderSpec("mobilenet_v3_small", blocks=4), EncoderSpec("resnet18"), num_classes=5,
                         frame_size=64, global_size=32, patch_size=32, hidden_size=16)
    return AdaFocusModel(config).eval()


def test_model_glance_shape(tiny):
    frames = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        maps = tiny.glance(frames)
    assert maps.shape == (2, 3, tiny.global_encoder.out_channels, 4, 4)


def test_model_classify_patches_equals_stepping_by_hand(tiny):
    b, t = 2, 3
    frames = torch.randint(0, 256, (b, t, 3, 64, 64), dtype=torch.uint8)
    corners = torch.randint(0, 64 - 32 + 1, (b, t, 2))
    with torch.no_grad():
        global_feats = tiny.glance(frames).mean(dim=(-2, -1))
        logits = tiny.classify_patches(global_feats, frames, corners)
        assert logits.shape == (b, t, 5)
        hidden, steps = None, []
        for i in range(t):
            local = tiny.focus(frames[:, i], corners[:, i])
            assert local.shape == (b, tiny.local_encoder.out_channels)
            step_logits, hidden = tiny.classifier.step(global_feats[:, i], local, hidden)
            steps.append(step_logits)
    assert torch.allclose(torch.stack(steps, dim=1), logits, atol=1e-5)
    # the corners matter: other patches give other logits
    with torch.no_grad():
        moved = tiny.classify_patches(global_feats, frames, (corners + 16) % 33)
    assert not torch.allclose(moved, logits)


def test_model_full_frame_and_global_heads(tiny):
    frames = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert tiny.classify_full_frames(frames).shape == (2, 5)
        assert tiny.classify_global_frames(frames).shape == (2, 5)
