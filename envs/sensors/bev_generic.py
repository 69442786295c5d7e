"""The bev's generic road path: roads without the straight structure (chords of curved
lanes, merges, roundabouts...), and worlds whose ego is turned more than 60 degrees from a
straight road.

Every segment is a capsule, clipped to the raster, cut into pieces of at most `PIECE_PX`
pixels, and each piece tested pixel by pixel on a small window around it (all windows the
size of the largest), the lit pixels scattered into the raster. `_PRIMITIVE` is the
layout of a piece.

Every step is written as separate float32 operations (no `addcmul`, no `vector_norm`:
their rounding is the library's) and a pixel's offset from a piece is taken from the
pixel-centre tables (`pixel_centres`), not from its window's origin, so a pixel's test is a
function of that pixel and that piece alone: the numba kernel
(`kernels.bev_generic.generic_roads_kernel`) repeats it bit for bit, and a world's raster
does not depend on the other worlds of the batch.
"""

from __future__ import annotations

import numpy as np
import torch
from reflexdrive.envs.config import SensorConfig
from reflexdrive.envs.sensors.constants import (
    BEV_MARKINGS,
    BEV_ROAD,
    EDGE_TOL_M,
    FAR,
    WINDOW_TOL_PX,
)
from reflexdrive.envs.sensors.frames import to_ego_frame
from reflexdrive.envs.sensors.road_plan import RoadPlan
from reflexdrive.envs.sensors.tensor_ops import chunks, compact, slab

CLIP_MARGIN_M = 1e-3
"""Slack when clipping road segments to the raster, so boundary pixels are never lost [m]."""

PIECE_PX = 8
"""Longest road piece drawn through one window [px]; longer (clipped) segments are cut."""


