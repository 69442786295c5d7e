"""Lane geometry of highway-env road networks on `LaneTables` in the kernel (scalar numba).

The scalar functions (`local_coordinates`, `lane_position`, `heading_at`, `closest_lane`)
take the numpy `LaneTables` and one lane row, with highway-env's operations in its order
(as `envs.backends.batched.torch.network`, which documents the formulas), to ~1e-13 of
highway-env (exact ties between a lane's end and its successor's start may fall either
way, as there). The `*_many` drivers evaluate them over arrays from Python (tests,
reset-time work).
"""

from __future__ import annotations

import math

import numpy as np
from reflexdrive.envs.backends.batched.lanes import CIRCULAR, SINE, LaneTables
from reflexdrive.envs.backends.batched.numba.jit import jit, numba

TWO_PI = 2 * math.pi


def _python_callable(function):
    """`numba.njit` with a Python wrapper (the kernel's `jit()` has none), or the function."""
    return numba.njit(error_model="numpy")(function) if numba is not None else function


@jit()
def wrap_to_pi(x):
    """highway-env's `utils.wrap_to_pi`: `((x + pi) % 2 pi) - pi` [rad] (floored `%`).

    The same bits without the `fmod` call (~17% of the network kernel's samples) where
    `v = x + pi` lies in `[-2 pi, 4 pi)`: `fmod` is exact, so Python's `%` gives `v` on
    `[0, 2 pi)`, `v + 2 pi` (rounded, +0.0 at -2 pi) below, and `v - 2 pi` (exact by
    Sterbenz's lemma) above; a zero is +0.0 (`v + 0.0`), as `%` makes it."""
    v = x + math.pi
    if 0.0 <= v and v < TWO_PI:
        r = v + 0.0
    elif -TWO_PI <= v and v < 0.0:
        r = v + TWO_PI
    elif TWO_PI <= v and v < 2.0 * TWO_PI:
        r = v - TWO_PI
    else:
        r = v % TWO_PI
    return r - math.pi


@jit()
def local_coordinates(t, lane, x, y):
    """`lane.local_coordinates((x, y))`: `(s, r)` [m] on lane row `lane`."""
    kind = t.kind[lane]
    dx = x - t.origin[lane, 0]
    dy = y - t.origin[lane, 1]
    if kind == CIRCULAR:
        start = t.start_phase[lane]
        phi = start + wrap_to_pi(math.atan2(dy, dx) - start)
        o = t.orientation[lane]
        distance = math.sqrt(dx * dx + dy * dy)
        return o * (phi - start) * t.radius[lane], o * (t.radius[lane] - distance)
    s = dx * t.direction[lane, 0] + dy * t.direction[lane, 1]
    r = dx * t.lateral[lane, 0] + dy * t.lateral[lane, 1]
    if kind == SINE:
        r = r - t.amplitude[lane] * math.sin(t.pulsation[lane] * s + t.phase[lane])
    return s, r


@jit()
def lane_position(t, lane, s, r):
    """`lane.position(s, r)`: world `(x, y)` [m]."""
    if t.kind[lane] == CIRCULAR:
        o = t.orientation[lane]
        phi = o * s / t.radius[lane] + t.start_phase[lane]
        scale = t.radius[lane] - r * o
        return t.origin[lane, 0] + scale * math.cos(phi), t.origin[lane, 1] + scale * math.sin(phi)
    if t.kind[lane] == SINE:
        r = r + t.amplitude[lane] * math.sin(t.pulsation[lane] * s + t.phase[lane])
    return (t.origin[lane, 0] + s * t.direction[lane, 0] + r * t.lateral[lane, 0],
            t.origin[lane, 1] + s * t.direction[lane, 1] + r * t.lateral[lane, 1])


@jit()
def heading_at(t, lane, s):
    """`lane.heading_at(s)` [rad]."""
    if t.kind[lane] == CIRCULAR:
        o = t.orientation[lane]
        return o * s / t.radius[lane] + t.start_phase[lane] + math.pi / 2 * o
    if t.kind[lane] == SINE:
        w = t.pulsation[lane]
        return t.heading[lane] + math.atan(t.amplitude[lane] * w * math.cos(w * s + t.phase[lane]))
    return t.heading[lane]


@jit()
def lane_distance(t, lane, s, r):
    """`AbstractLane.distance` from lane coordinates [m]."""
    return abs(r) + max(s - t.length[lane], 0.0) + max(0.0 - s, 0.0)


@jit()
def closest_lane(t, x, y, heading):
    """`RoadNetwork.get_closest_lane_index((x, y), heading)`: the lane row of lowest
    `distance + |wrap(heading - heading_at(s))|`, the first row on a tie."""
    best, best_score = 0, math.inf
    for lane in range(t.kind.shape[0]):
        s, r = local_coordinates(t, lane, x, y)
        score = lane_distance(t, lane, s, r) + abs(wrap_to_pi(heading - heading_at(t, lane, s)))
        if score < best_score:
            best, best_score = lane, score
    return best


