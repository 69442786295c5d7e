"""The planner on a curved route: its lane frame becomes the route frame.

`MobilFrenetPlanner` plans in a Frenet frame (`s` along the lane, `d` across it from the ego
lane's centre). On a straight road that frame is the ego frame rotated by the heading
error; where the env's map (`info["map"]`, `envs.road_map`) shows a curved route
(`route_frame.route_is_curved`) the functions here give the same quantities on the route:

- `route_frame_tracks`: tracks projected on the route polyline, velocities and
  accelerations turned into the route's tangent and normal at each track's foot point;
- `ego_on_route`: the ego's offset from the route lane's centre and its heading relative
  to the route;
- `neighbour_lanes`: whether the map shows a lane beside the route lane on either side (a
  lane change needs one);
- `route_path`: the planned `(s, d)` path back into the ego frame;
- `curve_acceleration`: the free-road acceleration towards the curve speed limit;
- `bend_deceleration`: the constant deceleration that brings the ego to each bend's speed
  by the time it reaches it (the planner takes the lower of the two);
  `deceleration_to_speeds` the same for any speed per route point (the lanes' limits).

Pure batched functions over `N` envs.
"""

from __future__ import annotations

import numpy as np
from reflexdrive.agents.staged.route_frame import (
    project_to_route,
    route_arc_length,
    route_curvature,
    route_point,
)
from reflexdrive.agents.staged.types import LaneFrameTracks, Tracks


