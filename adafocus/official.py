"""The AdaFocus authors' released checkpoints (github.com/blackfeather-wang/AdaFocus) as a run folder.

``python experiments/convert_official.py`` calls :func:`convert_official`, which writes a run folder that
``experiments/evaluate.py --run`` and ``visualize.py`` read like a trained one: ``config.json``,
``stage3/checkpoint.pt`` (f_G, f_L, f_C), ``policy/policy.zip`` + ``policy.json`` (pi as a ``paper_ppo``
agent), ``warmup/checkpoint.pt`` when the warm-up files are given (the full-frame / TSM baselines), and a
``stage.json`` in each stage folder that marks it converted and records the sha256 of the files it came from.

What the authors' files hold (their code, not the files, which are on Google Drive):

* Section 4.1 (``Experiments on ActivityNet, FCVID and Mini-Kinetics``): ``main_dist.py`` saves
  ``{epoch, model_state_dict, glancer, focuser, fc, scaler, policy, acc, best_acc, optimizer}``;
  ``glancer`` is f_G, a torchvision MobileNet-V2 under ``net.`` with its warm-up head ``net.classifier.1``;
  ``focuser`` is f_L, a torchvision ResNet-50 under ``net.`` (head ``net.fc``), plus pi's two copies
  ``policy.policy.*`` / ``policy.policy_old.*`` when pi exists; ``fc`` is f_C (``models/gfv_net.py``
  ``RecurrentClassifier``): ``gru`` (batch-first GRU over concat[f_G pooled 1280, f_L pooled 2048]) and the
  head ``fc``; ``policy`` is pi (``models/ppo.py`` ``ActorCritic``): ``state_encoder`` = 1x1 conv (1280 -> 32,
  no bias), ReLU, Flatten, linear (32 h w -> hidden), ReLU; ``gru``; ``actor.0`` (linear to the 49 grid cells,
  softmax); ``critic.0``. ``policy`` is None in stage-I files (random patches). Releases (README):
  ``globalcnn.pth.tar`` / ``localcnn.pth.tar`` (warm-up f_G / f_L), ``{P}checkpoint.pth.tar`` (stage I, no pi)
  and ``{P}s3_checkpoint.pth.tar`` (stage III, with pi) for P = 128, 160, 192.
* Section 4.2 (``Experiments on Something-Something V1&V2``): ``stage2.py`` / ``stage3.py`` save
  ``{epoch, model_state_dict, glancer, focuser, fc, policy, acc, best_acc[, optimizer]}``; ``glancer`` is
  TSM's MobileNet-V2 (``models/mobilenetv2.py``: plain ``nn.Sequential`` blocks, a bare linear
  ``net.classifier``, TSM's shift wrapping ``conv.0`` of each residual block as ``conv.0.net``); ``focuser``
  is TSM-ResNet-50 (``models/tsn.py``) cut to ``net.base_model.<i>`` (an ``nn.Sequential`` of its children
  without ``fc``, the shift wrapping each block's ``conv1`` as ``conv1.net``); ``fc`` is f_C's linear layer on
  f_L's features (their PPO classes are plain objects there, so the Focuser holds no copy of pi); ``policy`` is
  ``models/ppo_continuous.py``'s ``ActorCritic``: 1x1 conv (G x 1280 -> 64, no bias), BatchNorm2d, ReLU,
  Flatten, linear (64 h w -> hidden), BatchNorm1d, ReLU, ``gru``, ``actor.0`` (linear to 2, sigmoid: the
  top-left corner as a fraction of S - P, row first), ``critic.0``. Releases:
  ``mobilenetv2_segment8.pth.tar`` / ``resnet50_segment12.pth.tar`` (TSM's own training files,
  ``{epoch, arch, state_dict, optimizer, best_prec1}`` with ``module.base_model.*`` and ``module.new_fc.*``)
  and ``{P}x{P}.pth.tar`` for P = 144, 160, 176.

Every tensor is read with ``torch.load(weights_only=True)``; only numpy scalars and dtypes (an accuracy saved
as a numpy number) are allowed beyond that, never arbitrary objects.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecMonitor
from torch import nn

from adafocus.agents import action_kind, make_algorithm, save_agent
from adafocus.envs import AdaFocusVecEnv

from . import provenance
from .checkpoint import save_atomic
from .config import RunConfig, preset, to_dict
from .models import Model, build_model, clip_level, make_episodes

REPOSITORY = "https://github.com/blackfeather-wang/AdaFocus"
BN_EPS = 1e-5  # nn.BatchNorm1d/2d's default eps, which the authors' pi keeps (eps is not in a state dict)

# Top-level keys of the authors' stage checkpoints (main_dist.py, stage2.py, stage3.py) and of TSM's files.
STAGE_KEYS = ("epoch", "model_state_dict", "glancer", "focuser", "fc", "scaler", "policy", "acc", "best_acc",
              "optimizer")
TSM_KEYS = ("epoch", "arch", "state_dict", "optimizer", "best_prec1")

# The released Section 4.2 continuous pi runs at this std in their evaluate.sh; eval uses the mean only.
DEFAULT_ACTION_STD = 0.25


@dataclass(frozen=True)
class Dataset:
    """One dataset of the release: our preset, whether it is clip-level (Section 4.2), its list format."""

    preset: str
    clip: bool
    list_format: str


DATASETS: dict[str, Dataset] = {
    "activitynet": Dataset("activitynet", False, "activitynet"),
    "fcvid": Dataset("fcvid", False, "fcvid"),
    "minikinetics": Dataset("minikinetics", False, "minikinetics"),
    "sthv1": Dataset("sthsth", True, "sthv1"),
    "sthv2": Dataset("sthsth", True, "sthv2"),
}


def release_names(dataset: str, patch: int) -> dict[str, str]:
    """The authors' file names (their READMEs) for a dataset and patch size P: the stage checkpoint holding
    f_G, f_L, f_C and pi (``checkpoint``), and the warm-up files of f_G and f_L (``warmup_glancer``,
    ``warmup_focuser``)."""
    if _dataset(dataset).clip:
        return {"checkpoint": f"{patch}x{patch}.pth.tar", "warmup_glancer": "mobilenetv2_segment8.pth.tar",
                "warmup_focuser": "resnet50_segment12.pth.tar"}
    return {"checkpoint": f"{patch}s3_checkpoint.pth.tar", "warmup_glancer": "globalcnn.pth.tar",
            "warmup_focuser": "localcnn.pth.tar"}


class OfficialFormatError(ValueError):
    """An official file that does not hold what the authors' code saves (keys, shapes or objects)."""