BOUND_SLACK_M = 1e-6
"""Added to every `lane_bounds` radius and to the pruning threshold of `closest_lane_near`
(relative to the score too), far above the rounding of the distances involved [m]."""


def lane_bounds(t: LaneTables) -> np.ndarray:
    """`(L, 3)` float64 `[x, y, radius]`: a circle holding each lane's centre line, such
    that a point's `distance` to the lane (`|r|` plus the overshoot past its ends) is at
    least its Euclidean distance to the circle's boundary.

    Straight: the segment's midpoint, half its length. Circular: the arc's midpoint,
    `2 R sin(min(length / R, 2 pi) / 4)` (the chord to its farther end); for both, the
    `distance` is at least the Euclidean distance to the centre line. Sine: the midpoint of
    its straight base line, half its length plus `|amplitude|`: a point at `(s, r)` lies
    `s - length / 2` along the base from that midpoint and `r + A sin(.)` across it, so
    within `|s - length / 2| + |r| + |A| <= length / 2 + |A| + distance` of it.
    """
    half = t.length / 2
    bounds = np.empty((len(t.kind), 3))
    bounds[:, :2] = t.origin + t.direction * half[:, None]
    bounds[:, 2] = half
    circle = t.kind == CIRCULAR
    phi = t.orientation * half / np.where(circle, t.radius, 1.0) + t.start_phase
    bounds[circle, 0] = (t.origin[:, 0] + t.radius * np.cos(phi))[circle]
    bounds[circle, 1] = (t.origin[:, 1] + t.radius * np.sin(phi))[circle]
    angle = np.minimum(t.length / np.where(circle, t.radius, 1.0), 2 * np.pi)
    bounds[circle, 2] = (2 * t.radius * np.sin(angle / 4))[circle]
    sine = t.kind == SINE
    bounds[sine, 2] = (half + np.abs(t.amplitude))[sine]
    bounds[:, 2] += BOUND_SLACK_M
    return bounds


@jit()
def closest_lane_near(t, bounds, x, y, heading, hint):
    """`closest_lane` (the same row), skipping the lanes that cannot win: with `q` the
    score of lane `hint` (usually the vehicle's previous lane, so the winner or close),
    a lane whose `bounds` circle is farther than `q` (plus `BOUND_SLACK_M`) scores more
    than `q` and is not evaluated (a negative bounds radius: never skipped)."""
    s, r = local_coordinates(t, hint, x, y)
    q = lane_distance(t, hint, s, r) + abs(wrap_to_pi(heading - heading_at(t, hint, s)))
    reach = q + BOUND_SLACK_M * (1.0 + q)
    best, best_score = 0, math.inf
    for lane in range(t.kind.shape[0]):
        radius = bounds[lane, 2]
        if radius >= 0.0:
            dx, dy = x - bounds[lane, 0], y - bounds[lane, 1]
            limit = radius + reach
            if dx * dx + dy * dy > limit * limit:
                continue
        score = q if lane == hint else _score_below(t, lane, x, y, heading, best_score)
        if score < best_score:
            best, best_score = lane, score
    return best


@jit()
def _score_below(t, lane, x, y, heading, limit):
    """`closest_lane`'s score of lane row `lane` for the pose, or inf where it cannot be
    below `limit`: the score is at least the `distance`, itself at least `|r|` (rounding
    is monotonic), so the circle's `atan2` and the heading term are skipped past those."""
    if t.kind[lane] == CIRCULAR:
        dx = x - t.origin[lane, 0]
        dy = y - t.origin[lane, 1]
        if abs(t.orientation[lane] * (t.radius[lane] - math.sqrt(dx * dx + dy * dy))) > limit:
            return math.inf
    s, r = local_coordinates(t, lane, x, y)
    distance = lane_distance(t, lane, s, r)
    if distance > limit:
        return math.inf
    return distance + abs(wrap_to_pi(heading - heading_at(t, lane, s)))


@jit()
def lane_band(t, lane, x, y, half, lower, upper):
    """Whether `(x, y)` lies on lane row `lane`'s band `|r| <= half`, `lower <= s < upper`
    [m], and its `s` [m] there (NaN outside): `local_coordinates`' values and test, the
    cheap coordinate first (`r` on circles, `s` on sine lanes) so that most points off the
    band skip the `atan2` / `sin`."""
    kind = t.kind[lane]
    if kind == CIRCULAR:
        dx = x - t.origin[lane, 0]
        dy = y - t.origin[lane, 1]
        o = t.orientation[lane]
        distance = math.sqrt(dx * dx + dy * dy)
        if not abs(o * (t.radius[lane] - distance)) <= half:
            return False, math.nan
        start = t.start_phase[lane]
        phi = start + wrap_to_pi(math.atan2(dy, dx) - start)
        s = o * (phi - start) * t.radius[lane]
        return s >= lower and s < upper, s
    if kind == SINE:
        dx = x - t.origin[lane, 0]
        dy = y - t.origin[lane, 1]
        s = dx * t.direction[lane, 0] + dy * t.direction[lane, 1]
        if not (s >= lower and s < upper):
            return False, s
        r = dx * t.lateral[lane, 0] + dy * t.lateral[lane, 1]
        r = r - t.amplitude[lane] * math.sin(t.pulsation[lane] * s + t.phase[lane])
        return abs(r) <= half, s
    s, r = local_coordinates(t, lane, x, y)
    return abs(r) <= half and s >= lower and s < upper, s


