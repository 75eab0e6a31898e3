"""Converting the authors' released checkpoints (adafocus.official): files written here in the authors' layout
with random weights, converted, and the converted run's evaluation forward compared step by step with a
reference forward of the same weights written from the authors' equations (their code is not imported).

The backbones are the real MobileNet-V2 and ResNet-50 (the layout fixes them) on 64x64 frames and 32x32
patches; pi and f_C are narrow (their widths are read from the files)."""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import runpy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from adafocus import provenance
from adafocus.data.clips import ClipSet
from adafocus.evaluation import play
from adafocus.official import (OfficialFiles, OfficialFormatError, convert_official, find_files, load_official,
                               release_names)
from adafocus.models import build_model, make_episodes
from adafocus.run_folder import load_policy, open_run, policy_env_config

FRAME, PATCH = 64, 32  # S and P: f_G's map is 2x2 at S = 64
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


# ---- the authors' equations ----------------------------------------------------------------------------
def normalise(frames: torch.Tensor) -> torch.Tensor:
    """Their ToTorchFormatTensor(div=True) + GroupNormalize: uint8 -> (x / 255 - mean) / std."""
    return (frames.float() / 255 - MEAN.view(3, 1, 1)) / STD.view(3, 1, 1)


def gru_cell(x: torch.Tensor, h: torch.Tensor, gru: dict[str, torch.Tensor]) -> torch.Tensor:
    """One step of nn.GRU (gates r, z, n in that order in the stacked weights)."""
    gi = x @ gru["weight_ih_l0"].T + gru["bias_ih_l0"]
    gh = h @ gru["weight_hh_l0"].T + gru["bias_hh_l0"]
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def batch_norm(x: torch.Tensor, bn: dict[str, torch.Tensor]) -> torch.Tensor:
    """Eval-mode BatchNorm over dim 1, eps 1e-5."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - bn["running_mean"].view(shape)) / torch.sqrt(bn["running_var"].view(shape) + 1e-5) \
        * bn["weight"].view(shape) + bn["bias"].view(shape)


def tsm_shift(x: torch.Tensor, segments: int) -> torch.Tensor:
    """TSM's shift, fold = C // 8: the first fold channels from the next frame, the next fold from the previous."""
    nt, c, h, w = x.shape
    x = x.view(nt // segments, segments, c, h, w)
    fold = c // 8
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


class Shifts:
    """TSM's shift in front of chosen layers of a torchvision network, by forward pre-hooks."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self.segments = 1
        for layer in layers:
            layer.register_forward_pre_hook(lambda module, args: (tsm_shift(args[0], self.segments),))


def mobilenet_residual_blocks(net: nn.Module) -> list[nn.Module]:
    return [b for b in net.features if isinstance(b, torchvision.models.mobilenetv2.InvertedResidual)
            and b.use_res_connect]


def randomise(net: nn.Module, generator: torch.Generator, calibrate: torch.Tensor | None = None) -> nn.Module:
    """Random BatchNorm affine parameters and statistics, so that every BN tensor matters. ``calibrate``:
    inputs whose batch statistics become the running ones (a deep random network with arbitrary statistics
    gives nearly the same features for every input, which would leave pi nothing to choose from)."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        size = m.num_features
        m.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
        m.bias.data.copy_(torch.randn(size, generator=generator) * 0.1)
        m.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
        m.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
    if calibrate is not None:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: the statistics of the calibration batch
        with torch.no_grad():
            net.train()(calibrate)
        for m in norms:
            m.momentum = 0.1
    return net.eval()


def calibration(size: int, seed: int) -> torch.Tensor:
    """Normalised random images for :func:`randomise`."""
    return normalise(torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8,
                                   generator=torch.Generator().manual_seed(seed)))


def state(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in module.state_dict().items()}


