"""The route frame: arc length `s` along the route's centreline and signed offset `d` from
it, for ego-frame points, batched.

The route is `info["map"]["route"]` (`envs.road_map`): `(N, P, 2)` points of the centreline
of the lane the ego's route follows, in the ego frame (x along the ego heading, y at +90
deg), sampled at a fixed arc-length step from the ego's projection on it, NaN rows past the
end of the road or route. The frame is the polyline through the valid points:

- `s` [m] is the arc length along the polyline from its first point (the ego's projection)
  to a point's foot on it; a point before the first segment or past the last projects on
  that segment's line extended (negative `s` behind the route's start, `s` beyond its end
  ahead), so vehicles behind the ego keep a meaningful `s < 0`;
- `d` [m] is the signed distance from the foot to the point, positive to the left of the
  driving direction (towards the ego frame's +y on a route that runs along +x, i.e. towards
  the next higher lane index, as the planner's lane frame).

A route with fewer than two valid points has no frame: it is the straight line along the
ego's x axis (`s = x`, `d = y`) so that a batch never fails on one env's short map.

On a straight route along the ego's x axis, `s = x - x0` and `d = y - y0` exactly as the
planner's rotated lane frame; on a circle of radius `R` turning left (centre at `+y`),
`s = R * angle` and `d = R - distance to the centre` up to the polyline's chord error
`R (1 - cos(step / 2R))`.

Every function is pure and batched over `N` envs.
"""

from __future__ import annotations

import numpy as np
from reflexdrive.envs.road_map import cubic_hermite

_MIN_SEGMENT_M = 1e-6
"""Segments shorter than this are degenerate (skipped) [m]."""


MAP_POINT_KEYS = ("route", "route_heading", "route_width", "lanes")
"""The float entries of `info["map"]` whose absent points the env pads with `+inf`."""

ROUTE_KEYS = ("route", "route_heading", "route_width")
"""The entries every map-reading stage uses; `lanes` (24 x 64 points per env, ~9 ms to
convert at 512 envs) only a planner on a curved route."""


def absent_as_nan(road_map, keys: tuple[str, ...] = MAP_POINT_KEYS):
    """`info["map"]` as the staged stages read it: the point entries `keys` float64 with
    absent points NaN (the env pads them with `+inf`, `envs.road_map`; NaN propagates
    through the stack's geometry, where `+inf - +inf` would not be caught); the other
    entries as they are; None stays None."""
    if road_map is None:
        return None
    converted = dict(road_map)
    for key in keys:
        if key not in road_map:
            continue
        value = np.asarray(road_map[key], np.float64)
        converted[key] = np.where(np.isfinite(value), value, np.nan)
    return converted


def route_valid(route: np.ndarray) -> np.ndarray:
    """`(N, P)` bool: the route points that are finite."""
    return np.isfinite(route).all(axis=-1)


