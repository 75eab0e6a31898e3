"""f_G (global encoder) and f_L (local encoder): any torchvision classification model, head removed.

The paper uses MobileNet-V2 for f_G (whole 224x224 frame -> 1280x7x7 map) and ResNet-50 for f_L
(P x P patch -> 2048-d vector). Both are built here from torchvision by name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from .tsm import add_temporal_shift

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderSpec:
    """Which torchvision network an encoder is, and where its weights come from."""

    arch: str = "mobilenet_v2"
    """any torchvision classification model name (``torchvision.models.list_models``)"""
    weights: str | None = None
    """None (random init), ``"imagenet"`` (torchvision's default ImageNet weights, read from the local torch hub
    cache; nothing is downloaded), a weight-enum name such as ``"IMAGENET1K_V1"``, or a path to a state dict of
    the full torchvision model"""
    blocks: int | None = None
    """keep only the first ``blocks`` modules of the convolutional trunk (None keeps all): a shallower trunk has a
    finer feature map, so a small f_G input still yields a spatial map the policy can read (the CPU preset)"""
    shift: float = 0.0
    """fraction of channels shifted each way in time in every residual block (TSM, Section 4.2; TSM's 1/8); 0 is
    a plain 2D network. A shifting encoder sees clips: inputs (B * T, 3, S, S) with T given to ``forward_map`` /
    ``forward``"""
    shift_placement: str = "residual"
    """``residual`` (inside the residual branch, TSM's default) or ``block`` (in place)"""


def _trunk(model: nn.Module, arch: str) -> nn.Sequential:
    """The convolutional trunk of a torchvision classifier: everything before global pooling."""
    if hasattr(model, "layer4"):  # ResNet, ResNeXt, Wide-ResNet
        return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                             model.layer1, model.layer2, model.layer3, model.layer4)
    if hasattr(model, "stage4") and hasattr(model, "conv5"):  # ShuffleNet-V2
        return nn.Sequential(model.conv1, model.maxpool, model.stage2, model.stage3, model.stage4, model.conv5)
    if hasattr(model, "trunk_output"):  # RegNet
        return nn.Sequential(model.stem, *model.trunk_output)
    if arch.startswith("mnasnet"):
        return nn.Sequential(*model.layers)
    if arch.startswith("densenet"):  # DenseNet applies its last ReLU in forward()
        return nn.Sequential(*model.features, nn.ReLU(inplace=True))
    if hasattr(model, "features") and isinstance(model.features, nn.Sequential):
        return nn.Sequential(*model.features)  # MobileNet, EfficientNet, ConvNeXt, VGG, SqueezeNet
    raise ValueError(f"encoder arch {arch!r}: no known convolutional trunk (supported: ResNet/ResNeXt, "
                     "MobileNet-V2/V3, EfficientNet, MNASNet, ShuffleNet-V2, RegNet, DenseNet, ConvNeXt, VGG)")


def _width(module: nn.Module) -> int | None:
    """Output channels of a module, read off its last conv or norm layer; blocks that concatenate
    (ShuffleNet-V2 units, SqueezeNet Fire, DenseNet blocks) are summed. None if it has neither."""
    if isinstance(module, torchvision.models.shufflenetv2.InvertedResidual):  # cat(x1 or branch1, branch2)
        return 2 * _width(module.branch2)
    if isinstance(module, torchvision.models.squeezenet.Fire):  # cat(expand1x1, expand3x3)
        return module.expand1x1.out_channels + module.expand3x3.out_channels
    if isinstance(module, torchvision.models.densenet._DenseBlock):  # cat(input, every layer's output)
        last = list(module.values())[-1]
        return last.norm1.num_features + last.conv2.out_channels
    if isinstance(module, nn.BatchNorm2d):
        return module.num_features
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    for child in reversed(list(module.children())):
        width = _width(child)
        if width is not None:
            return width
    return None


def _channels(trunk: nn.Sequential) -> int:
    """Output channels of a trunk, read off its last conv or norm layer (no dummy forward)."""
    width = _width(trunk)
    if width is None:
        raise ValueError("trunk has no Conv2d or BatchNorm2d layer to read its width from")
    return width


def imagenet_weights_path(arch: str, weights: str = "imagenet") -> Path:
    """Where torch's hub cache keeps the file of a torchvision weight enum (``$TORCH_HOME/hub/checkpoints``)."""
    enum = torchvision.models.get_model_weights(arch)
    entry = enum.DEFAULT if weights == "imagenet" else enum[weights]
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(entry.url)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


def build_torchvision_model(arch: str, weights: str | None = None) -> nn.Module:
    """A torchvision classifier by name with weights from the local cache or a path; never downloads."""
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown torchvision classification model {arch!r}")
    model = torchvision.models.get_model(arch, weights=None)
    if weights is None:
        return model
    if weights == "imagenet" or weights.isupper():
        path = imagenet_weights_path(arch, weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"ImageNet weights for {arch} not found: expected {path}. Nothing is downloaded at run time; "
                f"copy the file {path.name} there (TORCH_HOME moves the cache), or pass a checkpoint path.")
    else:
        path = Path(weights)
    state = _load_state_dict(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights file {path} does not fit torchvision {arch}: {len(missing)} missing keys "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    return model


class Encoder(nn.Module):
    """A CNN trunk that returns its spatial feature map and its globally pooled vector.

    Inputs are ImageNet-normalised float images (B, 3, S, S); see :func:`normalize`.
    """

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        trunk = _trunk(build_torchvision_model(spec.arch, spec.weights), spec.arch)
        if spec.blocks is not None:
            if not 1 <= spec.blocks <= len(trunk):
                raise ValueError(f"blocks={spec.blocks} is outside 1..{len(trunk)} for {spec.arch}")
            trunk = trunk[: spec.blocks]
        # shifts go in after the weights are loaded, so 2D checkpoints (ImageNet) initialise a TSM network
        self.shifts = add_temporal_shift(trunk, spec.shift, spec.shift_placement) if spec.shift > 0 else []
        self.trunk = trunk
        self.out_channels = _channels(trunk)

    @property
    def temporal(self) -> bool:
        """Whether the encoder shifts features in time (then it needs the clip length T)."""
        return bool(self.shifts)

    def forward_map(self, images: torch.Tensor, segments: int | None = None) -> torch.Tensor:
        """(B, 3, S, S) -> feature map (B, C, h, w). A temporal encoder reads B = clips x ``segments``
        frames, clip by clip; a 2D one ignores ``segments``."""
        if self.shifts:
            if segments is None:
                raise ValueError(f"{self.spec.arch} shifts features in time: pass segments (frames per clip)")
            for shift in self.shifts:
                shift.segments = segments
        return self.trunk(images)

    def forward(self, images: torch.Tensor, segments: int | None = None) -> torch.Tensor:
        """(B, 3, S, S) -> pooled feature (B, C)."""
        return self.forward_map(images, segments).mean(dim=(2, 3))


def normalize(frames: torch.Tensor, scale: float = 255.0) -> torch.Tensor:
    """RGB (..., 3, H, W) in [0, scale] (uint8 by default) -> float, ImageNet mean/std normalised, on the
    frames' device. In place on one float copy: this runs on every frame f_G sees."""
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(3, 1, 1)
    images = frames.float() if frames.dtype != torch.float32 else frames.clone()
    return images.div_(scale).sub_(mean).div_(std)