def trunk(resnet: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ResNet up to its average pool: (N, 3, P, P) -> (N, 2048)."""
    return nn.Sequential(*list(resnet.children())[:-1])(x).flatten(1)


# ---- Section 4.1 (ActivityNet) ---------------------------------------------------------------------
class FrameOfficial:
    """The networks of a Section 4.1 release: f_G (torchvision MobileNet-V2), f_L (ResNet-50), f_C (GRU + fc),
    pi (1x1 conv -> linear -> GRU -> actor / critic) and the warm-up f_L head."""

    def __init__(self, classes: int = 200, hidden: int = 16, pi_hidden: int = 16, grid: int = 7) -> None:
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        self.classes, self.grid = classes, grid
        self.glancer = randomise(torchvision.models.mobilenet_v2(num_classes=classes), g, calibration(FRAME, 10))
        self.focuser = randomise(torchvision.models.resnet50(num_classes=classes), g, calibration(PATCH, 11))
        self.gru, self.fc = nn.GRU(1280 + 2048, hidden, batch_first=True), nn.Linear(hidden, classes)
        cells = math.ceil(FRAME / 32) ** 2
        self.encoder = nn.Sequential(nn.Conv2d(1280, 32, 1, bias=False), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(32 * cells, pi_hidden), nn.ReLU())
        self.pi_gru = nn.GRU(pi_hidden, pi_hidden)
        self.actor = nn.Sequential(nn.Linear(pi_hidden, grid * grid), nn.Softmax(dim=-1))
        self.critic = nn.Sequential(nn.Linear(pi_hidden, 1))
        with torch.no_grad():
            self.encoder[0].weight.mul_(20)  # f_G's random features are small: spread pi's decisions
            self.actor[0].weight.mul_(10)
        self.warm_fc = nn.Linear(2048, classes)

    def policy(self) -> dict[str, torch.Tensor]:
        return {**state("state_encoder.", self.encoder), **state("gru.", self.pi_gru), **state("actor.", self.actor),
                **state("critic.", self.critic)}

    def checkpoint(self) -> dict:
        """What main_dist.py saves in stage III."""
        glancer, focuser = state("net.", self.glancer), state("net.", self.focuser)
        policy = self.policy()
        focuser.update({**{f"policy.policy.{k}": v for k, v in policy.items()},
                        **{f"policy.policy_old.{k}": v for k, v in policy.items()}})
        fc = {**state("gru.", self.gru), **state("fc.", self.fc)}
        whole = {**{f"glancer.{k}": v for k, v in glancer.items()}, **{f"focuser.{k}": v for k, v in focuser.items()},
                 **{f"classifier.{k}": v for k, v in fc.items()}}
        return {"epoch": 10, "model_state_dict": whole, "glancer": glancer, "focuser": focuser, "fc": fc,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                           "_growth_tracker": 0},
                "policy": policy, "acc": torch.tensor(71.5), "best_acc": torch.tensor(72.25),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "momentum": 0.9, "params": [0, 1]}]}}

    def warmup(self) -> tuple[dict, dict]:
        """globalcnn.pth.tar (f_G trained) and localcnn.pth.tar (f_L trained; its own head)."""
        base = self.checkpoint()
        local = state("net.", self.focuser)
        local.update(state("net.fc.", self.warm_fc))
        return ({**base, "focuser": state("net.", self.focuser), "policy": None, "optimizer": None},
                {**base, "focuser": local, "policy": None, "optimizer": None})

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Their stage-III evaluation: per frame, pi on f_G's map -> argmax cell -> patch -> f_L -> f_C.
        frames uint8 (B, T, 3, S, S) -> logits (B, T, K), corners (B, T, 2) as (row, column)."""
        b, t = frames.shape[:2]
        x = normalise(frames)
        maps = self.glancer.features(x.flatten(0, 1)).unflatten(0, (b, t))
        pi = {k.split(".", 1)[1]: v for k, v in self.policy().items() if k.startswith("gru.")}
        fc_gru = {k: v for k, v in self.gru.state_dict().items()}
        h_pi, h_c = torch.zeros(b, self.pi_gru.hidden_size), torch.zeros(b, self.gru.hidden_size)
        fractions = torch.tensor([[r / (self.grid - 1), c / (self.grid - 1)] for r in range(self.grid)
                                  for c in range(self.grid)], dtype=torch.float32)
        logits, corners = [], []
        for step in range(t):
            s = F.relu(F.conv2d(maps[:, step], self.encoder[0].weight)).flatten(1)
            s = F.relu(F.linear(s, self.encoder[3].weight, self.encoder[3].bias))
            h_pi = gru_cell(s, h_pi, pi)
            action = F.softmax(F.linear(h_pi, self.actor[0].weight, self.actor[0].bias), -1).argmax(-1)
            corner = torch.floor(fractions[action] * (FRAME - PATCH)).long()
            patches = torch.stack([x[i, step, :, y:y + PATCH, c:c + PATCH] for i, (y, c) in enumerate(corner.tolist())])
            feature = torch.cat([maps[:, step].mean((2, 3)), trunk(self.focuser, patches)], dim=1)
            h_c = gru_cell(feature, h_c, fc_gru)
            logits.append(self.fc(h_c))
            corners.append(corner)
        return torch.stack(logits, 1), torch.stack(corners, 1)


def write_release(official, folder: Path, dataset: str) -> Path:
    """The official files of ``official`` under the authors' release names."""
    names = release_names(dataset, PATCH)
    torch.save(official.checkpoint(), folder / names["checkpoint"])
    glancer, focuser = official.warmup()
    torch.save(glancer, folder / names["warmup_glancer"])
    torch.save(focuser, folder / names["warmup_focuser"])
    return folder


@pytest.fixture(scope="module")
def frame_release(tmp_path_factory) -> tuple[FrameOfficial, Path]:
    official = FrameOfficial()
    return official, write_release(official, tmp_path_factory.mktemp("anet_release"), "activitynet")


def random_frames(videos: int, frames: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (videos, frames, 3, FRAME, FRAME), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def converted_rollout(run_dir: Path, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What evaluate.py runs for the learned policy: the run's model and pi, deterministic, step by step."""
    run = open_run(run_dir)
    model = build_model(run.config, run.checkpoint)
    env_config = replace(policy_env_config(run.config, run.policy), reward="conf")
    episodes = make_episodes(model, ClipSet(frames, torch.zeros(len(frames), dtype=torch.long)), env_config, "cpu")
    agent = load_policy(run.policy, episodes, "cpu", run.config)
    with torch.no_grad():
        return play(episodes, agent)


def test_activitynet_release_reproduces_the_authors_forward(frame_release, tmp_path):
    official, folder = frame_release
    out = tmp_path / "run"
    files = find_files("activitynet", PATCH, folder)
    done = convert_official("activitynet", PATCH, out, files, frame_size=FRAME)
    assert done.stages == ["warmup", "stage3", "policy"]

    frames = random_frames(3, 4)
    logits, corners = converted_rollout(out, frames)
    ref_logits, ref_corners = official.forward(frames)
    assert torch.equal(corners, ref_corners.flip(-1))  # ours (x0, y0), theirs (row, column): the same patch
    assert len({tuple(c) for c in corners.reshape(-1, 2).tolist()}) > 3  # pi's choices vary: the test is not vacuous
    assert (logits - ref_logits).abs().max() < 1e-3

    config = json.loads((out / "config.json").read_text())
    assert config["model"]["patch_size"] == PATCH and config["model"]["hidden_size"] == 16
    assert config["env"]["observe_memory"] is False and config["policy"]["glance_norm"] is False
    assert config["policy"]["algo"] == "paper_ppo" and config["env"]["grid"] == 7
    digest = hashlib.sha256((folder / release_names("activitynet", PATCH)["checkpoint"]).read_bytes()).hexdigest()
    for stage in ("stage3", "policy"):
        record = json.loads((out / stage / "stage.json").read_text())
        assert record["converted"]["files"]["checkpoint"]["sha256"] == digest
        assert record["inputs"]["official_checkpoint"]["sha256"] == digest
        assert record["converted"]["official"] == {"epoch": 10, "acc": 71.5, "best_acc": 72.25}
        outputs = record.pop("outputs")
        assert provenance.stage_status(out / stage, record) == "finished" and outputs
    assert "global_classifier" in json.loads((out / "stage3" / "stage.json").read_text())["converted"]["untrained"]

    # the warm-up: the full-frame baseline is f_L with the warm-up head on whole frames
    warm = build_model(open_run(out).config, out / "warmup" / "checkpoint.pt").eval()
    with torch.no_grad():
        full = warm.classify_full_frames(frames)
        expected = official.warm_fc(trunk(official.focuser, normalise(frames).flatten(0, 1))).view(3, 4, -1).mean(1)
    assert (full - expected).abs().max() < 1e-3


# ---- Section 4.2 (Something-Something) ---------------------------------------------------------------
def tsm_mobilenet_state(net: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """torchvision MobileNet-V2 weights in TSM's layout: each block's layers flattened into one Sequential
    (conv, BN, ReLU6, ...: the index of a layer is its position among the block's leaves), the shift wrapping
    the first conv of residual blocks as ``.net``, and a bare linear classifier."""
    out = {}
    for i, block in enumerate(net.features):
        if not isinstance(block, torchvision.models.mobilenetv2.InvertedResidual):
            out.update(state(f"{prefix}features.{i}.", block))
            continue
        leaves = [m for m in block.conv.modules() if not list(m.children())]
        for j, leaf in enumerate(leaves):
            wrapped = ".net" if j == 0 and block.use_res_connect and len(leaves) == 8 else ""
            out.update(state(f"{prefix}features.{i}.conv.{j}{wrapped}.", leaf))
    return out


def resnet_children_state(net: nn.Module, name_of: dict[str, str]) -> dict[str, torch.Tensor]:
    """ResNet weights without fc, each child under ``name_of[child]``, every block's conv1 wrapped as ``.net``."""
    out = {}
    for child, module in net.named_children():
        if child == "fc":
            continue
        for key, value in module.state_dict().items():
            parts = key.split(".")
            if len(parts) > 2 and parts[1] == "conv1":  # <block>.conv1.<param> inside layer1..4
                key = ".".join(parts[:2] + ["net"] + parts[2:])
            out[f"{name_of[child]}.{key}"] = value
    return out


class ClipOfficial:
    """The networks of a Section 4.2 release: TSM MobileNet-V2 f_G on G frames, TSM ResNet-50 f_L on T patches,
    f_C linear, pi = conv -> BN -> linear -> BN -> GRU -> sigmoid corner; and TSM's warm-up heads."""

    def __init__(self, glance: int = 2, classes: int = 174, pi_hidden: int = 16) -> None:
        g = torch.Generator().manual_seed(1)
        torch.manual_seed(1)
        self.glance, self.classes = glance, classes
        self.glancer = randomise(torchvision.models.mobilenet_v2(num_classes=classes), g, calibration(FRAME, 12))
        self.focuser = randomise(torchvision.models.resnet50(), g, calibration(PATCH, 13))
        self.glancer_shifts = Shifts([b.conv[0] for b in mobilenet_residual_blocks(self.glancer)])
        self.focuser_shifts = Shifts([b.conv1 for layer in (self.focuser.layer1, self.focuser.layer2,
                                                             self.focuser.layer3, self.focuser.layer4) for b in layer])
        self.fc = nn.Linear(2048, classes)
        cells = math.ceil(FRAME / 32) ** 2
        self.encoder = randomise(nn.Sequential(nn.Conv2d(glance * 1280, 64, 1, bias=False), nn.BatchNorm2d(64),
                                               nn.ReLU(), nn.Flatten(), nn.Linear(64 * cells, pi_hidden),
                                               nn.BatchNorm1d(pi_hidden), nn.ReLU()), g)
        self.pi_gru = nn.GRU(pi_hidden, pi_hidden)
        self.actor = nn.Sequential(nn.Linear(pi_hidden, 2), nn.Sigmoid())
        self.critic = nn.Sequential(nn.Linear(pi_hidden, 1))
        with torch.no_grad():
            self.encoder[0].weight.mul_(20)
            self.actor[0].weight.mul_(5)
        self.warm_glance_fc, self.warm_focus_fc = nn.Linear(1280, classes), nn.Linear(2048, classes)

    def policy(self) -> dict[str, torch.Tensor]:
        return {**state("state_encoder.", self.encoder), **state("gru.", self.pi_gru), **state("actor.", self.actor),
                **state("critic.", self.critic)}

    def checkpoint(self) -> dict:
        """What stage2.py saves (no optimizer)."""
        glancer = tsm_mobilenet_state(self.glancer, "net.")
        glancer.update({"net.classifier.weight": self.glancer.classifier[1].weight,
                        "net.classifier.bias": self.glancer.classifier[1].bias})
        order = {name: f"net.base_model.{i}" for i, (name, _) in enumerate(self.focuser.named_children())}
        focuser = resnet_children_state(self.focuser, order)
        fc = state("", self.fc)
        whole = {**{f"glancer.{k}": v for k, v in glancer.items()}, **{f"focuser.{k}": v for k, v in focuser.items()},
                 **{f"classifier.{k}": v for k, v in fc.items()}}
        return {"epoch": 3, "model_state_dict": whole, "glancer": glancer, "focuser": focuser, "fc": fc,
                "policy": self.policy(), "acc": torch.tensor(48.0), "best_acc": torch.tensor(48.5)}

    def warmup(self) -> tuple[dict, dict]:
        """TSM's mobilenetv2_segment8 and resnet50_segment12 files (main.py's save_checkpoint)."""
        glance = tsm_mobilenet_state(self.glancer, "module.base_model.")
        glance.update(state("module.new_fc.", self.warm_glance_fc))
        names = {n: f"module.base_model.{n}" for n, _ in self.focuser.named_children()}
        focus = resnet_children_state(self.focuser, names)
        focus.update(state("module.new_fc.", self.warm_focus_fc))
        meta = {"epoch": 50, "optimizer": {"state": {}, "param_groups": []}, "best_prec1": 47.0}
        return ({**meta, "arch": "mobilenetv2", "state_dict": glance},
                {**meta, "arch": "resnet50", "state_dict": focus})

    def glance_maps(self, frames: torch.Tensor) -> torch.Tensor:
        """f_G with the shift over the G glance frames of each clip: (B, G, 3, S, S) -> (B * G, 1280, h, w)."""
        self.glancer_shifts.segments = frames.shape[1]
        return self.glancer.features(normalise(frames).flatten(0, 1))

    def focus_features(self, images: torch.Tensor, segments: int) -> torch.Tensor:
        self.focuser_shifts.segments = segments
        return trunk(self.focuser, images)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Their evaluate.py (video_div 1): clips (B, G + T, ...) -> logits (B, K), corner (B, 2) as (row, column)."""
        b, g = frames.shape[0], self.glance
        t = frames.shape[1] - g
        maps = self.glance_maps(frames[:, :g])
        glance_logits = self.glancer.classifier[1](maps.mean((2, 3))).view(b, g, -1).mean(1)
        def bn(i: int) -> dict[str, torch.Tensor]:
            return {k: self.encoder[i].state_dict()[k] for k in ("weight", "bias", "running_mean", "running_var")}

        s = F.relu(batch_norm(F.conv2d(maps.reshape(b, g * 1280, *maps.shape[2:]), self.encoder[0].weight), bn(1)))
        s = F.relu(batch_norm(F.linear(s.flatten(1), self.encoder[4].weight, self.encoder[4].bias), bn(5)))
        gru = {k: v for k, v in self.pi_gru.state_dict().items()}
        h = gru_cell(s, torch.zeros(b, self.pi_gru.hidden_size), gru)
        fraction = torch.sigmoid(F.linear(h, self.actor[0].weight, self.actor[0].bias))
        corner = torch.floor(fraction * (FRAME - PATCH)).int()
        focus = normalise(frames[:, g:])
        patches = torch.stack([focus[i, :, :, y:y + PATCH, c:c + PATCH] for i, (y, c) in enumerate(corner.tolist())])
        local = self.focus_features(patches.flatten(0, 1), t)
        return self.fc(local).view(b, t, -1).mean(1) + glance_logits, corner


@pytest.fixture(scope="module")
def clip_release(tmp_path_factory) -> tuple[ClipOfficial, Path]:
    official = ClipOfficial()
    return official, write_release(official, tmp_path_factory.mktemp("sth_release"), "sthv1")


def test_something_something_release_reproduces_the_authors_forward(clip_release, tmp_path):
    official, folder = clip_release
    out = tmp_path / "run"
    done = convert_official("sthv2", PATCH, out, find_files("sthv2", PATCH, folder), frame_size=FRAME)
    assert any("BatchNorm" in note for note in done.notes)

    glance, focus = official.glance, 3
    frames = random_frames(4, glance + focus, seed=2)
    logits, corners = converted_rollout(out, frames)
    ref_logits, ref_corner = official.forward(frames)
    assert torch.equal(corners[:, 0], ref_corner.flip(-1).long())
    assert len({tuple(c) for c in corners[:, 0].tolist()}) > 1
    assert (logits[:, 0] - ref_logits).abs().max() < 1e-3

    config = json.loads((out / "config.json").read_text())
    assert config["model"]["glance_frames"] == glance and config["data"]["list_format"] == "sthv2"
    assert config["env"]["continuous"] == "corner" and config["policy"]["conv_channels"] == 64
    assert config["policy"]["action_std"] == 0.25

    # the warm-up files (TSM's layout): f_G's head and f_L's head on whole frames, as their TSM models
    warm = build_model(open_run(out).config, out / "warmup" / "checkpoint.pt").eval()
    with torch.no_grad():
        glance_frames = frames[:, :glance]
        ours_g = warm.global_logits(warm.glance(frames))
        maps = official.glance_maps(glance_frames)
        ref_g = official.warm_glance_fc(maps.mean((2, 3))).view(4, glance, -1).mean(1)
        ours_l = warm.local_head(warm.local_encoder(normalise(glance_frames).flatten(0, 1), glance))
        ref_l = official.warm_focus_fc(official.focus_features(normalise(glance_frames).flatten(0, 1), glance))
    assert (ours_g - ref_g).abs().max() < 1e-3 and (ours_l - ref_l).abs().max() < 1e-3


# ---- errors ------------------------------------------------------------------------------------------
def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="128s3_checkpoint.pth.tar"):
        find_files("activitynet", 128, tmp_path)
    torch.save({"policy": None}, tmp_path / "128checkpoint.pth.tar")
    with pytest.raises(FileNotFoundError, match="stage-I checkpoint"):
        find_files("activitynet", 128, tmp_path)
    (tmp_path / "144x144.pth.tar").write_bytes(b"")
    (tmp_path / "mobilenetv2_segment8.pth.tar").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="resnet50_segment12.pth.tar"):
        find_files("sthv1", 144, tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere.pth.tar"):
        find_files("sthv1", 144, checkpoint=tmp_path / "nowhere.pth.tar")


def _convert(path: Path, out: Path) -> None:
    convert_official("activitynet", PATCH, out, OfficialFiles(path), frame_size=FRAME)


def test_mismatched_keys_are_named(frame_release, tmp_path):
    official, _ = frame_release
    checkpoint = official.checkpoint()
    policy = dict(checkpoint["policy"])
    policy["state_encoder.9.weight"] = policy.pop("state_encoder.3.weight")
    torch.save({**checkpoint, "policy": policy}, tmp_path / "pi.pth.tar")
    with pytest.raises(OfficialFormatError, match=r"(?s)pi\.pth\.tar\['policy'\].*missing keys \(1\): "
                                                  r"state_encoder\.3\.weight.*unexpected keys \(1\): "
                                                  r"state_encoder\.9\.weight"):
        _convert(tmp_path / "pi.pth.tar", tmp_path / "a")

    glancer = dict(checkpoint["glancer"])
    glancer["net.features.1.conv.9.weight"] = glancer.pop("net.features.1.conv.1.weight")
    glancer["net.extra"] = torch.zeros(1)
    torch.save({**checkpoint, "glancer": glancer}, tmp_path / "g.pth.tar")
    with pytest.raises(OfficialFormatError, match=r"(?s)g\.pth\.tar\['glancer'\].*missing keys \(1\): "
                                                  r"net\.features\.1\.conv\.1\.weight.*unexpected keys \(2\): "
                                                  r"net\.extra, net\.features\.1\.conv\.9\.weight"):
        _convert(tmp_path / "g.pth.tar", tmp_path / "b")

    torch.save({**checkpoint, "surprise": 1}, tmp_path / "top.pth.tar")
    with pytest.raises(OfficialFormatError, match="unexpected keys \\(1\\): surprise"):
        _convert(tmp_path / "top.pth.tar", tmp_path / "c")
    torch.save({**checkpoint, "policy": None}, tmp_path / "stage1.pth.tar")
    with pytest.raises(OfficialFormatError, match="holds no policy"):
        _convert(tmp_path / "stage1.pth.tar", tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")  # nothing half-written


def test_loading_stays_weights_only(tmp_path):
    torch.save({"best_acc": np.float64(71.5), "acc": torch.tensor(1.0)}, tmp_path / "numpy.pth.tar")
    assert load_official(tmp_path / "numpy.pth.tar")["best_acc"] == 71.5  # numpy scalars are harmless
    torch.save({"args": argparse.Namespace(patch_size=128)}, tmp_path / "args.pth.tar")
    with pytest.raises(OfficialFormatError, match="argparse.Namespace"):
        load_official(tmp_path / "args.pth.tar")
    (tmp_path / "cut.pth.tar").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(OfficialFormatError, match="cut.pth.tar"):
        load_official(tmp_path / "cut.pth.tar")


def test_an_existing_run_folder_is_not_overwritten(frame_release, tmp_path):
    _, folder = frame_release
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="not empty"):
        convert_official("activitynet", PATCH, tmp_path / "run", find_files("activitynet", PATCH, folder),
                         frame_size=FRAME)


# ---- the command lines ---------------------------------------------------------------------------------
def test_converted_run_goes_through_evaluate_py(frame_release, tmp_path, monkeypatch):
    """convert_official.py, then evaluate.py --run, on a two-video list in the authors' ActivityNet format."""
    from torchvision.io import encode_jpeg, write_file

    _, folder = frame_release
    frames = random_frames(2, 6, seed=3)
    for v in range(2):
        (tmp_path / "frames" / f"v_{v}").mkdir(parents=True)
        for i in range(6):
            write_file(str(tmp_path / "frames" / f"v_{v}" / f"image_{i + 1:05d}.jpg"), encode_jpeg(frames[v, i]))
    lists = tmp_path / "val.txt"
    lists.write_text("v_0,6,3\nv_1,6,7\n")
    scripts = Path(__file__).resolve().parents[1] / "experiments"
    out = tmp_path / "run"
    for script, args in (("convert_official.py", ["--files", str(folder), "--dataset", "activitynet", "--patch",
                                                  str(PATCH), "--out", str(out), "--frame-size", str(FRAME),
                                                  "--train-list", str(lists), "--val-list", str(lists),
                                                  "--data-root", str(tmp_path / "frames")]),
                         ("evaluate.py", ["--run", str(out), "--device", "cpu", "--workers", "0"])):
        monkeypatch.setattr("sys.argv", [script, *args])
        runpy.run_path(str(scripts / script), run_name="__main__")
    results = json.loads((out / "evaluation" / "results.json").read_text())
    assert results["videos"] == 2 and {"learned", "random", "full_frame"} <= set(results["policies"])
