"""Run configuration: frozen dataclasses holding the paper's values, one named preset per setting.

Every field can be overridden from the command line (see :mod:`adafocus.cli`); nothing else holds defaults.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any

from adafocus.agents.config import PolicyConfig
from adafocus.backbones import EncoderSpec, ModelConfig
from adafocus.data.synthetic import SyntheticConfig
from adafocus.envs import EnvConfig


@dataclass(frozen=True)
class DataConfig:
    """Which videos, and how they are sampled. ``train_list = None`` means the embedded synthetic benchmark."""

    train_list: str | None = None
    """training list file (None: the synthetic benchmark, generated on first use)"""
    val_list: str | None = None
    """validation list file"""
    data_root: str | None = None
    """folder the lists' paths are relative to"""
    annotation_root: str | None = None
    """folder of per-video target boxes (the synthetic benchmark's), for the hit rate and the oracle patch"""
    list_format: str = "auto"
    """the list format: "video" (path label), "frames" (dir num_frames label), "auto" (either, by the first
    line); the datasets' own annotation files "sthv1", "sthv2", "jester" (with ``label_file``); or the AdaFocus authors' lists:
    "activitynet" / "fcvid" (dir,num_frames,label[,label...], multi-label; FCVID's mAP counts every label) and
    "minikinetics" (dir num_frames label), which drop entries of fewer than 3 frames as the authors' loader does"""
    label_file: str | None = None
    """labels file of sthv1 / sthv2 / jester (something-something-v1-labels.csv, ...)"""
    decoder: str = "decord"
    """video decoder: "decord" (PyAV takes over for the files decord cannot read) or "pyav" (PyAV for every file)"""
    image_template: str | None = None
    """frame-folder file names; None: the format's ("{:05d}.jpg" for sthv1 / jester, "image_{:05d}.jpg" for
    activitynet / fcvid / minikinetics, else "img_{:05d}.jpg")"""
    frames: int = 16
    """T: frames per video, one per equal segment (TSN sampling)"""
    augment: bool = True
    """multi-scale crop (and flip) in training"""
    flip: bool = True
    """horizontal flip in training (off for Something-Something and Jester: flipping changes their labels)"""
    workers: int = 4
    """DataLoader worker processes"""
    skip_corrupt: bool = False
    """count and report unreadable videos instead of stopping at the first"""
    short_videos: str = "repeat"
    """a video shorter than T: "repeat" its last frame (the authors' loader), "first" (their Something-Something
    loader: the first frame T times) or "refuse" (stop with an error)"""
    cache_videos: bool = False
    """keep decoded videos in memory across epochs (small sets; workers = 0)"""
    stream: bool = True
    """stages II, III and the evaluation decode videos as they use them; false: decode a split once into memory
    (test-mode clips; small sets only, refused up front when it would not fit)"""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    """the synthetic benchmark's size and difficulty (used when ``train_list`` is None)"""


