"""The ego's sensors and ground truth, as pure batch-first functions of a `WorldSnapshot`.

What: a bird's-eye raster (`bev`), a 360-degree lidar (`lidar`), the ego's proprioception
(`ego`) and the ground-truth object list that goes in `info`. Every function takes `B`
worlds at once (slot 0 of the `N` axis is the ego) and returns batch-first arrays.

Why torch: both backends share one implementation of the sensors (docs/ARCHITECTURE.md).
The numpy entry points (`render_bev`, `cast_lidar`) are thin wrappers over torch cores
(`render_bev_torch`, `cast_lidar_torch`) that take and return tensors, so the batched
backend can run the very same code on CUDA tensors for thousands of worlds without a
round trip through numpy. There are no Python loops over worlds or vehicles (only over
memory-bounded chunks of about `_CHUNK_ELEMENTS`), and few, fused tensor ops: at `B = 1`
the cost is mostly torch's per-op overhead, at large `B` it is the drawn area. The numpy
wrappers run the cores under `torch.inference_mode()` (a third faster on the CPU at
`B = 1`); callers of the cores may do the same when they need no autograd.

Randomness: noise and dropout are drawn from the caller's `np.random.Generator` in numpy
on the CPU (`draw_bev_noise`, `draw_lidar_noise`) and then moved to the device, so a seed
gives the same observation on every device. With `rng=None` the sensors return the
noiseless truth. The randomness consumed depends only on the shapes (`B`, `N`, beams),
never on the scene, so a seeded stream stays aligned whatever the traffic does.

Frames: the world frame is highway-env's (heading measured from +x towards +y). The ego
frame has x forward along the ego heading and y towards the ego's +heading side (world
offsets rotated by `-ego_heading`). With highway-env's screen convention (+y drawn
downwards) the ego's +y side is the driver's right.

BEV raster: ego heading points up. Row 0 is the far front (`x = +range_m`), the last row
is `x = -bev_behind_m`; column 0 is `y = -bev_half_width_m` (driver's left), the last
column `y = +bev_half_width_m` (driver's right), so the image is a top view, not a mirror
image. Pixel `(r, c)` covers the cell centred at `x = range_m - (r + 0.5) * res`,
`y = -bev_half_width_m + (c + 0.5) * res` and is on (255) when that centre lies inside
the shape, boundary included: shapes are grown by `_EDGE_TOL_M` so that float32 rounding
cannot split ties (a marking exactly between two pixel centres lights both, in every row).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from envs.config import EGO_FEATURES, SensorConfig
from envs.types import EGO, RoadGeometry, WorldSnapshot

OBJECT_FIELDS = (
    "x_m",
    "y_m",
    "vx_mps",
    "vy_mps",
    "heading_rad",
    "length_m",
    "width_m",
    "vehicle_id",
)
"""Columns of `ground_truth_objects`: centre `x, y` in the ego frame [m]; ground velocity
expressed in the ego frame [m/s] (not relative to the ego); heading relative to the ego's,
wrapped to (-pi, pi] [rad]; length, width [m]; vehicle id (as a float)."""

BEV_ROAD, BEV_MARKINGS, BEV_VEHICLES, BEV_EGO = 0, 1, 2, 3
"""Channel indices of the bev raster."""

_CHUNK_ELEMENTS = 1 << 22
"""Most (world, primitive, pixel) triples evaluated at once: 4 Mi, 16 MB per float32
temporary, so the dozen temporaries of one chunk stay well under ~256 MB."""

_INV_MAX = 1e12
"""Slab method: `1 / direction` is clamped to this, so axis-parallel rays need no branch."""

_OCCLUSION_EPS = 1e-4
"""A ray to a sample point is blocked only by boxes it enters before `1 - eps` of the way."""

_CLIP_MARGIN_M = 1e-3
"""Slack when clipping road segments to the raster, so boundary pixels are never lost [m]."""

_PIECE_PX = 8
"""Longest road piece drawn through one window [px]; longer (clipped) segments are cut."""

_WINDOW_TOL_PX = 1e-3
"""Slack when turning a primitive's bounding box into pixel rows and columns [px]."""

_EDGE_TOL_M = 1e-4
"""Shapes are grown by this before drawing, so pixel centres on a boundary count as inside
whatever the float32 rounding [m]."""

_FAR = 1e30
"""Stands for "no limit" in float32 arithmetic (finite, so `0 * _FAR` stays 0)."""


# ----------------------------------------------------------------------------- frames