def _segments(route: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segment starts `(N, S, 2)`, unit directions `(N, S, 2)`, lengths `(N, S)` and usable
    mask `(N, S)` (both ends finite, longer than `_MIN_SEGMENT_M`), `S = P - 1`; NaN
    replaced by 0 in the geometry of unusable segments."""
    route = np.asarray(route, np.float64)
    valid = route_valid(route)
    start = np.nan_to_num(route[:, :-1])
    step = np.nan_to_num(route[:, 1:]) - start
    length = np.hypot(step[..., 0], step[..., 1])
    usable = valid[:, :-1] & valid[:, 1:] & (length > _MIN_SEGMENT_M)
    safe = np.where(usable, length, 1.0)
    direction = np.where(usable[..., None], step / safe[..., None], np.array([1.0, 0.0]))
    return start, direction, np.where(usable, length, 0.0), usable


def route_arc_length(route: np.ndarray) -> np.ndarray:
    """`(N, P)` arc length [m] of each route point from the first, along the polyline
    (degenerate or invalid segments add 0; NaN at invalid points)."""
    _, _, length, _ = _segments(route)
    arc = np.concatenate([np.zeros((length.shape[0], 1)), np.cumsum(length, axis=1)], axis=1)
    return np.where(route_valid(route), arc, np.nan)


def project_to_route(route: np.ndarray, points: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Route coordinates of ego-frame points.

    Args:
        route: `(N, P, 2)` route centreline in the ego frame [m], NaN rows invalid.
        points: `(N, K, 2)` points in the ego frame [m] (NaN points give NaN).

    Returns:
        `s` `(N, K)` arc length of the foot point from the route's first point [m] and `d`
        `(N, K)` signed offset, + to the left of the driving direction [m].
    """
    points = np.asarray(points, np.float64)
    start, direction, length, usable = _segments(route)                 # (N, S, ...)
    arc = np.concatenate([np.zeros((length.shape[0], 1)), np.cumsum(length, axis=1)[:, :-1]],
                         axis=1)                                         # (N, S) at starts
    rel = points[:, :, None, :] - start[:, None, :, :]                  # (N, K, S, 2)
    along = (rel * direction[:, None]).sum(-1)                          # (N, K, S)
    across = (direction[:, None, :, 0] * rel[..., 1]
              - direction[:, None, :, 1] * rel[..., 0])
    clamped = np.clip(along, 0.0, length[:, None])
    gap2 = (along - clamped) ** 2 + across ** 2
    gap2 = np.where(usable[:, None], gap2, np.inf)
    nearest = np.argmin(gap2, axis=-1)                                  # (N, K)
    has = usable.any(axis=1)                                            # (N,)
    first = np.argmax(usable, axis=1)
    last = usable.shape[1] - 1 - np.argmax(usable[:, ::-1], axis=1)
    pick = np.take_along_axis
    seg_along = pick(along, nearest[..., None], -1)[..., 0]
    seg_across = pick(across, nearest[..., None], -1)[..., 0]
    seg_length = pick(length, nearest, 1)
    # the foot stays on its segment, except before the first and past the last segment
    lower = np.where(nearest == first[:, None], -np.inf, 0.0)
    upper = np.where(nearest == last[:, None], np.inf, seg_length)
    s = pick(arc, nearest, 1) + np.clip(seg_along, lower, upper)
    d = seg_across
    # a foot clamped to a segment end (a point outside a corner) is at its distance
    corner = (seg_along < lower) | (seg_along > upper)
    d = np.where(corner, np.sign(seg_across) * np.sqrt(pick(gap2, nearest[..., None], -1)[..., 0]),
                 d)
    s = np.where(has[:, None], s, points[..., 0])
    d = np.where(has[:, None], d, points[..., 1])
    return s, d


def route_point(route: np.ndarray, s: np.ndarray, d: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame points at route coordinates: the inverse of `project_to_route` (for a
    point whose foot lies inside a segment).

    Args:
        route: `(N, P, 2)` [m]; s: `(N, K)` arc length [m]; d: `(N, K)` offset [m] (None: 0).
            Before the route's start and past its end the first / last segment's line is
            extended.

    Returns:
        points `(N, K, 2)` [m] and the route's heading there `(N, K)` [rad] (the segment's
        direction in the ego frame).
    """
    s = np.asarray(s, np.float64)
    d = np.zeros_like(s) if d is None else np.asarray(d, np.float64)
    start, direction, length, usable = _segments(route)
    arc = np.concatenate([np.zeros((length.shape[0], 1)), np.cumsum(length, axis=1)[:, :-1]],
                         axis=1)
    has = usable.any(axis=1)
    first = np.argmax(usable, axis=1)
    last = usable.shape[1] - 1 - np.argmax(usable[:, ::-1], axis=1)
    # the segment holding s: the last usable one starting at or before s (else the first)
    starts_before = usable[:, None, :] & (arc[:, None, :] <= s[..., None])      # (N, K, S)
    index = np.where(starts_before.any(-1),
                     starts_before.shape[-1] - 1 - np.argmax(starts_before[..., ::-1], axis=-1),
                     first[:, None])
    index = np.minimum(index, last[:, None])
    pick = np.take_along_axis
    origin = pick(start, index[..., None], 1)
    unit = pick(direction, index[..., None], 1)
    along = s - pick(arc, index, 1)
    normal = np.stack([-unit[..., 1], unit[..., 0]], axis=-1)
    point = origin + along[..., None] * unit + d[..., None] * normal
    heading = np.arctan2(unit[..., 1], unit[..., 0])
    straight = np.stack([s, d], axis=-1)
    return (np.where(has[:, None, None], point, straight),
            np.where(has[:, None], heading, 0.0))


def route_curvature(route: np.ndarray) -> np.ndarray:
    """`(N, P)` signed curvature of the route at its points [1/m] (+ turning left, towards
    +d): the heading change between the segments meeting at a point over the mean of their
    lengths; 0 at the ends and where a neighbouring segment is unusable."""
    _, direction, length, usable = _segments(route)
    heading = np.arctan2(direction[..., 1], direction[..., 0])               # (N, S)
    turn = np.angle(np.exp(1j * (heading[:, 1:] - heading[:, :-1])))        # (N, S-1)
    mean = 0.5 * (length[:, 1:] + length[:, :-1])
    both = usable[:, 1:] & usable[:, :-1]
    inner = np.where(both, turn / np.where(both, mean, 1.0), 0.0)
    zero = np.zeros((inner.shape[0], 1))
    return np.concatenate([zero, inner, zero], axis=1)


def curve_speed_limit(route: np.ndarray, max_lateral_accel_mps2: float,
                      decel_mps2: float, max_speed_mps: float) -> np.ndarray:
    """`(N,)` the highest speed [m/s] from which the ego, braking at `decel_mps2` from now,
    drives every point of the route ahead no faster than `sqrt(a_lat / |kappa|)`:
    `min_i sqrt(a_lat / |kappa_i| + 2 b s_i)`, capped at `max_speed_mps` (also where the
    route is straight or missing).

    Args:
        route: `(N, P, 2)` [m]; max_lateral_accel_mps2: the lateral acceleration bound
            `a_lat` [m/s^2]; decel_mps2: `b` [m/s^2]; max_speed_mps: the cap [m/s].
    """
    kappa = np.abs(route_curvature(route))
    arc = np.nan_to_num(route_arc_length(route), nan=np.inf)
    with np.errstate(divide="ignore"):
        corner = np.where(kappa > 0.0, max_lateral_accel_mps2 / kappa, np.inf)
    reachable = np.sqrt(corner + 2.0 * decel_mps2 * arc)
    return np.minimum(np.min(reachable, axis=1), max_speed_mps)


CURVED_ROUTE_RAD = 1e-4
"""A route whose lane heading varies by more than this over its valid points is curved
[rad]; on a straight one the stack keeps its straight-road frame (bit-identical)."""


def unwrapped_heading(route_heading: np.ndarray) -> np.ndarray:
    """`(N, P)` the map's route headings [rad] made continuous along the route (NaN rows
    take the previous valid value, so `np.unwrap` sees no NaN); NaN where all are NaN."""
    heading = np.asarray(route_heading, np.float64)
    valid = np.isfinite(heading)
    index = np.where(valid, np.arange(heading.shape[1]), 0)
    np.maximum.accumulate(index, axis=1, out=index)
    filled = np.take_along_axis(heading, index, axis=1)
    return np.unwrap(np.nan_to_num(filled), axis=1) + np.where(valid[:, :1], 0.0, np.nan)


def route_is_curved(route_heading: np.ndarray) -> np.ndarray:
    """`(N,)` bool: the route's lane heading varies by more than `CURVED_ROUTE_RAD`."""
    heading = unwrapped_heading(route_heading)
    with np.errstate(invalid="ignore"):
        spread = np.abs(heading - heading[:, :1])
    return np.nan_to_num(spread).max(axis=1) > CURVED_ROUTE_RAD