@dataclass(frozen=True)
class StageConfig:
    """One supervised stage: SGD with Nesterov momentum 0.9, cosine annealing, batch 64, weight decay 1e-4.
    A zero learning rate freezes that part of the network."""

    epochs: int = 50
    """passes over the training videos"""
    lr_global: float = 0.0
    """learning rate of f_G (trained in the warm-up only)"""
    lr_local: float = 5e-4
    """learning rate of f_L"""
    lr_classifier: float = 0.05
    """learning rate of f_C and the heads"""
    batch_size: int = 64
    """videos per batch (over all processes)"""
    momentum: float = 0.9
    """SGD's Nesterov momentum"""
    weight_decay: float = 1e-4
    """SGD's weight decay"""
    patches: str = "random"
    """where stage I's patches go: "random" (the paper), or "oracle" / "center" / "none" (global-only) for the
    benchmark's reference classifiers, "full" for TSM+ (whole frames)"""
    frames: int | None = None
    """frames per video in this stage (None: the data's T); the CPU warm-up reads fewer"""
    dropout: float | None = None
    """this stage's dropout rate in every dropout layer, put back when the stage ends (None: the model's)"""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; ``preset`` names the starting point it was derived from."""

    preset: str = "synthetic"
    """the preset the run started from"""
    model: ModelConfig = field(default_factory=ModelConfig)
    """the networks: f_G, f_L, f_C and their sizes"""
    data: DataConfig = field(default_factory=DataConfig)
    """the videos and their sampling"""
    warmup: StageConfig = field(default_factory=lambda: StageConfig(epochs=15, lr_global=0.01, lr_local=0.01, lr_classifier=0.01))
    """stage 0: f_G and f_L trained on whole frames"""
    stage1: StageConfig = field(default_factory=StageConfig)
    """stage I: f_L and f_C on random patches"""
    stage3: StageConfig = field(default_factory=lambda: StageConfig(epochs=10, lr_local=0.0, lr_classifier=5e-3))
    """stage III: f_C fine-tuned under the learned pi"""
    env: EnvConfig = field(default_factory=EnvConfig)
    """the RL episode: actions, reward, observation"""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """stage II: pi's algorithm and hyper-parameters"""
    seed: int = 0
    """seeds every stage (a CPU run is deterministic for a seed and a thread count)"""
    device: str = "auto"
    """the device: "auto" (CUDA when there is one), "cpu" or "cuda[:N]" (a device index)"""


def _activitynet() -> RunConfig:
    """Section 4.1, ActivityNet v1.3 / FCVID: mAP; stage III lr 5e-3; the paper's pi (its own GRU over f_G's
    maps, no f_C state in its observation, no normalisation of the map) trained by PPO as the authors update
    it (``paper_ppo``: normalised returns, no gradient clipping, Adam eps 1e-8)."""
    return RunConfig(preset="activitynet", model=ModelConfig(num_classes=200),
                     policy=PolicyConfig(algo="paper_ppo", glance_norm=False), env=EnvConfig(observe_memory=False),
                     data=DataConfig(list_format="activitynet"))


def _fcvid() -> RunConfig:
    base = _activitynet()
    return replace(base, preset="fcvid", model=ModelConfig(num_classes=239), data=replace(base.data, list_format="fcvid"))


def _minikinetics() -> RunConfig:
    """Section 4.1, Mini-Kinetics: stage III lr 5e-4."""
    base = _activitynet()
    return replace(base, preset="minikinetics", stage3=replace(base.stage3, lr_classifier=5e-4),
                   data=replace(base.data, list_format="minikinetics"))