@dataclass(frozen=True)
class OfficialFiles:
    """The files a conversion reads: the stage checkpoint, and the warm-up files when both are there."""

    checkpoint: Path
    warmup_glancer: Path | None = None
    warmup_focuser: Path | None = None


def find_files(dataset: str, patch: int, files: Path | None = None, checkpoint: Path | None = None,
               warmup_glancer: Path | None = None, warmup_focuser: Path | None = None) -> OfficialFiles:
    """The official files to convert: explicit paths where given, else the release names in ``files``.

    The stage checkpoint is required (FileNotFoundError naming the path looked for, and the ``.pth.tar`` files
    the folder does hold); the warm-up pair is optional, but one of the two alone is an error.
    """
    names = release_names(dataset, patch)
    folder = Path(files) if files is not None else None
    if folder is not None and not folder.is_dir():
        raise FileNotFoundError(f"--files {folder} is not a folder")

    def locate(role: str, given: Path | None, required: bool) -> Path | None:
        if given is not None:
            if not Path(given).is_file():
                raise FileNotFoundError(f"{role.replace('_', ' ')} file {given} does not exist")
            return Path(given)
        if folder is None:
            if required:
                raise FileNotFoundError(f"no stage checkpoint: pass --files DIR (holding {names[role]}) or "
                                        "--checkpoint")
            return None
        path = folder / names[role]
        if path.is_file():
            return path
        if required:
            held = sorted(p.name for p in folder.glob("*.pth.tar"))
            hint = ""
            if not _dataset(dataset).clip and (folder / f"{patch}checkpoint.pth.tar").is_file():
                hint = (f"; {patch}checkpoint.pth.tar is the stage-I checkpoint, trained with random patches and "
                        "holding no policy")
            raise FileNotFoundError(f"{path} does not exist (the authors' name for the P = {patch} checkpoint of "
                                    f"{dataset}); {folder} holds {held or 'no .pth.tar file'}{hint}")
        return None

    found = OfficialFiles(locate("checkpoint", checkpoint, True), locate("warmup_glancer", warmup_glancer, False),
                          locate("warmup_focuser", warmup_focuser, False))
    if (found.warmup_glancer is None) != (found.warmup_focuser is None):
        have, lack = (("warmup_glancer", "warmup_focuser") if found.warmup_glancer is not None
                      else ("warmup_focuser", "warmup_glancer"))
        raise FileNotFoundError(f"the warm-up needs both f_G's and f_L's files: found {getattr(found, have)}, "
                                f"but not {names[lack]}")
    return found


# ---- reading ----------------------------------------------------------------------------------------
def _numpy_globals() -> dict[str, Any]:
    """numpy's scalar constructor and dtypes (how a metric saved as a numpy number pickles), by pickle name."""
    core = getattr(np, "_core", None) or np.core
    names: dict[str, Any] = {"numpy.core.multiarray.scalar": core.multiarray.scalar,
                             "numpy._core.multiarray.scalar": core.multiarray.scalar, "numpy.dtype": np.dtype}
    for name, cls in vars(getattr(np, "dtypes", object)).items():
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            names[f"numpy.dtypes.{name}"] = cls
    return names