def to_ego_frame(points_world, ego_position, ego_heading):
    """Express world-frame points in each world's ego frame.

    Works on numpy arrays and torch tensors alike (returns the same kind and dtype).

    Args:
        points_world: `(B, ..., 2)` points in the world frame [m].
        ego_position: `(B, 2)` ego centre in the world frame [m].
        ego_heading: `(B,)` ego heading in the world frame [rad].

    Returns:
        `(B, ..., 2)` points in the ego frame [m]: x forward, y towards the +heading side.
    """
    lib = torch if isinstance(points_world, torch.Tensor) else np
    batch, points = points_world.shape[0], math.prod(points_world.shape[1:-1])
    offset = points_world.reshape(batch, points, 2) - ego_position.reshape(batch, 1, 2)
    return (offset @ _frame_matrix(lib.cos(ego_heading), lib.sin(ego_heading))).reshape(
        points_world.shape)


def _frame_matrix(cos, sin):
    """`(..., 2, 2)` matrix `M` with `v_local = v @ M` for a frame rotated by the heading.

    `v @ M = (v_x cos + v_y sin, -v_x sin + v_y cos)`; `M` is orthogonal, so
    `v = v_local @ M^T`. Works on numpy arrays and torch tensors.
    """
    lib = torch if isinstance(cos, torch.Tensor) else np
    return lib.stack([cos, -sin, sin, cos], -1).reshape(cos.shape + (2, 2))


def _wrap_angle(angle):
    """Wrap angles [rad] to (-pi, pi] (numpy or torch)."""
    return math.pi - (math.pi - angle) % (2.0 * math.pi)


# ----------------------------------------------------------------------------- helpers


def _slab(origin: torch.Tensor, direction: torch.Tensor, half: torch.Tensor):
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
    inv = torch.reciprocal(direction).clamp_(-_INV_MAX, _INV_MAX)
    mid = (origin * inv).neg_()                        # t at each slab's mid-plane
    span = half * inv.abs_()                           # half the t-width of each slab
    return (mid - span).amax(-1), span.add_(mid).amin(-1)


def _compact(keep: torch.Tensor, table: torch.Tensor):
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