def ego_on_route(route: np.ndarray, route_heading: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ego's route coordinates: `s0` `(N,)` arc length of its foot on the route (about 0:
    the route starts at the ego's projection) [m], `offset` `(N,)` its signed distance from
    the route lane's centre (+ left) [m], `heading_error` `(N,)` its heading minus the
    route's at the foot [rad] (from the map's exact `route_heading[:, 0]`; 0 where NaN).

    Args:
        route: `(N, P, 2)` [m]; route_heading: `(N, P)` [rad].
    """
    s0, offset = project_to_route(route, np.zeros((route.shape[0], 1, 2)))
    heading_error = -np.nan_to_num(np.asarray(route_heading, np.float64)[:, 0])
    return s0[:, 0], offset[:, 0], heading_error


MOVING_MPS = 0.5
"""Below this speed a track's acceleration is read along the route's tangent (its own
direction of travel is not known well enough) [m/s]."""


def route_frame_tracks(tracks: Tracks, route: np.ndarray, s0: np.ndarray) -> LaneFrameTracks:
    """`tracks` (ego frame) in the route frame relative to the ego's foot `s0` `(N,)` [m]:
    `s` from the ego along the route, `d` from the route lane's centre; the ground velocity
    turned into the route's tangent (`vs`) and left normal (`vd`) at each track's foot, and
    `accel_s` the track's acceleration along its own velocity (its speed change, not the
    turn) projected on that tangent.

    Args:
        route: `(N, P, 2)` [m].
    """
    position = np.asarray(tracks.position, np.float64)
    s, d = project_to_route(route, position)
    _, heading = route_point(route, s)
    c, sn = np.cos(heading), np.sin(heading)
    vx = np.nan_to_num(np.asarray(tracks.velocity, np.float64)[..., 0])
    vy = np.nan_to_num(np.asarray(tracks.velocity, np.float64)[..., 1])
    accel_s = np.zeros_like(s)
    if tracks.acceleration is not None:
        # the lead's own speed change (its acceleration along its velocity), as seen along
        # the route: a car turning at a steady speed accelerates only towards the centre of
        # its turn, which read along the route's tangent looked like braking and held the
        # ego behind it at a crawl (the CAH braking floor)
        ax, ay = tracks.acceleration[..., 0], tracks.acceleration[..., 1]
        speed = np.hypot(vx, vy)
        moving = speed > MOVING_MPS
        with np.errstate(invalid="ignore", divide="ignore"):
            along_own = np.where(moving, (np.nan_to_num(ax) * vx + np.nan_to_num(ay) * vy)
                                 / speed, 0.0)
            along_route = np.where(moving, (vx * c + vy * sn) / speed, 1.0)
        still = np.nan_to_num(ax) * c + np.nan_to_num(ay) * sn
        known = np.isfinite(ax) & np.isfinite(ay)
        accel_s = np.where(known, np.where(moving, along_own * along_route, still), 0.0)
    valid = tracks.valid.astype(bool) & np.isfinite(s) & np.isfinite(d)
    length, width = footprint_extents(tracks, heading)
    return LaneFrameTracks(s=np.nan_to_num(s - s0[:, None]), d=np.nan_to_num(d),
                           vs=vx * c + vy * sn, vd=-vx * sn + vy * c,
                           length=length, width=width, valid=valid, accel_s=accel_s)


def footprint_extents(tracks: Tracks, route_heading: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """`(N, K)` each: a track's footprint (its `size` rectangle turned by its heading)
    measured along and across the route at its foot (`route_heading` `(N, K)` [rad], ego
    frame): `|L cos a| + |W sin a|` and `|L sin a| + |W cos a|` [m] with `a` its heading off
    the route's. A car standing at an angle where its lane forks off the route (a crashed
    one on the ring beside the exit) reaches further into the route's lane than its width;
    the lead search (`lane_frame.lane_neighbours`) reads this. Where the tracker reports no
    heading, its length and width as they are."""
    length, width = tracks.size[..., 0], tracks.size[..., 1]
    if tracks.heading is None:
        return length, width
    off = np.asarray(tracks.heading, np.float64) - route_heading
    known = np.isfinite(off)
    c, sn = np.abs(np.cos(np.nan_to_num(off))), np.abs(np.sin(np.nan_to_num(off)))
    return (np.where(known, length * c + width * sn, length),
            np.where(known, length * sn + width * c, width))


CROSSING_RAD = np.pi / 3
"""A track moving more than this off the route's direction at its foot crosses the route
rather than following it [rad] (the 60 deg within which `yielding.tracks_on_lanes` puts a
track on a lane)."""


def crossing_tracks(frame: LaneFrameTracks) -> np.ndarray:
    """`(N, K)` bool: the track moves (faster than `MOVING_MPS`) at more than `CROSSING_RAD`
    from the route's tangent at its foot: a vehicle crossing the route (or driving against
    it), whose along-route speed is not that of a lead (it reads as one moving backwards,
    and the time-to-collision rule braked the ego for it even at standstill). A stopped one
    is not crossing: it stands where it stands."""
    speed = np.hypot(frame.vs, frame.vd)
    return frame.valid & (speed > MOVING_MPS) & (frame.vs < speed * np.cos(CROSSING_RAD))


def select_frame(use_first: np.ndarray, first: LaneFrameTracks, second: LaneFrameTracks
                 ) -> LaneFrameTracks:
    """Per env, `first` where `use_first` `(N,)` else `second`."""
    pick = use_first[:, None]
    return LaneFrameTracks(**{name: np.where(pick, getattr(first, name), getattr(second, name))
                              for name in LaneFrameTracks.__dataclass_fields__})


def neighbour_lanes(road_map, route: np.ndarray, s0: np.ndarray, lane_width_m: float,
                    ahead_m: float = 40.0, min_points: int = 5) -> dict[int, np.ndarray]:
    """`{-1: (N,), +1: (N,)}` bool: the map shows a lane beside the route lane on that side
    (right / left), running the route's way: at least `min_points` of one lane's centreline
    points lie within `[s0, s0 + ahead_m]` along the route at `d` within half a lane width
    of `-+lane_width_m`, each heading within 45 deg of the route's there.

    Args:
        road_map: `info["map"]` (`lanes` `(N, M, Q, 2)`, `lane_valid` `(N, M)`).
        route: `(N, P, 2)` [m]; s0: `(N,)` the ego's foot [m]; lane_width_m: [m].
    """
    lanes = np.asarray(road_map["lanes"], np.float64)                    # (N, M, Q, 2)
    n, m, q, _ = lanes.shape
    valid = np.asarray(road_map["lane_valid"], bool)[:, :, None] & np.isfinite(lanes).all(-1)
    s, d = project_to_route(route, lanes.reshape(n, m * q, 2))
    s, d = s.reshape(n, m, q) - s0[:, None, None], d.reshape(n, m, q)
    step = np.diff(lanes, axis=2)                                        # (N, M, Q-1, 2)
    direction = np.arctan2(step[..., 1], step[..., 0])
    _, route_heading = route_point(route, (s + s0[:, None, None]).reshape(n, m * q))
    route_heading = route_heading.reshape(n, m, q)[..., :-1]
    along = np.cos(direction - route_heading) > np.cos(np.pi / 4)
    near = valid[..., :-1] & valid[..., 1:] & along & (s[..., :-1] >= 0.0) & (
        s[..., :-1] <= ahead_m)
    out = {}
    for side in (-1, 1):
        beside = near & (np.abs(d[..., :-1] - side * lane_width_m) < 0.5 * lane_width_m)
        out[side] = (beside.sum(axis=2) >= min_points).any(axis=1)
    return out


def route_path(route: np.ndarray, s0: np.ndarray, path_s: np.ndarray, path_d: np.ndarray
               ) -> np.ndarray:
    """`(N, P, 2)` ego-frame points of the planned path at route coordinates `(s0 + path_s,
    path_d)` `(N, P)` [m], shifted so that its first point is the ego (the origin: the
    polyline's foot of the ego is exact only up to rounding)."""
    points, _ = route_point(route, s0[:, None] + path_s, path_d)
    return points - points[:, :1]


def path_curvature_at_ego(route: np.ndarray) -> np.ndarray:
    """`(N,)` the route's curvature [1/m] at its first inner point (2 m ahead of the ego's
    foot: the route's first point has no curvature of its own)."""
    kappa = route_curvature(route)
    return kappa[:, 1] if kappa.shape[1] > 2 else np.zeros(kappa.shape[0])


def slip_angle(curvature: np.ndarray, vehicle_length_m: float) -> np.ndarray:
    """`(N,)` the slip angle `beta` [rad] highway-env's centre-referenced bicycle of length
    `L` holds on a circle of `curvature` `(N,)` [1/m]: `sin(beta) = kappa L / 2` (its centre
    moves at `heading + beta`)."""
    return np.arcsin(np.clip(0.5 * vehicle_length_m * curvature, -1.0, 1.0))


def curve_acceleration(speed: np.ndarray, limit: np.ndarray, max_accel_mps2: float,
                       delta: float) -> np.ndarray:
    """`(N,)` the IDM's free-road acceleration [m/s^2] towards the curve speed limit `limit`
    `(N,)` [m/s] (`route_frame.curve_speed_limit`) as desired speed: `a (1 - (v /
    v_curve)^delta)`, so the ego slows before a bend to drive it within the lateral
    acceleration bound."""
    limit = np.maximum(limit, 0.5)
    return max_accel_mps2 * (1.0 - np.power(np.maximum(speed, 0.0) / limit, delta))


def smoothed_curvature(route: np.ndarray, window: int) -> np.ndarray:
    """`(N, P)` the route's unsigned curvature [1/m] (`route_frame.route_curvature`) averaged
    over `window` consecutive points centred on each (1: as it is): a kink where two lanes
    meet off the 2 m grid, or a bridged gap's ends, reads as one point of high curvature
    that no vehicle drives; a bend it keeps (over a bend longer than the window the mean
    is its curvature)."""
    kappa = np.abs(route_curvature(route))
    if window <= 1:
        return kappa
    kernel = np.ones(window) / window
    return np.stack([np.convolve(row, kernel, mode="same") for row in kappa])


def bend_deceleration(route: np.ndarray, speed: np.ndarray, max_lateral_accel_mps2: float,
                      window: int = 5, min_distance_m: float = 1e-3) -> np.ndarray:
    """`(N,)` the kinematic acceleration [m/s^2] that brings the ego from `speed` `(N,)`
    [m/s] to every bend's speed by the time it gets there: `min_i (v_i^2 - v^2) / (2 s_i)`
    over the route points ahead, with `v_i = sqrt(a_lat / |kappa_i|)` the speed at which
    the route's curvature `kappa_i` (`smoothed_curvature` over `window` points) takes the lateral
    acceleration `a_lat` and `s_i` the arc length to point `i`. Only bends slower than the
    ego count (a faster one needs no braking; its positive term would only slow the
    IDM's approach to the curve speed limit); points nearer than `min_distance_m`,
    straight points and absent ones are skipped; `+inf` where none is left.

    The IDM's free-road term towards the curve speed limit (`curve_acceleration`) brakes
    with `a (1 - (v / v_limit)^delta)`, a fraction of a m/s^2 just above the limit: the
    ego reached a tight bend (a roundabout exit's) still too fast and ran wide. This term
    is the braking the bend needs, exactly: at constant deceleration `b` from `v`, the
    speed after `s` is `sqrt(v^2 - 2 b s)`.

    Args:
        route: `(N, P, 2)` ego-frame route [m] (NaN rows absent).
        max_lateral_accel_mps2: `a_lat` [m/s^2].
    """
    kappa = smoothed_curvature(route, window)
    with np.errstate(divide="ignore"):
        corner_speed = np.sqrt(np.where(kappa > 0.0, max_lateral_accel_mps2 / kappa, np.inf))
    return deceleration_to_speeds(route, corner_speed, speed, min_distance_m)


def deceleration_to_speeds(route: np.ndarray, target_speed: np.ndarray, speed: np.ndarray,
                           min_distance_m: float = 1e-3) -> np.ndarray:
    """`(N,)` the kinematic acceleration [m/s^2] that brings the ego from `speed` `(N,)`
    [m/s] down to `target_speed` `(N, P)` [m/s] at every route point by the time it gets
    there: `min_i (v_i^2 - v^2) / (2 s_i)` over the points slower than the ego, `s_i` their
    arc length; points nearer than `min_distance_m`, absent ones and those with an infinite
    or NaN target are skipped; `+inf` where none is left. Both the bends
    (`bend_deceleration`) and the lanes' speed limits ahead (`info["map"]
    ["route_speed_limit"]`) are such targets.

    Args:
        route: `(N, P, 2)` ego-frame route [m] (NaN rows absent).
    """
    arc = route_arc_length(route)
    target = np.asarray(target_speed, np.float64)
    ahead = np.isfinite(arc) & (np.nan_to_num(arc) >= min_distance_m) & np.isfinite(target)
    with np.errstate(divide="ignore", invalid="ignore"):
        target2 = np.where(ahead, np.square(target), np.inf)
        speed2 = np.square(speed)[:, None]
        slower = ahead & (target2 < speed2)
        needed = np.where(slower, (target2 - speed2)
                          / (2.0 * np.where(ahead, arc, 1.0)), np.inf)
    return needed.min(axis=1)


def brake_when_needed(deceleration: np.ndarray, min_decel_mps2: float) -> np.ndarray:
    """`(N,)` the braking `deceleration` `(N,)` [m/s^2] (negative; `+inf`: none) towards a
    slower bend or speed limit ahead, kept only once it is at least `min_decel_mps2` (else
    `+inf`): the ego brakes late at a comfortable rate instead of from as far as the route
    reaches at a few cm/s^2 (which held it below a roundabout ring's curve limit for the
    whole ring, for an exit bend 50 m on)."""
    deceleration = np.asarray(deceleration, np.float64)
    return np.where(deceleration <= -min_decel_mps2, deceleration, np.inf)