def load_official(path: Path) -> dict[str, Any]:
    """One official file, tensors on the CPU, loaded with ``weights_only=True``.

    Objects a weights-only load refuses are an OfficialFormatError naming them, except numpy scalars and
    dtypes (a metric saved as a numpy number), which are allowed for this one load.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official file {path} does not exist")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            try:
                refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            except Exception:  # an older torch, or a legacy (non-zip) file: torch's own message names it
                refused = []
            harmless = _numpy_globals()
            if not refused or any(name not in harmless for name in refused):
                what = ", ".join(refused) if refused else str(error).strip().splitlines()[-1]
                raise OfficialFormatError(
                    f"{path}: holds Python objects that a weights-only load refuses ({what}); the authors' files "
                    "hold only tensors, numbers and state dicts, so this is not one of them, or it was re-saved "
                    "with other objects (they are not loaded, for safety)") from None
            # numpy's dtype classes only show once unpickling reaches them: all of them are allowed at once
            with torch.serialization.safe_globals([(obj, name) for name, obj in harmless.items()]):
                state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise OfficialFormatError(f"{path}: not a readable torch file ({error})") from error
    if not isinstance(state, dict):
        raise OfficialFormatError(f"{path}: holds a {type(state).__name__}, not the dict the authors' code saves")
    return state


def _listing(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def _mismatch(path: Path, entry: str, missing: list[str], unexpected: list[str], what: str) -> OfficialFormatError:
    lines = [f"{path}{entry}: its keys do not match {what}"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {_listing(sorted(missing))}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {_listing(sorted(unexpected))}")
    return OfficialFormatError("\n".join(lines))


def check_top_keys(state: Mapping[str, Any], path: Path, required: tuple[str, ...], known: tuple[str, ...],
                   what: str) -> None:
    """The file's top-level keys: every ``required`` one present, none outside ``known``."""
    missing = [k for k in required if k not in state]
    unexpected = [str(k) for k in state if k not in known]
    if missing or unexpected:
        raise _mismatch(path, "", missing, unexpected, what)


def _sub_dict(state: Mapping[str, Any], key: str, path: Path) -> dict[str, torch.Tensor]:
    value = state[key]
    if not isinstance(value, Mapping) or not all(isinstance(v, torch.Tensor) for v in value.values()):
        raise OfficialFormatError(f"{path}['{key}']: expected a state dict of tensors, got {type(value).__name__}")
    return dict(value)


# ---- key maps: our parameter names -> the authors' ------------------------------------------------------
RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")  # our trunk's order


def resnet_name(key: str) -> str:
    """Our ResNet trunk key (``trunk.<i>.`` stripped) -> torchvision's: ``4.0.conv1.net.weight`` ->
    ``layer1.0.conv1.net.weight`` (the trunk is torchvision's children up to layer4, in order)."""
    index, _, rest = key.partition(".")
    return f"{RESNET_CHILDREN[int(index)]}.{rest}"


# TSM's MobileNet-V2 blocks are flat nn.Sequentials; torchvision groups conv + BN (+ ReLU6) as one module.
# (torchvision sub-module path) -> TSM index, for blocks with an expansion (4 children) and without (3).
_TSM_EXPANDED = {("0", "0"): "0", ("0", "1"): "1", ("1", "0"): "3", ("1", "1"): "4", ("2",): "6", ("3",): "7"}
_TSM_DEPTHWISE = {("0", "0"): "0", ("0", "1"): "1", ("1",): "3", ("2",): "4"}


def tsm_mobilenet_name(key: str, trunk: nn.Sequential) -> str:
    """Our MobileNet-V2 trunk key (``trunk.`` stripped) -> TSM's ``features.`` key: ``3.conv.0.net.1.weight``
    (the BN of a shifted block's first conv) -> ``features.3.conv.1.weight``; TSM's shift wraps only the conv."""
    parts = key.split(".")
    if len(parts) < 3 or parts[1] != "conv":  # the first and last conv-BN-ReLU6: the same names
        return f"features.{key}"
    block = trunk[int(parts[0])]
    rest = parts[2:]
    shifted = len(rest) > 1 and rest[1] == "net"  # our TemporalShift wraps conv.0 as conv.0.net
    rest = [p for i, p in enumerate(rest) if not (i == 1 and shifted)]
    table = _TSM_EXPANDED if len(block.conv) == 4 else _TSM_DEPTHWISE
    index = table[tuple(rest[:-1])]
    wrapped = ".net" if shifted and index == "0" else ""
    return f"features.{parts[0]}.conv.{index}{wrapped}.{rest[-1]}"


@dataclass(frozen=True)
class Part:
    """Our parameters under ``ours`` (a state-dict prefix) and the authors' name of each (``name`` of the key
    below the prefix)."""

    ours: str
    name: Callable[[str], str]


def fill_state(state: dict[str, torch.Tensor], official: Mapping[str, torch.Tensor], parts: list[Part], path: Path,
               entry: str, what: str, ignore: Callable[[str], bool] = lambda key: False) -> list[str]:
    """Copy ``official``'s tensors into our ``state`` (in place) where ``parts`` map them.

    The file's keys must be exactly the names ``parts`` give our keys (``ignore`` drops some of the file's;
    BatchNorm's ``num_batches_tracked`` may be absent): otherwise an OfficialFormatError names the missing
    and the unexpected keys. A shape that differs is an error naming both keys. Returns our keys filled.
    """
    expected = {part.name(key[len(part.ours):]): key for part in parts for key in state if key.startswith(part.ours)}
    missing = [k for k in expected if k not in official and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in official if k not in expected and not ignore(k)]
    if missing or unexpected:
        raise _mismatch(path, entry, missing, unexpected, what)
    filled = []
    for name, ours in expected.items():
        if name not in official:
            continue
        value = official[name]
        if tuple(value.shape) != tuple(state[ours].shape):
            raise OfficialFormatError(f"{path}{entry}: {name} has shape {tuple(value.shape)}, but the run's "
                                      f"architecture needs {tuple(state[ours].shape)} for {ours}")
        state[ours] = value.to(state[ours].dtype).clone()
        filled.append(ours)
    return filled