def _world_chunks(batch: int, per_world: int) -> Iterator[tuple[int, int]]:
    """Split `batch` worlds into `[b0, b1)` blocks of about `_CHUNK_ELEMENTS` elements
    (at least one world per block; one empty block when `batch == 0`)."""
    step = max(1, _CHUNK_ELEMENTS // max(per_world, 1))
    for b0 in range(0, max(batch, 1), step):
        yield b0, min(batch, b0 + step)


def _chunks(batch: int, items: int, pixels: int) -> Iterator[tuple[int, int, int, int]]:
    """Split a `(batch, items, pixels)` job into `[b0, b1) x [p0, p1)` blocks of at most
    `_CHUNK_ELEMENTS` elements (at least one world and one item per block)."""
    per_world = items * pixels
    if per_world <= _CHUNK_ELEMENTS:
        for b0, b1 in _world_chunks(batch, per_world):
            yield b0, b1, 0, items
        return
    step = max(1, _CHUNK_ELEMENTS // max(pixels, 1))
    for b0 in range(batch):
        for p0 in range(0, items, step):
            yield b0, b0 + 1, p0, min(items, p0 + step)


def _ego_frame(position: torch.Tensor, heading: torch.Tensor, length: torch.Tensor,
               width: torch.Tensor, segments: torch.Tensor | None = None):
    """Vehicle boxes (and optionally road segments) in the ego frame, float32.

    Args:
        position: `(B, N, 2)` world-frame centres [m] (float64 keeps far-away worlds
            precise: the offsets are taken before the cast).
        heading: `(B, N)` world-frame headings [rad].
        length, width: `(B, N)` sizes [m].
        segments: optional `(B, S, 2, 2)` world-frame segments [m], moved in the same op.

    Returns:
        `(centre (B, N, 2) [m], axis (B, N, 2) unit heading vectors, frame (B, N, 2, 2)
        `_frame_matrix` of each box, half (B, N, 2) half length and half width [m],
        segments (B, S, 2, 2) in the ego frame [m] or None)`.
    """
    batch, slots = heading.shape
    points = position
    if segments is not None:
        flat = segments.to(position.dtype).reshape(batch, 2 * segments.shape[1], 2)
        points = torch.cat([position, flat], 1)
    points = to_ego_frame(points, position[:, EGO], heading[:, EGO]).float()
    rel_heading = (heading - heading[:, EGO:EGO + 1]).float()
    cos, sin = torch.cos(rel_heading), torch.sin(rel_heading)
    half = torch.stack([length, width], -1).float().mul_(0.5)
    seg = None if segments is None else points[:, slots:].reshape(segments.shape)
    return (points[:, :slots], torch.stack([cos, sin], -1), _frame_matrix(cos, sin), half,
            seg)


def _in_frames(points: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """Directions `(..., 2)` seen from each box frame `(B, M, 2, 2)`: `(..., M, 2)`.

    `points` is `(B, d1, ..., 2)`; the result is `(B, d1, ..., M, 2)` (broadcast
    multiply-adds: cheaper than einsum for these small sizes)."""
    extra = points.dim() - 2
    rows = frame.reshape(frame.shape[:1] + (1,) * extra + frame.shape[1:])
    return torch.addcmul(points[..., 0, None, None] * rows[..., 0, :],
                         points[..., 1, None, None], rows[..., 1, :])


def _box_origins(centre: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """`(B, N, 2)`: the ego centre (ego-frame origin) in each box's frame [m]."""
    return (centre[..., None, :] @ frame).squeeze(-2).neg_()


# ----------------------------------------------------------------------------- bev
#
# Everything drawn is a "primitive": a rectangle or a capsule (the points within a radius
# of a segment), one row of a `(B, P, 8)` table in the `_PRIMITIVE` layout. Lane and
# marking segments are clipped to the raster, cut into pieces of at most `_PIECE_PX`
# pixels and become capsules; vehicles and the ego are rectangles. Each primitive is
# tested only on the pixels of a small window around it (all windows the same size: the
# largest bounding box in the batch) and the lit pixels are scattered into the raster.
# The cost grows with the drawn area, not with raster size times segment count.

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
        [0.5 * (config.range_m + config.bev_behind_m - res) + _CLIP_MARGIN_M,
         config.bev_half_width_m - 0.5 * res + _CLIP_MARGIN_M]])
    start, direction = seg[..., 0, :], seg[..., 1, :] - seg[..., 0, :]
    t_in, t_out = _slab(start - middle, direction, half + reach[..., None])
    t_in, t_out = t_in.clamp_min_(0.0), t_out.clamp_max_(1.0)
    keep = valid & (t_in <= t_out)
    return (torch.addcmul(start, t_in[..., None], direction),
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
    length = torch.linalg.vector_norm(direction, dim=-1)
    count = torch.ceil(length * (1.0 / max_length)).clamp_min_(1.0).mul_(keep)
    n = max(1, int(count.max())) if items else 1
    inv_count = count.clamp_min_(1.0).reciprocal()
    axis = direction / length.clamp_min(1e-12)[..., None]
    axis[..., 0] += length <= 0                        # zero length: any axis will do
    k = torch.arange(n, device=start.device, dtype=start.dtype) + 0.5
    frac = k * inv_count[..., None]                    # (B, S, n) piece centres along t
    centre = torch.addcmul(start[:, :, None, :], frac[..., None], direction[:, :, None, :])
    rest = torch.cat([axis, (0.5 * length * inv_count)[..., None], props], -1)
    table = torch.cat([centre, rest[:, :, None, :].expand(-1, -1, n, -1)], -1)
    keep = keep[..., None] & (frac < 1.0)
    return table.reshape(batch, items * n, 8), keep.reshape(batch, items * n)


def _rasterise(table: torch.Tensor, keep: torch.Tensor, config: SensorConfig) -> torch.Tensor:
    """Draw a table of rectangles and capsules into a `(B, C, H, W)` uint8 raster.

    Args:
        table: `(B, P, 8)` float32 primitives in the `_PRIMITIVE` layout (ego frame [m]); a
            temporary: its half extents are grown by `_EDGE_TOL_M` in place.
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
    table[..., 4:6] += _EDGE_TOL_M
    # Pixel (row, col) of each centre and the bounding box half extents in pixels.
    const = table.new_tensor([[-1.0 / res, 1.0 / res],
                              [config.range_m / res - 0.5, config.bev_half_width_m / res - 0.5],
                              [height - 1, width - 1]])
    centre_px = torch.addcmul(const[1], table[..., 0:2], const[0])
    axis = table[..., 2:4].abs()
    ext = torch.addcmul(axis * table[..., 4:5],
                        torch.maximum(axis.flip(-1), table[..., 6:7]), table[..., 5:6])
    ext = ext.mul_(1.0 / res).add_(_WINDOW_TOL_PX)
    low = torch.ceil(centre_px - ext).clamp_min_(0.0)
    size = torch.floor(centre_px.add_(ext)).clamp_max_(const[2]).sub_(low).add_(1.0)
    keep = keep & (size > 0).all(-1)
    packed = _compact(keep, torch.cat([table, low, size], -1))
    if packed is None:
        return raster
    keep, table = packed
    # One window size for all (the largest box), windows slid back inside the raster.
    win_rows, win_cols = (int(v) for v in (table[..., 10:12] * keep[..., None])
                          .amax((0, 1)).tolist())
    const = table.new_tensor([[height - win_rows, width - win_cols],
                              [config.range_m - 0.5 * res, 0.5 * res - config.bev_half_width_m],
                              [-res, res]])
    low = table[..., 8:10].clamp_max(const[0])
    first = torch.addcmul(const[1], low, const[2]).sub_(table[..., 0:2])   # [m] from centre
    # Flat index of each window's first pixel: world, channel, row, column (int64).
    low_index = low.long()
    base = (low_index[..., 0] * width).add_(low_index[..., 1]).add_(table[..., 7].long() * plane)
    base += torch.arange(0, batch * channels * plane, channels * plane, device=device)[:, None]
    half_length = torch.where(keep, table[..., 4], -_FAR)   # padding never lights a pixel
    radius2 = table[..., 5].square()
    limit = table[..., 6] * _FAR                             # rectangles: nothing past the ends
    steps = torch.arange(max(win_rows, win_cols), device=device, dtype=torch.float32)
    step_r, step_c = steps[:win_rows] * res, steps[:win_cols] * res
    offset = (steps[:win_rows, None] * width + steps[:win_cols]).long()
    lit = flat.new_full((1,), 255)
    items = keep.shape[1]
    for b0, b1, p0, p1 in _chunks(batch, items, win_rows * win_cols):
        whole = b0 == 0 and b1 == batch and p0 == 0 and p1 == items

        def part(t):
            return (t if whole else t[b0:b1, p0:p1])[..., None]
        dx = part(first[..., 0]) - step_r                  # (b, p, Kr) [m]
        dy = part(first[..., 1]) + step_c                  # (b, p, Kc) [m]
        ux, uy = part(table[..., 2]), part(table[..., 3])
        along = (dx * ux)[..., :, None] + (dy * uy)[..., None, :]
        across = (dy * ux)[..., None, :] - (dx * uy)[..., :, None]
        beyond = along.abs_().sub_(part(half_length)[..., None]).clamp_min_(0.0)
        inside = (beyond * beyond).add_(across.square_()) <= part(radius2)[..., None]
        inside &= beyond <= part(limit)[..., None]
        index = torch.where(inside, part(base)[..., None] + offset, total).view(-1)
        flat.put_(index, lit.expand(index.numel()))
    return raster


_SAMPLE_SIGNS = ((0.0, 0.0), (1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0))
"""Occlusion sample points of a box, in units of its half extents: centre, 4 corners."""


def _visible(centre, frame, half, occluder) -> torch.Tensor:
    """Which vehicles the ego sees past the others (occlusion by vehicle rectangles).

    A vehicle is visible when the ray from the ego centre to at least one of its five
    sample points (centre, four corners) enters no other occluder's rectangle before
    reaching the point.

    Args:
        centre: `(B, N, 2)` true centres in the ego frame [m].
        frame: `(B, N, 2, 2)` `_frame_matrix` of each box.
        half: `(B, N, 2)` half length, half width [m].
        occluder: `(B, N)` bool: valid non-ego slots, the boxes that block rays.

    Returns:
        `(B, N)` bool.
    """
    batch, n = occluder.shape
    parts = [_visible_chunk(centre[b0:b1], frame[b0:b1], half[b0:b1], occluder[b0:b1])
             for b0, b1 in _world_chunks(batch, 2 * n * n * len(_SAMPLE_SIGNS))]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _visible_chunk(centre, frame, half, occluder) -> torch.Tensor:
    """`_visible` for one memory-bounded block of worlds (same arguments and result)."""
    n = occluder.shape[1]
    signs = centre.new_tensor(_SAMPLE_SIGNS)
    samples = centre[:, :, None, :] + (signs * half[:, :, None, :]) @ frame.transpose(-1, -2)
    # The ray to sample s of vehicle j, in the frame of box m: (B, Nj, 5, Nm, 2).
    rays = _in_frames(samples, frame)
    t_in, t_out = _slab(_box_origins(centre, frame)[:, None, None], rays,
                        half[:, None, None])
    t_enter = t_in.clamp_min_(0.0)
    blockers = occluder[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=occluder.device)
    blocked = (t_out >= t_enter) & (t_enter < 1.0 - _OCCLUSION_EPS) & blockers[:, :, None, :]
    return (~blocked.any(-1)).any(-1)


def render_bev_torch(position: torch.Tensor, heading: torch.Tensor, length: torch.Tensor,
                     width: torch.Tensor, valid: torch.Tensor, lane_segments: torch.Tensor,
                     lane_half_width: torch.Tensor, lane_valid: torch.Tensor,
                     marking_segments: torch.Tensor, marking_valid: torch.Tensor,
                     config: SensorConfig, *, position_noise: torch.Tensor | None = None,
                     keep: torch.Tensor | None = None) -> torch.Tensor:
    """Torch core of `render_bev`: rasterise `B` worlds on the tensors' device.

    All tensors on one device; the result is on it too. Host syncs: a few small ones
    (sizes of the compacted tables and of the drawing windows).

    Args:
        position: `(B, N, 2)` vehicle centres, world frame [m] (float64 recommended: the
            ego-frame offsets are taken before the cast to float32).
        heading: `(B, N)` world-frame headings [rad].
        length, width: `(B, N)` vehicle sizes [m].
        valid: `(B, N)` bool; slot 0 is the ego.
        lane_segments: `(B or 1, S, 2, 2)` lane centre segments, world frame [m].
        lane_half_width: `(B or 1, S)` [m].
        lane_valid: `(B or 1, S)` bool.
        marking_segments: `(B or 1, K, 2, 2)` lane markings, world frame [m].
        marking_valid: `(B or 1, K)` bool.
        config: raster geometry, occlusion switch.
        position_noise: optional `(B, N, 2)` ego-frame offsets added to each non-ego
            vehicle's drawn centre [m] (see `draw_bev_noise`).
        keep: optional `(B, N)` bool, False drops that non-ego vehicle from the frame.

    Returns:
        `(B, C, H, W)` uint8 with values 0 or 255, `(C, H, W) = config.bev_shape`.
        Occlusion is decided on the true poses of all valid non-ego vehicles (dropped-out
        ones still block the view); noise only moves where visible vehicles are drawn.
    """
    batch, slots = valid.shape
    device = position.device
    segments = torch.cat([lane_segments.expand(batch, -1, -1, -1),
                          marking_segments.to(lane_segments.dtype).expand(batch, -1, -1, -1)], 1)
    centre, axis, frame, half, seg = _ego_frame(position, heading, length, width, segments)

    # Road: lanes (channel 0) and markings (channel 1) as capsules.
    const = seg.new_tensor([[0.0, 1.0, float(BEV_ROAD)], [1.0, 0.0, 0.0],
                            [0.5 * config.bev_m_per_px, 1.0, float(BEV_MARKINGS)],
                            [0.0, float(BEV_VEHICLES), 0.0]])
    props = torch.cat([
        torch.addcmul(const[0], lane_half_width.float()[..., None], const[1]).expand(
            batch, -1, -1),
        const[2].expand(batch, marking_valid.shape[1], 3)], 1)   # radius, rounded, channel
    seg_valid = torch.cat([lane_valid.expand(batch, -1), marking_valid.expand(batch, -1)], 1)
    start, direction, seg_keep = _clip_segments(seg, props[..., 0], seg_valid, config)
    packed = _compact(seg_keep, torch.cat([start, direction, props], -1))
    if packed is None:
        road, road_keep = seg.new_zeros(batch, 0, 8), seg_keep[:, :0]
    else:
        seg_keep, clipped = packed
        road, road_keep = _road_primitives(clipped[..., 0:2], clipped[..., 2:4],
                                           clipped[..., 4:7], seg_keep,
                                           _PIECE_PX * config.bev_m_per_px)

    # Vehicles (channel 2) and the ego (channel 3) as rectangles.
    is_ego = torch.arange(slots, device=device) == EGO
    drawn = valid & ~is_ego
    if config.bev_occlusion and slots > 1:
        drawn = drawn & _visible(centre, frame, half, drawn)
    if keep is not None:
        drawn = drawn & keep
    if position_noise is not None:
        centre = torch.addcmul(centre, position_noise.to(centre.dtype),
                               (~is_ego).to(centre.dtype)[None, :, None])
    vehicles = torch.cat([centre, axis, half, const[3, :2].expand(batch, slots, 2)], -1)
    vehicles[:, EGO, 7] = float(BEV_EGO)
    return _rasterise(torch.cat([road, vehicles], 1), torch.cat([road_keep, drawn | is_ego], 1),
                      config)


def draw_bev_noise(rng: np.random.Generator, config: SensorConfig, batch: int,
                   slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one frame's bev noise in numpy (dropout uniforms first, then positions).

    Args:
        rng: the noise source.
        config: `bev_position_noise_m`, `bev_dropout_prob`.
        batch, slots: `B`, `N`.

    Returns:
        `(position_noise (B, N, 2) float32 [m], keep (B, N) bool)`; the ego slot's entries
        are drawn too (the stream depends on shapes only) and ignored.
    """
    dropout = rng.random((batch, slots))
    noise = rng.standard_normal((batch, slots, 2)) * config.bev_position_noise_m
    return noise.astype(np.float32), dropout >= config.bev_dropout_prob


def render_bev(snapshot: WorldSnapshot, road: RoadGeometry, config: SensorConfig,
               rng: np.random.Generator | None = None,
               device: str | torch.device = "cpu") -> np.ndarray:
    """Rasterise the ego-centred bird's-eye view of `B` worlds.

    Channels: 0 drivable road (pixel centre within the lane half width of a valid lane
    centre segment), 1 lane markings (within half a pixel of a valid marking segment),
    2 other vehicles (inside the rotated rectangle of a valid, visible, not dropped-out
    non-ego vehicle, drawn at its noisy position), 3 ego. Orientation: see the module
    docstring. With `config.bev_occlusion` a vehicle is hidden when the rays from the ego
    centre to its centre and its four corners all enter another vehicle first.

    Args:
        snapshot: `B` worlds, `N` slots (slot 0 the ego).
        road: the road of each world (batch `B`, or 1 shared by all worlds).
        config: raster geometry, occlusion, noise and dropout settings.
        rng: noise source (`draw_bev_noise`); None draws nothing and renders the truth.
        device: where to compute.

    Returns:
        `(B, C, H, W)` uint8, values 0 or 255, `(C, H, W) = config.bev_shape`.
    """
    dev = torch.device(device)
    batch, slots = snapshot.shape
    noise = keep = None
    if rng is not None:
        noise_np, keep_np = draw_bev_noise(rng, config, batch, slots)
        noise, keep = torch.from_numpy(noise_np).to(dev), torch.from_numpy(keep_np).to(dev)

    def t(array, dtype=None):
        return _tensor(array, dtype, dev)

    with torch.inference_mode():                       # nothing escapes but numpy
        bev = render_bev_torch(
            t(snapshot.position), t(snapshot.heading), t(snapshot.length), t(snapshot.width),
            t(snapshot.valid, bool), t(road.lane_segments), t(road.lane_half_width),
            t(road.lane_valid, bool), t(road.marking_segments), t(road.marking_valid, bool),
            config, position_noise=noise, keep=keep)
        return bev.cpu().numpy()


# ----------------------------------------------------------------------------- lidar


def cast_lidar_torch(position: torch.Tensor, heading: torch.Tensor, speed: torch.Tensor,
                     length: torch.Tensor, width: torch.Tensor, valid: torch.Tensor,
                     config: SensorConfig, *, range_noise: torch.Tensor | None = None,
                     rate_noise: torch.Tensor | None = None,
                     keep: torch.Tensor | None = None) -> torch.Tensor:
    """Torch core of `cast_lidar`: cast the beams of `B` worlds on the tensors' device.

    Args:
        position: `(B, N, 2)` vehicle centres, world frame [m] (float64 recommended).
        heading: `(B, N)` world-frame headings [rad].
        speed: `(B, N)` signed speeds along the heading [m/s].
        length, width: `(B, N)` vehicle sizes [m].
        valid: `(B, N)` bool; slot 0 is the ego (the rays start at its centre).
        config: `range_m`, `lidar_beams`.
        range_noise: optional `(B, beams)` added to each return's range [m].
        rate_noise: optional `(B, beams)` added to each return's range rate [m/s].
        keep: optional `(B, beams)` bool, False drops that return.

    Returns:
        `(B, beams, 2)` float32: range [m] to the first valid non-ego vehicle rectangle
        along beam `i` (direction `2 pi i / beams` in the ego frame, towards +y), and its
        range rate `(v_hit - v_ego) . direction` [m/s] from ground velocities. No hit (or a
        dropped return): `(range_m, 0)`. Noisy ranges are clipped to `[0, range_m]`.
    """
    slots = valid.shape[1]
    device = position.device
    beams = config.lidar_beams
    centre, axis, frame, half, _ = _ego_frame(position, heading, length, width)
    angle = torch.arange(beams, device=device, dtype=torch.float64) * (2.0 * math.pi / beams)
    beam_dir = torch.stack([torch.cos(angle), torch.sin(angle)], -1).float()   # (beams, 2)
    origins = _box_origins(centre, frame)
    target = valid & (torch.arange(slots, device=device) != EGO)
    parts = [_nearest_hits(beam_dir, origins[b0:b1], frame[b0:b1], half[b0:b1], target[b0:b1])
             for b0, b1 in _world_chunks(len(valid), 2 * beams * slots)]
    distance, index = parts[0] if len(parts) == 1 else (torch.cat(p) for p in zip(*parts))
    hit = distance < config.range_m
    speed = speed.float()
    velocity = speed[..., None] * axis                 # ground velocities in the ego frame
    velocity[..., 0] -= speed[:, EGO:EGO + 1]          # minus the ego's, which is (speed, 0)
    rate = (velocity @ beam_dir.T).gather(1, index[:, None, :]).squeeze(1)
    if range_noise is not None:
        distance = (distance + range_noise.float()).clamp_(0.0, config.range_m)
    if rate_noise is not None:
        rate = rate + rate_noise.float()
    if keep is not None:
        hit &= keep
    return torch.stack([distance.masked_fill_(~hit, config.range_m), rate.masked_fill_(~hit, 0.0)],
                       -1)


def _nearest_hits(beam_dir, origins, frame, half, target):
    """First box along each beam, for one memory-bounded block of worlds.

    Args:
        beam_dir: `(beams, 2)` unit beam directions in the ego frame.
        origins: `(b, N, 2)` the ego centre in each box frame (`_box_origins`) [m].
        frame: `(b, N, 2, 2)` box frames; half: `(b, N, 2)` half extents [m].
        target: `(b, N)` bool, boxes a beam can hit.

    Returns:
        `(distance (b, beams) [m], inf when nothing is hit; index (b, beams) of the box)`.
    """
    rays = _in_frames(beam_dir[None], frame)           # (b, beams, N, 2)
    t_in, t_out = _slab(origins[:, None], rays, half[:, None])
    t_in.clamp_min_(0.0)
    t_in.masked_fill_(~((t_out >= t_in) & target[:, None, :]), math.inf)
    return t_in.min(-1)


def draw_lidar_noise(rng: np.random.Generator, config: SensorConfig,
                     batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one frame's lidar noise in numpy (range, then rate, then dropout uniforms).

    Args:
        rng: the noise source.
        config: `lidar_beams`, `lidar_range_noise_m`, `lidar_range_rate_noise_mps`,
            `lidar_dropout_prob`.
        batch: `B`.

    Returns:
        `(range_noise [m], rate_noise [m/s], keep bool)`, each `(B, beams)`, noise float32.
    """
    shape = (batch, config.lidar_beams)
    range_noise = rng.standard_normal(shape) * config.lidar_range_noise_m
    rate_noise = rng.standard_normal(shape) * config.lidar_range_rate_noise_mps
    dropout = rng.random(shape)
    return (range_noise.astype(np.float32), rate_noise.astype(np.float32),
            dropout >= config.lidar_dropout_prob)


def cast_lidar(snapshot: WorldSnapshot, config: SensorConfig,
               rng: np.random.Generator | None = None,
               device: str | torch.device = "cpu") -> np.ndarray:
    """Cast the ego's 360-degree lidar in `B` worlds.

    Beam `i` leaves the ego centre at angle `2 pi i / beams` in the ego frame (0 straight
    ahead, turning towards +y) and stops at the first valid non-ego vehicle rectangle
    (slab method), at most `range_m` away. With `rng`: Gaussian range and range-rate noise
    on hits, ranges clipped to `[0, range_m]`, then each hit lost with
    `lidar_dropout_prob`.

    Args:
        snapshot: `B` worlds, `N` slots (slot 0 the ego).
        config: range, beams, noise and dropout settings.
        rng: noise source (`draw_lidar_noise`); None returns the noiseless truth.
        device: where to compute.

    Returns:
        `(B, beams, 2)` float32: range [m] (`range_m` for no return) and range rate [m/s]
        (0 for no return; negative when closing).
    """
    dev = torch.device(device)
    extra = {}
    if rng is not None:
        range_noise, rate_noise, keep = draw_lidar_noise(rng, config, snapshot.shape[0])
        extra = dict(range_noise=torch.from_numpy(range_noise).to(dev),
                     rate_noise=torch.from_numpy(rate_noise).to(dev),
                     keep=torch.from_numpy(keep).to(dev))

    def t(array, dtype=None):
        return _tensor(array, dtype, dev)

    with torch.inference_mode():                       # nothing escapes but numpy
        lidar = cast_lidar_torch(t(snapshot.position), t(snapshot.heading), t(snapshot.speed),
                                 t(snapshot.length), t(snapshot.width), t(snapshot.valid, bool),
                                 config, **extra)
        return lidar.cpu().numpy()


def _tensor(array, dtype, device: torch.device) -> torch.Tensor:
    """A numpy field as a tensor on `device` (no copy on the CPU when already contiguous)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    if not array.flags.writeable:                      # torch wants writable memory
        array = array.copy()
    tensor = torch.from_numpy(array)
    return tensor if device.type == "cpu" else tensor.to(device)


# ----------------------------------------------------------------------------- ego, truth


def ego_vector(snapshot: WorldSnapshot) -> np.ndarray:
    """The ego's proprioception, in the order of `config.EGO_FEATURES`.

    Returns:
        `(B, 8)` float32: speed [m/s], acceleration [m/s^2], steering [rad], lane offset
        [m], heading error [rad], lane index, lane count, on road (0 or 1).
    """
    columns = (
        snapshot.speed[:, EGO],
        snapshot.acceleration[:, EGO],
        snapshot.ego_steering,
        snapshot.ego_lane_offset,
        snapshot.ego_heading_error,
        snapshot.ego_lane_index,
        snapshot.ego_lane_count,
        snapshot.ego_on_road,
    )
    if len(columns) != len(EGO_FEATURES):
        raise AssertionError("ego_vector is out of step with config.EGO_FEATURES")
    return np.stack([np.asarray(c, dtype=np.float32) for c in columns], axis=1)


def ground_truth_objects(snapshot: WorldSnapshot,
                         config: SensorConfig) -> tuple[np.ndarray, np.ndarray]:
    """The other vehicles as a fixed-size object list in the metric ego frame (for `info`).

    Numpy: it is small and goes to `info` on the host anyway. No noise, no occlusion, no
    range limit: every valid non-ego vehicle, nearest centre first (ties keep slot
    order), cut to `config.max_objects`.

    Returns:
        `(objects (B, M, 8) float32, valid (B, M) bool)` with `M = config.max_objects` and
        columns `OBJECT_FIELDS`: x, y [m]; ground velocity in the ego frame vx, vy [m/s];
        heading relative to the ego in (-pi, pi] [rad]; length, width [m]; vehicle id.
        Padding rows are zeros with `valid` False.
    """
    position = np.asarray(snapshot.position, dtype=np.float64)
    heading = np.asarray(snapshot.heading, dtype=np.float64)
    batch, slots = snapshot.shape
    rel = to_ego_frame(position, position[:, EGO], heading[:, EGO])
    rel_heading = _wrap_angle(heading - heading[:, EGO:EGO + 1])
    speed = np.asarray(snapshot.speed, dtype=np.float64)
    table = np.stack([
        rel[..., 0], rel[..., 1],
        speed * np.cos(rel_heading), speed * np.sin(rel_heading),
        rel_heading,
        np.asarray(snapshot.length, dtype=np.float64),
        np.asarray(snapshot.width, dtype=np.float64),
        np.asarray(snapshot.vehicle_id, dtype=np.float64),
    ], axis=-1)                                        # (B, N, 8)
    other = np.asarray(snapshot.valid, dtype=bool).copy()
    other[:, EGO] = False
    distance = np.where(other, np.hypot(rel[..., 0], rel[..., 1]), np.inf)
    order = np.argsort(distance, axis=1, kind="stable")[:, :config.max_objects]
    taken = order.shape[1]
    picked_valid = np.take_along_axis(other, order, axis=1)
    picked = np.take_along_axis(table, order[..., None], axis=1)
    objects = np.zeros((batch, config.max_objects, len(OBJECT_FIELDS)), dtype=np.float32)
    valid = np.zeros((batch, config.max_objects), dtype=bool)
    objects[:, :taken] = np.where(picked_valid[..., None], picked, 0.0)
    valid[:, :taken] = picked_valid
    return objects, valid
