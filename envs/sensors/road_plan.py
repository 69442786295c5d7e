"""Road plans: what the bev needs of a road that does not change per tick, found once per
road and cached.

A straight road, in its own frame (s along the road direction `d`, t across it, both from
an origin `o`), is a set of "lines": line `j` is the set of capsules of radius `rho_j`
around the segments `t = t_j, s in [a_k, b_k]`, `a_k = a_0 + k P`, `b_k = min(a_k + l,
b_last)`, `k = 0 .. K - 1`. A lane is a line with one segment (`K = 1`, radius its half
width); a painted line is a line of evenly spaced stripes (radius half a pixel).
`LINE_COLUMNS` names the columns of a line's row in `RoadPlan.lines`.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from reflexdrive.envs.sensors.constants import FAR

_LINE_TOL_M = 1e-6
"""`prepare_road`: segments this close to one line (or to an even stripe pattern) are
taken as lying on it [m]."""

_PLAN_CACHE_SIZE = 4
"""Road plans kept by `road_plan_for` (roads seen last)."""


LINE_COLUMNS = ("t", "a0", "period", "length", "count", "end", "radius", "valid")
"""Columns of `RoadPlan.lines` (float64): across offset `t_j`, first start `a_0`, period
`P`, stripe length `l` (`FAR` for a single segment), stripe count `K`, last end `b_last`
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
        lines: `(V, lanes + marks + 1, 8)` float64 in the `LINE_COLUMNS` layout: lanes (bev
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
        return [tj, aj, 1.0, FAR, 1.0, bj, radius, 1.0]

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
    return np.array([0.5 * (low + high), a[0], 1.0, FAR, 1.0, b[0], 0.5 * (high - low), 1.0])


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
    rows with curved lanes) are drawn by the generic path. Cost: an analysis per distinct
    road, plus a pass over the arrays to find the distinct rows (docs/sensors.md).

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


PLAN_CACHE: OrderedDict = OrderedDict()
"""`road_plan_for`'s cache: key -> (what must still hold, plan)."""


def _version(tensor: torch.Tensor):
    """The tensor's version counter (bumped by in-place changes); None for inference
    tensors, which have none (the cache then trusts that they are not written to)."""
    try:
        return tensor._version
    except RuntimeError:
        return None


def road_plan_for(road, tensors: tuple, device: torch.device) -> RoadPlan:
    """The plan of a road, from the cache when the same road was seen recently.

    `road` is the `RoadGeometry` (numpy entry point; matched by identity through a weak
    reference) or None (torch core: matched by the identity, shape and version counter of
    the five tensors, which the cache keeps alive so their memory is not reused).
    """
    if road is not None:
        key = ("road", id(road), str(device))
        hit = PLAN_CACHE.get(key)
        if hit is not None and hit[0]() is road:
            PLAN_CACHE.move_to_end(key)
            return hit[1]
        plan = prepare_road(*tensors, device=device)
        try:
            guard = weakref.ref(road)
        except TypeError:                                # not weak-referenceable: no cache
            return plan
    else:
        key = ("tensors", str(device)) + tuple(
            (t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, _version(t)) for t in tensors)
        hit = PLAN_CACHE.get(key)
        if hit is not None:                 # same memory, kept alive by the entry, unmodified
            PLAN_CACHE.move_to_end(key)
            return hit[1]
        plan = prepare_road(*tensors, device=device)
        guard = (lambda kept=tensors: kept)  # noqa: E731
    PLAN_CACHE[key] = (guard, plan)
    while len(PLAN_CACHE) > _PLAN_CACHE_SIZE:
        PLAN_CACHE.popitem(last=False)
    return plan