def _prefixed(prefix: str, inner: Callable[[str], str] = lambda key: key) -> Callable[[str], str]:
    return lambda key: prefix + inner(key)


def encoder_parts(model: Model, layout: str) -> dict[str, list[Part]]:
    """Where the authors keep f_G and f_L (and their heads), by the file they are in.

    ``layout``: ``frame`` (Section 4.1 stage checkpoint and warm-up files: torchvision networks under ``net.``),
    ``clip`` (Section 4.2 stage checkpoint: TSM's MobileNet-V2 under ``net.``, ResNet-50 as
    ``net.base_model.<i>``), ``tsm`` (TSM's own warm-up files: ``module.base_model.`` / ``module.new_fc.``).
    Returns {"glancer": parts, "focuser": parts}.
    """
    trunk = model.global_encoder.trunk
    if layout == "frame":
        return {"glancer": [Part("global_encoder.trunk.", _prefixed("net.features.")),
                            Part("global_head.1.", _prefixed("net.classifier.1."))],
                "focuser": [Part("local_encoder.trunk.", _prefixed("net.", resnet_name)),
                            Part("local_head.1.", _prefixed("net.fc."))]}
    if layout == "clip":
        return {"glancer": [Part("global_encoder.trunk.", _prefixed("net.", lambda k: tsm_mobilenet_name(k, trunk))),
                            Part("global_head.1.", _prefixed("net.classifier."))],
                "focuser": [Part("local_encoder.trunk.", _prefixed("net.base_model."))]}
    if layout == "tsm":
        return {"glancer": [Part("global_encoder.trunk.",
                                 _prefixed("module.base_model.", lambda k: tsm_mobilenet_name(k, trunk))),
                            Part("global_head.1.", _prefixed("module.new_fc."))],
                "focuser": [Part("local_encoder.trunk.", _prefixed("module.base_model.", resnet_name)),
                            Part("local_head.1.", _prefixed("module.new_fc."))]}
    raise ValueError(f"unknown layout {layout!r}")


def classifier_parts(clip: bool) -> list[Part]:
    """f_C: the GRU and its head (Section 4.1, their ``RecurrentClassifier``), or one linear layer on f_L's
    averaged features (Section 4.2, their ``GFV.classifier``)."""
    if clip:
        return [Part("classifier.1.", lambda key: key)]
    return [Part("classifier.gru.", _prefixed("gru.")), Part("classifier.head.1.", _prefixed("fc."))]


# ---- pi -----------------------------------------------------------------------------------------------
_GRU = ("gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0")
_HEADS = ("actor.0.weight", "actor.0.bias", "critic.0.weight", "critic.0.bias")
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
POLICY_PLAIN = ("state_encoder.0.weight", "state_encoder.3.weight", "state_encoder.3.bias", *_GRU, *_HEADS)
POLICY_BN = ("state_encoder.0.weight", *(f"state_encoder.1.{p}" for p in _BN), "state_encoder.4.weight",
             "state_encoder.4.bias", *(f"state_encoder.5.{p}" for p in _BN), *_GRU, *_HEADS)


@dataclass
class PolicyWeights:
    """pi in our layout (:class:`~adafocus.agents.extractor.GlanceExtractor` + GRU + heads), float32.

    ``conv`` (out, in, 1, 1) and ``conv_bias``: the encoder's 1x1 conv on f_G's map (their bias-free conv, with
    BatchNorm2d folded in where they have one); ``linear`` (hidden, conv_out h w) and ``linear_bias``: the
    encoder's linear layer (BatchNorm1d folded in); ``gru``: nn.GRU's four tensors; ``actor`` / ``actor_bias``:
    the action logits (grid, row-major) or the corner's pre-sigmoid (x, y) in our order; ``critic``.
    """

    conv: torch.Tensor
    conv_bias: torch.Tensor
    linear: torch.Tensor
    linear_bias: torch.Tensor
    gru: dict[str, torch.Tensor]
    actor: torch.Tensor
    actor_bias: torch.Tensor
    critic: torch.Tensor
    critic_bias: torch.Tensor
    batch_norm: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def conv_channels(self) -> int:
        return self.conv.shape[0]

    @property
    def in_channels(self) -> int:
        return self.conv.shape[1]

    @property
    def hidden(self) -> int:
        return self.linear.shape[0]

    @property
    def map_cells(self) -> int:
        """h x w of the f_G map the encoder's linear layer reads."""
        return self.linear.shape[1] // self.conv_channels


