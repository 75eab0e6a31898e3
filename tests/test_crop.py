"""The patch crop x_t -> x~_t and the patch-location helpers of adafocus.backbones.crop."""
from fractions import Fraction
from math import floor

import pytest
import torch

from adafocus.backbones import (corner_centres, crop_patches, grid_corners, patch_boxes, patch_corners)
from adafocus.backbones import random_corners as authors_random_corners


def naive_crop(frames, corners, p):
    return torch.stack([frames[b, :, y:y + p, x:x + p] for b, (x, y) in enumerate(corners.tolist())])


def random_corners(gen, b, h, w, p):
    corners = torch.stack([torch.randint(0, w - p + 1, (b,), generator=gen),
                           torch.randint(0, h - p + 1, (b,), generator=gen)], dim=1)
    # make patches touch every border: top-left, bottom-right, top-right, bottom-left
    borders = torch.tensor([[0, 0], [w - p, h - p], [w - p, 0], [0, h - p]])
    corners[: min(b, 4)] = borders[: min(b, 4)]
    return corners


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("b,c,h,w,p", [(1, 3, 8, 8, 8), (2, 1, 9, 7, 3), (5, 3, 32, 24, 16), (7, 4, 17, 31, 1)])
def test_crop_matches_naive_slicing(dtype, b, c, h, w, p):
    gen = torch.Generator().manual_seed(b * 1000 + h * 10 + p)
    frames = torch.randint(0, 256, (b, c, h, w), generator=gen).to(dtype)
    if dtype.is_floating_point:
        frames = frames + torch.rand(frames.shape, generator=gen)
    corners = random_corners(gen, b, h, w, p)
    patches = crop_patches(frames, corners, p)
    assert patches.shape == (b, c, p, p) and patches.dtype == dtype
    assert torch.equal(patches, naive_crop(frames, corners, p))


def test_crop_reads_x_as_column_and_y_as_row():
    frames = torch.arange(6 * 10).view(1, 1, 6, 10)  # value = row * 10 + col
    patch = crop_patches(frames, torch.tensor([[4, 1]]), 2)
    assert patch[0, 0].tolist() == [[14, 15], [24, 25]]


def test_crop_errors():
    frames = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError):
        crop_patches(frames, torch.zeros(3, 2, dtype=torch.long), 4)  # batch mismatch
    with pytest.raises(ValueError):
        crop_patches(frames, torch.zeros(2, 3, dtype=torch.long), 4)  # corners not (B, 2)
    with pytest.raises(ValueError):
        crop_patches(frames[0], torch.zeros(2, 2, dtype=torch.long), 4)  # frames not 4-d
    with pytest.raises(ValueError):
        crop_patches(frames, torch.zeros(2, 2, dtype=torch.long), 9)  # patch larger than the frame
    with pytest.raises(ValueError):
        crop_patches(torch.zeros(1, 3, 8, 12), torch.zeros(1, 2, dtype=torch.long), 10)  # taller than H