def pixel_centres(config: SensorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame coordinates of the raster's pixel centres: `(x (H,), y (W,))` float32 [m],
    row `r` at `x = range_m - (r + 0.5) res`, column `c` at `y = -bev_half_width_m + (c +
    0.5) res` (computed in float64, then rounded)."""
    _, height, width = config.bev_shape
    res = config.bev_m_per_px
    return ((config.range_m - (np.arange(height) + 0.5) * res).astype(np.float32),
            (-config.bev_half_width_m + (np.arange(width) + 0.5) * res).astype(np.float32))


_PRIMITIVE = ("x", "y", "axis_x", "axis_y", "half_length", "half_width", "rounded", "channel")
"""Columns of the primitive table: centre and unit axis in the ego frame [m]; half extent
along the axis (a capsule's half segment) and across it (a capsule's radius) [m];
`rounded` 1 for a capsule, 0 for a rectangle; the bev channel, as a float."""


def _clip_segments(seg: torch.Tensor, reach: torch.Tensor, valid: torch.Tensor,
                   config: SensorConfig):
    """Clip ego-frame segments to the raster grown by `reach` (the road prefilter).

    Points of a segment more than `reach` outside the grid of pixel centres cannot light
    a pixel, so clipping changes no pixel; it drops segments that cannot touch the raster
    and keeps long straight lanes short (float32 precision, few pieces). The clip is the
    slab test of the segment against that rectangle.

    Args:
        seg: `(B, S, 2, 2)` segments `[start, end]` in the ego frame [m], float32.
        reach: `(B, S)` distance within which a pixel centre is lit [m].
        valid: `(B, S)` bool.

    Returns:
        `(start (B, S, 2), direction (B, S, 2), keep (B, S))`: clipped segment
        `start + t * direction, t in [0, 1]`, and whether any of it is left.
    """
    res = config.bev_m_per_px
    middle, half = seg.new_tensor([
        [0.5 * (config.range_m - config.bev_behind_m), 0.0],
        [0.5 * (config.range_m + config.bev_behind_m - res) + CLIP_MARGIN_M,
         config.bev_half_width_m - 0.5 * res + CLIP_MARGIN_M]])
    start, direction = seg[..., 0, :], seg[..., 1, :] - seg[..., 0, :]
    t_in, t_out = slab(start - middle, direction, half + reach[..., None])
    t_in, t_out = t_in.clamp_min_(0.0), t_out.clamp_max_(1.0)
    keep = valid & (t_in <= t_out)
    return (start + t_in[..., None] * direction,
            (t_out - t_in).clamp_min_(0.0)[..., None] * direction, keep)


def _road_primitives(start, direction, props, keep, max_length: float):
    """Cut clipped segments into capsule pieces of at most `max_length`.

    Args:
        start, direction: `(B, S, 2)` segments `start + t * direction, t in [0, 1]` [m].
        props: `(B, S, 3)` the last three `_PRIMITIVE` columns: radius [m], rounded (1),
            channel.
        keep: `(B, S)` bool.
        max_length: longest piece [m].

    Returns:
        `(table (B, S * n, 8), keep (B, S * n))` in the `_PRIMITIVE` layout, `n` the most
        pieces any kept segment needs (one host sync); surplus pieces are not kept.
    """
    batch, items = keep.shape
    length = (direction[..., 0].square() + direction[..., 1].square()).sqrt_()
    count = torch.ceil(length * (1.0 / max_length)).clamp_min_(1.0).mul_(keep)
    n = max(1, int(count.max())) if items else 1
    inv_count = count.clamp_min_(1.0).reciprocal()
    axis = direction / length.clamp_min(1e-12)[..., None]
    axis[..., 0] += length <= 0                        # zero length: any axis will do
    k = torch.arange(n, device=start.device, dtype=start.dtype) + 0.5
    frac = k * inv_count[..., None]                    # (B, S, n) piece centres along t
    centre = start[:, :, None, :] + frac[..., None] * direction[:, :, None, :]
    rest = torch.cat([axis, (0.5 * length * inv_count)[..., None], props], -1)
    table = torch.cat([centre, rest[:, :, None, :].expand(-1, -1, n, -1)], -1)
    keep = keep[..., None] & (frac < 1.0)
    return table.reshape(batch, items * n, 8), keep.reshape(batch, items * n)


def _rasterise(table: torch.Tensor, keep: torch.Tensor, config: SensorConfig) -> torch.Tensor:
    """Draw a table of rectangles and capsules into a `(B, C, H, W)` uint8 raster.

    Args:
        table: `(B, P, 8)` float32 primitives in the `_PRIMITIVE` layout (ego frame [m]); a
            temporary: its half extents are grown by `EDGE_TOL_M` in place.
        keep: `(B, P)` bool.

    Returns:
        `(B, C, H, W)` uint8, 255 where a pixel centre lies inside a kept primitive of that
        channel (boundary included), else 0.
    """
    channels, height, width = config.bev_shape
    res = config.bev_m_per_px
    batch, device = keep.shape[0], keep.device
    plane = height * width
    total = batch * channels * plane
    flat = torch.zeros(total + 1, dtype=torch.uint8, device=device)   # last: a dump slot
    raster = flat[:total].view(batch, channels, height, width)
    table[..., 4:6] += EDGE_TOL_M
    # Pixel (row, col) of each centre and the bounding box half extents in pixels.
    const = table.new_tensor([[-1.0 / res, 1.0 / res],
                              [config.range_m / res - 0.5, config.bev_half_width_m / res - 0.5],
                              [height - 1, width - 1]])
    centre_px = const[1] + table[..., 0:2] * const[0]
    axis = table[..., 2:4].abs()
    ext = axis * table[..., 4:5] + torch.maximum(axis.flip(-1), table[..., 6:7]) * table[..., 5:6]
    ext = ext.mul_(1.0 / res).add_(WINDOW_TOL_PX)
    low = torch.ceil(centre_px - ext).clamp_min_(0.0)
    size = torch.floor(centre_px.add_(ext)).clamp_max_(const[2]).sub_(low).add_(1.0)
    keep = keep & (size > 0).all(-1)
    packed = compact(keep, torch.cat([table, low, size], -1))
    if packed is None:
        return raster
    keep, table = packed
    # One window size for all (the largest box), windows slid back inside the raster.
    win_rows, win_cols = (int(v) for v in (table[..., 10:12] * keep[..., None])
                          .amax((0, 1)).tolist())
    low = table[..., 8:10].clamp_max(table.new_tensor([height - win_rows, width - win_cols]))
    # Flat index of each window's first pixel: world, channel, row, column (int64).
    low_index = low.long()
    base = (low_index[..., 0] * width).add_(low_index[..., 1]).add_(table[..., 7].long() * plane)
    base += torch.arange(0, batch * channels * plane, channels * plane, device=device)[:, None]
    half_length = torch.where(keep, table[..., 4], -FAR)   # padding never lights a pixel
    radius2 = table[..., 5].square()
    limit = table[..., 6] * FAR                             # rectangles: nothing past the ends
    steps = torch.arange(max(win_rows, win_cols), device=device)
    offset = steps[:win_rows, None] * width + steps[:win_cols]
    centre_x, centre_y = (torch.from_numpy(c).to(device) for c in pixel_centres(config))
    window_x = centre_x[low_index[..., 0, None] + steps[:win_rows]]     # (B, P, Kr) [m]
    window_y = centre_y[low_index[..., 1, None] + steps[:win_cols]]     # (B, P, Kc) [m]
    lit = flat.new_full((1,), 255)
    items = keep.shape[1]
    for b0, b1, p0, p1 in chunks(batch, items, win_rows * win_cols):
        whole = b0 == 0 and b1 == batch and p0 == 0 and p1 == items

        def part(t):
            return (t if whole else t[b0:b1, p0:p1])[..., None]
        dx = (window_x if whole else window_x[b0:b1, p0:p1]) - part(table[..., 0])
        dy = (window_y if whole else window_y[b0:b1, p0:p1]) - part(table[..., 1])
        ux, uy = part(table[..., 2]), part(table[..., 3])
        along = (dx * ux)[..., :, None] + (dy * uy)[..., None, :]
        across = (dy * ux)[..., None, :] - (dx * uy)[..., :, None]
        beyond = along.abs_().sub_(part(half_length)[..., None]).clamp_min_(0.0)
        inside = (beyond * beyond).add_(across.square_()) <= part(radius2)[..., None]
        inside &= beyond <= part(limit)[..., None]
        index = torch.where(inside, part(base)[..., None] + offset, total).view(-1)
        flat.put_(index, lit.expand(index.numel()))
    return raster


def draw_generic_roads(out: torch.Tensor, plan: RoadPlan, worlds: torch.Tensor,
                        ego_position: torch.Tensor, ego_heading: torch.Tensor,
                        config: SensorConfig) -> None:
    """Draw the road and markings of some worlds with the generic path, into `out`.

    Args:
        out: `(B, C, H, W)` uint8 raster, updated in place (OR).
        plan: the road's plan (its `segments` are used).
        worlds: `(G,)` int64 world indices.
        ego_position: `(B, 2)` [m]; ego_heading: `(B,)` [rad], world frame.
    """
    lanes, lane_half, lane_valid, marks, mark_valid = plan.segments
    road = plan.variant[worlds] if plan.batch > 1 else plan.variant.expand(len(worlds))
    position = ego_position[worlds]
    seg = torch.cat([lanes[road].to(position.dtype), marks[road].to(position.dtype)], 1)
    seg = to_ego_frame(seg, position, ego_heading[worlds].to(position.dtype)).float()
    groups = len(worlds)
    props = torch.cat([
        torch.stack(torch.broadcast_tensors(lane_half[road].float(), seg.new_ones(()),
                                            seg.new_tensor(float(BEV_ROAD))), -1),
        seg.new_tensor([0.5 * config.bev_m_per_px, 1.0, float(BEV_MARKINGS)]).expand(
            groups, marks.shape[1], 3)], 1)                       # radius, rounded, channel
    valid = torch.cat([lane_valid[road], mark_valid[road]], 1)
    start, direction, keep = _clip_segments(seg, props[..., 0], valid, config)
    packed = compact(keep, torch.cat([start, direction, props], -1))
    if packed is None:
        return
    keep, clipped = packed
    table, keep = _road_primitives(clipped[..., 0:2], clipped[..., 2:4], clipped[..., 4:7],
                                   keep, PIECE_PX * config.bev_m_per_px)
    out[worlds] = torch.maximum(out[worlds], _rasterise(table, keep, config))
