"""Clip-level AdaFocus, the paper's Section 4.2 (AdaFocus-TSM on Something-Something and Jester).

f_G and f_L read different frames of the video, sampled independently as the authors' loader samples them:
G = ``glance_frames`` frames (8 in the paper) for f_G and T frames (12) for f_L, each one frame per equal
segment of the whole video (TSN). A clip therefore holds G + T frames, **the G glance frames first, then the
T focus frames** (:meth:`ClipFocusModel.split`); :class:`~adafocus.data.dataset.VideoDataset` loads clips in
this order when given ``glance_frames``. f_G reads its G frames whole; pi reads f_G's maps of them and picks
ONE patch centre for the whole clip; f_L reads the patch at that place in every one of the T focus frames;
f_C is linear: a linear layer on f_L's averaged features plus f_G's averaged logits (no GRU). f_G and f_L are
usually TSM networks (:attr:`EncoderSpec.shift`), which see each clip's frames together.
"""
from __future__ import annotations

import torch

from .crop import crop_patches
from .encoders import normalize
from .model import ModelConfig, _FocusNetwork, _head


class ClipFocusModel(_FocusNetwork):
    """f_G (``global_encoder``) with its head ``global_head``, f_L (``local_encoder``) with the full-frame head
    ``local_head`` (the TSM baseline after the warm-up), and f_C's linear part ``classifier``.

    The same ``classifier`` serves the TSM+ baseline when a run trains it on full frames instead of patches.
    """

    def __init__(self, config: ModelConfig) -> None:
        if config.glance_frames is None or config.glance_frames < 1:
            raise ValueError(f"the clip-level model needs glance_frames >= 1, got {config.glance_frames}")
        super().__init__(config)
        gdim, ldim = self.global_encoder.out_channels, self.local_encoder.out_channels
        self.classifier = _head(ldim, config)
        self.global_head = _head(gdim, config)
        self.local_head = _head(ldim, config)

    @property
    def glance_frames(self) -> int:
        return self.config.glance_frames

    def split(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A clip (B, G + T, ...) -> its glance frames (B, G, ...) for f_G and focus frames (B, T, ...) for f_L."""
        g = self.glance_frames
        if frames.dim() < 2 or frames.shape[1] <= g:
            raise ValueError(f"clips must hold the {g} glance frames and then at least one focus frame, got "
                             f"{frames.shape[1] if frames.dim() >= 2 else 0} frames")
        return frames[:, :g], frames[:, g:]

    def glance(self, frames: torch.Tensor) -> torch.Tensor:
        """f_G over the glance frames: uint8 clips (B, G + T, 3, H, W) -> maps (B, G, C, h, w)."""
        picked = self.split(frames)[0]
        b, g = picked.shape[:2]
        return self.global_encoder.forward_map(self.global_view(picked.flatten(0, 1)), g).unflatten(0, (b, g))

    def global_logits(self, maps: torch.Tensor) -> torch.Tensor:
        """f_G's averaged logits from its maps (B, G, C, h, w) -> (B, K)."""
        return self.global_head(maps.mean(dim=(-2, -1))).mean(dim=1)

    def focus(self, frames: torch.Tensor, corners: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """f_L on one patch per clip, in all its focus frames: frames (M, 3, H, W), corners (N, 2), ``index``
        (N, T) rows of ``frames`` that are clip n's focus frames -> features (N, T, D_L)."""
        n, t = index.shape
        patches = crop_patches(frames, corners.repeat_interleave(t, dim=0), self.config.patch_size, index.flatten())
        return self.local_encoder(normalize(patches), t).unflatten(0, (n, t))

    def classify(self, global_logits: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """f_C: linear on f_L's features averaged over the clip (N, T, D_L), plus f_G's logits (N, K)."""
        return self.classifier(local.mean(dim=1)) + global_logits

    def classify_patches(self, frames: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        """The whole model on clips (B, G + T, 3, H, W) with one patch corner (B, 2) each -> logits (B, K)."""
        b, n = frames.shape[:2]
        index = torch.arange(b * n, device=frames.device).view(b, n)[:, self.glance_frames:]  # the focus frames
        return self.classify(self.global_logits(self.glance(frames)), self.focus(frames.flatten(0, 1), corners, index))

    def _whole_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """f_L on whole frames (B, n, 3, H, W), the n frames as one TSM clip -> features (B, n, D_L)."""
        b, n = frames.shape[:2]
        return self.local_encoder(normalize(frames.flatten(0, 1)), n).unflatten(0, (b, n))

    def classify_tsm_plus(self, frames: torch.Tensor) -> torch.Tensor:
        """TSM+: f_L on the glance frames at full resolution, fused with f_G like f_C: (B, G + T, ...) -> (B, K)."""
        return self.classify(self.global_logits(self.glance(frames)), self._whole_frames(self.split(frames)[0]))

    def classify_tsm(self, frames: torch.Tensor) -> torch.Tensor:
        """The TSM baseline: f_L with its full-frame head on the whole glance frames: (B, G + T, ...) -> (B, K)."""
        return self.local_head(self._whole_frames(self.split(frames)[0]).mean(dim=1))

    def classify_full_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """f_L as a TSM classifier on every whole focus frame of the clip (the warm-up):
        (B, G + T, 3, H, W) -> (B, K)."""
        return self.local_head(self._whole_frames(self.split(frames)[1]).mean(dim=1))

    def classify_global_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """f_G as a classifier on its glance frames (the warm-up): (B, G + T, 3, H, W) -> (B, K)."""
        return self.global_logits(self.glance(frames))
