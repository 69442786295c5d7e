"""numba kernels of `HighwayRoadMap.observe_many` (`info["map"]` of many egos at once): the
two steps that touch every lane sample of every ego, parallel over egos.

Each repeats the numpy arithmetic of `HighwayRoadMap.observe` element by element, in
float64, with no fast-math (no FMA contraction, no reassociation), and takes the cos and
sin of the headings from numpy (the C library's may differ by an ulp): its results equal
the numpy path's bit for bit (tests/envs/backends/batched/test_network_backend.py compares
the whole map world by world).
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from reflexdrive.common.numba_cache import cover_sources

_OPTIONS = dict(parallel=True, cache=True, nogil=True, error_model="numpy")


def _kernel(function):
    return cover_sources(numba.njit(**_OPTIONS)(function), (Path(__file__),))


@_kernel
def curved_windows(samples, bounds, position, range2, first, last, nearest):
    """`HighwayRoadMap.lanes_in_range`'s curved lanes for `n` egos.

    Args:
        samples: `(L, S, 2)` float64 lane samples (NaN past a lane's end) [m].
        bounds: `(L, 4)` float64 `[x, y, reach, finite]` (`sample_bounds`): an ego
            farther than `reach` from `(x, y)` has no sample of the lane in range (not
            scanned); only the lane's first `finite` samples are scanned (the rest: NaN).
        position: `(n, 2)` float64 ego positions [m]. range2: `MAP_RANGE_M ** 2` [m^2].
        first, last: `(n, L)` int64, set to the first and last sample within range (1 and 0
            where none is); nearest: `(n, L)` float64, set to the distance of the nearest
            one (inf where none is) [m].
    """
    lanes = samples.shape[0]
    for i in numba.prange(position.shape[0]):
        px, py = position[i, 0], position[i, 1]
        for lane in range(lanes):
            low, high, best = -1, -1, np.inf
            bx, by = px - bounds[lane, 0], py - bounds[lane, 1]
            scan = int(bounds[lane, 3])
            if bx * bx + by * by > bounds[lane, 2] * bounds[lane, 2]:
                scan = 0                                          # none in range
            for k in range(scan):
                dx, dy = samples[lane, k, 0] - px, samples[lane, k, 1] - py
                squared = dx * dx + dy * dy
                if squared <= range2:                              # NaN: False
                    if low < 0:
                        low = k
                    high = k
                    best = min(best, squared)
            first[i, lane] = low if low >= 0 else 1
            last[i, lane] = high if low >= 0 else 0
            nearest[i, lane] = np.sqrt(best)


def sample_bounds(samples: np.ndarray, range_m: float) -> np.ndarray:
    """`(L, 4)` float64 `[x, y, reach, finite]` of `(L, S, 2)` lane samples (NaN past a
    lane's end): the centre of each lane's finite samples' bounding box, `range_m` plus the
    largest distance from it to a sample plus 1 mm (far above the rounding of the squared
    distances; a lane without samples: reach -1), and the index past the last finite
    sample. A point farther than `reach` from the centre is farther than `range_m` from
    every sample of the lane."""
    bounds = np.full((len(samples), 4), -1.0)
    for lane, points in enumerate(samples):
        finite = np.isfinite(points).all(-1)
        bounds[lane, 3] = np.flatnonzero(finite).max() + 1 if finite.any() else 0
        points = points[finite]
        if len(points):
            centre = (points.min(0) + points.max(0)) / 2
            bounds[lane, :2] = centre
            bounds[lane, 2] = range_m + np.sqrt(((points - centre) ** 2).sum(-1)).max() + 1e-3
    return bounds


@_kernel
def ego_frame_lanes(samples, pick, first, last, valid, position, cos, sin, out):
    """The map's `lanes`: the chosen lanes' sample windows in each ego's frame.

    Args:
        samples: `(L, S, 2)` float64 lane samples (NaN past a lane's end) [m].
        pick: `(n, m)` int64 lane of each slot; first, last: `(n, m)` its window;
            valid: `(n, m)` bool, the slot holds a lane.
        position: `(n, 2)` float64 [m]; cos, sin: `(n,)` float64 of the ego headings.
        out: `(n, m, Q, 2)` float32, set to the ego-frame points (`to_ego_frame`,
            float64, then float32) and `+inf` where there is none.
    """
    count, points = samples.shape[1], out.shape[2]
    absent = np.float32(np.inf)
    for i in numba.prange(out.shape[0]):
        ex, ey, c, s = position[i, 0], position[i, 1], cos[i], sin[i]
        for slot in range(out.shape[1]):
            lane = pick[i, slot]
            # points q = 0 .. inside - 1 lie in the window (`first + q <= last`), the rest
            # are absent
            inside = 0
            if valid[i, slot]:
                inside = max(0, min(points, last[i, slot] - first[i, slot] + 1))
            for q in range(inside):
                index = min(first[i, slot] + q, count - 1)
                dx, dy = samples[lane, index, 0] - ex, samples[lane, index, 1] - ey
                xf, yf = np.float32(dx * c + dy * s), np.float32(dy * c - dx * s)
                out[i, slot, q, 0] = xf if np.isfinite(xf) else absent   # NaN, overflow
                out[i, slot, q, 1] = yf if np.isfinite(yf) else absent
            for q in range(inside, points):
                out[i, slot, q, 0] = absent
                out[i, slot, q, 1] = absent