def route_heading_at(route: np.ndarray, route_heading: np.ndarray, s: np.ndarray
                     ) -> np.ndarray:
    """`(N, K)` the map's lane heading [rad] (relative to the ego, unwrapped along the route)
    at arc lengths `s` `(N, K)` [m], linear between the route's points and held beyond its
    ends; 0 where the route has no valid point.

    Args:
        route: `(N, P, 2)` [m]; route_heading: `(N, P)` [rad] (`info["map"]["route_heading"]`).
    """
    arc = route_arc_length(route)
    heading = unwrapped_heading(route_heading)
    s = np.asarray(s, np.float64)
    out = np.zeros(s.shape)
    for row in range(s.shape[0]):
        valid = np.isfinite(arc[row]) & np.isfinite(heading[row])
        if valid.any():
            out[row] = np.interp(s[row], arc[row, valid], heading[row, valid])
    return out


def smooth_route_gaps(route: np.ndarray, start_heading: np.ndarray | None = None,
                      step_m: float = 2.0, gap_factor: float = 1.5, reach: int = 2
                      ) -> np.ndarray:
    """`route` `(N, P, 2)` [m] with every gap bridged by a tangent-continuous curve.

    Where one lane ends away from where the next begins (highway-env's roundabout entries
    end metres from the ring lane they feed), the map's route has one segment longer than
    `gap_factor * step_m` with a kink at each end; a path along it would cut across the
    road's edge. The `reach` points after the gap are moved onto the cubic Hermite curve
    from the gap's start (the end of the lane before it: that lane's surface ends there)
    to the `reach`-th point after it, with the tangents of the segments
    outside the window (so the curve leaves and joins the lanes in their direction). A
    window that would start before the route's first point starts there, with the lane
    heading `start_heading` `(N,)` [rad] (the map's `route_heading[:, 0]`; None: the
    first segment's direction) as its tangent. The number of points stays, their spacing
    varies (arc-length functions measure it).
    """
    out = np.array(route, np.float64, copy=True)
    _, direction, length, usable = _segments(out)
    gaps = np.argwhere(usable & (length > gap_factor * step_m))
    for row, gap in gaps:
        first, last = gap, gap + 1 + reach
        if last + 1 >= out.shape[1] or not usable[row, max(first - 1, 0):last + 1].all():
            continue
        p0, p1 = out[row, first], out[row, last]
        chord = float(np.linalg.norm(p1 - p0))
        if first > 0:
            t0 = direction[row, first - 1] * chord
        elif start_heading is not None and np.isfinite(start_heading[row]):
            t0 = np.array([np.cos(start_heading[row]), np.sin(start_heading[row])]) * chord
        else:
            t0 = direction[row, 0] * chord
        t1 = direction[row, last] * chord
        u = np.linspace(0.0, 1.0, last - first + 1)[1:-1, None]
        out[row, first + 1:last] = cubic_hermite(p0, t0, p1, t1, u)
    return out
