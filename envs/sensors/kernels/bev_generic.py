"""The numba kernel of the bev's generic road path (`sensors.bev_generic.draw_generic_roads`):
curved lanes (road networks), roads without the straight structure, egos turned past the
fast path's limit.

Per world (parallel over worlds): every lane and marking segment of the world's road is
taken to the ego frame (float64, then float32), clipped to the raster grown by its radius
(`_clip_segments`), cut into capsule pieces (`_road_primitives`), and each piece tested on
the pixels of its bounding box (`_rasterise`), the lit ones set to 255 in the raster (a
pixel already at 255 is not tested again: the road's pieces overlap; 5-17% of the kernel's
time on the road networks). The torch core tests a window the size of the batch's largest
piece: the pixels outside a piece's bounding box (grown by `WINDOW_TOL_PX`) are farther
from it than float32 rounding reaches, so they are never lit and need no test. Names in
the comments are the torch functions each block mirrors; the arithmetic is theirs,
operation by operation.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from reflexdrive.envs.sensors.constants import BEV_MARKINGS, BEV_ROAD
from reflexdrive.envs.sensors.kernels.common import F32, INLINE, JIT, njit, slab


class GenericGeometry(NamedTuple):
    """Raster geometry and constants of `generic_roads_kernel` (python floats: float64;
    built by `sensors.numba_path.generic_geometry`)."""

    height: int            # H [px]
    width: int             # W [px]
    middle_x: float        # `_clip_segments`' rectangle: centre x [m] (y is 0)
    half_x: float          # its half extents [m]
    half_y: float
    inv_max: float         # `INV_MAX`
    inv_piece: float       # 1 / the longest piece [1/m]
    mark_radius: float     # a marking's radius, `0.5 * res` [m]
    edge_tol: float        # `EDGE_TOL_M` [m]
    window_tol: float      # `WINDOW_TOL_PX` [px]
    inv_res: float         # 1 / res [px/m]
    row0: float            # `range_m / res - 0.5`: the row of x = 0 [px]
    col0: float            # `bev_half_width_m / res - 0.5`: the column of y = 0 [px]
    far: float             # `FAR`


@njit(**JIT)
def generic_roads_kernel(worlds, ego_x, ego_y, cos_e, sin_e, variant, lanes, lane_half,
                         lane_valid, marks, mark_valid, centre_x, centre_y, g, out):
    """Draw the road and markings of `worlds` into `out` (OR: pixels set to 255).

    Args:
        worlds: `(G,)` int64 world indices.
        ego_x, ego_y: `(B,)` float64 ego centres, world frame [m].
        cos_e, sin_e: `(B,)` float64 cos / sin of the ego headings, as torch computes them
            (`sensors.numba_path.ego_trig`).
        variant: `(B,)` or `(1,)` int64: the road variant of each world (`RoadPlan.variant`).
        lanes: `(V, S, 2, 2)` float64 lane centre segments; lane_half: `(V, S)` float64
            half widths [m]; lane_valid: `(V, S)` bool.
        marks: `(V, K, 2, 2)` float64 marking segments; mark_valid: `(V, K)` bool.
        centre_x, centre_y: `(H,)`, `(W,)` float32 pixel centres (`pixel_centres`) [m].
        g: `GenericGeometry`.
        out: `(B, C, H, W)` uint8 raster, updated in place.
    """
    for i in numba.prange(worlds.shape[0]):
        b = worlds[i]
        v = variant[b] if variant.shape[0] > 1 else variant[0]
        for s in range(lanes.shape[1]):
            if lane_valid[v, s]:
                _draw_segment(out, b, BEV_ROAD, lanes[v, s], F32(lane_half[v, s]), ego_x[b],
                              ego_y[b], cos_e[b], sin_e[b], centre_x, centre_y, g)
        for k in range(marks.shape[1]):
            if mark_valid[v, k]:
                _draw_segment(out, b, BEV_MARKINGS, marks[v, k], F32(g.mark_radius),
                              ego_x[b], ego_y[b], cos_e[b], sin_e[b], centre_x, centre_y, g)


@njit(**INLINE)
def _draw_segment(out, b, channel, segment, radius, ex, ey, cos_e, sin_e, centre_x, centre_y,
                  g):
    """One capsule of radius `radius` (float32) around `segment (2, 2)` (world frame [m])
    into `out[b, channel]`."""
    # `to_ego_frame` (float64), then float32.
    dx0, dy0 = segment[0, 0] - ex, segment[0, 1] - ey
    dx1, dy1 = segment[1, 0] - ex, segment[1, 1] - ey
    x0, y0 = F32(dx0 * cos_e + dy0 * sin_e), F32(dy0 * cos_e - dx0 * sin_e)
    x1, y1 = F32(dx1 * cos_e + dy1 * sin_e), F32(dy1 * cos_e - dx1 * sin_e)
    # `_clip_segments`.
    ux, uy = x1 - x0, y1 - y0
    t_in, t_out = slab(x0 - F32(g.middle_x), y0 - F32(0.0), ux, uy, F32(g.half_x) + radius,
                       F32(g.half_y) + radius, F32(g.inv_max))
    t_in, t_out = max(t_in, F32(0.0)), min(t_out, F32(1.0))
    if not t_in <= t_out:
        return
    sx, sy = x0 + t_in * ux, y0 + t_in * uy
    span = max(t_out - t_in, F32(0.0))
    dx, dy = span * ux, span * uy
    # `_road_primitives`.
    length = np.sqrt(dx * dx + dy * dy)
    count = max(np.ceil(length * F32(g.inv_piece)), F32(1.0))
    inv_count = F32(1.0) / count
    norm = max(length, F32(1e-12))
    ax, ay = dx / norm, dy / norm
    if length <= F32(0.0):
        ax += F32(1.0)
    half_length = F32(0.5) * length * inv_count
    for k in range(int(count)):
        frac = (F32(k) + F32(0.5)) * inv_count
        if frac < F32(1.0):
            _draw_piece(out, b, channel, sx + frac * dx, sy + frac * dy, ax, ay, half_length,
                        radius, centre_x, centre_y, g)


@njit(**INLINE)
def _draw_piece(out, b, channel, cx, cy, ax, ay, half_length, radius, centre_x, centre_y, g):
    """`_rasterise` of one capsule piece (ego frame, float32): centre `(cx, cy)`, unit axis
    `(ax, ay)`, half length and radius [m] (grown by `EDGE_TOL_M` here)."""
    edge, inv_res, rounded = F32(g.edge_tol), F32(g.inv_res), F32(1.0)
    hl, hw = half_length + edge, radius + edge
    row = F32(g.row0) + cx * -inv_res
    col = F32(g.col0) + cy * inv_res
    aax, aay = abs(ax), abs(ay)
    ext_r = (aax * hl + max(aay, rounded) * hw) * inv_res + F32(g.window_tol)
    ext_c = (aay * hl + max(aax, rounded) * hw) * inv_res + F32(g.window_tol)
    r0 = int(max(np.ceil(row - ext_r), F32(0.0)))
    r1 = int(min(np.floor(row + ext_r), F32(g.height - 1.0)))
    c0 = int(max(np.ceil(col - ext_c), F32(0.0)))
    c1 = int(min(np.floor(col + ext_c), F32(g.width - 1.0)))
    radius2 = hw * hw
    limit = rounded * F32(g.far)
    for r in range(r0, r1 + 1):
        px = centre_x[r] - cx
        for c in range(c0, c1 + 1):
            if out[b, channel, r, c] == 255:         # lit already (lanes overlap): no test
                continue
            py = centre_y[c] - cy
            along = px * ax + py * ay
            across = py * ax - px * ay
            beyond = max(abs(along) - hl, F32(0.0))
            if beyond * beyond + across * across <= radius2 and beyond <= limit:
                out[b, channel, r, c] = 255