def _sthsth() -> RunConfig:
    """Section 4.2, Something-Something V1/V2 (174 classes, top-1): clip-level AdaFocus on TSM backbones.

    f_G TSM-MobileNet-V2 on 8 glance frames, f_L TSM-ResNet-50 on 12 patches of P = 144 at one place per clip
    ("8+12"), f_C linear; the warm-up trains both as TSM models on whole frames (the TSM recipe: 50 epochs,
    lr 0.01); pi continuous as the authors parameterise it (one patch per clip: its top-left corner as a
    fraction of S - P, a sigmoid mean with a fixed std of 0.25, samples clipped); no horizontal flip (it changes these
    datasets' labels); the V1 annotation files (``--data.list_format sthv2`` for V2). The TSM+ baseline is the
    same run's ``tsm_plus`` stage (on stage I's settings).

    As the authors' Something-Something code runs it (``Experiments on Something-Something V1&V2``):
    the 8 glance and the 12 focus frames are two independent TSN samplings of the whole video
    (``ops/dataset.py``; random offset per segment in training, segment centres at validation), and a video
    too short for the segments is read as its first frame repeated (``short_videos="first"``); stage I
    (``train_stage1.sh``): 10 epochs, batch 64, 1e-5 (f_L) / 0.01 (f_C), dropout 0.5; stage III
    (``train_stage3.sh``): 10 epochs, batch 32, f_L frozen (backbone_lr 0), 5e-4 for f_C (fc_lr), dropout 0.
    Their ``adjust_learning_rate`` (``basic_tools/utils.py``) sets only the optimizer's first two groups:
    backbone_lr on f_L's first conv and fc_lr on f_L's (empty) first-conv-bias group, leaving f_L's other groups
    and f_C's at SGD's lr 0; here backbone_lr trains f_L and fc_lr f_C, as the names and their "FC LR" log
    line (the last group's lr) mean them.
    """
    base = _activitynet()
    tsm = 1 / 8  # TSM's shift: 1/8 of the channels each way
    model = ModelConfig(global_encoder=EncoderSpec("mobilenet_v2", "imagenet", shift=tsm),
                        local_encoder=EncoderSpec("resnet50", "imagenet", shift=tsm),
                        num_classes=174, patch_size=144, glance_frames=8)
    return replace(base, preset="sthsth", model=model,
                   data=replace(base.data, frames=12, flip=False, list_format="sthv1", short_videos="first"),
                   warmup=StageConfig(epochs=50, lr_global=0.01, lr_local=0.01, lr_classifier=0.01),
                   stage1=replace(base.stage1, epochs=10, lr_local=1e-5, lr_classifier=0.01, dropout=0.5),
                   stage3=replace(base.stage3, lr_local=0.0, lr_classifier=5e-4, batch_size=32, dropout=0.0),
                   env=replace(base.env, action="continuous", continuous="corner"),
                   policy=replace(base.policy, conv_channels=64, action_std=0.25))  # their continuous pi: 64 channels


def _jester() -> RunConfig:
    """Section 4.2's setting on Jester (27 hand gestures; flipping also changes its labels)."""
    base = _sthsth()
    return replace(base, preset="jester", model=replace(base.model, num_classes=27),
                   data=replace(base.data, list_format="jester"))


def _synthetic() -> RunConfig:
    """The embedded synthetic benchmark on a 2-core CPU: tiny backbones, 112x112 frames, minutes per run.

    f_G: MobileNet-V3-small cut after 4 blocks (stride 8) on the frame halved to 56x56, giving a 24x7x7 map
    like the paper's 7x7; f_L: ResNet-18 on a 32x32 patch at full resolution; T = 8 of 16 frames.
    No ImageNet weights exist offline, so f_G keeps its random initialisation: the benchmark makes the
    class unreadable at f_G's resolution, so a whole-frame warm-up cannot teach f_G the class, and it would
    erase the spatial information pi needs (lr_global 0). pi observes the glance without f_C's state (every
    frame shows the target), and the warm-up's lr is 0.02, where 0.05 can blow up; the README gives the
    measurements behind each choice.
    """
    syn = SyntheticConfig()
    model = ModelConfig(global_encoder=EncoderSpec("mobilenet_v3_small", None, blocks=4),
                        local_encoder=EncoderSpec("resnet18", None), num_classes=syn.num_classes,
                        frame_size=syn.frame_size, global_size=syn.frame_size // 2, patch_size=32,
                        hidden_size=128, dropout=0.2)
    data = DataConfig(frames=8, augment=False, flip=False, workers=0, cache_videos=True, synthetic=syn)
    return RunConfig(
        preset="synthetic", model=model, data=data,
        warmup=StageConfig(epochs=3, lr_global=0.0, lr_local=0.02, lr_classifier=0.02, batch_size=16, frames=4),
        stage1=StageConfig(epochs=24, lr_local=0.05, lr_classifier=0.05, batch_size=16),
        stage3=StageConfig(epochs=3, lr_local=0.0, lr_classifier=0.01, batch_size=32),
        env=EnvConfig(observe_memory=False),
        policy=PolicyConfig(epochs=16, n_envs=64, videos_per_update=64, n_epochs=4, minibatches=4, learning_rate=1e-3,
                            features_dim=256, ent_coef=0.01),
    )


