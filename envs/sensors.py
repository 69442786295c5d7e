"""The ego's sensors and ground truth, as pure batch-first functions of a `WorldSnapshot`.

What: a bird's-eye raster (`bev`), a 360-degree lidar (`lidar`), the ego's proprioception
(`ego`) and the ground-truth object list that goes in `info`. Every function takes `B`
worlds at once (slot 0 of the `N` axis is the ego) and returns batch-first arrays.

Which code runs where: both backends share one implementation of the sensors
(docs/ARCHITECTURE.md). The numpy entry points (`render_bev`, `cast_lidar`, `observe`,
`ground_truth_objects`) run, on the CPU, the numba kernels of `envs.sensor_kernels`
(parallel over worlds on numba's threads), and on any other device the torch cores
(`render_bev_torch`, `cast_lidar_torch`), which take and return tensors so a batched
backend can run them on CUDA tensors without a round trip through numpy; `kernel=` picks
one explicitly. The kernels repeat the cores' arithmetic operation by operation (and take
their cos and sin from torch), so the two give the same bev bit for bit and the same lidar;
the bev's generic road path (below) stays torch on both. On the CPU the kernels are about
10x faster: the cores pay per tensor op, over `(B, ...)` temporaries.

The torch cores: there are no Python loops over worlds (only over blocks of
about `_CHUNK_ELEMENTS`, sized to stay in cache, over vehicle slots and over road lines),
no matrix products (BLAS wakes its threads for each tiny product: milliseconds on a busy
2-core host) and no temporaries above a few MB (the allocator hands out bigger ones as
fresh pages: page faults). The numpy wrappers run the cores under
`torch.inference_mode()`; callers of the cores may do the same when they need no
autograd. A batched backend should also pass `out=` (a reused raster: a fresh one is 64
MB at `B = 4096`, tens of ms of page faults on some hosts) and keep passing the same
road tensors (or `road_plan=`).

How the bev is drawn (the cost is per row, not per pixel): every shape is convex, so the
pixel centres of one raster row that lie inside it form one run of columns. Runs are
computed analytically per (shape, row), turned into 64-bit row masks (bit `c` = column
`c`), OR-ed per channel, and expanded to bytes through a 256-entry table at the end.
- Vehicles and the ego are rectangles, evaluated on the few rows their box spans (only
  the ones that touch the raster; occlusion only for those, against nearby vehicles).
- Straight roads (all lane and marking segments parallel; stripes of a painted line evenly
  spaced, as highway-env's straight roads are) take a fast path: each lane and each
  painted line is a "line" across the raster; a row meets a line's band once, next to one
  stripe (its nearest), so a run per (line, row) is exact. Lanes side by side are drawn
  as one band away from the road's ends. `prepare_road` finds this structure once per
  road (cached by identity), so nothing per call scales with the road's length.
- Any other road (chords of curved lanes, merges, roundabouts...), and worlds whose ego
  is turned more than 60 degrees from a straight road, go through the generic path: road
  segments clipped to the raster, cut into short capsules and tested pixel by pixel on
  small windows.
A world's raster does not depend on the other worlds of the batch (on the fast path, bit
for bit).

The lidar tests each vehicle only against the beams of its angular window (those that
pass within its half diagonal of its centre), keeping the nearest hit per beam.

Randomness: the noise of world `b`, slot or beam `k` is a pure function of that world's
64-bit keys and `k` (a counter-based generator, `sensor_kernels.noise_kernel`: SplitMix64
and Box-Muller). The keys come from the `rng` argument: an `EpisodeNoise`
(`episode_noise_keys`, what both envs pass) holds each world's keys as SplitMix64 of
(episode seed, tick within the episode, stream), so a world's noise depends on its
episode and tick only, never on its index, its batch or the other worlds (runs do not
depend on `--envs` or chunking); a `np.random.Generator` gives each call two keys (the
bev's, then the lidar's), and world `b`'s keys are SplitMix64 of (call key, `b`). A call
consumes the same randomness from a Generator whatever the shapes and the scene, so a
seeded stream stays aligned whatever the traffic does. The numba kernels compute the noise
where they use it (the lidar's on beams that hit, the bev's when its noise is on), in
parallel; the torch cores take the same numbers as arrays (`draw_bev_noise`,
`draw_lidar_noise`), so the same keys give the same observation on every device and path.
With `rng=None` the sensors return the noiseless truth.

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
A pixel centre within float32 rounding (about 1e-5 m) of a grown boundary may go either
way; nothing else depends on how the shape is drawn.
"""

from __future__ import annotations

import math
import sys
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from reflexdrive.envs import sensor_kernels as _kernels
from reflexdrive.envs.config import EGO_FEATURES, SensorConfig
from reflexdrive.common.threads import kernel_threads
from reflexdrive.envs.types import EGO, RoadGeometry, WorldSnapshot

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

_CHUNK_ELEMENTS = 1 << 18
"""Most elements of one temporary in the hot loops: 256 Ki, 1 MB of float32, so a chunk's
temporaries stay in cache (and far below the allocator's page-faulting sizes)."""

_INV_MAX = 1e12
"""Slab method: `1 / direction` is clamped to this, so axis-parallel rays need no branch."""

_OCCLUSION_EPS = 1e-4
"""A ray to a sample point is blocked only by boxes it enters before `1 - eps` of the way."""

_CLIP_MARGIN_M = 1e-3
"""Slack when clipping road segments to the raster, so boundary pixels are never lost [m]."""

_PIECE_PX = 8
"""Longest road piece drawn through one window [px]; longer (clipped) segments are cut."""

_WINDOW_TOL_PX = 1e-3
"""Slack when turning a shape's bounding box into pixel rows and columns [px]."""

_EDGE_TOL_M = 1e-4
"""Shapes are grown by this before drawing, so pixel centres on a boundary count as inside
whatever the float32 rounding [m]."""

_FAR = 1e30
"""Stands for "no limit" in float32 arithmetic (finite, so `0 * _FAR` stays 0)."""

_WORD = 64
"""Columns per row-mask word (int64)."""

_MIN_COS = 0.5
"""Straight-road fast path only while the ego heads within 60 degrees of the road."""

_LINE_TOL_M = 1e-6
"""`prepare_road`: segments this close to one line (or to an even stripe pattern) are
taken as lying on it [m]."""

_SQRT_FLOOR = 1e-30
"""`sqrt` arguments are clamped to this normal float, not 0: zero and subnormal arguments
take a slow path on x86 (the root moves by 1e-15 px, below float32 resolution)."""

_BEAM_SLACK_RAD = 1e-3
"""Lidar: slack on a box's angular window, so rounding never drops a beam that hits it."""

_NO_HIT_KEY = 0x7F800000 << 16
"""Lidar: the packed key of "no hit" (+inf distance, slot 0)."""

_PLAN_CACHE_SIZE = 4
"""Road plans kept by `_road_plan_for` (roads seen last)."""


# ----------------------------------------------------------------------------- frames


def to_ego_frame(points_world, ego_position, ego_heading):
    """Express world-frame points in each world's ego frame.

    Works on numpy arrays and torch tensors alike (returns the same kind and dtype). Plain
    element-wise arithmetic (no matrix product: no BLAS threads for tiny products).

    Args:
        points_world: `(B, ..., 2)` points in the world frame [m].
        ego_position: `(B, 2)` ego centre in the world frame [m].
        ego_heading: `(B,)` ego heading in the world frame [rad].

    Returns:
        `(B, ..., 2)` points in the ego frame [m]: x forward, y towards the +heading side.
    """
    lib = torch if isinstance(points_world, torch.Tensor) else np
    batch, middle = points_world.shape[0], (1,) * (points_world.ndim - 2)
    offset = points_world - ego_position.reshape((batch,) + middle + (2,))
    cos = lib.cos(ego_heading).reshape((batch,) + middle)
    sin = lib.sin(ego_heading).reshape((batch,) + middle)
    dx, dy = offset[..., 0], offset[..., 1]
    return lib.stack([dx * cos + dy * sin, dy * cos - dx * sin], -1)


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


_STEPS: dict = {}
"""`_steps`' cache."""


