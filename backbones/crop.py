"""Patch cropping x_t -> x~_t: B patches of P x P at B locations, one indexing op for the whole batch."""
from __future__ import annotations

import torch


def patch_corners(centres: torch.Tensor, frame_size: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Patch centres (B, 2) as (x, y) in [0, 1] -> integer top-left corners (B, 2) as (x0, y0).

    The patch is clamped to stay inside the frame, so a centre near the border moves the patch inward.
    """
    height, width = frame_size
    if patch_size > min(height, width):
        raise ValueError(f"patch_size {patch_size} exceeds the frame {height}x{width}")
    scale = torch.tensor([width, height], device=centres.device, dtype=centres.dtype)
    corners = torch.round(centres * scale - patch_size / 2).long()
    limit = torch.tensor([width - patch_size, height - patch_size], device=centres.device)
    return torch.minimum(corners.clamp_min(0), limit)


def fraction_corners(fractions: torch.Tensor, frame_size: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Corners as fractions of their range: (..., 2) (x, y) in [0, 1] -> top-left corners
    ``floor(u * (S - P))`` (..., 2) as (x0, y0), at most S - P. The authors' continuous pi places its patch so
    (their ``get_patch``); no fraction moves the patch against a border, unlike a clamped centre."""
    height, width = frame_size
    if patch_size > min(height, width):
        raise ValueError(f"patch_size {patch_size} exceeds the frame {height}x{width}")
    limit = torch.tensor([width - patch_size, height - patch_size], device=fractions.device)
    return torch.minimum((fractions.clamp(0, 1) * corner_span(frame_size, patch_size, fractions.device)).long(), limit)


def corner_span(frame_size: tuple[int, int], patch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The range S - P of the top-left corner along (x, y) that :func:`fraction_corners` scales by (at least 1)."""
    height, width = frame_size
    return torch.tensor([max(width - patch_size, 1), max(height - patch_size, 1)], device=device)


def random_corners(uniform: torch.Tensor, frame_size: tuple[int, int], patch_size: int) -> torch.Tensor:
    """The authors' random patch: uniform draws (..., 2) in [0, 1) -> top-left corners (..., 2) as (x0, y0),
    uniform over the corners ``0 .. S - P - 1`` of each axis (their ``np.random.randint(0, S - P)``).
    A uniform *centre* clamped to the frame instead puts most patches on a border when P is a large share
    of S (about 82% at P = 128 on 224)."""
    return fraction_corners(uniform, frame_size, patch_size)


def corner_centres(corners: torch.Tensor, frame_size: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Inverse of :func:`patch_corners` for in-frame corners: (B, 2) (x0, y0) -> centres (B, 2) in [0, 1]."""
    height, width = frame_size
    scale = torch.tensor([width, height], device=corners.device, dtype=torch.float32)
    return (corners.float() + patch_size / 2) / scale


def crop_patches(frames: torch.Tensor, corners: torch.Tensor, patch_size: int,
                 index: torch.Tensor | None = None) -> torch.Tensor:
    """Frames (M, C, H, W) and top-left corners (B, 2) as (x0, y0) -> patches (B, C, P, P).

    Patch b comes from frame ``index[b]`` (default: frame b, with M = B), so patches are gathered straight
    from a larger tensor (e.g. one frame of every video) without copying whole frames first. Works on any
    dtype (crop uint8 frames before normalising: P^2 instead of H*W pixels to convert).
    """
    if index is None:
        index = torch.arange(frames.shape[0], device=frames.device)
    if frames.dim() != 4 or corners.shape != (index.shape[0], 2):
        raise ValueError(f"expected frames (M, C, H, W) and corners (B, 2), got {tuple(frames.shape)} and "
                         f"{tuple(corners.shape)} for {index.shape[0]} patches")
    if patch_size > min(frames.shape[-2:]):
        raise ValueError(f"patch_size {patch_size} exceeds the frame {frames.shape[-2]}x{frames.shape[-1]}")
    offsets = torch.arange(patch_size, device=frames.device)
    rows = (corners[:, 1:2] + offsets)[:, :, None]  # (B, P, 1)
    cols = (corners[:, 0:1] + offsets)[:, None, :]  # (B, 1, P)
    return frames.permute(0, 2, 3, 1)[index[:, None, None], rows, cols].permute(0, 3, 1, 2)


def patch_boxes(corners: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Top-left corners (..., 2) -> boxes (..., 4) as x0, y0, x1, y1 in pixels."""
    return torch.cat([corners, corners + patch_size], dim=-1).float()


def grid_corners(actions: torch.Tensor, grid: int, frame_size: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Discrete actions in [0, grid^2) -> top-left corners on a grid x grid lattice.

    As the paper's code: corner = floor(a * (S - P)) with a in {0, 1/(grid-1), ..., 1}; action = row * grid + col.
    """
    height, width = frame_size
    if patch_size > min(height, width):
        raise ValueError(f"patch_size {patch_size} exceeds the frame {height}x{width}")
    row, col = actions // grid, actions % grid
    x0 = torch.div(col * (width - patch_size), grid - 1, rounding_mode="floor")
    y0 = torch.div(row * (height - patch_size), grid - 1, rounding_mode="floor")
    return torch.stack([x0, y0], dim=-1).long()