def _fold(weight: torch.Tensor, bias: torch.Tensor,
          bn: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm after a layer (weight (out, ...), bias (out,)) folded into the layer, in float64:
    BN(Wx + b) = s (Wx + b - mean) + beta, s = gamma / sqrt(var + eps)."""
    scale = bn["weight"].double() / torch.sqrt(bn["running_var"].double() + BN_EPS)
    folded = weight.double() * scale.view(-1, *([1] * (weight.dim() - 1)))
    return folded.float(), ((bias.double() - bn["running_mean"].double()) * scale + bn["bias"].double()).float()


def policy_weights(policy: Mapping[str, torch.Tensor], path: Path, continuous: bool) -> PolicyWeights:
    """The authors' pi (their ``ActorCritic`` state dict, ``policy`` in a stage checkpoint) in our layout.

    Discrete (Section 4.1, ``models/ppo.py``): the grid's action index is row-major in both codes (their
    ``standard_actions_set`` row = index // grid, column = index % grid, corner ``floor(k / (grid - 1) *
    (S - P))``, as :func:`~adafocus.backbones.grid_corners`), so the actor's rows are kept.
    Continuous (Section 4.2, ``models/ppo_continuous.py``): their actor gives (row, column) fractions,
    ours (x, y): its two rows are swapped. Their BatchNorm layers (``actorcritic_with_bn``) are folded into
    the conv and the linear layer before them (exact in eval mode, which is how their evaluation runs pi).
    """
    batch_norm = "state_encoder.1.running_mean" in policy
    layout = POLICY_BN if batch_norm else POLICY_PLAIN
    required = [k for k in layout if not k.endswith("num_batches_tracked")]
    missing = [k for k in required if k not in policy]
    unexpected = [k for k in policy if k not in layout]
    if missing or unexpected:
        kind = "ppo_continuous.py (actorcritic_with_bn)" if batch_norm else "ppo.py"
        raise _mismatch(path, "['policy']", missing, unexpected, f"the authors' pi ({kind} ActorCritic)")
    conv = policy["state_encoder.0.weight"].float()
    if conv.dim() != 4 or conv.shape[2:] != (1, 1):
        raise OfficialFormatError(f"{path}['policy']: state_encoder.0.weight has shape {tuple(conv.shape)}, "
                                  "not a 1x1 conv (policy_conv: false files are not supported)")
    linear_key = "state_encoder.4" if batch_norm else "state_encoder.3"
    linear, linear_bias = policy[f"{linear_key}.weight"].float(), policy[f"{linear_key}.bias"].float()
    conv_bias = torch.zeros(conv.shape[0])
    notes = []
    if batch_norm:
        bn2d = {p: policy[f"state_encoder.1.{p}"] for p in _BN[:4]}
        bn1d = {p: policy[f"state_encoder.5.{p}"] for p in _BN[:4]}
        conv, conv_bias = _fold(conv, conv_bias, bn2d)
        linear, linear_bias = _fold(linear, linear_bias, bn1d)
        notes.append("pi's BatchNorm2d and BatchNorm1d (eval mode, eps 1e-5) folded into the conv and the linear "
                     "layer before them")
    if linear.shape[1] % conv.shape[0]:
        raise OfficialFormatError(f"{path}['policy']: {linear_key}.weight reads {linear.shape[1]} inputs, not a "
                                  f"whole number of {conv.shape[0]}-channel map cells")
    hidden = linear.shape[0]
    gru = {k.split(".", 1)[1]: policy[k].float() for k in _GRU}
    if any(tuple(gru[k].shape) != (3 * hidden, hidden) for k in ("weight_ih_l0", "weight_hh_l0")):
        raise OfficialFormatError(f"{path}['policy']: the GRU is not {hidden} -> {hidden} as its encoder "
                                  f"(weight_ih_l0 {tuple(gru['weight_ih_l0'].shape)})")
    actor, actor_bias = policy["actor.0.weight"].float(), policy["actor.0.bias"].float()
    if continuous:
        if actor.shape[0] != 2:
            raise OfficialFormatError(f"{path}['policy']: actor.0 gives {actor.shape[0]} outputs; the clip-level "
                                      "pi places one corner (2 outputs, their ppo_continuous.py)")
        actor, actor_bias = actor[[1, 0]], actor_bias[[1, 0]]  # their (row, column) -> our (x, y)
        notes.append("pi's actor rows swapped: their (row, column) corner fractions -> our (x, y)")
    else:
        grid = math.isqrt(actor.shape[0])
        if grid * grid != actor.shape[0] or grid < 2:
            raise OfficialFormatError(f"{path}['policy']: actor.0 gives {actor.shape[0]} actions, not a square grid")
    return PolicyWeights(conv, conv_bias, linear, linear_bias, gru, actor, actor_bias,
                         policy["critic.0.weight"].float(), policy["critic.0.bias"].float(), batch_norm, notes)


def load_policy_weights(sb3_policy: nn.Module, weights: PolicyWeights) -> None:
    """Put ``weights`` into a ``paper_ppo`` policy (:class:`~adafocus.agents.recurrent.FocusRecurrentPolicy`):
    extractor conv and linear, ``lstm_actor.gru``, ``action_net``, ``value_net``. The linear layer's columns
    for inputs the authors' pi does not have (the env's ``progress`` t / T) are zero, so they change nothing."""
    extractor = sb3_policy.features_extractor
    conv, linear = extractor.conv[0], extractor.fuse[0]
    if not isinstance(conv, nn.Conv2d):
        raise ValueError("pi's extractor starts with a normalisation layer: convert with policy.glance_norm false")
    used = weights.linear.shape[1]
    if tuple(conv.weight.shape) != tuple(weights.conv.shape) or linear.weight.shape[0] != weights.hidden \
            or linear.weight.shape[1] < used:
        raise ValueError(f"pi's layers do not fit the official weights: conv {tuple(conv.weight.shape)} vs "
                         f"{tuple(weights.conv.shape)}, linear {tuple(linear.weight.shape)} vs "
                         f"{tuple(weights.linear.shape)}")
    with torch.no_grad():
        conv.weight.copy_(weights.conv)
        conv.bias.copy_(weights.conv_bias)
        linear.weight.zero_()
        linear.weight[:, :used].copy_(weights.linear)  # the flattened map comes first, extra inputs after it
        linear.bias.copy_(weights.linear_bias)
        gru = sb3_policy.lstm_actor.gru
        for name, value in weights.gru.items():
            getattr(gru, name).copy_(value)
        sb3_policy.action_net.weight.copy_(weights.actor)
        sb3_policy.action_net.bias.copy_(weights.actor_bias)
        sb3_policy.value_net.weight.copy_(weights.critic)
        sb3_policy.value_net.bias.copy_(weights.critic_bias)


# ---- the run folder -----------------------------------------------------------------------------------
@dataclass
class Conversion:
    """What :func:`convert_official` wrote and how."""

    out: Path
    config: RunConfig
    files: OfficialFiles
    digests: dict[str, str]
    stages: list[str]
    notes: list[str]


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def _number(value: Any) -> Any:
    """An epoch or accuracy from an official file as a JSON number (they are tensors or numpy scalars)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (int, float)) or value is None else str(value)


