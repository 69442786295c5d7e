"""Small torch helpers of the sensors' cores: chunking, cached constant tensors, compaction,
the slab test, numpy fields as tensors.

The cores avoid Python loops over worlds (they loop over blocks of about `CHUNK_ELEMENTS`
elements, sized to stay in cache, over vehicle slots and over road lines), matrix products
(BLAS wakes its threads for each tiny product) and temporaries above a few MB (the
allocator hands out bigger ones as fresh pages: page faults).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from reflexdrive.envs.sensors.constants import INV_MAX

CHUNK_ELEMENTS = 1 << 18
"""Most elements of one temporary in the hot loops: 256 Ki, 1 MB of float32, so a chunk's
temporaries stay in cache (and far below the allocator's page-faulting sizes)."""


def slab(origin: torch.Tensor, direction: torch.Tensor, half: torch.Tensor):
    """Ray-vs-box intersection by the slab method, in the box's own frame (broadcasting).

    The ray is `origin + t * direction`; the box is `|x| <= half_x, |y| <= half_y`.
    Directions with a zero component need no special case (the clamped reciprocal makes
    that slab `(-inf, inf)` or empty, as it should).

    Args:
        origin: `(..., 2)` ray origin in the box frame [m].
        direction: `(..., 2)` ray direction in the box frame (any length; `t` counts it).
        half: `(..., 2)` box half extents [m].

    Returns:
        `(t_in, t_out)`, each `(...)`: the ray is inside the box for `t_in <= t <= t_out`
        (empty when `t_in > t_out`).
    """
    inv = torch.reciprocal(direction).clamp_(-INV_MAX, INV_MAX)
    mid = (origin * inv).neg_()                        # t at each slab's mid-plane
    span = half * inv.abs_()                           # half the t-width of each slab
    return (mid - span).amax(-1), span.add_(mid).amin(-1)


def slab_parts(ox, oy, dx, dy, hx, hy):
    """`slab` on separate x and y parts (broadcasting; `dx`, `dy` are consumed). Negative
    half extents make a box no ray enters (`t_in > t_out`)."""
    ix = dx.reciprocal_().clamp_(-INV_MAX, INV_MAX)
    iy = dy.reciprocal_().clamp_(-INV_MAX, INV_MAX)
    mx, my = (ox * ix).neg_(), (oy * iy).neg_()
    sx, sy = ix.abs_().mul_(hx), iy.abs_().mul_(hy)
    return torch.maximum(mx - sx, my - sy), torch.minimum(sx.add_(mx), sy.add_(my))


def compact(keep: torch.Tensor, table: torch.Tensor):
    """Drop the rows no world keeps: move kept rows first and cut to the largest count.

    Args:
        keep: `(B, P)` bool.
        table: `(B, P, F)`.

    Returns:
        `(keep (B, P'), table (B, P', F))` with `P' = max_b keep[b].sum()`, order among kept
        rows preserved; None when nothing is kept. One host sync (`P'`).
    """
    if keep.numel() == 0:
        return None
    if keep.shape[0] == 1:                             # one world: a plain selection
        index = keep[0].nonzero().squeeze(1)
        if index.numel() in (0, keep.shape[1]):
            return None if index.numel() == 0 else (keep, table)
        return keep[:, index], table[:, index]
    count = int(keep.sum(1).max())
    if count == 0:
        return None
    if count == keep.shape[1]:
        return keep, table
    order = torch.argsort(keep.to(torch.uint8), dim=1, descending=True, stable=True)[:, :count]
    return keep.gather(1, order), table.gather(1, order[..., None].expand(-1, -1,
                                                                         table.shape[-1]))


def world_chunks(batch: int, per_world: int) -> Iterator[tuple[int, int]]:
    """Split `batch` worlds into `[b0, b1)` blocks of about `CHUNK_ELEMENTS` elements
    (at least one world per block; one empty block when `batch == 0`)."""
    step = max(1, CHUNK_ELEMENTS // max(per_world, 1))
    for b0 in range(0, max(batch, 1), step):
        yield b0, min(batch, b0 + step)



def chunk_starts(count: int, per_item: int) -> range:
    """Starts of blocks of `max(1, CHUNK_ELEMENTS // per_item)` items over `count` items
    (a block of items of `per_item` elements each stays about `CHUNK_ELEMENTS`)."""
    return range(0, count, max(1, CHUNK_ELEMENTS // per_item))

_STEPS: dict = {}
"""`arange_cached`' cache."""


def arange_cached(count: int, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """`arange(count)` on `device` (cached: small constant tensors are made once)."""
    key = (count, str(device), dtype)
    if key not in _STEPS:
        with torch.inference_mode(False):                  # a normal tensor, usable anywhere
            _STEPS[key] = torch.arange(count, device=device, dtype=dtype)
    return _STEPS[key]


def beam_directions(beams: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`(cos, sin)` of the lidar beam angles `2 pi i / beams`, `(beams,)` float32 each
    (computed in float64, cached)."""
    key = ("beams", beams, str(device))
    if key not in _STEPS:
        with torch.inference_mode(False):
            angle = torch.arange(beams, device=device, dtype=torch.float64) * (
                2.0 * math.pi / beams)
            _STEPS[key] = (torch.cos(angle).float(), torch.sin(angle).float())
    return _STEPS[key]


def chunks(batch: int, items: int, pixels: int) -> Iterator[tuple[int, int, int, int]]:
    """Split a `(batch, items, pixels)` job into `[b0, b1) x [p0, p1)` blocks of at most
    `CHUNK_ELEMENTS` elements (at least one world and one item per block)."""
    per_world = items * pixels
    if per_world <= CHUNK_ELEMENTS:
        for b0, b1 in world_chunks(batch, per_world):
            yield b0, b1, 0, items
        return
    step = max(1, CHUNK_ELEMENTS // max(pixels, 1))
    for b0 in range(batch):
        for p0 in range(0, items, step):
            yield b0, b0 + 1, p0, min(items, p0 + step)


def kept_slots(keep: torch.Tensor):
    """Which entries of each world to work on: the kept ones, first, in slot order.

    Args:
        keep: `(B, N)` bool.

    Returns:
        `(order (B, P) int64 slot numbers, kept (B, P) bool)` with `P` the largest count
        kept in a world (padding entries point at slot 0, and are not kept), or None when
        nothing is kept. One host sync (`P`).
    """
    batch, slots = keep.shape
    rank = keep.cumsum(1)                               # 1-based rank of each kept entry
    count = rank[:, -1:] if slots else rank
    width = int(count.max()) if batch and slots else 0
    if width == 0:
        return None
    slot = arange_cached(slots, keep.device, torch.int64).expand(batch, slots)
    if width == slots and bool(keep.all()):
        return slot, keep
    dest = torch.where(keep, rank - 1, width)           # dropped entries: a spare column
    order = torch.zeros(batch, width + 1, dtype=torch.int64, device=keep.device)
    order.scatter_(1, dest, slot)
    return order[:, :width], arange_cached(width, keep.device, torch.int64) < count


def to_tensor(array, dtype, device: torch.device) -> torch.Tensor:
    """A numpy field as a tensor on `device` (no copy on the CPU when already contiguous)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    if not array.flags.writeable:                      # torch wants writable memory
        array = array.copy()
    tensor = torch.from_numpy(array)
    return tensor if device.type == "cpu" else tensor.to(device)
