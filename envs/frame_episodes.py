"""Temporal adaptivity: which frames AdaFocus reads, as batched episodes over the same frozen backbones.

Three frame policies, each a batch of N episodes stepped as tensors (like :class:`FocusEpisodes`):

- :class:`SkipEpisodes` -- pi' of AdaFocus+: at frame t, *process* it (pi places the patch, f_L reads it,
  f_C steps), *skip* it, or *stop* the video. Reward: confidence gain minus lambda x GFLOPs spent.
- :class:`JumpEpisodes` -- AdaFrame (Wu et al., TPAMI 2020): after each frame it has read, choose which
  frame to read next; reward: the gain of the margin on the true class over the best margin so far.
- :class:`MultiAgentEpisodes` -- MultiAgent (Wu et al., ICCV 2019): A agents at frame positions move
  left / stay / right every step, each observing its frame and the context (mean) of all agents; the
  video is classified from the A frames they stand on.

Every "read" of a frame is the AdaFocus step of :class:`FrameReader`: the frozen patch policy pi, f_L and
f_C, composed from :class:`FocusEpisodes` (its glance maps, its action-to-corner map) and the model. The
episodes count the backbones' GFLOPs per video in ``spent``; a frame policy's own network runs once per
decision (``decisions``), which the caller prices (this package never sees the policy network).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from gymnasium import spaces

from adafocus.data.clips import ClipSet

from .episodes import FocusEpisodes
from .reward import confidence

FocusPolicy = Callable[[dict[str, torch.Tensor]], torch.Tensor]
SKIP_MODES = ("glance", "none")


@dataclass(frozen=True)
class FrameCosts:
    """GMACs of the parts of reading one frame (measured by :func:`adafocus.backbones.step_cost`)."""

    glance: float  # f_G on the whole frame
    patch: float  # pi (the patch policy) + f_L on one P x P patch
    classifier: float  # one step of f_C

    @property
    def read(self) -> float:
        """A frame read by AdaFocus: f_G, pi, f_L and one f_C step."""
        return self.glance + self.patch + self.classifier


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AdaFrame's margin: p(true class) - max p(other class), in [-1, 1]: (N, K), (N,) -> (N,)."""
    probs = logits.softmax(-1)
    true = probs.gather(-1, labels[:, None])[:, 0]
    others = probs.scatter(-1, labels[:, None], -1.0).amax(-1)
    return true - others