def _synthetic_temporal() -> RunConfig:
    """The synthetic benchmark's temporal-redundancy variant: the target shows (with its class detail) in only
    4 of the 16 frames (aligned pairs), so 2 of the 8 sampled frames carry the class, and is absent from the
    others, which f_G can see; everything else as ``synthetic``
    but stage I, whose patches follow the annotated target (``oracle``): with random patches few training
    patches show readable detail and stage I stays at chance (README). pi is still learned by PPO in stage II;
    this variant's subject is which frames to read. Its warm-up uses lr 0.05, which learns here.
    """
    base = _synthetic()
    base = replace(base, warmup=replace(base.warmup, lr_local=0.05, lr_classifier=0.05))
    return replace(base, preset="synthetic_temporal",
                   data=replace(base.data, synthetic=replace(base.data.synthetic, readable_frames=4, unreadable="absent")),
                   stage1=replace(base.stage1, patches="oracle"))


def _synthetic_tsm() -> RunConfig:
    """Section 4.2 on the CPU: clip-level AdaFocus with TSM backbones, where reading more frames pays.

    The class (the target's texture) shows in 4 of the 16 frames, two aligned pairs; in the others the target
    is drawn flat, which f_G cannot tell apart. f_L's 8 focus frames (TSN segments of 2) always hold both
    pairs; TSM+'s 4 whole frames (segments of 4, read at frames 2, 6, 10 and 14 in test) miss both in 6 of
    the 28 placements. That is the paper's trade, 12 patch frames against TSM+'s 8 whole frames, at 0.61x
    TSM+'s GFLOPs here (paper: 0.67x). No distractors: with four, which keep their textures in every frame,
    neither the warm-up nor stage I learned. The target (24 px) moves 1 px per frame, so one 64 x 64 patch
    per clip holds it. "4+8" frames (as in ``sthsth``, two independent TSN samplings of the 16 frames), the
    ``synthetic`` backbones with 1/8 of the channels shifted each way, no flip. pi is the authors' continuous
    pi (``paper_ppo``, the corner as a fraction of S - P, fixed std 0.25), which learned where SB3's Gaussian
    over centres did not. The motion variant (``drift``) was this preset's data before: no model learned
    its drift direction (README).
    As in ``synthetic``, f_G keeps its random initialisation, so f_G's head is untrained and its averaged
    logits are a near-constant bias in f_C. Stage I places the patch on the annotated target (``oracle``);
    pi is learned in stage II.
    """
    base = _synthetic()
    syn = replace(base.data.synthetic, speed=1.0, distractors=0, readable_frames=4, unreadable="flat")
    tsm = 1 / 8
    model = replace(base.model, global_encoder=replace(base.model.global_encoder, shift=tsm),
                    local_encoder=replace(base.model.local_encoder, shift=tsm), patch_size=64, glance_frames=4)
    return replace(base, preset="synthetic_tsm", model=model, data=replace(base.data, synthetic=syn),
                   stage1=replace(base.stage1, epochs=8, patches="oracle"),
                   env=EnvConfig(action="continuous", continuous="corner", observe_memory=False),
                   policy=replace(base.policy, algo="paper_ppo", action_std=0.25, epochs=16))


PRESETS = {"synthetic": _synthetic, "synthetic_temporal": _synthetic_temporal, "synthetic_tsm": _synthetic_tsm,
           "jester": _jester, "activitynet": _activitynet, "fcvid": _fcvid,
           "minikinetics": _minikinetics, "sthsth": _sthsth}


def preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def to_dict(config: Any) -> dict[str, Any]:
    return asdict(config)


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a (nested) frozen dataclass from :func:`to_dict`'s output."""
    kwargs = {}
    for f in fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        kwargs[f.name] = from_dict(type(default), value) if is_dataclass(default) and isinstance(value, dict) else value
    return cls(**kwargs)