def run_config(dataset: str, patch: int, policy: PolicyWeights, fc: Mapping[str, torch.Tensor], frame_size: int,
               action_std: float, data: Mapping[str, str | None] | None = None) -> tuple[RunConfig, list[str]]:
    """The preset's config with what the official files fix: the patch P, f_C's and pi's widths, the grid,
    the glance frames (from pi's input channels); encoders built without ImageNet weights (every weight comes
    from the files); pi as the authors' (``paper_ppo`` without the glance normalisation, observing no f_C state;
    Section 4.2: their corner parameterisation, a sigmoid mean). Returns the config and notes on each change."""
    spec = _dataset(dataset)
    base = preset(spec.preset)
    notes = []
    model = replace(base.model, patch_size=patch, frame_size=frame_size, global_size=frame_size,
                    global_encoder=replace(base.model.global_encoder, weights=None),
                    local_encoder=replace(base.model.local_encoder, weights=None))
    classes = fc["weight" if spec.clip else "fc.weight"].shape[0]
    if classes != base.model.num_classes:
        raise OfficialFormatError(f"the checkpoint's f_C has {classes} classes, but {dataset} has "
                                  f"{base.model.num_classes} (is --dataset right?)")
    env, pol = base.env, base.policy
    if spec.clip:
        glance_channels = 1280  # MobileNet-V2's last_channel
        if policy.in_channels % glance_channels:
            raise OfficialFormatError(f"pi's conv reads {policy.in_channels} channels, not a whole number of f_G's "
                                      f"{glance_channels}-channel maps")
        frames = policy.in_channels // glance_channels
        if frames != model.glance_frames:
            notes.append(f"model.glance_frames {model.glance_frames} -> {frames} (pi reads {frames} f_G maps)")
        model = replace(model, glance_frames=frames)
        env = replace(env, action="continuous", continuous="corner")
        if base.env.continuous != "corner":
            notes.append(f"env.continuous {base.env.continuous!r} -> 'corner' (their pi gives the corner's "
                         "fraction of S - P: floor(sigmoid * (S - P)))")
        pol = replace(pol, action_std=action_std)
        notes.append(f"policy.action_std {base.policy.action_std} -> {action_std} (a sigmoid mean, as theirs; "
                     "evaluation uses the mean only)")
    else:
        hidden = fc["gru.weight_hh_l0"].shape[1]
        if hidden != model.hidden_size:
            notes.append(f"model.hidden_size {model.hidden_size} -> {hidden} (f_C's GRU in the file)")
        model = replace(model, hidden_size=hidden)
        grid = math.isqrt(policy.actor.shape[0])
        if grid != env.grid:
            notes.append(f"env.grid {env.grid} -> {grid} ({policy.actor.shape[0]} actions in the file)")
        env = replace(env, action="grid", grid=grid)
    if env.observe_memory:
        notes.append("env.observe_memory true -> false (their pi reads f_G's map only; its memory is its own GRU)")
    env = replace(env, observe_memory=False)
    for name, old, new in (("policy.algo", pol.algo, "paper_ppo"), ("policy.glance_norm", pol.glance_norm, False),
                           ("policy.conv_channels", pol.conv_channels, policy.conv_channels),
                           ("policy.features_dim", pol.features_dim, policy.hidden)):
        if old != new:
            notes.append(f"{name} {old!r} -> {new!r} (the authors' pi)")
    pol = replace(pol, algo="paper_ppo", glance_norm=False, conv_channels=policy.conv_channels,
                  features_dim=policy.hidden)
    data_config = replace(base.data, list_format=spec.list_format,
                          **{k: v for k, v in (data or {}).items() if v is not None})
    if (data_config.train_list is None) != (data_config.val_list is None):
        raise ValueError("give the data lists together: --train-list needs a --val-list and the other way round")
    return replace(base, model=model, env=env, policy=pol, data=data_config), notes


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


