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
def curved_windows(samples, position, range2, first, last, nearest):
    """`HighwayRoadMap.lanes_in_range`'s curved lanes for `n` egos.

    Args:
        samples: `(L, S, 2)` float64 lane samples (NaN past a lane's end) [m].
        position: `(n, 2)` float64 ego positions [m]. range2: `MAP_RANGE_M ** 2` [m^2].
        first, last: `(n, L)` int64, set to the first and last sample within range (1 and 0
            where none is); nearest: `(n, L)` float64, set to the distance of the nearest
            one (inf where none is) [m].
    """
    lanes, count = samples.shape[0], samples.shape[1]
    for i in numba.prange(position.shape[0]):
        px, py = position[i, 0], position[i, 1]
        for lane in range(lanes):
            low, high, best = -1, -1, np.inf
            for k in range(count):
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
    count = samples.shape[1]
    for i in numba.prange(out.shape[0]):
        ex, ey, c, s = position[i, 0], position[i, 1], cos[i], sin[i]
        for slot in range(out.shape[1]):
            lane = pick[i, slot]
            for q in range(out.shape[2]):
                x = y = np.inf
                index = first[i, slot] + q
                if valid[i, slot] and index <= last[i, slot]:
                    index = min(index, count - 1)
                    dx, dy = samples[lane, index, 0] - ex, samples[lane, index, 1] - ey
                    x, y = dx * c + dy * s, dy * c - dx * s
                xf, yf = np.float32(x), np.float32(y)             # NaN, overflow: +inf
                out[i, slot, q, 0] = xf if np.isfinite(xf) else np.float32(np.inf)
                out[i, slot, q, 1] = yf if np.isfinite(yf) else np.float32(np.inf)
