"""What is in a video file, and where AdaFocus looked: a trained run applied to videos it has never seen.

:class:`Recognizer` loads a run folder (its model checkpoint and learned policy pi) and plays one AdaFocus
episode on a video file, as the run's test mode plays it on a validation video:

* T frames are sampled, one at the centre of each of T equal segments (TSN test sampling,
  :func:`~adafocus.data.sampling.sample_indices`); a clip-level run (Section 4.2) samples G glance frames for f_G
  and T focus frames for f_L, independently (:func:`~adafocus.data.sampling.sample_clip_indices`);
* the frames are brought to the model's S x S input by the run's test transform (short side resized to
  S * 256 / 224, centre crop; :func:`~adafocus.data.transforms.video_transform`);
* at step t f_G glances at frame t, pi places a P x P patch, f_L reads it at full resolution and the recurrent
  f_C predicts (clip level: one patch for the whole clip, one step). With an early-exit ``threshold`` the video
  stops at the first step whose top softmax score exceeds it (:func:`~adafocus.evaluation.exit_steps`).

Compute is counted as the evaluation counts it: every step taken costs f_G + f_L + f_C + pi
(:func:`~adafocus.models.model_cost`, :func:`~adafocus.agents.policy_gmacs`), so a video that exits after
k of T steps costs k steps (multiply-accumulates, reported as GFLOPs as in the paper).

With ``window`` a long video is also cut into windows of consecutive frames, each classified as a video of
its own, giving a timeline. Videos are decoded with decord, and with PyAV where decord cannot read them.

    python experiments/predict.py --run runs/synthetic video.mp4
    python experiments/predict.py --run runs/synthetic --threshold 0.9 --window long.mp4
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adafocus.agents import CenterAgent, FocusAgent, policy_gmacs
from adafocus.backbones import ClipFocusModel
from adafocus.data.clips import ClipSet
from adafocus.data.decoding import count_frames, decode_frames, frame_rate
from adafocus.data.records import VideoDataError
from adafocus.data.sampling import sample_clip_indices, sample_indices
from adafocus.data.something import ANNOTATION_FORMATS, read_label_names
from adafocus.data.transforms import video_transform
from adafocus.envs import EnvConfig
from adafocus.envs.episodes import EpisodeBatch

from . import plotting
from .config import RunConfig
from .evaluation import exit_steps, play
from .models import Model, build_model, make_episodes, model_cost
from .run_folder import load_policy, open_run, policy_env_config
from .training import resolve_device

logger = logging.getLogger(__name__)

TOP_K = 5
WINDOW_BATCH = 8  # windows decoded and played together: bounds the decoded frames held at the source resolution


class PredictionError(RuntimeError):
    """A run that cannot predict (no model, an unreadable policy, bad class names): the message names the file."""


@dataclass(frozen=True, kw_only=True)
class ClipPrediction:
    """AdaFocus on one clip of a video: the whole video, or one window of it.

    ``classes`` / ``class_indices`` / ``probabilities``: the top-5 classes at the step the episode stopped at,
    most probable first (softmax of f_C's logits). ``steps`` of ``max_steps`` were taken (T per frame, 1 per
    clip at clip level); ``gflops`` is what they cost. ``corners``: the (x, y) top-left corner of the P x P
    patch in the model's S x S input at every step taken. ``frame_indices``: the 0-based video frames f_L read,
    one per step taken (clip level: all T focus frames, and ``glance_frame_indices`` the G frames f_G read).
    The clip was sampled from frames ``first_frame`` .. ``last_frame`` (inclusive), which span ``start_seconds``
    to ``end_seconds`` of the video when its frame rate is known.
    """

    classes: tuple[str, ...]
    class_indices: tuple[int, ...]
    probabilities: tuple[float, ...]
    steps: int
    max_steps: int
    gflops: float
    corners: tuple[tuple[int, int], ...]
    frame_indices: tuple[int, ...]
    glance_frame_indices: tuple[int, ...] = ()
    first_frame: int
    last_frame: int
    start_seconds: float | None = None
    end_seconds: float | None = None

    @property
    def top1(self) -> str:
        return self.classes[0]

    @property
    def probability(self) -> float:
        return self.probabilities[0]


@dataclass(frozen=True, kw_only=True)
class VideoPrediction(ClipPrediction):
    """AdaFocus on a whole video file (the fields of :class:`ClipPrediction`), plus what the video is and
    how it was read: its frame count, rate and size (``height`` x ``width``), the decoder that read it, the
    policy that placed the patches (``learned``, or ``center`` for a run without one), the early-exit
    threshold, the windows' results (``windows``, when asked for, in video order) and the files written."""

    video: Path
    num_frames: int
    fps: float | None
    height: int
    width: int
    decoder: str
    policy: str
    threshold: float | None
    window_frames: int | None = None
    windows: tuple[ClipPrediction, ...] = ()
    files: dict[str, list[Path]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (paths as strings)."""
        values = asdict(self)
        values["video"] = str(self.video)
        values["files"] = {kind: [str(p) for p in paths] for kind, paths in self.files.items()}
        return values


@dataclass
class _VideoFile:
    """A video file with its decoder: decord where it can open and count the file, else PyAV; ``fps`` as the
    container states it (None when it states none)."""

    path: Path
    decoder: str
    num_frames: int
    fps: float | None

    @classmethod
    def open(cls, path: Path) -> "_VideoFile":
        if not path.exists():
            raise VideoDataError(f"{path}: video file not found")
        if not path.is_file():
            raise VideoDataError(f"{path}: not a video file")
        # PyAV reads the container's header first (quietly, and without decoding): a file that is no video
        # at all is reported from here, before decord, whose C++ log would add its own lines to stderr.
        fps = frame_rate(path, "pyav")
        try:
            return cls(path, "decord", count_frames(path, "decord"), fps)
        except (VideoDataError, ImportError) as error:
            # decord refuses some containers and codecs that FFmpeg (PyAV) reads
            logger.info("decord cannot read %s (%s); decoding it with PyAV", path, error)
        return cls(path, "pyav", count_frames(path, "pyav"), fps)

    def decode(self, indices: np.ndarray) -> torch.Tensor:
        """uint8 (N, 3, H, W) frames at ``indices``."""
        try:
            return decode_frames(self.path, indices, self.decoder)
        except VideoDataError:
            if self.decoder != "decord":
                raise
            # decord opened and counted the file but cannot decode it: PyAV reads on, or says where it breaks
            self.decoder = "pyav"
            return decode_frames(self.path, indices, "pyav")

    def seconds(self, frame: int) -> float | None:
        return None if self.fps is None else frame / self.fps


def window_spans(num_frames: int, length: int) -> list[tuple[int, int]]:
    """(first frame, frame count) of each window of ``length`` consecutive frames along a video: back to back
    from frame 0, the last one ending with the video (so it may overlap the one before); a video of at most
    ``length`` frames is one window, the whole video."""
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    if num_frames <= length:
        return [(0, num_frames)]
    starts = list(range(0, num_frames - length + 1, length))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return [(start, length) for start in starts]


def read_class_names(path: str | Path) -> list[str]:
    """Class names in class-index order from a text file of one name per line (trailing blank lines ignored;
    a blank line in between or a repeated name is an error, since the line's position is the class index)."""
    return read_label_names(path, "jester")  # Jester's labels file is exactly this format


class Recognizer:
    """A trained AdaFocus run that classifies video files: :meth:`from_run`, then :meth:`predict`.

    ``model`` (f_G, f_L, f_C) and ``agent`` (pi) as the run trained them; ``env_config`` the env pi was
    trained in (its action space); ``class_names`` one name per class; ``policy`` names pi in the results;
    ``episodes``: the batched episodes pi acts in (built from the model and ``env_config`` when not given).
    """

    def __init__(self, config: RunConfig, model: Model, agent: FocusAgent, env_config: EnvConfig,
                 class_names: Sequence[str], device: torch.device | str = "cpu", policy: str = "learned",
                 episodes: EpisodeBatch | None = None) -> None:
        if len(class_names) != config.model.num_classes:
            raise PredictionError(f"{len(class_names)} class names for a model of {config.model.num_classes} classes")
        self.config = config
        self.model = model
        self.agent = agent
        self.class_names = list(class_names)
        self.policy = policy
        self.device = torch.device(device)
        self.frames = config.data.frames  # T
        self.glance_frames = model.glance_frames if isinstance(model, ClipFocusModel) else 0  # G (clip level) or 0
        self.frame_size = config.model.frame_size  # S
        self.patch_size = config.model.patch_size  # P
        self.episodes = episodes if episodes is not None else _episodes(model, env_config, self.device, self.frames)
        self.step_gmacs = model_cost(model, self.frames).total + policy_gmacs(agent, self.episodes.observation_space,
                                                                              self.device)
        self.transform = video_transform(train=False, frame_size=self.frame_size)
        # A run trained without a transform (the synthetic benchmark, whose videos are made at S x S) evaluates
        # its frames untouched: frames of that size are read the same way here, others go through the test transform.
        self.untransformed = not (config.data.augment or config.data.train_list is not None)

    @classmethod
    def from_run(cls, run: str | Path, class_names: str | Path | Sequence[str] | None = None,
                 device: str | None = None) -> "Recognizer":
        """The run folder's model (stage III's checkpoint, else stage I's) and learned policy (``policy.zip``;
        a run without one places the patch at the centre). ``class_names``: a file of one name per line, or
        the names; default: the dataset's labels file when the run's config names one, else "class 0", ...
        ``device``: overrides the run's (auto, cpu, cuda[:N])."""
        run = Path(run)
        try:
            files = open_run(run)
        except (FileNotFoundError, ValueError, OSError) as error:
            raise PredictionError(str(error)) from error
        config = replace(files.config, device=device) if device else files.config
        try:
            torch_device = resolve_device(config.device)
            model = build_model(config, files.checkpoint, torch_device)
        except (ValueError, FileNotFoundError) as error:
            raise PredictionError(str(error)) from error
        names = _class_names(config, class_names)
        if files.policy is None:
            logger.warning("%s has no learned policy (policy/policy.zip): the patch is placed at the centre", run)
            env_config = replace(config.env, action="continuous") if isinstance(model, ClipFocusModel) else config.env
            episodes = _episodes(model, env_config, torch_device, config.data.frames)
            return cls(config, model, CenterAgent(episodes.action_space), env_config, names, torch_device, "center",
                       episodes)
        try:
            env_config = policy_env_config(config, files.policy)
            episodes = _episodes(model, env_config, torch_device, config.data.frames)
            agent = load_policy(files.policy, episodes, torch_device, config)
        except (FileNotFoundError, ValueError, OSError) as error:  # PolicyFileError is a ValueError naming the file
            raise PredictionError(f"cannot load the learned policy: {_one_line(error)}") from error
        return cls(config, model, agent, env_config, names, torch_device, "learned", episodes)

    # ---- sampling and decoding -------------------------------------------------------------------------
    def _sample(self, available: int, short: str) -> np.ndarray:
        """0-based frames of a span of ``available`` frames, as the run's test mode samples a video: the T focus
        frames, or (clip level) G glance frames then T focus frames."""
        if self.glance_frames:
            return np.concatenate(sample_clip_indices(available, self.glance_frames, self.frames, False, short=short))
        return sample_indices(available, self.frames, False, short=short)

    def _clips(self, video: _VideoFile, spans: list[tuple[int, int]],
               short: str) -> tuple[ClipSet, np.ndarray, tuple[int, int]]:
        """The clips of ``spans`` (first frame, count) as the model reads them, uint8 (V, T', 3, S, S), their
        0-based frame indices (V, T') and the video's own frame size (H, W)."""
        try:
            indices = np.stack([start + self._sample(count, short) for start, count in spans])
        except ValueError as error:  # a video too short for the run's short-video rule, or one without frames
            raise VideoDataError(f"{video.path}: {error}") from None
        unique = np.unique(indices)  # each frame decoded once, in file order
        decoded = video.decode(unique)
        source_size = (int(decoded.shape[-2]), int(decoded.shape[-1]))
        clips = decoded[torch.from_numpy(np.searchsorted(unique, indices))]  # (V, T', 3, H, W)
        if not (self.untransformed and source_size == (self.frame_size, self.frame_size)):
            clips = torch.stack([self.transform(clip)[0] for clip in clips])
        return ClipSet(clips.contiguous(), torch.zeros(len(spans), dtype=torch.long)), indices, source_size

    # ---- prediction ------------------------------------------------------------------------------------
    def _play(self, clips: ClipSet) -> tuple[torch.Tensor, torch.Tensor]:
        """pi's episodes on the clips: f_C's logits after every step (V, steps, K), patch corners (V, steps, 2)."""
        self.episodes.load(clips)
        logits, corners = play(self.episodes, self.agent)
        return logits.float().cpu(), corners.cpu()

    def _result(self, logits: torch.Tensor, corners: torch.Tensor, indices: np.ndarray, span: tuple[int, int],
                video: _VideoFile, threshold: float | None) -> ClipPrediction:
        """One clip's prediction from its logits (steps, K), corners (steps, 2) and frame indices (G + T,)."""
        stop = logits.shape[0] - 1 if threshold is None else int(exit_steps(logits[None], threshold)[0])
        steps = stop + 1
        top = logits[stop].softmax(-1).topk(min(TOP_K, logits.shape[-1]))
        g = self.glance_frames
        focus = indices[g:] if g else indices[:steps]  # per frame: the frames of the steps taken
        first, count = span
        return ClipPrediction(
            classes=tuple(self.class_names[k] for k in top.indices.tolist()),
            class_indices=tuple(top.indices.tolist()), probabilities=tuple(top.values.tolist()),
            steps=steps, max_steps=logits.shape[0], gflops=steps * self.step_gmacs,
            corners=tuple((int(x), int(y)) for x, y in corners[:steps].tolist()),
            frame_indices=tuple(int(i) for i in focus), glance_frame_indices=tuple(int(i) for i in indices[:g]),
            first_frame=first, last_frame=first + count - 1,
            start_seconds=video.seconds(first), end_seconds=video.seconds(first + count))

    @torch.no_grad()
    def predict(self, video: str | Path, threshold: float | None = None, window: int | None = None,
                out: str | Path | None = None) -> VideoPrediction:
        """Classify one video file and say where the model looked.

        ``threshold``: early exit at the first step whose top softmax score exceeds it (None: all T steps).
        ``window``: also classify every window of that many consecutive frames (0: T frames, or G when larger
        at clip level), each sampled as a video of its own. ``out``: a folder to write the focus strip
        (``focus_strip.png`` / ``.svg``: each step's frame as the model saw it with the patch and the prediction),
        the episode GIF (``episode.gif``) and ``prediction.json``; None writes nothing.
        A missing, unreadable, corrupt or too short video raises :class:`~adafocus.data.records.VideoDataError`
        naming the file.
        """
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        source = _VideoFile.open(Path(video))
        whole = (0, source.num_frames)
        clips, indices, (height, width) = self._clips(source, [whole], self.config.data.short_videos)
        logits, corners = self._play(clips)
        clip = self._result(logits[0], corners[0], indices[0], whole, source, threshold)
        length, windows = None, ()
        if window is not None:
            length = window or max(self.frames, self.glance_frames)
            if length < self.frames:
                raise ValueError(f"windows of {length} frames are shorter than the run's T = {self.frames}")
            windows = tuple(self._windows(source, length, threshold))
        result = VideoPrediction(**{f.name: getattr(clip, f.name) for f in fields(ClipPrediction)},
                                 video=source.path, num_frames=source.num_frames, fps=source.fps, height=height,
                                 width=width, decoder=source.decoder, policy=self.policy, threshold=threshold,
                                 window_frames=length, windows=windows)
        if out is not None:
            result = replace(result, files=self._draw(result, clips, logits, corners, Path(out)))
        return result

    def _windows(self, video: _VideoFile, length: int, threshold: float | None) -> list[ClipPrediction]:
        spans = window_spans(video.num_frames, length)
        # A window of exactly T frames is read frame by frame ("repeat" reads a span of T frames so); the
        # run's own rule applies only when the whole video is one window, as for the whole-video result.
        short = self.config.data.short_videos if len(spans) == 1 else "repeat"
        results = []
        for i in range(0, len(spans), WINDOW_BATCH):
            batch = spans[i:i + WINDOW_BATCH]
            clips, indices, _ = self._clips(video, batch, short)
            logits, corners = self._play(clips)
            results += [self._result(logits[j], corners[j], indices[j], span, video, threshold)
                        for j, span in enumerate(batch)]
        return results

    def _draw(self, result: VideoPrediction, clips: ClipSet, logits: torch.Tensor, corners: torch.Tensor,
              out: Path) -> dict[str, list[Path]]:
        """The focus strip and the episode GIF on the frames the episode read, up to the step it stopped at."""
        frames = clips.frames[:, self.glance_frames:]  # clip level: the T focus frames the one patch is read from
        steps = result.steps
        if self.glance_frames:  # one place and one prediction for the whole clip, shown on every focus frame
            corners, logits = corners.expand(-1, frames.shape[1], -1), logits.expand(-1, frames.shape[1], -1)
        else:
            frames, corners, logits = frames[:, :steps], corners[:, :steps], logits[:, :steps]
        # Titles are drawn against the final prediction: a step whose top-1 differs from it is marked.
        final = torch.tensor([result.class_indices[0]])
        out.mkdir(parents=True, exist_ok=True)
        files = {"strip": plotting.plot_trajectories(frames, corners, self.patch_size, logits, final,
                                                     out / "focus_strip", class_names=self.class_names),
                 "gif": [plotting.save_gif(frames[0], corners[0], self.patch_size, out / "episode.gif")]}
        files["json"] = [out / "prediction.json"]
        described = replace(result, files=files)
        (out / "prediction.json").write_text(json.dumps(described.to_dict(), indent=2))
        return files


def _episodes(model: Model, env_config: EnvConfig, device: torch.device, frames: int) -> EpisodeBatch:
    # The confidence reward needs no label and no reference patch: these episodes only predict.
    return make_episodes(model, None, replace(env_config, reward="conf"), device, num_frames=frames)


def _class_names(config: RunConfig, given: str | Path | Sequence[str] | None) -> list[str]:
    """One name per class of the run's model: from ``given`` (a file or the names), the run's labels file, or
    the indices. A file or list of another length is refused, naming where the names came from."""
    classes = config.model.num_classes
    if isinstance(given, (str, Path)):
        source = str(given)
        try:
            names = read_class_names(given)
        except VideoDataError as error:
            raise PredictionError(str(error)) from error
    elif given is not None:
        source, names = "the class names given", [str(name) for name in given]
    elif config.data.label_file and config.data.list_format in ANNOTATION_FORMATS:
        source = f"{config.data.label_file} (the run's data.label_file)"
        try:
            names = read_label_names(config.data.label_file, config.data.list_format)
        except VideoDataError as error:
            raise PredictionError(f"{error} (the run's data.label_file; give the class names with "
                                  "--class-names FILE)") from error
    else:
        return [f"class {k}" for k in range(classes)]
    if len(names) != classes:
        raise PredictionError(f"{source}: {len(names)} class names, but the run's model has {classes} classes")
    return names


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _seconds(clip: ClipPrediction) -> str:
    if clip.start_seconds is None or clip.end_seconds is None:
        return ""
    return f"{clip.start_seconds:.2f}-{clip.end_seconds:.2f} s"


def format_prediction(result: VideoPrediction) -> str:
    """The prediction as the command prints it: the video, steps and GFLOPs, the top-5, the timeline."""
    rate = f", {result.fps:.2f} fps" if result.fps else ""
    exit_rule = "all steps" if result.threshold is None else f"early exit at {result.threshold:g}"
    lines = [f"{result.video}: {result.num_frames} frames{rate}, {result.width}x{result.height}",
             f"  {result.steps} of {result.max_steps} steps ({exit_rule}), {result.gflops:.3f} GFLOPs, "
             f"patches placed by the {result.policy} policy"]
    width = max(len(name) for name in result.classes)
    for rank, (name, p) in enumerate(zip(result.classes, result.probabilities), start=1):
        lines.append(f"  {rank}. {name:<{width}}  {p:.3f}")
    if result.window_frames is not None:
        lines.append(f"  timeline ({len(result.windows)} windows of {result.window_frames} frames):")
        # fixed-width columns: seconds (when the frame rate is known), frames, top-1 class
        digits = len(str(result.num_frames))
        seconds = [_seconds(clip) for clip in result.windows]
        times = max(map(len, seconds), default=0)
        names = max((len(clip.top1) for clip in result.windows), default=0)
        for clip, span in zip(result.windows, seconds):
            frames = f"frames {clip.first_frame:>{digits}}-{clip.last_frame:<{digits}}"
            lines.append(f"    {span:<{times}}  {frames}  {clip.top1:<{names}}  {clip.probability:.3f}  "
                         f"({clip.steps}/{clip.max_steps} steps, {clip.gflops:.3f} GFLOPs)")
    for kind, paths in result.files.items():
        lines.append(f"  {kind}: " + ", ".join(str(p) for p in paths))
    return "\n".join(lines)


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``experiments/predict.py``); returns the exit status: 0, or 2 when a video or the
    run could not be read (one line each on stderr, naming the file and the reason)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO", help="video files (mp4, webm, avi, ...)")
    parser.add_argument("--run", required=True, type=Path, help="run folder written by train_policy.py")
    parser.add_argument("--threshold", type=_probability,
                        help="early exit: stop at the first step whose top softmax score exceeds this "
                             "(default: all T steps)")
    parser.add_argument("--window", action="store_true",
                        help="also classify each window of T consecutive frames along the video and print a timeline")
    parser.add_argument("--window-frames", type=int, metavar="N",
                        help="windows of N consecutive frames instead of T (T sampled from each); implies --window")
    parser.add_argument("--class-names", type=Path, metavar="FILE",
                        help="one class name per line, in class-index order (default: the run's labels file, "
                             "else the class indices)")
    parser.add_argument("--out", type=Path,
                        help="folder for the focus strip, episode GIF and prediction.json (default: "
                             "<run>/predictions/<video stem>; with several videos, <out>/<video stem>)")
    parser.add_argument("--device", help="override the run's device (auto, cpu, cuda[:N])")
    args = parser.parse_args(argv)
    try:
        recognizer = Recognizer.from_run(args.run, class_names=args.class_names, device=args.device)
    except (PredictionError, VideoDataError) as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    window = args.window_frames if args.window_frames is not None else (0 if args.window else None)
    if window and window < recognizer.frames:
        print(f"error: --window-frames {window} is shorter than the run's T = {recognizer.frames} frames",
              file=sys.stderr)
        return 2
    failed = 0
    for video in args.videos:
        if args.out is None:
            out = args.run / "predictions" / video.stem
        else:
            out = args.out / video.stem if len(args.videos) > 1 else args.out
        try:
            result = recognizer.predict(video, args.threshold, window, out)
        except VideoDataError as error:
            print(f"error: {_one_line(error)}", file=sys.stderr)
            failed += 1
            continue
        print(format_prediction(result), flush=True)
    return 2 if failed else 0