def _finish(folder: Path, config: RunConfig, inputs: dict[str, str], converted: dict[str, Any],
            outputs: list[str]) -> None:
    """``stage.json`` for a converted stage folder, as :func:`adafocus.provenance.finish_stage` writes it.

    The record is a stage record (:func:`adafocus.provenance.stage_record`: the stage's config fields, no data
    list, the official files as its inputs by sha256) plus ``converted``: no command reproduces the stage, so
    a training command that would write it finds a different record and refuses to reuse or overwrite it.
    """
    record = {"stage": folder.name, "fields": provenance.stage_fields(config, folder.name),
              "data": {"label_file": None, "train_list": None, "val_list": None},
              "inputs": {name: {"sha256": digest} for name, digest in sorted(inputs.items())},
              "converted": converted}
    provenance.finish_stage(folder, record, [folder / name for name in outputs])


def _untrained(weights: Mapping[str, torch.Tensor], filled: list[str]) -> list[str]:
    """Our top-level modules with a tensor no official file gave (BatchNorm's step counters aside)."""
    done = set(filled)
    return sorted({key.split(".")[0] for key in weights if key not in done and not key.endswith("num_batches_tracked")})


def _check_frame_size(model: Model, weights: PolicyWeights, frame_size: int) -> None:
    """pi's linear layer fixes f_G's map size, hence the frame size (their glance_size, 224 in every release)."""
    with torch.no_grad():
        side = model.global_encoder.forward_map(torch.zeros(1, 3, frame_size, frame_size),
                                                1 if model.global_encoder.temporal else None).shape[-1]
    if side * side != weights.map_cells:
        raise OfficialFormatError(f"pi's encoder reads a map of {weights.map_cells} cells, but f_G gives "
                                  f"{side}x{side} on {frame_size}x{frame_size} frames: pass the --frame-size the "
                                  "checkpoint was trained with (their glance_size)")


def convert_official(dataset: str, patch: int, out: Path, files: OfficialFiles, frame_size: int = 224,
                     action_std: float = DEFAULT_ACTION_STD,
                     data: Mapping[str, str | None] | None = None) -> Conversion:
    """Write the run folder ``out`` from the authors' ``files`` (see :func:`find_files`).

    f_G, f_L and f_C go to ``stage3/checkpoint.pt``, pi to ``policy/policy.zip`` (a ``paper_ppo`` agent) with
    ``policy.json``, the warm-up pair (if any) to ``warmup/checkpoint.pt``; ``config.json`` is the dataset's
    preset with what the files fix (:func:`run_config`). The folder is built beside ``out`` and renamed into
    place at the end (``out`` must not exist, or be empty); every file in it is written to a temporary name
    first. ``data``: ``train_list``, ``val_list``, ``data_root``, ``label_file`` for the config (evaluation
    needs the lists).
    """
    spec = _dataset(dataset)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty: choose a new --out or remove it")
    notes: list[str] = []
    state = load_official(files.checkpoint)
    check_top_keys(state, files.checkpoint, ("glancer", "focuser", "fc", "policy"), STAGE_KEYS,
                   "the authors' stage checkpoint (main_dist.py / stage2.py / stage3.py save_checkpoint)")
    if state["policy"] is None:
        raise OfficialFormatError(f"{files.checkpoint}: holds no policy ('policy' is None: a stage-I checkpoint, "
                                  "trained with random patches); convert the stage-III file "
                                  f"({release_names(dataset, patch)['checkpoint']})")
    policy = policy_weights(_sub_dict(state, "policy", files.checkpoint), files.checkpoint, spec.clip)
    notes += policy.notes
    fc = _sub_dict(state, "fc", files.checkpoint)
    config, config_notes = run_config(dataset, patch, policy, fc, frame_size, action_std, data)
    notes += config_notes
    if not spec.clip:
        notes.append("pi's linear layer takes one more input here (the env's progress t / T): its column is zero")

    model = build_model(config, None)  # parts no file holds keep the run's seeded initialisation
    _check_frame_size(model, policy, frame_size)
    weights = model.state_dict()
    parts = encoder_parts(model, "clip" if spec.clip else "frame")
    filled = []
    for entry, what in (("glancer", "f_G (their Glancer)"), ("focuser", "f_L (their Focuser)")):
        # their Section 4.1 Focuser also holds pi's two copies, policy.policy.* and policy.policy_old.*; the
        # evaluation runs the 'policy' entry (loaded into both), so they are not read
        copies = entry == "focuser" and not spec.clip
        ignore = (lambda key: key.startswith("policy.")) if copies else (lambda key: False)
        filled += fill_state(weights, _sub_dict(state, entry, files.checkpoint), parts[entry], files.checkpoint,
                             f"['{entry}']", f"the authors' {what} for {dataset}", ignore)
    filled += fill_state(weights, fc, classifier_parts(spec.clip), files.checkpoint, "['fc']",
                         f"the authors' f_C for {dataset}")
    model.load_state_dict(weights)
    untrained = _untrained(weights, filled)
    if untrained:
        notes.append("not in the official files, kept at the run's seeded initialisation: " + ", ".join(untrained))

    digests = {"checkpoint": provenance.file_digest(files.checkpoint)}
    source = {"from": "official", "repository": REPOSITORY, "dataset": dataset, "patch_size": patch,
              "files": {"checkpoint": {"name": files.checkpoint.name, "sha256": digests["checkpoint"]}},
              "official": {k: _number(state.get(k)) for k in ("epoch", "acc", "best_acc")},
              "untrained": untrained}
    del state  # the official tensors are in the model now

    tmp = out.parent / f".{out.name}.converting{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        stages = ["stage3", "policy"]
        save_atomic({"model": model.state_dict(), "config": to_dict(config), "converted": source},
                    tmp / "stage3" / "checkpoint.pt")
        _write_policy(config, model, policy, tmp / "policy" / "policy.zip")
        inputs = {"official_checkpoint": digests["checkpoint"]}
        _finish(tmp / "stage3", config, inputs, {**source, "notes": notes}, ["checkpoint.pt"])
        _finish(tmp / "policy", config, inputs, {**source, "notes": notes}, ["policy.zip", "policy.json"])
        if files.warmup_glancer is not None and files.warmup_focuser is not None:
            warm = _write_warmup(config, files, tmp / "warmup" / "checkpoint.pt", spec.clip, dataset)
            warm_digests = {role: entry["sha256"] for role, entry in warm["files"].items()}
            digests.update(warm_digests)
            _finish(tmp / "warmup", config, {f"official_{role}": d for role, d in warm_digests.items()}, warm,
                    ["checkpoint.pt"])
            stages.insert(0, "warmup")
        _write_json(tmp / "config.json", to_dict(config))
        if out.exists():
            out.rmdir()  # empty (checked above): the rename puts the whole folder in its place
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Conversion(out, config, files, digests, stages, notes)