def _steps(count: int, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """`arange(count)` on `device` (cached: small constant tensors are made once)."""
    key = (count, str(device), dtype)
    if key not in _STEPS:
        with torch.inference_mode(False):                  # a normal tensor, usable anywhere
            _STEPS[key] = torch.arange(count, device=device, dtype=dtype)
    return _STEPS[key]


def _beams(beams: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`(cos, sin)` of the lidar beam angles `2 pi i / beams`, `(beams,)` float32 each
    (computed in float64, cached)."""
    key = ("beams", beams, str(device))
    if key not in _STEPS:
        with torch.inference_mode(False):
            angle = torch.arange(beams, device=device, dtype=torch.float64) * (
                2.0 * math.pi / beams)
            _STEPS[key] = (torch.cos(angle).float(), torch.sin(angle).float())
    return _STEPS[key]


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


def _order(keep: torch.Tensor):
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
    slot = _steps(slots, keep.device, torch.int64).expand(batch, slots)
    if width == slots and bool(keep.all()):
        return slot, keep
    dest = torch.where(keep, rank - 1, width)           # dropped entries: a spare column
    order = torch.zeros(batch, width + 1, dtype=torch.int64, device=keep.device)
    order.scatter_(1, dest, slot)
    return order[:, :width], _steps(width, keep.device, torch.int64) < count


class _Boxes(NamedTuple):
    """Vehicle boxes in the ego frame, one `(B, N)` float32 tensor per field: centre `cx`,
    `cy` [m]; unit heading `ax, ay` (cos and sin of the heading relative to the ego's);
    half length `hl` and half width `hw` [m]."""

    cx: torch.Tensor
    cy: torch.Tensor
    ax: torch.Tensor
    ay: torch.Tensor
    hl: torch.Tensor
    hw: torch.Tensor

    def take(self, order: torch.Tensor) -> "_Boxes":
        """The boxes at `order` `(B, P)` (slot numbers) of each world."""
        return _Boxes(*(field.gather(1, order) for field in self))

    def origins(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ego centre (the ego frame's origin) in each box's frame [m]."""
        ox, oy = _into_box(self.cx, self.cy, self.ax, self.ay)
        return ox.neg_(), oy.neg_()


def _ego_frame(position: torch.Tensor, heading: torch.Tensor, length: torch.Tensor,
               width: torch.Tensor) -> _Boxes:
    """Vehicle boxes in the ego frame, float32 (`to_ego_frame`, one field at a time).

    Args:
        position: `(B, N, 2)` world-frame centres [m] (float64 keeps far-away worlds
            precise: the offsets are taken before the cast).
        heading: `(B, N)` world-frame headings [rad].
        length, width: `(B, N)` sizes [m].
    """
    dx = position[..., 0] - position[:, EGO:EGO + 1, 0]
    dy = position[..., 1] - position[:, EGO:EGO + 1, 1]
    cos, sin = torch.cos(heading[:, EGO:EGO + 1]), torch.sin(heading[:, EGO:EGO + 1])
    rel_heading = (heading - heading[:, EGO:EGO + 1]).float()
    return _Boxes((dx * cos + dy * sin).float(), (dy * cos - dx * sin).float(),
                  torch.cos(rel_heading), torch.sin(rel_heading),
                  length.float().mul_(0.5), width.float().mul_(0.5))


def _into_box(px: torch.Tensor, py: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Ego-frame vectors `(px, py)` seen in box frames of heading `(cos, sin)` (broadcast):
    `(px cos + py sin, py cos - px sin)`, each rounded as `fl(fl(a b) + fl(c d))`."""
    return (px * cos).add_(py * sin), (py * cos).sub_(px * sin)


# ----------------------------------------------------------------------------- road plans
#
# A straight road, in its own frame (s along the road direction `d`, t across it, both
# from an origin `o`), is a set of "lines": line `j` is the set of capsules of radius
# `rho_j` around the segments `t = t_j, s in [a_k, b_k]`, `a_k = a_0 + k P`,
# `b_k = min(a_k + l, b_last)`, `k = 0 .. K - 1`. A lane is a line with one segment
# (`K = 1`, radius its half width); a painted line is a line of evenly spaced stripes
# (radius half a pixel). `_LINE` names the columns of a line's row in `RoadPlan.lines`.

_LINE = ("t", "a0", "period", "length", "count", "end", "radius", "valid")
"""Columns of `RoadPlan.lines` (float64): across offset `t_j`, first start `a_0`, period
`P`, stripe length `l` (`_FAR` for a single segment), stripe count `K`, last end `b_last`
[m]; radius [m] (NaN for markings: half a pixel, known at render time); 1 for a line."""


@dataclass(frozen=True, eq=False)
class RoadPlan:
    """What `render_bev_torch` needs of a `RoadGeometry` that does not change per tick.

    Built by `prepare_road` (once per road: pass it as `road_plan=` or let the cache keep
    it). Roads are deduplicated: `variant[i]` is the row of road `i` in the per-variant
    tables.

    Attributes:
        batch: rows of the road tensors it was built from (`B`, or 1 for a shared road).
        variant: `(batch,)` int64, the distinct road each row is.
        straight: `(V,)` bool, the variant takes the straight-road fast path.
        direction, origin: `(V, 2)` float64, road direction (unit) and origin [m].
        lines: `(V, lanes + marks + 1, 8)` float64 in the `_LINE` layout: lanes (bev
            channel 0), painted lines (channel 1), then the union of the lanes when it is
            one line (lanes side by side, same ends); unused rows invalid.
        lanes, marks: numbers of lane and painted lines (the same for all variants,
            padded).
        merged: every variant with lanes has their union as its last line.
        min_gap: `(V,)` float64, shortest gap between two stripes of one line [m] (`inf`
            when no line has two stripes).
        striped: per line column, whether some variant has a striped line there.
        any_generic: some variant is not straight.
        segments: the road of each variant (for the generic path), on the plan's device:
            `(lane_segments (V, S, 2, 2), lane_half_width (V, S), lane_valid (V, S),
            marking_segments (V, K, 2, 2), marking_valid (V, K))`.
    """

    batch: int
    variant: torch.Tensor
    straight: torch.Tensor
    direction: torch.Tensor
    origin: torch.Tensor
    lines: torch.Tensor
    lanes: int
    marks: int
    merged: bool
    min_gap: torch.Tensor
    striped: tuple
    any_generic: bool
    segments: tuple


def _straight_lines(lanes, half, lane_ok, marks, mark_ok):
    """Find the straight-road structure of one road (numpy, float64), or None.

    Args:
        lanes: `(S, 2, 2)` lane centre segments; half: `(S,)` half widths; lane_ok: `(S,)`.
        marks: `(K, 2, 2)` marking segments; mark_ok: `(K,)`.

    Returns:
        `(direction (2,), origin (2,), lane_lines (n, 8), mark_lines (m, 8), min_gap)`, or
        None when some valid segment is degenerate or not parallel to the others, or the
        stripes of a painted line are not evenly spaced.
    """
    lanes, marks = lanes[lane_ok], marks[mark_ok]
    half = half[lane_ok]
    segments = np.concatenate([lanes, marks])
    if len(segments) == 0:
        return np.array([1.0, 0.0]), np.zeros(2), np.zeros((0, 8)), np.zeros((0, 8)), math.inf
    if not np.isfinite(segments).all() or not np.isfinite(half).all():
        return None
    vector = segments[:, 1] - segments[:, 0]
    length = np.hypot(vector[:, 0], vector[:, 1])
    if length.min() <= _LINE_TOL_M:
        return None
    ref = int(np.argmax(length))
    direction, origin = vector[ref] / length[ref], segments[ref, 0].copy()
    unit = vector / length[:, None]
    if np.abs(unit[:, 0] * direction[1] - unit[:, 1] * direction[0]).max() > 1e-9:
        return None
    rel = segments - origin                                        # (M, 2, 2)
    s = rel @ direction                                            # (M, 2) along
    t = rel[..., 1] * direction[0] - rel[..., 0] * direction[1]    # (M, 2) across
    if np.abs(t[:, 0] - t[:, 1]).max() > _LINE_TOL_M:
        return None
    t, a, b = t.mean(1), s.min(1), s.max(1)
    n = len(lanes)

    def single(tj, aj, bj, radius):
        return [tj, aj, 1.0, _FAR, 1.0, bj, radius, 1.0]

    lane_lines = [single(t[i], a[i], b[i], half[i]) for i in range(n)]
    mark_lines, min_gap = [], math.inf
    order = np.lexsort((a[n:], t[n:])) + n                         # by t, then a
    groups = np.split(order, np.nonzero(np.diff(t[order]) > _LINE_TOL_M)[0] + 1)
    for group in (g for g in groups if len(g)):
        ga, gb, tj = a[group], b[group], float(t[group].mean())
        if len(group) == 1:
            mark_lines.append(single(tj, ga[0], gb[0], math.nan))
            continue
        count = len(group)
        period, stripe = ga[1] - ga[0], gb[0] - ga[0]
        k = np.arange(count)
        even = (np.abs(ga - (ga[0] + k * period)).max() <= _LINE_TOL_M
                and np.abs(gb[:-1] - ga[:-1] - stripe).max(initial=0.0) <= _LINE_TOL_M
                and gb[-1] - ga[-1] <= stripe + _LINE_TOL_M and gb[-1] > ga[-1]
                and period - stripe > 2 * _LINE_TOL_M)
        if not even:
            return None
        mark_lines.append([tj, ga[0], period, stripe, float(count), gb[-1], math.nan, 1.0])
        min_gap = min(min_gap, period - stripe)
    return (direction, origin, np.array(lane_lines).reshape(-1, 8),
            np.array(mark_lines).reshape(-1, 8), min_gap)


def _lanes_union(lane_lines: np.ndarray) -> np.ndarray:
    """The union of a straight road's lanes as one line, when it is one: lanes side by
    side (each touching or overlapping the next) with the same ends. Away from the ends
    the union of their bands is the band of this line; near them, the lanes are drawn one
    by one. An invalid (all-zero but period, count) row otherwise."""
    none = np.array([0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    if len(lane_lines) == 0:
        return none
    lines = lane_lines[np.argsort(lane_lines[:, 0])]
    t, a, b, radius = lines[:, 0], lines[:, 1], lines[:, 5], lines[:, 6]
    touching = np.all(t[1:] - radius[1:] <= t[:-1] + radius[:-1])
    if not (touching and np.ptp(a) == 0.0 and np.ptp(b) == 0.0):
        return none
    low, high = t[0] - radius[0], t[-1] + radius[-1]
    return np.array([0.5 * (low + high), a[0], 1.0, _FAR, 1.0, b[0], 0.5 * (high - low), 1.0])


def _distinct_rows(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicate the rows (axis 0) of several arrays taken together.

    Rows are grouped by a hash of their bits, then each row is checked against its
    group's first row, a block of rows at a time (rows that differ after all, hash
    collisions, form groups of their own).

    Returns:
        `(first, inverse)`: the index of each distinct row's first occurrence, and for
        every row the position of its distinct row in `first`.
    """
    rows = arrays[0].shape[0]
    if rows == 1 or all(a.strides[0] == 0 for a in arrays):      # one road, or broadcast
        return np.zeros(1, dtype=np.int64), np.zeros(rows, dtype=np.int64)
    rng = np.random.default_rng(0)
    flats = [np.ascontiguousarray(a.reshape(rows, -1)) for a in arrays]
    flats = [f.view(np.uint64) if f.itemsize == 8 else f.astype(np.uint64) for f in flats]
    weights = [rng.integers(1, 2**63, f.shape[1], dtype=np.uint64) | np.uint64(1)
               for f in flats]
    fingerprint = np.zeros(rows, dtype=np.uint64)               # bitwise, wrapping: exact
    step = max(1, (1 << 20) // max(sum(f.shape[1] for f in flats), 1))   # 8 MB blocks
    for r0 in range(0, rows, step):
        for f, w in zip(flats, weights):
            fingerprint[r0:r0 + step] += (f[r0:r0 + step] * w).sum(1, dtype=np.uint64)
    _, head, group = np.unique(fingerprint, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(head))                           # groups by first row
    head, group = np.sort(head), rank[group.reshape(-1)]
    reference = head[group]                                       # each row's candidate
    same = np.ones(rows, dtype=bool)
    for r0 in range(0, rows, step):
        block = slice(r0, r0 + step)
        for f in flats:
            same[block] &= (f[block] == f[reference[block]]).all(1)
    first, inverse = list(head), group.astype(np.int64)
    for row in np.nonzero(~same)[0]:                              # rare: a collision, NaN
        for g in range(len(head), len(first)):
            if all(np.array_equal(f[row], f[first[g]]) for f in flats):
                inverse[row] = g
                break
        else:
            inverse[row] = len(first)
            first.append(int(row))
    return np.array(first, dtype=np.int64), inverse


def prepare_road(lane_segments, lane_half_width, lane_valid, marking_segments, marking_valid,
                 device: str | torch.device | None = None) -> RoadPlan:
    """Analyse a road once for `render_bev_torch` (numpy arrays or tensors, batch `B` or 1).

    The straight-road structure is searched per distinct road row; rows without it (and
    rows with curved lanes) are drawn by the generic path. Cost: a few ms per distinct
    road, plus a pass over the arrays to find the distinct rows.

    Args:
        lane_segments ... marking_valid: as in `RoadGeometry` (`(B, S, 2, 2)` etc.).
        device: where the plan's tensors live (default: that of `lane_segments` if it is a
            tensor, else the CPU).

    Returns:
        A `RoadPlan`; treat the road arrays as immutable while it is in use.
    """
    tensors = (lane_segments, lane_half_width, lane_valid, marking_segments, marking_valid)
    if device is None:
        device = lane_segments.device if isinstance(lane_segments, torch.Tensor) else "cpu"
    device = torch.device(device)
    arrays = [t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
              for t in tensors]
    arrays = [np.asarray(arrays[0], np.float64), np.asarray(arrays[1], np.float64),
              np.asarray(arrays[2], bool), np.asarray(arrays[3], np.float64),
              np.asarray(arrays[4], bool)]
    rows = arrays[0].shape[0]
    first, inverse = _distinct_rows(arrays)
    found = [_straight_lines(*(a[i] for a in arrays)) for i in first]
    lanes = max([len(f[2]) for f in found if f is not None], default=0)
    marks = max([len(f[3]) for f in found if f is not None], default=0)
    lines = np.zeros((len(first), lanes + marks + 1, 8))        # + the lanes' union
    lines[..., 2] = lines[..., 4] = 1.0                          # period, count of padding
    direction = np.tile([1.0, 0.0], (len(first), 1))
    origin = np.zeros((len(first), 2))
    min_gap = np.full(len(first), math.inf)
    straight = np.array([f is not None for f in found], dtype=bool)
    for v, f in enumerate(found):
        if f is None:
            continue
        direction[v], origin[v], lane_lines, mark_lines, min_gap[v] = f
        lines[v, :len(lane_lines)] = lane_lines
        lines[v, lanes:lanes + len(mark_lines)] = mark_lines
        lines[v, -1] = _lanes_union(lane_lines)
    merged = all(f is None or len(f[2]) == 0 or lines[v, -1, 7] > 0
                 for v, f in enumerate(found))

    def dev(array, dtype=None):
        return torch.as_tensor(np.array(array, copy=True, order="C"), dtype=dtype,
                               device=device)

    segments = tuple(dev(a[first]) for a in arrays)               # per variant
    return RoadPlan(batch=rows, variant=dev(inverse, torch.int64), straight=dev(straight),
                    direction=dev(direction), origin=dev(origin), lines=dev(lines),
                    lanes=lanes, marks=marks, merged=merged, min_gap=dev(min_gap),
                    striped=tuple(bool(x) for x in (lines[..., 4] > 1).any(0)),
                    any_generic=not straight.all(),
                    segments=segments)


_PLANS: OrderedDict = OrderedDict()
"""`_road_plan_for`'s cache: key -> (what must still hold, plan)."""


def _version(tensor: torch.Tensor):
    """The tensor's version counter (bumped by in-place changes); None for inference
    tensors, which have none (the cache then trusts that they are not written to)."""
    try:
        return tensor._version
    except RuntimeError:
        return None


def _road_plan_for(road, tensors: tuple, device: torch.device) -> RoadPlan:
    """The plan of a road, from the cache when the same road was seen recently.

    `road` is the `RoadGeometry` (numpy entry point; matched by identity through a weak
    reference) or None (torch core: matched by the identity, shape and version counter of
    the five tensors, which the cache keeps alive so their memory is not reused).
    """
    if road is not None:
        key = ("road", id(road), str(device))
        hit = _PLANS.get(key)
        if hit is not None and hit[0]() is road:
            _PLANS.move_to_end(key)
            return hit[1]
        plan = prepare_road(*tensors, device=device)
        try:
            guard = weakref.ref(road)
        except TypeError:                                # not weak-referenceable: no cache
            return plan
    else:
        key = ("tensors", str(device)) + tuple(
            (t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, _version(t)) for t in tensors)
        hit = _PLANS.get(key)
        if hit is not None:                 # same memory, kept alive by the entry, unmodified
            _PLANS.move_to_end(key)
            return hit[1]
        plan = prepare_road(*tensors, device=device)
        guard = (lambda kept=tensors: kept)
    _PLANS[key] = (guard, plan)
    while len(_PLANS) > _PLAN_CACHE_SIZE:
        _PLANS.popitem(last=False)
    return plan


# ----------------------------------------------------------------------------- row masks
#
# A "run" is the set of columns `ceil(lo) .. floor(hi)` of one raster row, `lo`, `hi` in
# column units (`col(y) = y / res + half_width / res - 0.5`). Runs become int64 row masks
# (bit `c` of word `w` is column `64 w + c`) through a table of all runs of one word.

_TABLES: dict = {}
"""Lookup tables per (name, device): see `_run_table` and `_byte_table`."""


def _run_table(device: torch.device) -> torch.Tensor:
    """`(65 * 65,)` int64: entry `first * 65 + end` is the word with bits `[first, end)`."""
    key = ("run", str(device))
    if key not in _TABLES:
        table = np.zeros((65, 65), dtype=np.uint64)
        for first in range(65):
            for end in range(first + 1, 65):
                table[first, end] = ((1 << end) - 1) ^ ((1 << first) - 1)
        with torch.inference_mode(False):
            _TABLES[key] = torch.from_numpy(table.view(np.int64).reshape(-1)).to(device)
    return _TABLES[key]


def _byte_table(device: torch.device) -> torch.Tensor:
    """`(256,)` int64: entry `v` holds 8 bytes, byte `j` 255 where bit `j` of `v` is set."""
    key = ("byte", str(device))
    if key not in _TABLES:
        bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
        table = np.ascontiguousarray(bits * np.uint8(255)).view(np.int64).reshape(-1)
        with torch.inference_mode(False):
            _TABLES[key] = torch.from_numpy(table.copy()).to(device)
    return _TABLES[key]


def _run_masks(lo: torch.Tensor, end: torch.Tensor, width: int) -> torch.Tensor:
    """Row masks of runs.

    Args:
        lo: `(...)` float32 run start in column units: the first column is `ceil(lo)`.
        end: `(...)` float32 run end plus one: the last column is `floor(end) - 1`.
            Both are consumed (changed in place); NaN gives an empty run.
        width: raster width `W` [px].

    Returns:
        `(..., words)` int64 with `words = ceil(W / 64)`.
    """
    table = _run_table(lo.device)
    first = lo.ceil_().clamp_(0.0, width)
    end = end.floor_().clamp_(0.0, width)
    words = -(-width // _WORD)
    if words == 1:                                     # NaN bounds (bad input): no run
        index = end.add_(first, alpha=65.0).nan_to_num_(0.0).to(torch.int32)
        return table.index_select(0, index.view(-1)).view(index.shape + (1,))
    masks = []
    for word in range(words):
        f = (first - _WORD * word).clamp_(0.0, _WORD)
        e = (end - _WORD * word).clamp_(0.0, _WORD)
        index = e.add_(f, alpha=65.0).nan_to_num_(0.0).to(torch.int32)
        masks.append(table.index_select(0, index.view(-1)).view(index.shape))
    return torch.stack(masks, -1)


def _expand_rows(rows: torch.Tensor, width: int, out: torch.Tensor | None = None):
    """Row masks to the raster: `(B, C, H, words)` int64 -> `(B, C, H, W)` uint8 0 / 255.

    One table lookup per byte of mask (8 pixels), written straight into `out` (allocated
    when None; else a contiguous `(B, C, H, W)` uint8 tensor on the same device)."""
    if sys.byteorder != "little":                     # masks are read byte by byte
        raise NotImplementedError("the bev raster needs a little-endian host")
    batch, channels, height, words = rows.shape
    shape = (batch, channels, height, width)
    if out is None:
        out = torch.empty(shape, dtype=torch.uint8, device=rows.device)
    elif out.shape != shape or out.dtype != torch.uint8 or out.device != rows.device:
        raise ValueError(f"out must be a {shape} uint8 tensor on {rows.device}, got "
                         f"{tuple(out.shape)} {out.dtype} on {out.device}")
    nbytes = -(-width // 8)
    table = _byte_table(rows.device)
    masks = rows.view(torch.uint8).view(-1, words * 8)[:, :nbytes]   # (B C H, nbytes)
    direct = width % 8 == 0 and out.is_contiguous() and out.storage_offset() % 8 == 0
    target = out.view(torch.int64).view(-1, nbytes) if direct else None
    step = max(1, _CHUNK_ELEMENTS // nbytes)          # chunks: small index temporaries
    for r0 in range(0, masks.shape[0], step):
        index = masks[r0:r0 + step].to(torch.int32).view(-1)
        if direct:
            torch.index_select(table, 0, index, out=target[r0:r0 + step].view(-1))
        else:
            wide = table.index_select(0, index).view(torch.uint8).view(-1, nbytes * 8)
            out.view(-1, width)[r0:r0 + step] = wide[:, :width]
    return out


# ----------------------------------------------------------------------------- straight roads

_EXACT = ("y0", "y1", "s0", "s1", "u0", "u1", "m_lo", "m_hi", "a_ref", "period", "length",
          "b_last", "q_m", "omega_lo", "omega_hi", "sigma", "kappa", "rho2")
"""Fields of `_line_runs`' per-(world, line) parameters (float32). Per row `r`: the line
centre's column is `y0 + y1 r` [px], its `s - s_e` is `s0 + s1 r` [m], and the stripe
nearest it is `round(u0 + u1 r)` relative to the reference stripe, clamped to
`[m_lo, m_hi]`. Then: start of the reference stripe [m], period, stripe length, last end
relative to `s_e` [m]; `q_m = rho / cos` [m]; `-+ q_m sin` [m]; sin and cos of the road's
heading in the ego frame in px per m; squared grown radius [px^2]."""


def _line_runs(c: dict, rows: torch.Tensor):
    """Exact runs of lines of capsules (a row meets a line next to one stripe only).

    A point of the segment at `w` along the road from where the row crosses the line
    centre (`w` in `[A, B]`, the stripe's ends relative to that crossing) lights the row
    over `eta in w sin -+ sqrt(rho^2 - w^2 cos^2)` (`|w cos| <= rho`). The run's start is
    the minimum of the convex `w sin - sqrt(...)` over `w in [max(A, -q_m), min(B, q_m)]`,
    reached at the clamp of its free minimiser `w = -q_m sin`; its end likewise at the
    clamp of `+q_m sin`. An empty `w` range gives no run.

    Args:
        c: the `_EXACT` fields, each a `(Q, 1)` float32 tensor.
        rows: `(H,)` float32 row numbers.

    Returns:
        `(lo, end)`, each `(Q, H)` in column units, as `_run_masks` takes them.
    """
    s_c = torch.mul(c["s1"], rows).add_(c["s0"])                       # [m]
    m = torch.mul(c["u1"], rows).add_(c["u0"]).round_()
    torch.maximum(m, c["m_lo"], out=m)
    torch.minimum(m, c["m_hi"], out=m)                                 # nearest stripe
    w1 = m.mul_(c["period"]).add_(c["a_ref"]).sub_(s_c)               # A [m]
    w2 = torch.minimum(w1 + c["length"], c["b_last"] - s_c)           # B [m]
    torch.maximum(w1, c["q_m"].neg(), out=w1)
    torch.minimum(w2, c["q_m"], out=w2)
    empty = (w1 - w2).mul_(_FAR).clamp_(0.0, 1.0).mul_(_FAR)         # _FAR when w1 > w2
    y_c = torch.mul(c["y1"], rows).add_(c["y0"])
    runs = []
    for sign, free in ((-1.0, c["omega_lo"]), (1.0, c["omega_hi"])):
        w = torch.minimum(torch.maximum(w1, free), w2)
        root = (w * c["kappa"]).square_().neg_().add_(c["rho2"]).clamp_min_(_SQRT_FLOOR).sqrt_()
        runs.append(w.mul_(c["sigma"]).add_(root, alpha=sign).add_(empty, alpha=-sign)
                    .add_(y_c))
    return runs[0], runs[1].add_(1.0)


def _line_params(lines: torch.Tensor, kappa, sigma, s_e, t_e, fast, config: SensorConfig):
    """Per-(world, line) parameters of the fast path, float64.

    Args:
        lines: `(B, L, 8)` the worlds' lines in the `_LINE` layout.
        kappa, sigma: `(B, 1)` cos and sin of the road's heading in the ego frame.
        s_e, t_e: `(B, 1)` the ego in road coordinates [m].
        fast: `(B, 1)` bool, the world takes the fast path.

    Returns:
        `(table (B, L, F) float32 in the `_LINE_FIELDS` layout, near (B, L) bool)`: `near`
        marks the single segments (of fast worlds) with an end near the raster, which need
        exact runs.
    """
    res = config.bev_m_per_px
    inv_res, col0 = 1.0 / res, config.bev_half_width_m / res - 0.5
    x0 = config.range_m - 0.5 * res
    t, a0, period, length, count, end, radius, valid = lines.unbind(-1)
    rho = torch.where(torch.isnan(radius), 0.5 * res, radius) + _EDGE_TOL_M
    dt = t - t_e
    k_ref = torch.minimum(torch.floor((s_e - a0) / period).clamp_min_(0.0), count - 1.0)
    a_ref, b_last = a0 + k_ref * period - s_e, end - s_e
    y0 = (dt + x0 * sigma) / kappa * inv_res + col0           # line centre, row 0 [px]
    s0, s1, q_m = (x0 + dt * sigma) / kappa, -res / kappa, rho / kappa
    drawn = (valid > 0) & fast
    corner = math.hypot(max(config.range_m, config.bev_behind_m), config.bev_half_width_m)
    reach = corner + res + rho
    near = drawn & (count <= 1) & ((a_ref > -reach) | (b_last < reach))
    q = q_m * inv_res
    fields = dict(
        y0=y0, y1=-sigma / kappa, s0=s0, s1=s1, u0=(s0 - a_ref - 0.5 * length) / period,
        u1=s1 / period, m_lo=-k_ref, m_hi=count - 1.0 - k_ref, a_ref=a_ref, period=period,
        length=length, b_last=b_last, q_m=torch.where(drawn, q_m, -1.0),   # < 0: no run
        omega_lo=-q_m * sigma, omega_hi=q_m * sigma, sigma=sigma * inv_res,
        kappa=kappa * inv_res, rho2=(rho * inv_res).square(),
        band_lo=torch.where(drawn & ~near, y0 - q, _FAR), band_end=y0 + q + 1.0)
    table = torch.empty(y0.shape + (len(_LINE_FIELDS),), device=y0.device)
    for i, k in enumerate(_LINE_FIELDS):                       # float32, broadcast
        table[..., i] = fields[k]
    return table, near


_LINE_FIELDS = _EXACT + ("band_lo", "band_end")
"""Columns of `_line_params`' table: the `_EXACT` fields, then the band's column bounds
in row 0 [px] (`band_lo` past the raster where the band is not drawn)."""


def _fields(table: torch.Tensor) -> dict:
    """Named `(..., 1)` views of the columns of a `_line_params` table `(..., F)`."""
    return dict(zip(_LINE_FIELDS, table.unsqueeze(-1).unbind(-2)))


def _columns(table: torch.Tensor, cols: list) -> torch.Tensor:
    """`table[:, cols]` by `index_select` (advanced indexing wakes OpenMP threads even for
    tiny tensors, which stalls for ms on a busy host)."""
    if not cols:
        return table[:, :0]
    if cols == list(range(cols[0], cols[0] + len(cols))):      # a slice: a view
        return table[:, cols[0]:cols[0] + len(cols)]
    return table.index_select(1, torch.tensor(cols, device=table.device))


def _road_line_rows(road: torch.Tensor, marks: torch.Tensor, plan: RoadPlan,
                    ego_position: torch.Tensor, ego_heading: torch.Tensor,
                    config: SensorConfig) -> torch.Tensor:
    """Row masks of the road (lanes) and markings of straight roads: the fast path.

    Lines whose ends are far from the raster (lanes and continuous lines, mostly) are a
    band: one run of constant width per row, moving linearly with the row. Striped lines
    get the exact runs of `_line_runs`, and so do the (rare) other lines with an end near
    the raster.

    Args:
        road, marks: `(B, H, words)` int64 row masks of the road and marking channels
            (zeros), OR-ed into in place.
        plan: the road's `RoadPlan`.
        ego_position: `(B, 2)` world frame [m]; ego_heading: `(B,)` [rad].

    Returns:
        `slow (B,)` bool: worlds the fast path does not draw (their masks stay 0), to be
        drawn by the generic path.
    """
    batch = ego_position.shape[0]
    _, height, width = config.bev_shape
    res = config.bev_m_per_px
    words = -(-width // _WORD)
    device = ego_position.device
    variant = plan.variant if plan.batch == batch else plan.variant.expand(batch)
    d, origin = plan.direction.index_select(0, variant), plan.origin.index_select(0, variant)
    pos, heading = ego_position.double(), ego_heading.double()
    cos_h, sin_h = torch.cos(heading), torch.sin(heading)
    kappa = d[:, 0] * cos_h + d[:, 1] * sin_h                 # cos, sin of the road's
    sigma = d[:, 1] * cos_h - d[:, 0] * sin_h                 # heading in the ego frame
    rel = pos - origin
    s_e = rel[:, 0] * d[:, 0] + rel[:, 1] * d[:, 1]           # ego in road coordinates [m]
    t_e = rel[:, 1] * d[:, 0] - rel[:, 0] * d[:, 1]
    rho_mark = 0.5 * res + _EDGE_TOL_M
    # One stripe per (line, row): the run's s-extent 2 rho |tan| stays under half a gap.
    tan_max = 0.5 * (plan.min_gap.index_select(0, variant) - 2.0 * rho_mark) / (2.0 * rho_mark)
    fast = plan.straight.index_select(0, variant) & (kappa >= _MIN_COS)
    fast &= sigma.abs() <= tan_max * kappa
    lines = plan.lines.shape[1]
    if lines == 0 or not bool(fast.any()):
        return ~fast

    per_world = (kappa.clamp_min(_MIN_COS)[:, None], sigma[:, None], s_e[:, None],
                 t_e[:, None], fast[:, None])                 # clamped: finite everywhere
    table, near = _line_params(plan.lines.index_select(0, variant), *per_world,
                               config)                        # (B, L, F)
    rows = _steps(height, device)
    union = lines - 1                                         # the lanes' union, if any
    merged = plan.merged and plan.lanes > 0
    cols = range(plan.lanes, union) if merged else range(union)
    band_cols = ([union] if merged else []) + [j for j in cols if not plan.striped[j]]
    exact_cols = [j for j in range(union) if plan.striped[j]]

    def target(j):
        return road if j < plan.lanes or j == union else marks

    band = _fields(_columns(table, band_cols))
    exact = _columns(table, exact_cols).reshape(-1, table.shape[-1])   # (B * Le, F)
    for b0, b1 in _world_chunks(batch, len(band_cols + exact_cols) * height):
        parts = []
        if band_cols:
            lo, end, slope = (band[k][b0:b1] for k in ("band_lo", "band_end", "y1"))
            parts.append((band_cols, _run_masks(torch.mul(slope, rows).add_(lo),
                                                torch.mul(slope, rows).add_(end), width)))
        if exact_cols:
            runs = _line_runs(_fields(exact[b0 * len(exact_cols):b1 * len(exact_cols)]), rows)
            parts.append((exact_cols, _run_masks(*runs, width).view(
                b1 - b0, len(exact_cols), height, words)))
        for columns, masks in parts:
            for i, j in enumerate(columns):                   # OR the lines per channel
                target(j)[b0:b1].bitwise_or_(masks[:, i])
    # Rare: exact runs for lines with an end near the raster (all the lanes, when their
    # union's ends are near).
    if band_cols and bool(near[:, band_cols].any()):
        for j in band_cols:
            worlds = near[:, j].nonzero().squeeze(1)
            for k in (range(plan.lanes) if j == union else (j,)):
                if worlds.numel():
                    runs = _line_runs(_fields(table[worlds, k]), rows)
                    target(k)[worlds] |= _run_masks(*runs, width)
    return ~fast


# ----------------------------------------------------------------------------- boxes


def _box_window(boxes: _Boxes, grow: float, config: SensorConfig):
    """Pixel rows a box's bounding box covers, clipped to the raster.

    Args:
        boxes: `(B, P)` boxes; grow: added to their half extents [m].

    Returns:
        `(first_row, last_row, touches)`: `(B, P)` float32 rows (`first > last`: none),
        and whether the box can light any pixel at all (its bounding box meets the grid
        of pixel centres).
    """
    _, height, width = config.bev_shape
    inv_res = 1.0 / config.bev_m_per_px
    x0 = config.range_m - 0.5 * config.bev_m_per_px
    col0 = config.bev_half_width_m * inv_res - 0.5
    ax, ay = boxes.ax.abs(), boxes.ay.abs()
    hl, hw = boxes.hl + grow, boxes.hw + grow
    ext_x = (ax * hl).add_(ay * hw).mul_(inv_res)            # half extents [px]
    ext_y = (ay * hl).add_(ax * hw).mul_(inv_res)
    row = (x0 - boxes.cx) * inv_res
    col = boxes.cy * inv_res + col0
    first_row = (row - ext_x).sub_(_WINDOW_TOL_PX).ceil_().clamp_min_(0.0)
    last_row = (row + ext_x).add_(_WINDOW_TOL_PX).floor_().clamp_max_(height - 1.0)
    first_col = (col - ext_y).sub_(_WINDOW_TOL_PX).ceil_().clamp_min_(0.0)
    last_col = (col + ext_y).add_(_WINDOW_TOL_PX).floor_().clamp_max_(width - 1.0)
    return first_row, last_row, (first_row <= last_row) & (first_col <= last_col)


def _draw_boxes(rows: torch.Tensor, boxes: _Boxes, window_rows: tuple, drawn: torch.Tensor,
                config: SensorConfig) -> None:
    """OR the rectangles of the drawn boxes into the row masks (ego: channel 3, others 2).

    A row at `x` meets the box where `|u| <= half_length` and `|v| <= half_width`, `u`, `v`
    the box-frame coordinates; both are linear in the column, so each gives a run whose
    bounds move linearly with the row (computed from row 0, so a box's runs do not depend
    on the other worlds of the batch). Each box is evaluated on the `R` rows of a window
    (`R` the tallest bounding box in the batch), slid inside the raster.

    Args:
        rows: `(B, C, H, words)` int64 row masks, updated in place.
        boxes: `(B, N)` boxes, centred where they are drawn.
        window_rows: `(first_row, last_row)` of their grown boxes (`_box_window`).
        drawn: `(B, N)` bool.
    """
    batch = drawn.shape[0]
    channels, height, width = config.bev_shape
    res = config.bev_m_per_px
    inv_res = 1.0 / res
    x0 = config.range_m - 0.5 * res
    col0 = config.bev_half_width_m * inv_res - 0.5
    picked = _order(drawn)
    if picked is None:
        return
    order, keep = picked
    box = boxes.take(order)
    first, last = (r.gather(1, order) for r in window_rows)
    window = int(((last - first + 1.0) * keep).amax())         # host sync
    if window <= 0:
        return
    r0 = first.clamp_max(height - window)
    # Column bounds at row r: u-run c_u + r du -+ h_u, v-run c_v + r dv -+ h_v [px].
    dx0 = x0 - box.cx                                         # x offset of row 0 [m]
    inv_ax = box.ax.reciprocal().clamp_(-_INV_MAX, _INV_MAX)
    inv_ay = box.ay.reciprocal().clamp_(-_INV_MAX, _INV_MAX)
    c_u = (box.cy - dx0 * box.ax * inv_ay).mul_(inv_res).add_(col0)
    c_v = (box.cy + dx0 * box.ay * inv_ax).mul_(inv_res).add_(col0)
    h_u = (box.hl + _EDGE_TOL_M) * inv_ay.abs() * inv_res
    h_v = (box.hw + _EDGE_TOL_M) * inv_ax.abs() * inv_res
    coef = [(c_u - h_u).masked_fill_(~keep, _FAR), c_v - h_v, c_u + h_u + 1.0,
            c_v + h_v + 1.0, box.ax * inv_ay, (box.ay * inv_ax).neg_(), r0]   # padding: no run
    steps = _steps(window, rows.device)
    items = keep.shape[1]
    masks = torch.empty(batch, items, window, rows.shape[-1], dtype=torch.int64,
                        device=rows.device)
    for b0, b1 in _world_chunks(batch, items * window):
        lo_u, lo_v, end_u, end_v, du, dv, start = (c[b0:b1, :, None] for c in coef)
        row = start + steps                                   # absolute rows
        du_r, dv_r = du * row, dv * row
        lo = torch.maximum(du_r + lo_u, dv_r + lo_v)
        end = torch.minimum(du_r.add_(end_u), dv_r.add_(end_v))
        masks[b0:b1] = _run_masks(lo, end, width)
    # OR box by box: boxes of one world may share rows (and pixels).
    channel = torch.where(order == EGO, BEV_EGO, BEV_VEHICLES)
    world = _steps(batch, rows.device, torch.int64)[:, None] * channels
    base = (world + channel) * height + r0.long()             # (B, P) flat row of r0
    flat = rows.view(-1, rows.shape[-1])
    offsets = _steps(window, rows.device, torch.int64)
    for p in range(items):
        index = base[:, p, None] + offsets
        index = index.view(-1)
        flat.index_copy_(0, index, flat.index_select(0, index).bitwise_or_(
            masks[:, p].reshape(-1, flat.shape[1])))


# ----------------------------------------------------------------------------- occlusion

_SAMPLE_SIGNS = ((0.0, 0.0), (1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0))
"""Occlusion sample points of a box, in units of its half extents: centre, 4 corners."""

_TINY = 2.0 ** -149
"""The smallest positive float32: `x > 0` exactly when `x - _TINY >= 0`."""


def _slab_parts(ox, oy, dx, dy, hx, hy):
    """`_slab` on separate x and y parts (broadcasting; `dx`, `dy` are consumed). Negative
    half extents make a box no ray enters (`t_in > t_out`)."""
    ix = dx.reciprocal_().clamp_(-_INV_MAX, _INV_MAX)
    iy = dy.reciprocal_().clamp_(-_INV_MAX, _INV_MAX)
    mx, my = (ox * ix).neg_(), (oy * iy).neg_()
    sx, sy = ix.abs_().mul_(hx), iy.abs_().mul_(hy)
    return torch.maximum(mx - sx, my - sy), torch.minimum(sx.add_(mx), sy.add_(my))


def _visible(boxes: _Boxes, occluder: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """Which candidate vehicles the ego sees past the occluders (vehicle rectangles).

    A candidate is visible when the ray from the ego centre to at least one of its five
    sample points (centre, four corners) enters no other occluder's rectangle before
    `1 - _OCCLUSION_EPS` of the way. Only candidates, and the occluders near enough to
    block a ray to one, are evaluated.

    Args:
        boxes: `(B, N)` true poses in the ego frame.
        occluder: `(B, N)` bool: the boxes that block rays.
        candidate: `(B, N)` bool: the vehicles whose visibility matters.

    Returns:
        `(B, N)` bool, False for the hidden candidates (True elsewhere).
    """
    batch = candidate.shape[0]
    visible = torch.ones_like(candidate)
    distance, radius = torch.hypot(boxes.cx, boxes.cy), torch.hypot(boxes.hl, boxes.hw)
    farthest = torch.where(candidate, distance + radius, 0.0).amax(1, keepdim=True)
    occluder = occluder & (distance - radius <= farthest + 1.0)
    targets, blockers = _order(candidate), _order(occluder)
    if targets is None or blockers is None:
        return visible
    (t_order, t_keep), (b_order, b_keep) = targets, blockers
    target, blocker = boxes.take(t_order), boxes.take(b_order)
    ox, oy = blocker.origins()
    hl = torch.where(b_keep, blocker.hl, -1.0)                # padding blocks nothing
    hw = torch.where(b_keep, blocker.hw, -1.0)
    own = (t_order[:, :, None] == b_order[:, None, :]) * _FAR  # (B, J, M): itself
    seen = torch.empty_like(t_keep)
    per_world = t_order.shape[1] * len(_SAMPLE_SIGNS) * b_order.shape[1]
    for b0, b1 in _world_chunks(batch, per_world):
        part = slice(b0, b1)
        seen[part] = _visible_chunk(_Boxes(*(f[part] for f in target)),
                                    (ox[part], oy[part], blocker.ax[part], blocker.ay[part],
                                     hl[part], hw[part]), own[part])
    visible.scatter_(1, t_order, seen | ~t_keep)
    return visible


def _visible_chunk(target: _Boxes, blocker: tuple, own: torch.Tensor) -> torch.Tensor:
    """`_visible` for one block of worlds.

    Args:
        target: `(b, J)` candidate boxes.
        blocker: `(ox, oy, ax, ay, hl, hw)`, each `(b, M)`: the ego centre in each
            occluder's frame [m], its unit axis and half extents [m].
        own: `(b, J, M)` float32, `_FAR` where the occluder is the candidate itself.

    Returns:
        `(b, J)` bool, whether some sample point's ray is blocked by no occluder.
    """
    signs = target.cx.new_tensor(_SAMPLE_SIGNS)
    cx, cy, ax, ay, hl, hw = (f[..., None] for f in target)
    lx, ly = signs[:, 0] * hl, signs[:, 1] * hw                # (b, J, 5)
    px = cx + (lx * ax - ly * ay)                             # sample points [m]
    py = cy + (lx * ay + ly * ax)
    ox, oy, bx, by, bl, bw = (f[:, None, None, :] for f in blocker)   # (b, 1, 1, M)
    dx, dy = _into_box(px[..., None], py[..., None], bx, by)  # (b, J, 5, M)
    t_in, t_out = _slab_parts(ox, oy, dx, dy, bl, bw)
    t_enter = t_in.clamp_min_(0.0).add_(own[:, :, None, :])
    # Blocked: t_out >= t_enter and t_enter < 1 - eps, i.e. min(both margins) >= 0.
    margin = torch.minimum(t_out.sub_(t_enter),
                           t_enter.neg_().add_(1.0 - _OCCLUSION_EPS).sub_(_TINY))
    return (margin.amax(-1) < 0.0).any(-1)


# ----------------------------------------------------------------------------- generic roads
#
# Roads without the straight structure: every segment is a capsule, clipped to the raster,
# cut into pieces of at most `_PIECE_PX` pixels, and each piece tested pixel by pixel on a
# small window around it (all windows the size of the largest), the lit pixels scattered
# into the raster. `_PRIMITIVE` is the layout of a piece.

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


def _draw_generic_roads(out: torch.Tensor, plan: RoadPlan, worlds: torch.Tensor,
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
    packed = _compact(keep, torch.cat([start, direction, props], -1))
    if packed is None:
        return
    keep, clipped = packed
    table, keep = _road_primitives(clipped[..., 0:2], clipped[..., 2:4], clipped[..., 4:7],
                                   keep, _PIECE_PX * config.bev_m_per_px)
    out[worlds] = torch.maximum(out[worlds], _rasterise(table, keep, config))


# ----------------------------------------------------------------------------- bev


def render_bev_torch(position: torch.Tensor, heading: torch.Tensor, length: torch.Tensor,
                     width: torch.Tensor, valid: torch.Tensor, lane_segments: torch.Tensor,
                     lane_half_width: torch.Tensor, lane_valid: torch.Tensor,
                     marking_segments: torch.Tensor, marking_valid: torch.Tensor,
                     config: SensorConfig, *, position_noise: torch.Tensor | None = None,
                     keep: torch.Tensor | None = None, road_plan: RoadPlan | None = None,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """Torch core of `render_bev`: rasterise `B` worlds on the tensors' device.

    All tensors on one device; the result is on it too. Host syncs: a few small ones
    (sizes of the compacted tables, whether any world needs the generic road path).

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
        road_plan: the road's `prepare_road` result (then the five road tensors are not
            read). Without it the plan is looked up in a small cache keyed by the identity
            (and version counter) of the five road tensors, and built (a pass over them)
            on a miss: a batched backend should pass the same road tensors every tick, or
            the plan.
        out: optional `(B, C, H, W)` uint8 contiguous tensor to draw into (saves
            allocating, and on the CPU page-faulting, a fresh raster every call).

    Returns:
        `(B, C, H, W)` uint8 with values 0 or 255, `(C, H, W) = config.bev_shape` (`out`
        when given). Occlusion is decided on the true poses of all valid non-ego vehicles
        (dropped-out ones still block the view); noise only moves where visible vehicles
        are drawn.
    """
    batch, slots = valid.shape
    device = position.device
    channels, height, width_px = config.bev_shape
    plan = road_plan if road_plan is not None else _road_plan_for(
        None, (lane_segments, lane_half_width, lane_valid, marking_segments, marking_valid),
        device)
    if plan.batch not in (1, batch):
        raise ValueError(f"road batch {plan.batch} does not match {batch} worlds")
    boxes = _ego_frame(position, heading, length, width)
    is_ego = _steps(slots, device, torch.int64) == EGO
    shown = boxes                                             # where vehicles are drawn
    if position_noise is not None:
        moved = (~is_ego).to(boxes.cx.dtype)
        noise = position_noise.to(boxes.cx.dtype)
        shown = boxes._replace(cx=torch.addcmul(boxes.cx, noise[..., 0], moved),
                               cy=torch.addcmul(boxes.cy, noise[..., 1], moved))
    first_row, last_row, touches = _box_window(shown, _EDGE_TOL_M, config)
    drawn = valid & ~is_ego & touches
    if keep is not None:
        drawn &= keep
    if config.bev_occlusion and slots > 1:
        drawn &= _visible(boxes, valid & ~is_ego, drawn)

    rows = torch.zeros(batch, channels, height, -(-width_px // _WORD), dtype=torch.int64,
                       device=device)
    slow = _road_line_rows(rows[:, BEV_ROAD], rows[:, BEV_MARKINGS], plan, position[:, EGO],
                           heading[:, EGO], config)
    _draw_boxes(rows, shown, (first_row, last_row), drawn | is_ego, config)
    out = _expand_rows(rows, width_px, out)
    if plan.any_generic or bool(slow.any()):
        worlds = slow.nonzero().squeeze(1)
        if worlds.numel():
            _draw_generic_roads(out, plan, worlds, position[:, EGO], heading[:, EGO], config)
    return out


def draw_bev_noise(rng: NoiseSource, config: SensorConfig, batch: int,
                   slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one frame's bev noise (the bev's keys from `rng`, then the numbers).

    Args:
        rng: the noise source: a `np.random.Generator` (two keys drawn from it) or an
            `EpisodeNoise` (its `bev` keys), as for `render_bev`.
        config: `bev_position_noise_m`, `bev_dropout_prob`.
        batch, slots: `B`, `N`.

    Returns:
        `(position_noise (B, N, 2) float32 [m], keep (B, N) bool)`; the ego slot's entries
        are drawn too and ignored. What the bev kernel applies for the same `rng` state.
    """
    return _bev_noise(_bev_keys(rng, batch), config, slots)


def _bev_noise(keys: np.ndarray, config: SensorConfig,
               slots: int) -> tuple[np.ndarray, np.ndarray]:
    """`draw_bev_noise` of `(B, 2)` world keys."""
    dropout, normal = noise_arrays(keys, slots)
    return ((normal * config.bev_position_noise_m).astype(np.float32),
            dropout >= config.bev_dropout_prob)


# ----------------------------------------------------------------------------- noise keys
#
# The kernels take `(B, 2)` uint64 keys, one pair per world (normals, uniforms); the noise
# of world `b`, slot or beam `k` is `sensor_kernels._normal_pair(keys[b, 0], k)` and
# `_uniform(keys[b, 1], k)`. The keys come from a `NoiseSource`: a `np.random.Generator`
# (per call, two keys drawn from it, then world `b`'s keys are SplitMix64 of (call key, b))
# or an `EpisodeNoise` (per world, SplitMix64 of (episode seed, tick, stream): what the envs
# pass, so a world's noise does not depend on how episodes are batched).


class EpisodeNoise(NamedTuple):
    """Per-world noise keys of one observation (`episode_noise_keys`): `bev` and `lidar`,
    each `(B, 2)` C-contiguous uint64 (the key of the normals, then of the uniforms)."""

    bev: np.ndarray
    lidar: np.ndarray


NoiseSource = np.random.Generator | EpisodeNoise
"""What the sensors' `rng` argument takes (besides None: no noise)."""

_EPISODE_KEY = np.uint64(0x7265666C65786472)
"""SplitMix64 key `episode_noise_keys` hashes the episode seed with ("reflexdr")."""

_STREAM_STEPS = np.arange(4, dtype=np.uint64) * _kernels._GOLDEN
"""`episode_noise_keys`: `stream * golden` of its streams 0 .. 3 (bev normals, bev
uniforms, lidar normals, lidar uniforms)."""


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (`sensor_kernels._hash` after its first line), in place
    on a uint64 array; returns it."""
    z ^= z >> np.uint64(30)
    z *= _kernels._MIX_1
    z ^= z >> np.uint64(27)
    z *= _kernels._MIX_2
    z ^= z >> np.uint64(31)
    return z


def _counters(counter) -> np.ndarray:
    """Integers as uint64 counters, modulo 2**64 (as the kernels' `np.uint64(counter)`)."""
    counter = np.asarray(counter)
    return counter if counter.dtype == np.uint64 else counter.astype(np.int64).astype(np.uint64)


def splitmix64(key, counter) -> np.ndarray:
    """`sensor_kernels._hash`, vectorised: SplitMix64's output function of `key + (counter +
    1) * golden` (uint64, wrapping), elementwise with numpy broadcasting.

    Args:
        key: uint64 array (or scalar). counter: integer array (or scalar), taken modulo
            2**64 as the kernel's `np.uint64(counter)`.

    Returns:
        uint64 array of the broadcast shape: `_hash(key, counter)` element by element.
    """
    key = np.asarray(key, dtype=np.uint64)
    with np.errstate(over="ignore"):                # 0-d operands warn on wrapping
        z = (_counters(counter) + np.uint64(1)) * _kernels._GOLDEN
        return _mix(np.add(z, key, dtype=np.uint64))


def world_noise_keys(call_keys: np.ndarray, batch: int) -> np.ndarray:
    """`(B, 2)` uint64 keys of worlds `0 .. B - 1` from one call's `(2,)` keys (`_noise_keys`):
    world `b`'s are `splitmix64(call_keys, b)`, so a world's noise depends on the call key
    and its index only."""
    steps = np.arange(1, batch + 1, dtype=np.uint64)
    steps *= _kernels._GOLDEN                       # (b + 1) golden: wraps, no warning
    keys = np.empty((batch, 2), dtype=np.uint64)
    for j, key in enumerate(np.asarray(call_keys, dtype=np.uint64)):   # (a broadcast add
        np.add(steps, key, out=keys[:, j])                              # is slower)
    return _mix(keys)


def episode_noise_keys(seeds, ticks) -> EpisodeNoise:
    """The noise keys of `B` worlds observing tick `ticks[b]` of the episode of scenario seed
    `seeds[b]`: a pure function of (seed, tick), never of the world's index or batch.

    Each key is `splitmix64(splitmix64(K, seed), 4 tick + stream)` (`K` a fixed key): the
    episode's hashed seed starts a SplitMix64 stream of four keys per tick, the streams 0
    .. 3 being the bev's normals and uniforms and the lidar's normals and uniforms. The envs
    pass each world's scenario seed and the tick it observes (substeps since its reset over
    substeps per tick, rounded up: 0 at reset, and an episode that ends mid-tick gets fresh
    noise for its last observation). Vectorised: about 0.1 ms at `B = 4096`.

    Args:
        seeds: `(B,)` integers (the scenario seeds). ticks: `(B,)` integers.

    Returns:
        `EpisodeNoise` for the `rng` argument of `render_bev`, `cast_lidar`, `observe`
        (its `bev` and `lidar` are views of one `(2, B, 2)` array).
    """
    seeds, ticks = np.asarray(seeds), np.asarray(ticks)
    if (seeds.ndim != 1 or ticks.shape != seeds.shape
            or not np.issubdtype(seeds.dtype, np.integer)
            or not np.issubdtype(ticks.dtype, np.integer)):
        raise ValueError(f"seeds and ticks must be (B,) integer arrays of one shape, got "
                         f"{seeds.dtype} {seeds.shape} and {ticks.dtype} {ticks.shape}")
    with np.errstate(over="ignore"):
        # splitmix64(episode, 4 tick + stream) = mix(episode + (4 tick + 1) golden
        # + stream golden): the per-world part in 1-D, then a column per stream (a
        # broadcast add into the (2, B, 2) layout is several times slower).
        base = _counters(ticks) * np.uint64(4)
        base += np.uint64(1)
        base *= _kernels._GOLDEN
        base += splitmix64(_EPISODE_KEY, seeds)
        keys = np.empty((2, seeds.shape[0], 2), dtype=np.uint64)
        for stream, step in enumerate(_STREAM_STEPS):
            np.add(base, step, out=keys[stream // 2, :, stream % 2])
        _mix(keys)
    return EpisodeNoise(keys[0], keys[1])


def _noise_keys(rng: np.random.Generator) -> np.ndarray:
    """One call's `(2,)` uint64 noise keys (normals, uniforms) from `rng`."""
    return rng.integers(0, 2**64 - 1, size=2, dtype=np.uint64, endpoint=True)


def _source_keys(rng, field: str, batch: int) -> np.ndarray | None:
    """`(B, 2)` uint64 world keys of the bev (`field="bev"`) or the lidar from a noise
    source: None for None; a Generator gives two call keys (the same draws whatever the
    shapes), then `world_noise_keys`; an `EpisodeNoise` its `field` keys, checked."""
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return world_noise_keys(_noise_keys(rng), batch)
    if isinstance(rng, EpisodeNoise):
        keys = getattr(rng, field)
        if (not isinstance(keys, np.ndarray) or keys.dtype != np.uint64
                or keys.shape != (batch, 2)):
            shape = getattr(keys, "shape", None)
            dtype = getattr(keys, "dtype", type(keys).__name__)
            raise ValueError(f"EpisodeNoise.{field} must be a ({batch}, 2) uint64 array (one "
                             f"key pair per world), got {dtype} of shape {shape}")
        return np.ascontiguousarray(keys)
    raise TypeError(f"rng must be None, a numpy Generator or an EpisodeNoise, got "
                    f"{type(rng).__name__}")


def _bev_keys(rng, batch: int) -> np.ndarray | None:
    """The bev's `(B, 2)` world keys from a noise source (`_source_keys`)."""
    return _source_keys(rng, "bev", batch)


def _lidar_keys(rng, batch: int) -> np.ndarray | None:
    """The lidar's `(B, 2)` world keys from a noise source (`_source_keys`)."""
    return _source_keys(rng, "lidar", batch)


def noise_arrays(keys: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The noise of `keys` (`(B, 2)` uint64 world keys) as arrays: `(uniform (B, K) float64
    in (0, 1), normal (B, K, 2) float64 standard normals)`, `K = count` slots or beams
    (`sensor_kernels.noise_kernel`: the numbers the kernels compute where they need them)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    if keys.ndim != 2 or keys.shape[1] != 2:
        raise ValueError(f"keys must be (B, 2) uint64, got shape {keys.shape}")
    normal = np.empty((keys.shape[0], count, 2))
    uniform = np.empty((keys.shape[0], count))
    _kernels.noise_kernel(keys, count, normal, uniform)
    return uniform, normal


def render_bev(snapshot: WorldSnapshot, road: RoadGeometry, config: SensorConfig,
               rng: NoiseSource | None = None,
               device: str | torch.device = "cpu", out: np.ndarray | None = None,
               kernel: str = "auto") -> np.ndarray:
    """Rasterise the ego-centred bird's-eye view of `B` worlds.

    Channels: 0 drivable road (pixel centre within the lane half width of a valid lane
    centre segment), 1 lane markings (within half a pixel of a valid marking segment),
    2 other vehicles (inside the rotated rectangle of a valid, visible, not dropped-out
    non-ego vehicle, drawn at its noisy position), 3 ego. Orientation: see the module
    docstring. With `config.bev_occlusion` a vehicle is hidden when the rays from the ego
    centre to its centre and its four corners all enter another vehicle first.

    The road's static analysis (`prepare_road`) is cached by the identity of `road`: treat
    a `RoadGeometry` as immutable (it is a frozen dataclass; do not write into its arrays).

    Args:
        snapshot: `B` worlds, `N` slots (slot 0 the ego).
        road: the road of each world (batch `B`, or 1 shared by all worlds).
        config: raster geometry, occlusion, noise and dropout settings.
        rng: noise source (`draw_bev_noise`): a `np.random.Generator` (the call draws two
            keys from it; world `b`'s noise is then a function of them and `b`), or an
            `EpisodeNoise` of `B` worlds (`episode_noise_keys`: world `b`'s noise is a
            function of its `bev` keys only; a `ValueError` if they are not `(B, 2)`
            uint64). None draws nothing and renders the truth.
        device: where to compute.
        out: optional `(B, C, H, W)` uint8 C-contiguous array to draw into (CPU only):
            reusing one buffer avoids allocating (and page-faulting) 64 MB per call at
            B = 4096.
        kernel: "auto" (the numba kernel on the CPU, the torch core elsewhere), "numba"
            (CPU only) or "torch". Both give the same raster, bit for bit.

    Returns:
        `(B, C, H, W)` uint8, values 0 or 255, `(C, H, W) = config.bev_shape` (`out` when
        given).
    """
    dev = torch.device(device)
    batch, slots = snapshot.shape
    if out is not None and (dev.type != "cpu" or out.dtype != np.uint8
                            or out.shape != (batch, *config.bev_shape)
                            or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous uint8 array of shape "
                         f"{(batch, *config.bev_shape)} on the CPU")
    plan = _road_plan_for(road, (road.lane_segments, road.lane_half_width, road.lane_valid,
                                 road.marking_segments, road.marking_valid), dev)
    use_numba = _use_numba(kernel, dev)                # (checked before drawing)
    keys = _bev_keys(rng, batch)
    if use_numba:
        return _render_bev_numba(snapshot, plan, config, keys, out)
    noise = keep = None
    if keys is not None:
        noise_np, keep_np = _bev_noise(keys, config, slots)
        noise, keep = torch.from_numpy(noise_np).to(dev), torch.from_numpy(keep_np).to(dev)

    def t(array, dtype=None):
        return _tensor(array, dtype, dev)

    with torch.inference_mode():                       # nothing escapes but numpy
        bev = render_bev_torch(
            t(snapshot.position), t(snapshot.heading), t(snapshot.length), t(snapshot.width),
            t(snapshot.valid, bool), *plan.segments, config, position_noise=noise, keep=keep,
            road_plan=plan, out=None if out is None else torch.from_numpy(out))
        return out if out is not None else bev.cpu().numpy()


# ----------------------------------------------------------------------------- lidar


def cast_lidar_torch(position: torch.Tensor, heading: torch.Tensor, speed: torch.Tensor,
                     length: torch.Tensor, width: torch.Tensor, valid: torch.Tensor,
                     config: SensorConfig, *, range_noise: torch.Tensor | None = None,
                     rate_noise: torch.Tensor | None = None,
                     keep: torch.Tensor | None = None) -> torch.Tensor:
    """Torch core of `cast_lidar`: cast the beams of `B` worlds on the tensors' device.

    Only the boxes that can be hit within range are tested (compacted per world), in
    blocks of worlds of about `_CHUNK_ELEMENTS` (beam, box) pairs.

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
    batch, slots = valid.shape
    device = position.device
    beams = config.lidar_beams
    boxes = _ego_frame(position, heading, length, width)
    beam_x, beam_y = _beams(beams, device)
    # A beam can hit a box only if it passes within the box's half diagonal r of its
    # centre: within asin(r / d) of the box's direction (every beam when d <= r).
    dist, radius = torch.hypot(boxes.cx, boxes.cy), torch.hypot(boxes.hl, boxes.hw)
    target = valid & (dist - radius < config.range_m + 1.0)
    target &= _steps(slots, device, torch.int64) != EGO
    step = 2.0 * math.pi / beams
    bearing = torch.atan2(boxes.cy, boxes.cx)
    spread = torch.asin((radius / dist).clamp_(max=1.0)).add_(_BEAM_SLACK_RAD)
    first = torch.ceil((bearing - spread) / step)
    count = torch.floor((bearing + spread) / step) - first + 1.0
    count = torch.where(dist > radius * (1.0 + 1e-6) + 1e-6, count, float(beams))
    target &= count > 0.0
    picked = _order(target)
    key = torch.full((batch, beams), _NO_HIT_KEY, dtype=torch.int64, device=device)
    if picked is not None:
        order, kept = picked
        box = boxes.take(order)
        ox, oy = box.origins()
        fields = (ox, oy, box.ax, box.ay, torch.where(kept, box.hl, -1.0),
                  torch.where(kept, box.hw, -1.0), order, first.gather(1, order))
        window = min(beams, int((count.gather(1, order) * kept).amax()))   # host sync
        offsets = _steps(window, device, torch.int64)
        for b0, b1 in _world_chunks(batch, order.shape[1] * window):
            _window_hits(key[b0:b1], beam_x, beam_y, [f[b0:b1] for f in fields], offsets)
    distance = (key >> 16).to(torch.int32).view(torch.float32)
    hit_slot = key & 0xFFFF
    hit = distance < config.range_m
    speed = speed.float()
    vx = speed * boxes.ax - speed[:, EGO:EGO + 1]             # ground velocity minus the
    vy = speed * boxes.ay                                     # ego's (speed, 0), ego frame
    rate = (vx.gather(1, hit_slot) * beam_x).add_(vy.gather(1, hit_slot) * beam_y)
    if range_noise is not None:
        distance = (distance + range_noise.float()).clamp_(0.0, config.range_m)
    if rate_noise is not None:
        rate = rate + rate_noise.float()
    if keep is not None:
        hit &= keep
    return torch.stack([distance.masked_fill_(~hit, config.range_m), rate.masked_fill_(~hit, 0.0)],
                       -1)


def _window_hits(key, beam_x, beam_y, box, offsets) -> None:
    """First box along each beam, each box tested on its window of beams only.

    Args:
        key: `(b, beams)` int64 packed hits (`_NO_HIT_KEY`, or the float32 bits of the
            distance `<< 16 | slot`), lowered in place to the nearer hits.
        beam_x, beam_y: `(beams,)` unit beam directions in the ego frame.
        box: `(ox, oy, ax, ay, hl, hw, slot, first)`, each `(b, M)`: the ego centre in each
            box's frame [m], the box's unit axis, half extents [m] (negative: never hit),
            slot (int64), first beam of its window (any integer: taken modulo beams).
        offsets: `(K,)` int64 `0 .. K - 1`, the window's beams (`K <= beams`).
    """
    beams = beam_x.shape[0]
    ox, oy, ax, ay, hl, hw, slot, first = (f[..., None] for f in box)
    beam = (first.long() + offsets).remainder_(beams)                  # (b, M, K)
    flat = beam.view(-1)
    dx, dy = _into_box(beam_x.index_select(0, flat).view(beam.shape),
                       beam_y.index_select(0, flat).view(beam.shape), ax, ay)
    t_in, t_out = _slab_parts(ox, oy, dx, dy, hl, hw)
    t_in.clamp_min_(0.0)
    miss = (t_in - t_out).mul_(_FAR).clamp_(0.0, 1.0).mul_(_FAR)       # _FAR: misses
    bits = t_in.add_(miss).view(torch.int32).long()                    # +0.0: order kept
    hits = bits.mul_(1 << 16).add_(slot)
    key.scatter_reduce_(1, beam.view(key.shape[0], -1), hits.view(key.shape[0], -1), "amin")


def draw_lidar_noise(rng: NoiseSource, config: SensorConfig,
                     batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one frame's lidar noise (the lidar's keys from `rng`, then the numbers).

    Args:
        rng: the noise source: a `np.random.Generator` (two keys drawn from it) or an
            `EpisodeNoise` (its `lidar` keys), as for `cast_lidar`.
        config: `lidar_beams`, `lidar_range_noise_m`, `lidar_range_rate_noise_mps`,
            `lidar_dropout_prob`.
        batch: `B`.

    Returns:
        `(range_noise [m], rate_noise [m/s], keep bool)`, each `(B, beams)`, noise float32:
        what the lidar kernel applies for the same `rng` state (it draws them on the beams
        that hit only).
    """
    return _lidar_noise(_lidar_keys(rng, batch), config)


def _lidar_noise(keys: np.ndarray,
                 config: SensorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`draw_lidar_noise` of `(B, 2)` world keys."""
    dropout, normal = noise_arrays(keys, config.lidar_beams)
    return ((normal[..., 0] * config.lidar_range_noise_m).astype(np.float32),
            (normal[..., 1] * config.lidar_range_rate_noise_mps).astype(np.float32),
            dropout >= config.lidar_dropout_prob)


def cast_lidar(snapshot: WorldSnapshot, config: SensorConfig,
               rng: NoiseSource | None = None,
               device: str | torch.device = "cpu", kernel: str = "auto") -> np.ndarray:
    """Cast the ego's 360-degree lidar in `B` worlds.

    Beam `i` leaves the ego centre at angle `2 pi i / beams` in the ego frame (0 straight
    ahead, turning towards +y) and stops at the first valid non-ego vehicle rectangle
    (slab method), at most `range_m` away. With `rng`: Gaussian range and range-rate noise
    on hits, ranges clipped to `[0, range_m]`, then each hit lost with
    `lidar_dropout_prob`.

    Args:
        snapshot: `B` worlds, `N` slots (slot 0 the ego).
        config: range, beams, noise and dropout settings.
        rng: noise source (`draw_lidar_noise`): a `np.random.Generator` or an
            `EpisodeNoise` (its `lidar` keys), as for `render_bev`; None returns the
            noiseless truth.
        device: where to compute.
        kernel: "auto" (the numba kernel on the CPU, the torch core elsewhere), "numba"
            (CPU only) or "torch". Both give the same ranges and rates.

    Returns:
        `(B, beams, 2)` float32: range [m] (`range_m` for no return) and range rate [m/s]
        (0 for no return; negative when closing).
    """
    dev = torch.device(device)
    use_numba = _use_numba(kernel, dev)                # (checked before drawing)
    keys = _lidar_keys(rng, snapshot.shape[0])
    if use_numba:
        return _cast_lidar_numba(snapshot, config, keys)
    extra = {}
    if keys is not None:
        range_noise, rate_noise, keep = _lidar_noise(keys, config)
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


def observe(snapshot: WorldSnapshot, road: RoadGeometry, config: SensorConfig,
            rng: NoiseSource | None = None, device: str | torch.device = "cpu",
            out: np.ndarray | None = None,
            kernel: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """`render_bev` then `cast_lidar` of the same worlds with the same `rng`, in one call.

    Returns what the two calls return, drawing the same numbers from `rng` in the same
    order (the bev's, then the lidar's; an `EpisodeNoise` gives its `bev` keys to the one
    and its `lidar` keys to the other). On the numba path the work they share (the cos
    and sin of the headings) is done once. Arguments as `render_bev`'s.

    Returns:
        `(bev (B, C, H, W) uint8, lidar (B, beams, 2) float32)`.
    """
    dev = torch.device(device)
    if not _use_numba(kernel, dev):
        return (render_bev(snapshot, road, config, rng, dev, out, kernel),
                cast_lidar(snapshot, config, rng, dev, kernel))
    batch, slots = snapshot.shape
    if out is not None and (out.dtype != np.uint8 or out.shape != (batch, *config.bev_shape)
                            or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous uint8 array of shape "
                         f"{(batch, *config.bev_shape)}")
    plan = _road_plan_for(road, (road.lane_segments, road.lane_half_width, road.lane_valid,
                                 road.marking_segments, road.marking_valid), dev)
    trig = _ego_trig(np.ascontiguousarray(snapshot.heading, dtype=np.float64))
    bev_keys, lidar_keys = _bev_keys(rng, batch), _lidar_keys(rng, batch)
    return (_render_bev_numba(snapshot, plan, config, bev_keys, out, trig),
            _cast_lidar_numba(snapshot, config, lidar_keys, trig))


def _tensor(array, dtype, device: torch.device) -> torch.Tensor:
    """A numpy field as a tensor on `device` (no copy on the CPU when already contiguous)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    if not array.flags.writeable:                      # torch wants writable memory
        array = array.copy()
    tensor = torch.from_numpy(array)
    return tensor if device.type == "cpu" else tensor.to(device)


# ----------------------------------------------------------------------------- numba path
#
# On the CPU the numpy entry points run the kernels of `envs.sensor_kernels`, which repeat
# the torch cores' arithmetic (see that module). What they cannot repeat bit for bit
# (torch's cos and sin) is computed here by the very torch calls the cores make.

KERNELS = ("auto", "numba", "torch")
"""Values of the entry points' `kernel` argument."""


def _use_numba(kernel: str, device: torch.device) -> bool:
    """Whether an entry point runs its numba kernel (`kernel`: one of `KERNELS`)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "numba" and device.type != "cpu":
        raise ValueError(f"the numba kernels run on the CPU, not on {device}")
    return kernel == "numba" or (kernel == "auto" and device.type == "cpu")


def _bev_geometry(config: SensorConfig) -> _kernels.BevGeometry:
    """The raster geometry and this module's tolerances, as the bev kernel takes them."""
    _, height, width = config.bev_shape
    res = float(config.bev_m_per_px)
    inv_res = 1.0 / res
    corner = math.hypot(max(config.range_m, config.bev_behind_m), config.bev_half_width_m)
    return _kernels.BevGeometry(
        height=int(height), width=int(width), res=res, inv_res=inv_res,
        x0=float(config.range_m - 0.5 * res),
        col0_box=float(config.bev_half_width_m * inv_res - 0.5),
        col0_line=float(config.bev_half_width_m / res - 0.5),
        edge_tol=float(_EDGE_TOL_M), window_tol=float(_WINDOW_TOL_PX),
        inv_max=float(_INV_MAX), far=float(_FAR), sqrt_floor=float(_SQRT_FLOOR),
        min_cos=float(_MIN_COS), half_px=0.5 * res,
        two_rho_mark=2.0 * (0.5 * res + _EDGE_TOL_M), corner_res=float(corner + res),
        see_through=1.0 - _OCCLUSION_EPS, tiny=_TINY)


_NO_KEYS = np.zeros((0, 2), dtype=np.uint64)
"""The kernels' `keys` for no noise."""


def _snapshot_arrays(snapshot: WorldSnapshot, *names: str) -> list[np.ndarray]:
    """Snapshot fields as the kernels take them: C-contiguous float64 (bool `valid`)."""
    return [np.ascontiguousarray(getattr(snapshot, name),
                                 dtype=bool if name == "valid" else np.float64)
            for name in names]


_PARALLEL_MIN_WORLDS = 256
"""Fewer worlds than this run their kernel on the calling thread alone: waking numba's other
threads costs more than they save (up to a scheduler slice when their core is busy)."""


def _kernel_threads(batch: int):
    """numba's threads for a kernel over `batch` worlds: one for small batches, else all of
    them (`envs.threads.kernel_threads`, which also keeps torch's thread count)."""
    return kernel_threads(1 if batch < _PARALLEL_MIN_WORLDS else None)


class _Trig(NamedTuple):
    """cos and sin as the torch cores compute them (`_ego_frame`, `_road_line_rows`): of the
    ego heading, `(B,)` float64 each, and of each heading relative to the ego's, `(B, N)`
    float32 each."""

    cos_e: np.ndarray
    sin_e: np.ndarray
    ax: np.ndarray
    ay: np.ndarray


@contextmanager
def _serial_torch():
    """Run torch's CPU ops on the calling thread only, inside the block.

    Torch hands even a few hundred `cos` to its OpenMP pool; on a busy host (or while
    numba's threads hold the cores) waking that pool costs milliseconds per op. Torch's
    cos and sin give the same bits whatever the thread count or the cut of the tensor
    (tests/test_sensor_kernels.py checks it).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _ego_trig(heading: np.ndarray) -> _Trig:
    """`_Trig` of `(B, N)` float64 headings [rad], by torch (as the cores compute them)."""
    with torch.inference_mode(), _serial_torch():
        tensor = _tensor(heading, np.float64, torch.device("cpu"))
        ego = tensor[:, EGO]
        rel = (tensor - tensor[:, EGO:EGO + 1]).float()
        return _Trig(torch.cos(ego).numpy(), torch.sin(ego).numpy(), torch.cos(rel).numpy(),
                     torch.sin(rel).numpy())


def _line_modes(plan: RoadPlan) -> tuple[np.ndarray, np.ndarray, int]:
    """How `_road_line_rows` draws each line column of a plan, for the bev kernel.

    Returns:
        `(mode (L,) int64, channel (L,) int64, union)`: `_kernels._LINE_*` (the lanes'
        union as a band when the plan is merged, then the lanes themselves only near
        their ends; striped columns by exact runs; the others as bands), the bev channel
        of each column, and the union's column.
    """
    count = plan.lines.shape[1]
    union = count - 1
    merged = plan.merged and plan.lanes > 0
    mode = np.zeros(count, dtype=np.int64)
    channel = np.zeros(count, dtype=np.int64)
    for j in range(count):
        channel[j] = BEV_ROAD if j < plan.lanes or j == union else BEV_MARKINGS
        if j == union:
            mode[j] = _kernels._LINE_BAND if merged else _kernels._LINE_NONE
        elif plan.striped[j]:
            mode[j] = _kernels._LINE_EXACT
        elif merged and j < plan.lanes:
            mode[j] = _kernels._LINE_NONE
        else:
            mode[j] = _kernels._LINE_BAND
    return mode, channel, union


def _render_bev_numba(snapshot: WorldSnapshot, plan: RoadPlan, config: SensorConfig,
                      keys: np.ndarray | None, out: np.ndarray | None,
                      trig: _Trig | None = None) -> np.ndarray:
    """`render_bev` on the CPU: the numba kernel, then the torch generic path for the
    worlds whose road is not on the fast path.

    Args:
        snapshot: the worlds. plan: their road's plan, on the CPU. config: the sensors.
        keys: the bev's `(B, 2)` uint64 world noise keys (`_bev_keys`), or None for no
            noise.
        out: `(B, C, H, W)` uint8 C-contiguous array to draw into, or None.
        trig: `_ego_trig` of the snapshot's headings, when the caller has it.
    """
    batch, slots = snapshot.shape
    if plan.batch not in (1, batch):
        raise ValueError(f"road batch {plan.batch} does not match {batch} worlds")
    position, heading, length, width, valid = _snapshot_arrays(
        snapshot, "position", "heading", "length", "width", "valid")
    cos_e, sin_e, ax, ay = _ego_trig(heading) if trig is None else trig
    channels, height, width_px = config.bev_shape
    if out is None:
        out = np.empty((batch, channels, height, width_px), dtype=np.uint8)
    out64 = out.view(np.int64) if width_px % 8 == 0 else np.zeros((1, 1, 1, 1), np.int64)
    keys = _NO_KEYS if keys is None else keys
    mode, channel, union = _line_modes(plan)
    slow = np.empty(batch, dtype=bool)
    with _kernel_threads(batch):
        _kernels.render_bev_kernel(
            position, length, width, valid, cos_e, sin_e, ax, ay, keys,
            float(config.bev_position_noise_m), float(config.bev_dropout_prob),
            bool(config.bev_occlusion and slots > 1), plan.variant.numpy(),
            plan.straight.numpy(), plan.direction.numpy(), plan.origin.numpy(),
            plan.lines.numpy(), plan.min_gap.numpy(), mode, channel, plan.lanes, union,
            _byte_table(torch.device("cpu")).numpy(), _bev_geometry(config), out, out64,
            slow)
    if slow.any():                                     # (torch on this thread: see
        with torch.inference_mode(), _serial_torch():  # `_serial_torch`)
            worlds = torch.from_numpy(np.flatnonzero(slow))
            _draw_generic_roads(torch.from_numpy(out), plan, worlds,
                                torch.from_numpy(position)[:, EGO],
                                torch.from_numpy(heading)[:, EGO], config)
    return out


def _cast_lidar_numba(snapshot: WorldSnapshot, config: SensorConfig,
                      keys: np.ndarray | None,
                      trig: _Trig | None = None) -> np.ndarray:
    """`cast_lidar` on the CPU, by the numba kernel (`keys`: the lidar's `(B, 2)` world
    noise keys (`_lidar_keys`), or None for no noise; `trig`: as `_render_bev_numba`'s)."""
    batch = snapshot.shape[0]
    position, heading, speed, length, width, valid = _snapshot_arrays(
        snapshot, "position", "heading", "speed", "length", "width", "valid")
    cos_e, sin_e, ax, ay = _ego_trig(heading) if trig is None else trig
    beam_x, beam_y = (b.numpy() for b in _beams(config.lidar_beams, torch.device("cpu")))
    keys = _NO_KEYS if keys is None else keys
    out = np.empty((batch, config.lidar_beams, 2), dtype=np.float32)
    with _kernel_threads(batch):
        _kernels.cast_lidar_kernel(
            position, speed, length, width, valid, cos_e, sin_e, ax, ay, beam_x, beam_y,
            keys, float(config.lidar_range_noise_m),
            float(config.lidar_range_rate_noise_mps), float(config.lidar_dropout_prob), float(config.range_m), float(_BEAM_SLACK_RAD),
            float(_INV_MAX), out)
    return out


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


def ground_truth_objects(snapshot: WorldSnapshot, config: SensorConfig,
                         kernel: str = "numba") -> tuple[np.ndarray, np.ndarray]:
    """The other vehicles as a fixed-size object list in the metric ego frame (for `info`).

    On the host (it goes to `info` there anyway). No noise, no occlusion, no range limit:
    every valid non-ego vehicle, nearest centre first (ties keep slot order), cut to
    `config.max_objects`.

    Args:
        snapshot: `B` worlds, `N` slots (slot 0 the ego).
        config: `max_objects`.
        kernel: "numba" (`sensor_kernels.ground_truth_kernel`) or "numpy"; both compute in
            float64 and round to float32, and agree to a float32 ulp (libm's and numpy's
            cos / sin / hypot may differ by a float64 ulp).

    Returns:
        `(objects (B, M, 8) float32, valid (B, M) bool)` with `M = config.max_objects` and
        columns `OBJECT_FIELDS`: x, y [m]; ground velocity in the ego frame vx, vy [m/s];
        heading relative to the ego in (-pi, pi] [rad]; length, width [m]; vehicle id.
        Padding rows are zeros with `valid` False.
    """
    if kernel not in ("numba", "numpy"):
        raise ValueError(f"kernel must be 'numba' or 'numpy', got {kernel!r}")
    batch, slots = snapshot.shape
    if kernel == "numba":
        objects = np.empty((batch, config.max_objects, len(OBJECT_FIELDS)), dtype=np.float32)
        valid = np.empty((batch, config.max_objects), dtype=bool)
        arrays = _snapshot_arrays(snapshot, "position", "heading", "speed", "length", "width",
                                  "valid")
        vehicle_id = np.ascontiguousarray(snapshot.vehicle_id, dtype=np.int64)
        with _kernel_threads(batch):
            _kernels.ground_truth_kernel(*arrays[:5], vehicle_id, arrays[5], objects, valid)
        return objects, valid
    position = np.asarray(snapshot.position, dtype=np.float64)
    heading = np.asarray(snapshot.heading, dtype=np.float64)
    # `to_ego_frame`, one coordinate at a time (no stacking: this runs on every tick).
    dx = position[..., 0] - position[:, EGO:EGO + 1, 0]
    dy = position[..., 1] - position[:, EGO:EGO + 1, 1]
    cos, sin = np.cos(heading[:, EGO:EGO + 1]), np.sin(heading[:, EGO:EGO + 1])
    x, y = dx * cos + dy * sin, dy * cos - dx * sin
    rel_heading = _wrap_angle(heading - heading[:, EGO:EGO + 1])
    speed = np.asarray(snapshot.speed, dtype=np.float64)
    table = np.empty((batch, slots, len(OBJECT_FIELDS)))      # (B, N, 8)
    for i, column in enumerate((x, y, speed * np.cos(rel_heading), speed * np.sin(rel_heading),
                                rel_heading, snapshot.length, snapshot.width,
                                snapshot.vehicle_id)):
        table[..., i] = column
    other = np.asarray(snapshot.valid, dtype=bool).copy()
    other[:, EGO] = False
    distance = np.where(other, np.hypot(x, y), np.inf)
    order = np.argsort(distance, axis=1, kind="stable")[:, :config.max_objects]
    taken = order.shape[1]
    rows = (order + np.arange(batch)[:, None] * slots).reshape(-1)   # flat (world, slot)
    picked_valid = other.reshape(-1)[rows].reshape(batch, taken)
    picked = table.reshape(-1, len(OBJECT_FIELDS))[rows].reshape(batch, taken, -1)
    objects = np.zeros((batch, config.max_objects, len(OBJECT_FIELDS)), dtype=np.float32)
    valid = np.zeros((batch, config.max_objects), dtype=bool)
    objects[:, :taken] = np.where(picked_valid[..., None], picked, 0.0)
    valid[:, :taken] = picked_valid
    return objects, valid