class FrameReader:
    """Reads chosen frames of chosen videos with AdaFocus: pi's patch, f_L, one f_C step.

    ``episodes`` supplies f_G's features of every frame (computed once), the clips and pi's action map;
    ``focus`` is the frozen pi (observations in, patch actions out). Frames are addressed per episode, so a
    batch may read a different frame of each video.
    """

    def __init__(self, episodes: FocusEpisodes, focus: FocusPolicy, costs: FrameCosts) -> None:
        self.episodes = episodes
        self.focus = focus
        self.costs = costs
        self.model = episodes.model
        self.device = episodes.device
        self.num_frames = episodes.num_frames
        self.hidden_size = self.model.classifier.hidden_size
        self.num_classes = self.model.config.num_classes

    @property
    def flat_frames(self) -> torch.Tensor:
        """The loaded frames as (V*T, 3, H, W), a view: patches gather from it."""
        return self.episodes.clips.frames.flatten(0, 1)

    @property
    def num_videos(self) -> int:
        return self.episodes.num_videos

    def labels(self, video: torch.Tensor) -> torch.Tensor:
        return self.episodes.clips.labels[video]

    @torch.no_grad()
    def patch_features(self, video: torch.Tensor, frame: torch.Tensor,
                       hidden: torch.Tensor | None = None) -> torch.Tensor:
        """f_L's features (M, D_L) of pi's patch on frame ``frame[m]`` of video ``video[m]``; pi sees what it
        saw in training: that frame's glance map, its position t / T and (if it observes it) f_C's state."""
        obs = {"glance": self.episodes.glance_maps[video, frame],
               "progress": (frame.float() / self.num_frames)[:, None]}
        if "memory" in self.episodes.observation_space.spaces:
            obs["memory"] = hidden if hidden is not None else torch.zeros(len(video), self.hidden_size, device=self.device)
        corners = self.episodes.corners(self.focus(obs).to(self.device))
        return self.model.focus(self.flat_frames, corners, video * self.num_frames + frame)

    @torch.no_grad()
    def read(self, video: torch.Tensor, frame: torch.Tensor,
             hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One AdaFocus step on the given (video, frame) pairs: -> f_C's logits (M, K) and new state (M, H)."""
        local = self.patch_features(video, frame, hidden)
        return self.model.classifier.step(self.episodes.glance_pooled[video, frame], local, hidden)

    @torch.no_grad()
    def frame_logits(self, video: torch.Tensor, frame: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """f_C's prediction (M, K) from one frame alone (one step from the zero state), given its f_L features."""
        return self.model.classifier.step(self.episodes.glance_pooled[video, frame], local, None)[0]

    @torch.no_grad()
    def sequence_logits(self, video: torch.Tensor, frames: torch.Tensor,
                        local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f_C over frames (N, K) of videos (N,) in that order, given their f_L features (N, K, D_L):
        -> the last step's logits (N, classes) and state (N, H)."""
        logits, hidden = self.model.classifier(self.episodes.glance_pooled[video[:, None], frames], local)
        return logits[:, -1], hidden

    @torch.no_grad()
    def initial_logits(self, n: int) -> torch.Tensor:
        """f_C's prediction before any frame was read (its head on the zero state)."""
        return self.model.classifier.head(torch.zeros(n, self.hidden_size, device=self.device))

    @torch.no_grad()
    def classify_frames(self, video: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Read frames (V, K) of videos (V,) in the given order (the uniform and oracle baselines):
        -> f_C's logits after each read (V, K, classes)."""
        video, frames = video.to(self.device), frames.to(self.device)
        hidden = torch.zeros(len(video), self.hidden_size, device=self.device)
        out = []
        for k in range(frames.shape[1]):
            logits, hidden = self.read(video, frames[:, k], hidden)
            out.append(logits)
        return torch.stack(out, 1)


@dataclass
class FrameStep:
    """One step of N frame episodes (tensors on the backbones' device); per-slot where noted."""

    observation: dict[str, torch.Tensor]  # per slot (N * agents, ...)
    reward: torch.Tensor  # per slot (N * agents,)
    done: torch.Tensor  # (N,) bool: the episode ended at this step
    logits: torch.Tensor  # (N, K) the video's current prediction
    spent: torch.Tensor  # (N,) backbone GMACs spent on the video so far


class FrameEpisodes(ABC):
    """N frame-selection episodes over a :class:`FrameReader`; each row is one video.

    ``agents`` slots act per row (1 except for MultiAgent); observations, actions and rewards are per slot,
    rows ``i`` owning slots ``i * agents ... (i + 1) * agents - 1``. A row that has finished ignores
    further actions (reward 0) until :meth:`restart` gives it a new video.
    """

    agents: int = 1

    def __init__(self, reader: FrameReader) -> None:
        self.reader = reader
        self.device = reader.device
        self.num_frames = reader.num_frames
        self.observation_space, self.action_space = self._spaces()
        self.video = torch.zeros(0, dtype=torch.long, device=self.device)

    @property
    def num_videos(self) -> int:
        """Videos loaded now."""
        return self.reader.num_videos

    @property
    def clips(self) -> ClipSet:
        return self.reader.episodes.clips

    @property
    def num_rows(self) -> int:
        return len(self.video)

    def load(self, clips: ClipSet, rows: torch.Tensor | None = None) -> None:
        """Put videos in play (f_G runs on them once): all of them, or into loaded videos ``rows``."""
        self.reader.episodes.load(clips, rows)

    def video_ids(self) -> torch.Tensor:
        """The dataset index of each row's video (its loaded position when unknown)."""
        return self.clips.video_ids()[self.video]

    def begin(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """Start N episodes on videos ``video`` (N,)."""
        self.video = video.to(self.device).long().clone()
        n = len(self.video)
        self.labels = self.reader.labels(self.video)
        self.hidden = torch.zeros(n, self.reader.hidden_size, device=self.device)
        self.logits = self.reader.initial_logits(n)
        self.spent = torch.zeros(n, device=self.device)
        self.decisions = torch.zeros(n, dtype=torch.long, device=self.device)
        self.finished = torch.zeros(n, dtype=torch.bool, device=self.device)
        self._allocate(n)
        self._init_rows(torch.arange(n, device=self.device))
        return self.observation()

    def restart(self, rows: torch.Tensor, video: torch.Tensor) -> None:
        """Give rows ``rows`` (indices) new videos and start their episodes again."""
        rows = rows.to(self.device)
        self.video[rows] = video.to(self.device).long()
        self.labels[rows] = self.reader.labels(self.video[rows])
        self.hidden[rows] = 0.0
        self.logits[rows] = self.reader.initial_logits(len(rows))
        self.spent[rows] = 0.0
        self.decisions[rows] = 0
        self.finished[rows] = False
        self._init_rows(rows)

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> FrameStep:
        """Apply per-slot actions (validated by the caller) to the rows still running."""
        if self.num_rows == 0:
            raise RuntimeError("no episodes: call begin() first")
        actions = actions.to(self.device).long().reshape(self.num_rows, self.agents)
        active = ~self.finished
        before_conf, before_spent = confidence(self.logits, self.labels), self.spent.clone()
        reward_extra = self._advance(actions, active)
        self.decisions += active.long()
        gain = self._gain(before_conf) if reward_extra is None else reward_extra
        reward = torch.where(active, gain - self._cost_weight() * (self.spent - before_spent), 0.0)
        done = active & self.finished
        return FrameStep(self.observation(), reward.repeat_interleave(self.agents), done, self.logits, self.spent)

    def _gain(self, before_conf: torch.Tensor) -> torch.Tensor:
        return confidence(self.logits, self.labels) - before_conf

    def _cost_weight(self) -> float:
        return 0.0

    def _rows_where(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.nonzero()[:, 0]

    # ---- what each policy defines ------------------------------------------------------------------
    @abstractmethod
    def _spaces(self) -> tuple[spaces.Dict, spaces.Discrete]:
        """Per-slot observation and action spaces."""

    def _allocate(self, n: int) -> None:
        """Allocate the policy's own per-row state for n rows."""

    @abstractmethod
    def _init_rows(self, rows: torch.Tensor) -> None:
        """Start the episodes of ``rows`` (shared state already reset)."""

    @abstractmethod
    def _advance(self, actions: torch.Tensor, active: torch.Tensor) -> torch.Tensor | None:
        """Apply actions (N, agents) to the active rows; set ``finished``; add to ``spent``. Returns the
        reward before the cost term, or None for the confidence gain."""

    @abstractmethod
    def observation(self) -> dict[str, torch.Tensor]:
        """Per-slot observations (N * agents, ...)."""


class SkipEpisodes(FrameEpisodes):
    """pi' (AdaFocus+): at each frame t in order, process (0), skip (1) or stop (2).

    ``skip="glance"`` (Fig. 1(d) of the paper: f_G, cheap, sees every frame and pi' decides from it; f_L
    reads only the chosen frames): f_G's cost is paid for every frame reached, pi' observes frame t's glance
    map, and a skipped frame leaves f_C's state unchanged (f_C never saw a frame without its patch in
    training, so it is not stepped on zeros). ``skip="none"``: a skipped frame costs nothing; pi' decides
    blind of frame t (from f_C's state and the budget), and a processed frame pays f_G too.
    Reward: c_t - c_{t-1} (confidence on the true class) - ``cost_weight`` x GFLOPs spent by the step, so an
    episode's return is c_final - c_0 - cost_weight x GFLOPs: sweeping ``cost_weight`` traces a curve.
    Observation: ``glance`` (glance mode), ``memory`` f_C's state, ``confidence`` top softmax score,
    ``progress`` t / T, ``spent`` GFLOPs so far / GFLOPs of reading every frame.
    """

    PROCESS, SKIP, STOP = 0, 1, 2

    def __init__(self, reader: FrameReader, cost_weight: float = 1.0,
                 skip: Literal["glance", "none"] = "glance") -> None:
        if skip not in SKIP_MODES:
            raise ValueError(f"skip must be one of {SKIP_MODES}, got {skip!r}")
        if not np.isfinite(cost_weight) or cost_weight < 0:
            raise ValueError(f"cost_weight must be finite and >= 0, got {cost_weight}")
        self.skip, self.cost_weight = skip, float(cost_weight)
        super().__init__(reader)

    def _cost_weight(self) -> float:
        return self.cost_weight  # per GMAC, the papers' GFLOPs

    def _spaces(self) -> tuple[spaces.Dict, spaces.Discrete]:
        ep = self.reader.episodes
        obs = {"memory": spaces.Box(-1.0, 1.0, (self.reader.hidden_size,), np.float32),
               "confidence": spaces.Box(0.0, 1.0, (1,), np.float32),
               "progress": spaces.Box(0.0, 1.0, (1,), np.float32),
               "spent": spaces.Box(0.0, 1.0, (1,), np.float32)}
        if self.skip == "glance":
            obs["glance"] = spaces.Box(-np.inf, np.inf, tuple(ep.glance_maps.shape[2:]), np.float32)
        return spaces.Dict(obs), spaces.Discrete(3)

    def _allocate(self, n: int) -> None:
        self.t = torch.zeros(n, dtype=torch.long, device=self.device)
        self.processed = torch.zeros(n, dtype=torch.long, device=self.device)

    def _init_rows(self, rows: torch.Tensor) -> None:
        self.t[rows] = 0
        self.processed[rows] = 0
        if self.skip == "glance":
            self.spent[rows] = self.reader.costs.glance  # f_G on frame 0, which pi' observes

    def _advance(self, actions: torch.Tensor, active: torch.Tensor) -> None:
        action = actions[:, 0]
        if bool(((action < 0) | (action > 2)).any()):
            raise ValueError(f"pi' actions must be 0 (process), 1 (skip) or 2 (stop), got {action.tolist()}")
        costs = self.reader.costs
        process = self._rows_where(active & (action == self.PROCESS))
        if len(process):
            logits, hidden = self.reader.read(self.video[process], self.t[process], self.hidden[process])
            self.logits[process], self.hidden[process] = logits, hidden
            self.processed[process] += 1
            self.spent[process] += costs.patch + costs.classifier + (costs.glance if self.skip == "none" else 0.0)
        stop = active & (action == self.STOP)
        move = active & ~stop
        self.t += move.long()
        ended = stop | (move & (self.t >= self.num_frames))
        if self.skip == "glance":
            self.spent += costs.glance * (move & ~ended).float()  # f_G on the next frame, which pi' will observe
        self.finished |= ended

    def observation(self) -> dict[str, torch.Tensor]:
        full = self.num_frames * self.reader.costs.read
        obs = {"memory": self.hidden,
               "confidence": self.logits.softmax(-1).amax(-1, keepdim=True),
               "progress": (self.t.float() / self.num_frames)[:, None],
               "spent": (self.spent / full).clamp(0, 1)[:, None]}
        if self.skip == "glance":
            frame = self.t.clamp(max=self.num_frames - 1)
            obs["glance"] = self.reader.episodes.glance_maps[self.video, frame]
        return obs


class JumpEpisodes(FrameEpisodes):
    """AdaFrame: read a first frame, then repeatedly choose the next frame position (Discrete(T)) to read.

    Observation: ``glance`` f_G's map of the frame just read, ``overview`` f_G's pooled features of every
    frame, standardised over the frames per channel (AdaFrame's global memory, built from cheap low-resolution views of the whole video; its f_G is paid
    once per video, and reads then pay pi, f_L and f_C only), ``memory`` f_C's state (the recurrent summary),
    ``visited`` which frames were read, ``confidence`` top softmax score, ``progress`` reads / budget.
    Reward: AdaFrame's margin gain max(0, m_t - max_{t' < t} m_t'), m = p(true) - max p(other).
    An episode reads ``max_reads`` frames (default T); stopping earlier is AdaFrame's utility: a learned
    estimate of the reward still to come (the critic of the RL algorithm), compared with a threshold by
    the caller. A chosen frame that was read already is replaced by the nearest unread one (the earlier on
    a tie), so every read brings a new frame.
    """

    def __init__(self, reader: FrameReader, max_reads: int | None = None, first: int = 0) -> None:
        self.max_reads = max_reads or reader.num_frames
        if not 2 <= self.max_reads <= reader.num_frames:
            raise ValueError(f"max_reads must be in [2, T={reader.num_frames}] (a first frame, then new frames), "
                             f"got {self.max_reads}")
        if not 0 <= first < reader.num_frames:
            raise ValueError(f"first must be a frame index in [0, {reader.num_frames}), got {first}")
        self.first = first
        super().__init__(reader)

    def _spaces(self) -> tuple[spaces.Dict, spaces.Discrete]:
        ep, t = self.reader.episodes, self.reader.num_frames
        obs = {"glance": spaces.Box(-np.inf, np.inf, tuple(ep.glance_maps.shape[2:]), np.float32),
               "overview": spaces.Box(-np.inf, np.inf, (t * ep.glance_pooled.shape[-1],), np.float32),
               "memory": spaces.Box(-1.0, 1.0, (self.reader.hidden_size,), np.float32),
               "visited": spaces.Box(0.0, 1.0, (t,), np.float32),
               "confidence": spaces.Box(0.0, 1.0, (1,), np.float32),
               "progress": spaces.Box(0.0, 1.0, (1,), np.float32)}
        return spaces.Dict(obs), spaces.Discrete(t)

    def _allocate(self, n: int) -> None:
        self.frame = torch.zeros(n, dtype=torch.long, device=self.device)
        self.reads = torch.zeros(n, dtype=torch.long, device=self.device)
        self.visited = torch.zeros(n, self.num_frames, device=self.device)
        self.best = torch.zeros(n, device=self.device)

    def _read(self, rows: torch.Tensor, frame: torch.Tensor) -> None:
        logits, hidden = self.reader.read(self.video[rows], frame, self.hidden[rows])
        self.logits[rows], self.hidden[rows] = logits, hidden
        self.frame[rows] = frame
        self.visited[rows, frame] = 1.0
        self.reads[rows] += 1
        self.spent[rows] += self.reader.costs.read - self.reader.costs.glance  # f_G is in the overview

    def nearest_unread(self, rows: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """The unread frame of each row nearest the chosen one (the chosen one itself when unread)."""
        positions = torch.arange(self.num_frames, device=self.device)
        distance = (positions - frame[:, None]).abs().float() + positions * 1e-3  # the earlier frame on a tie
        return (distance + self.visited[rows] * 2 * self.num_frames).argmin(dim=1)

    def _init_rows(self, rows: torch.Tensor) -> None:
        self.reads[rows] = 0
        self.visited[rows] = 0.0
        self.spent[rows] += self.num_frames * self.reader.costs.glance  # the overview: f_G on every frame, once
        self._read(rows, torch.full((len(rows),), self.first, dtype=torch.long, device=self.device))
        self.best[rows] = margin(self.logits[rows], self.labels[rows])

    def _advance(self, actions: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        frame = actions[:, 0]
        if bool(((frame < 0) | (frame >= self.num_frames)).any()):
            raise ValueError(f"AdaFrame actions must be frame indices in [0, {self.num_frames}), got {frame.tolist()}")
        rows = self._rows_where(active)
        gain = torch.zeros(self.num_rows, device=self.device)
        if len(rows):
            self._read(rows, self.nearest_unread(rows, frame[rows]))
            m = margin(self.logits[rows], self.labels[rows])
            gain[rows] = (m - self.best[rows]).clamp_min(0)
            self.best[rows] = torch.maximum(self.best[rows], m)
        self.finished |= active & (self.reads >= self.max_reads)
        return gain

    def observation(self) -> dict[str, torch.Tensor]:
        episodes = self.reader.episodes
        frames = episodes.glance_pooled[self.video]  # (N, T, C)
        # standardised over the video's frames, per channel: what sets a frame apart from the others (raw f_G
        # features can be tiny; a randomly initialised trunk gives a std of ~0.002)
        overview = (frames - frames.mean(1, keepdim=True)) / (frames.std(1, keepdim=True) + 1e-6)
        return {"glance": episodes.glance_maps[self.video, self.frame],
                "overview": overview.flatten(1), "memory": self.hidden,
                "visited": self.visited,
                "confidence": self.logits.softmax(-1).amax(-1, keepdim=True),
                "progress": (self.reads.float() / self.max_reads)[:, None]}


class MultiAgentEpisodes(FrameEpisodes):
    """MultiAgent: ``agents`` agents per video, spread uniformly at the start, each moving left (0), staying
    (1) or right (2) by one frame per step for ``steps`` steps; one policy shared by all agents.

    An agent observes its frame (``own``: f_G's pooled features, f_L's features of pi's patch, and f_C's
    top softmax score on that frame alone), the ``context`` (mean of all agents' ``own`` in the video),
    its ``position`` and the ``progress``. The video's prediction is f_C over the agents' frames in
    temporal order; every agent gets the same reward, the gain of that prediction's confidence on the true
    class (the agents cooperate). GFLOPs: each distinct frame an agent stands on is read once (f_G, pi,
    f_L, one f_C step), plus the final f_C over the agents' frames. ``cost_weight`` > 0 (not in the paper,
    whose agents are priced by their step budget only) subtracts cost_weight x the GFLOPs of the new reads.
    """

    def __init__(self, reader: FrameReader, agents: int = 3, steps: int = 4, cost_weight: float = 0.0) -> None:
        if not np.isfinite(cost_weight) or cost_weight < 0:
            raise ValueError(f"cost_weight must be finite and >= 0, got {cost_weight}")
        self.cost_weight = float(cost_weight)
        if not 1 <= agents <= reader.num_frames:
            raise ValueError(f"agents must be in [1, T={reader.num_frames}], got {agents}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.agents, self.steps = agents, steps
        self.local_dim = reader.model.classifier.local_dim
        self.global_dim = reader.model.classifier.global_dim
        super().__init__(reader)

    def _cost_weight(self) -> float:
        return self.cost_weight

    def _spaces(self) -> tuple[spaces.Dict, spaces.Discrete]:
        width = self.global_dim + self.local_dim + 1
        obs = {"own": spaces.Box(-np.inf, np.inf, (width,), np.float32),
               "context": spaces.Box(-np.inf, np.inf, (width,), np.float32),
               "position": spaces.Box(0.0, 1.0, (1,), np.float32),
               "progress": spaces.Box(0.0, 1.0, (1,), np.float32)}
        return spaces.Dict(obs), spaces.Discrete(3)

    def start_positions(self) -> torch.Tensor:
        """The agents' first frames: the centres of ``agents`` equal segments of the T frames."""
        return ((torch.arange(self.agents, device=self.device) + 0.5) * self.num_frames / self.agents).long()

    def _allocate(self, n: int) -> None:
        t = self.num_frames
        self.position = torch.zeros(n, self.agents, dtype=torch.long, device=self.device)
        self.count = torch.zeros(n, dtype=torch.long, device=self.device)
        self.seen = torch.zeros(n, t, dtype=torch.bool, device=self.device)
        self.local = torch.zeros(n, t, self.local_dim, device=self.device)
        self.evidence = torch.zeros(n, t, device=self.device)

    def _see(self, rows: torch.Tensor) -> None:
        """Read the frames under the agents of ``rows`` that were not read yet (once per distinct frame)."""
        new = torch.zeros(self.num_rows, self.num_frames, dtype=torch.bool, device=self.device)
        new[rows[:, None], self.position[rows]] = True
        new &= ~self.seen
        row, frame = new.nonzero(as_tuple=True)
        if len(row):
            video = self.video[row]
            local = self.reader.patch_features(video, frame)
            self.local[row, frame] = local
            self.evidence[row, frame] = self.reader.frame_logits(video, frame, local).softmax(-1).amax(-1)
            self.seen[row, frame] = True
            self.spent.index_add_(0, row, torch.full((len(row),), self.reader.costs.read, device=self.device))

    def _classify(self, rows: torch.Tensor) -> None:
        order = self.position[rows].sort(dim=1).values
        self.logits[rows], self.hidden[rows] = self.reader.sequence_logits(self.video[rows], order,
                                                                           self.local[rows[:, None], order])

    def _init_rows(self, rows: torch.Tensor) -> None:
        self.position[rows] = self.start_positions()
        self.count[rows] = 0
        self.seen[rows] = False
        self._see(rows)
        self._classify(rows)

    def _advance(self, actions: torch.Tensor, active: torch.Tensor) -> None:
        if bool(((actions < 0) | (actions > 2)).any()):
            raise ValueError(f"MultiAgent actions must be 0 (left), 1 (stay) or 2 (right), got {actions.tolist()}")
        rows = self._rows_where(active)
        if len(rows):
            self.position[rows] = (self.position[rows] + actions[rows] - 1).clamp(0, self.num_frames - 1)
            self._see(rows)
            self._classify(rows)
            self.count[rows] += 1
        ended = active & (self.count >= self.steps)
        self.spent += self.agents * self.reader.costs.classifier * ended.float()  # the final f_C over A frames
        self.finished |= ended

    def observation(self) -> dict[str, torch.Tensor]:
        n, a = self.num_rows, self.agents
        row = torch.arange(n, device=self.device)[:, None].expand(n, a)
        video = self.video[:, None].expand(n, a)
        own = torch.cat([self.reader.episodes.glance_pooled[video, self.position], self.local[row, self.position],
                         self.evidence[row, self.position][..., None]], dim=-1)  # (N, A, D)
        context = own.mean(dim=1, keepdim=True).expand_as(own)
        position = self.position.float() / max(self.num_frames - 1, 1)
        progress = (self.count.float() / self.steps)[:, None].expand(n, a)
        return {"own": own.flatten(0, 1), "context": context.flatten(0, 1),
                "position": position.reshape(-1, 1), "progress": progress.reshape(-1, 1)}