def _write_policy(config: RunConfig, model: Model, weights: PolicyWeights, path: Path) -> None:
    """pi as the SB3 agent stage II would save: the algorithm built as :func:`~adafocus.pipeline.run_policy`
    builds it (same env spaces and settings), the official weights put in, saved with its env settings."""
    requested = "continuous" if clip_level(config) else (config.env.action if config.env.action != "grid" else None)
    env_config = replace(config.env, action=action_kind(config.policy.algo, requested))
    episodes = make_episodes(model, None, env_config, "cpu", num_frames=config.data.frames)
    vec = AdaFocusVecEnv(episodes, config.policy.n_envs, seed=config.seed)
    algo = make_algorithm(config.policy.algo, VecMonitor(vec), config.policy, episodes.num_steps, config.seed, "cpu")
    load_policy_weights(algo.policy, weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_agent(algo, path, {**to_dict(config), "env": to_dict(env_config)})


def _write_warmup(config: RunConfig, files: OfficialFiles, path: Path, clip: bool,
                  dataset: str) -> dict[str, Any]:
    """The warm-up stage: f_G with its frame head from the glancer file, f_L with its head from the focuser
    file (Section 4.1: ``glancer`` of globalcnn.pth.tar, ``focuser`` of localcnn.pth.tar; Section 4.2: TSM's
    ``state_dict`` of mobilenetv2_segment8 / resnet50_segment12). Returns the record's ``converted`` part."""
    assert files.warmup_glancer is not None and files.warmup_focuser is not None
    model = build_model(config, None)  # parts no file holds keep the run's seeded initialisation
    weights = model.state_dict()
    parts = encoder_parts(model, "tsm" if clip else "frame")
    filled, described = [], {}
    for role, path_in in (("glancer", files.warmup_glancer), ("focuser", files.warmup_focuser)):
        state = load_official(path_in)
        entry = "state_dict" if clip else role
        if clip:
            check_top_keys(state, path_in, (entry,), TSM_KEYS, "TSM's training checkpoint (main.py)")
        else:
            check_top_keys(state, path_in, (entry,), STAGE_KEYS, "the authors' warm-up checkpoint (main_dist.py)")
        filled += fill_state(weights, _sub_dict(state, entry, path_in), parts[role], path_in, f"['{entry}']",
                             f"the authors' warm-up {'f_G' if role == 'glancer' else 'f_L'} for {dataset}")
        reported = {k: _number(state[k]) for k in ("epoch", "acc", "best_acc", "best_prec1") if k in state}
        described[f"warmup_{role}"] = {"name": path_in.name, "sha256": provenance.file_digest(path_in),
                                       "official": reported}
    model.load_state_dict(weights)
    untrained = _untrained(weights, filled)
    source = {"from": "official", "repository": REPOSITORY, "dataset": dataset, "files": described,
              "untrained": untrained}
    save_atomic({"model": model.state_dict(), "config": to_dict(config), "converted": source}, path)
    return source