def test_patch_corners_clamps_inside_the_frame():
    h, w, p = 40, 60, 16
    centres = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [-0.5, 2.0], [3.0, -1.0], [0.5, 0.5]])
    corners = patch_corners(centres, (h, w), p)
    assert corners.dtype == torch.long
    assert corners.tolist() == [[0, 0], [w - p, h - p], [0, h - p], [w - p, 0], [0, h - p], [w - p, 0],
                                [w // 2 - p // 2, h // 2 - p // 2]]
    many = patch_corners(torch.rand(200, 2) * 3 - 1, (h, w), p)
    assert (many[:, 0] >= 0).all() and (many[:, 0] <= w - p).all()
    assert (many[:, 1] >= 0).all() and (many[:, 1] <= h - p).all()


def test_patch_corners_rejects_a_patch_larger_than_the_frame():
    with pytest.raises(ValueError):
        patch_corners(torch.zeros(1, 2), (32, 64), 33)


@pytest.mark.parametrize("h,w,p", [(24, 24, 8), (20, 31, 7), (224, 224, 128)])
def test_corner_centres_inverts_patch_corners(h, w, p):
    xs, ys = torch.meshgrid(torch.arange(w - p + 1), torch.arange(h - p + 1), indexing="xy")
    corners = torch.stack([xs.flatten(), ys.flatten()], dim=1)
    centres = corner_centres(corners, (h, w), p)
    assert ((centres >= 0) & (centres <= 1)).all()
    assert torch.equal(patch_corners(centres, (h, w), p), corners)


@pytest.mark.parametrize("grid", [5, 6, 7, 8])
@pytest.mark.parametrize("h,w,p", [(224, 224, 96), (224, 224, 128), (100, 77, 30)])
def test_grid_corners_floor_lattice_row_major(grid, h, w, p):
    actions = torch.arange(grid * grid)
    corners = grid_corners(actions, grid, (h, w), p)
    assert corners.shape == (grid * grid, 2) and corners.dtype == torch.long
    for action, (x0, y0) in zip(actions.tolist(), corners.tolist()):
        row, col = divmod(action, grid)
        assert x0 == floor(Fraction(col, grid - 1) * (w - p))
        assert y0 == floor(Fraction(row, grid - 1) * (h - p))
    assert corners[0].tolist() == [0, 0] and corners[-1].tolist() == [w - p, h - p]
    assert corners[grid - 1].tolist() == [w - p, 0]  # end of the first row: right edge, top
    # batched (B, T) actions keep their shape
    assert grid_corners(actions.view(grid, grid), grid, (h, w), p).shape == (grid, grid, 2)


def test_grid_corners_paper_setting():
    corners = grid_corners(torch.arange(7), 7, (224, 224), 128)
    assert corners[:, 0].tolist() == [0, 16, 32, 48, 64, 80, 96]


def test_grid_corners_rejects_a_patch_larger_than_the_frame():
    with pytest.raises(ValueError):
        grid_corners(torch.arange(4), 2, (32, 32), 40)


def test_patch_boxes():
    boxes = patch_boxes(torch.tensor([[3, 5], [0, 0]]), 10)
    assert boxes.tolist() == [[3.0, 5.0, 13.0, 15.0], [0.0, 0.0, 10.0, 10.0]]


def test_crop_with_index_gathers_from_a_larger_frame_tensor():
    generator = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (5, 3, 20, 24), dtype=torch.uint8, generator=generator)
    index = torch.tensor([4, 0, 4, 2])
    corners = torch.stack([torch.randint(0, 24 - 8 + 1, (4,), generator=generator),
                           torch.randint(0, 20 - 8 + 1, (4,), generator=generator)], dim=1)
    expected = torch.stack([frames[i, :, y:y + 8, x:x + 8] for i, (x, y) in zip(index.tolist(), corners.tolist())])
    assert torch.equal(crop_patches(frames, corners, 8, index), expected)
    assert torch.equal(crop_patches(frames[index], corners, 8), expected)


def _border_share(corners: torch.Tensor, size: int, patch: int) -> float:
    touches = (corners == 0) | (corners == size - patch)
    return float(touches.any(dim=-1).float().mean())


def test_random_corners_are_the_authors_uniform_corners():
    """P = 128 on 224: the authors' randint(0, S - P) draws corners 0 .. 95 (never 96 = S - P), of which only 0
    touches a border, so 1 - (95/96)^2 ~ 2% of patches do, where a uniform centre clamped to the frame puts
    about 82% there."""
    generator = torch.Generator().manual_seed(0)
    draws = torch.rand(200_000, 2, generator=generator)
    corners = authors_random_corners(draws, (224, 224), 128)
    assert corners.min() == 0 and corners.max() == 95  # np.random.randint(0, 96): 0 .. 95
    counts = torch.bincount(corners[:, 0], minlength=96).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.1  # uniform over the 96 corners (2,083 draws each)
    assert _border_share(corners, 224, 128) == pytest.approx(1 - (95 / 96) ** 2, abs=0.003)
    clamped = patch_corners(draws, (224, 224), 128)
    assert _border_share(clamped, 224, 128) == pytest.approx(0.82, abs=0.01)
    with pytest.raises(ValueError, match="exceeds"):
        authors_random_corners(draws[:1], (64, 64), 65)


@pytest.mark.parametrize("continuous", ["centre", "corner"])
@pytest.mark.parametrize("h, w, p", [(64, 64, 24), (48, 80, 32)])
def test_continuous_actions_map_to_corners_and_back(continuous, h, w, p):
    """``--env.continuous corner`` is the authors' mapping, floor(u (S - P)) with u = (a + 1) / 2, no clamping;
    ``corner_actions`` inverts either mapping for every in-frame corner."""
    from adafocus.envs import EnvConfig
    from adafocus.envs.episodes import continuous_corners, corner_actions

    config = EnvConfig(action="continuous", continuous=continuous)
    actions = torch.rand(500, 2) * 2.4 - 1.2  # some outside [-1, 1]: clipped
    corners = continuous_corners(actions, config, (h, w), p)
    assert corners.min() >= 0 and (corners[:, 0] <= w - p).all() and (corners[:, 1] <= h - p).all()
    if continuous == "corner":
        u = (actions.clamp(-1, 1) + 1) / 2
        naive = [[floor(float(u[i, 0]) * (w - p)), floor(float(u[i, 1]) * (h - p))] for i in range(len(u))]
        assert corners.tolist() == naive
    every = torch.cartesian_prod(torch.arange(w - p + 1), torch.arange(h - p + 1))
    assert torch.equal(continuous_corners(corner_actions(every, config, (h, w), p), config, (h, w), p), every)


def test_corner_actions_reach_borders_less_often_than_centres():
    """A uniform action touches a border with probability about 2/(S - P) per axis as a corner fraction, but
    P/S per axis as a clamped centre (P = 128 on 224)."""
    from adafocus.envs import EnvConfig
    from adafocus.envs.episodes import continuous_corners

    actions = torch.rand(20000, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    touch = {kind: float(((continuous_corners(actions, EnvConfig(action="continuous", continuous=kind), (224, 224), 128)
                           % 96) == 0).any(-1).float().mean()) for kind in ("centre", "corner")}
    assert touch["corner"] < 0.05 and touch["centre"] > 0.75