@_python_callable
def _wrap_many(x, out):
    for i in range(x.shape[0]):
        out[i] = wrap_to_pi(x[i])


def wrap_many(x: np.ndarray) -> np.ndarray:
    """`wrap_to_pi` of `x (M,)` [rad]."""
    out = np.empty(len(x))
    _wrap_many(np.asarray(x, np.float64), out)
    return out


@_python_callable
def _coordinates_many(t, lanes, points, s_out, r_out):
    for i in range(lanes.shape[0]):
        s_out[i], r_out[i] = local_coordinates(t, lanes[i], points[i, 0], points[i, 1])


@_python_callable
def _positions_many(t, lanes, s, r, out):
    for i in range(lanes.shape[0]):
        out[i, 0], out[i, 1] = lane_position(t, lanes[i], s[i], r[i])


@_python_callable
def _headings_many(t, lanes, s, out):
    for i in range(lanes.shape[0]):
        out[i] = heading_at(t, lanes[i], s[i])


@_python_callable
def _closest_many(t, points, headings, out):
    for i in range(points.shape[0]):
        out[i] = closest_lane(t, points[i, 0], points[i, 1], headings[i])


@_python_callable
def _closest_near_many(t, bounds, points, headings, hints, out):
    for i in range(points.shape[0]):
        out[i] = closest_lane_near(t, bounds, points[i, 0], points[i, 1], headings[i],
                                   hints[i])


def closest_near_many(t: LaneTables, points: np.ndarray, headings: np.ndarray,
                      hints: np.ndarray):
    """`closest_lane_near` of `points (M, 2)` [m], `headings (M,)` [rad] from lane rows
    `hints (M,)`: `(M,)` int64 rows."""
    out = np.empty(len(points), dtype=np.int64)
    _closest_near_many(t, lane_bounds(t), np.asarray(points, np.float64),
                       np.asarray(headings, np.float64), np.asarray(hints, np.int64), out)
    return out


@_python_callable
def _band_many(t, lanes, points, half, lower, upper, inside, s_out):
    for i in range(lanes.shape[0]):
        inside[i], s_out[i] = lane_band(t, lanes[i], points[i, 0], points[i, 1], half[i],
                                        lower[i], upper[i])


def band_many(t: LaneTables, lanes: np.ndarray, points: np.ndarray, half: np.ndarray,
              lower: np.ndarray, upper: np.ndarray):
    """`lane_band` of `points (M, 2)` [m] on lane rows `lanes (M,)` with bands `half`,
    `lower`, `upper` `(M,)` [m]: `(inside (M,) bool, s (M,))`."""
    inside, s = np.empty(len(lanes), dtype=np.bool_), np.empty(len(lanes))
    _band_many(t, np.asarray(lanes, np.int64), np.asarray(points, np.float64),
               *(np.asarray(a, np.float64) for a in (half, lower, upper)), inside, s)
    return inside, s


def local_coordinates_many(t: LaneTables, lanes: np.ndarray, points: np.ndarray):
    """`local_coordinates` of `points (M, 2)` [m] on lane rows `lanes (M,)`: `(s, r)`."""
    s, r = np.empty(len(lanes)), np.empty(len(lanes))
    _coordinates_many(t, np.asarray(lanes, np.int64), np.asarray(points, np.float64), s, r)
    return s, r


def positions_many(t: LaneTables, lanes: np.ndarray, s: np.ndarray, r: np.ndarray):
    """`lane_position` of `(s, r)` pairs `(M,)` on `lanes (M,)`: `(M, 2)` [m]."""
    out = np.empty((len(lanes), 2))
    _positions_many(t, np.asarray(lanes, np.int64), np.asarray(s, np.float64),
                    np.asarray(r, np.float64), out)
    return out


def headings_many(t: LaneTables, lanes: np.ndarray, s: np.ndarray):
    """`heading_at` of `s (M,)` on `lanes (M,)` [rad]."""
    out = np.empty(len(lanes))
    _headings_many(t, np.asarray(lanes, np.int64), np.asarray(s, np.float64), out)
    return out


def closest_many(t: LaneTables, points: np.ndarray, headings: np.ndarray):
    """`closest_lane` of `points (M, 2)` [m] with `headings (M,)` [rad]: `(M,)` int64 rows."""
    out = np.empty(len(points), dtype=np.int64)
    _closest_many(t, np.asarray(points, np.float64), np.asarray(headings, np.float64), out)
    return out
