"""The HD map a driving stack may read: the ego's route and the lanes around it.

Both backends put the same arrays in `info["map"]` at every observation (the single env as
below, the vector env with a leading batch dimension `B`), all in the ego frame of
`info["gt_objects"]` (x along the ego heading, y at +90 deg in world coordinates, i.e.
towards the next higher lane index on a straight road; `envs.sensors.frames`):

- `route (P, 2)` float32 [m]: the centreline of the lane the ego's route follows, from the
  ego's projection on its current lane, every `MAP_STEP_M` of arc length, across lane ends
  (the next lane as highway-env's own vehicles pick it: `RoadNetwork.next_lane` with the
  route to the ego's destination, or the closest continuation without one); `+inf` rows
  past the end of the road (`np.isfinite` marks the real points). `P = ROUTE_POINTS`.
- `route_heading (P,)` float32 [rad]: lane heading there minus the ego's, in (-pi, pi];
  `route_width (P,)` float32 [m]: lane width there; `route_speed_limit (P,)` float32 [m/s]:
  the lane's speed limit there (highway-env's `lane.speed_limit`; `+inf` where it has none,
  as on straight roads). `+inf` where `route` is.
- `lanes (M, Q, 2)` float32 [m]: the centreline of every lane with a sample within
  `MAP_RANGE_M` of the ego, at the lane's own grid `s = 0, MAP_STEP_M, 2 MAP_STEP_M, ...`
  (driving direction), from its first to its last sample within range (at most `Q`),
  padded with `+inf`. When more than `M` lanes are in range the `M` nearest are kept. Lanes keep
  the road network's order. `M = MAP_LANES`, `Q = LANE_POINTS`.
- `lane_width (M,)` float32 [m] (width at the lane's start), `lane_speed_limit (M,)`
  float32 [m/s] (`+inf`: none, or no lane), `lane_valid (M,)` bool,
  `lane_priority (M,)` int8 (highway-env's right-of-way `lane.priority`; 0 on straight
  roads), `lane_on_route (M,)` bool (the lane carries part of `route`).

Absent points are `+inf`, not NaN, so two identical maps compare equal (NaN != NaN made
Gymnasium's `check_env` find the env non-deterministic) and a distance to an absent point
is infinite, never a small number.

Policies get `obs["route"] (K, 2)` float32 (`route_targets`): the route at
`ROUTE_TARGETS_M` ahead, as CARLA's end-to-end agents receive target points.

This module holds the constants and the backend-free array functions; the highway backend
walks highway-env's road network in `envs.backends.highway_map`, the batched backend's
straight roads are `straight_road_map` here.
"""

from __future__ import annotations

import numpy as np
from reflexdrive.envs.sensors.frames import to_ego_frame, wrap_angle

MAP_STEP_M = 2.0
"""Arc-length step of every centreline sample [m]."""
ROUTE_POINTS = 40
"""Route samples `P`: `(P - 1) * MAP_STEP_M = 78 m` ahead (2.6 s at 30 m/s)."""
MAP_RANGE_M = 60.0
"""A lane is in the map when one of its samples lies within this distance of the ego [m]."""
MAP_LANES = 24
"""Lane slots `M` (highway-env's intersection has 20 lanes within 60 m of its centre)."""
LANE_POINTS = 64
"""Samples per lane `Q`: 126 m, more than a straight lane's 120 m chord through the range."""
ROUTE_TARGETS_M = (4.0, 10.0, 20.0, 30.0, 40.0)
"""Arc lengths of `obs["route"]`'s target points ahead of the ego [m].

Multiples of `MAP_STEP_M`, so each target is a route sample (no interpolation, exact on
curves). 4 m is the lane-keeping horizon (0.4 s at 10 m/s in a roundabout); 10-20 m shows
the curvature a steering command has to follow within one or two seconds at urban speeds;
30-40 m announce the next turn or exit about 3 s ahead at 10-13 m/s (roundabout,
intersection) while staying well inside the 78 m the route covers.
"""
ROUTE_TARGET_INDEX = tuple(int(round(t / MAP_STEP_M)) for t in ROUTE_TARGETS_M)
"""Route rows of the targets."""

MAP_FIELDS = ("route", "route_heading", "route_width", "route_speed_limit", "lanes",
              "lane_width", "lane_speed_limit", "lane_valid", "lane_priority", "lane_on_route")
"""The keys of `info["map"]`."""


def empty_map(batch: int | None = None, lanes: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
    """An `info["map"]` with no route and no lane (+inf / False / 0), `(B, ...)` if `batch`;
    `lanes`, if given, is taken as its `lanes` entry as it is (not filled)."""
    lead = () if batch is None else (int(batch),)
    absent = np.float32(np.inf)
    return {
        "route": np.full(lead + (ROUTE_POINTS, 2), absent, np.float32),
        "route_heading": np.full(lead + (ROUTE_POINTS,), absent, np.float32),
        "route_width": np.full(lead + (ROUTE_POINTS,), absent, np.float32),
        "route_speed_limit": np.full(lead + (ROUTE_POINTS,), absent, np.float32),
        "lanes": (np.full(lead + (MAP_LANES, LANE_POINTS, 2), absent, np.float32)
                  if lanes is None else lanes),
        "lane_width": np.zeros(lead + (MAP_LANES,), np.float32),
        "lane_speed_limit": np.full(lead + (MAP_LANES,), absent, np.float32),
        "lane_valid": np.zeros(lead + (MAP_LANES,), bool),
        "lane_priority": np.zeros(lead + (MAP_LANES,), np.int8),
        "lane_on_route": np.zeros(lead + (MAP_LANES,), bool),
    }


def cubic_hermite(p0: np.ndarray, t0: np.ndarray, p1: np.ndarray, t1: np.ndarray,
                  u: np.ndarray) -> np.ndarray:
    """`(K, 2)` points [m] at parameters `u` `(K, 1)` in [0, 1] of the cubic Hermite curve
    from `p0` with tangent `t0` to `p1` with tangent `t1` (`(2,)` each; a tangent's length
    sets how far the curve keeps its direction): the curve that bridges a gap between two
    lanes of a route, both in the map (`HighwayRoadMap.approach`) and in the staged
    planner (`agents.staged.route_frame.smooth_route_gaps`)."""
    h00, h10 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u
    h01, h11 = -2 * u**3 + 3 * u**2, u**3 - u**2
    return h00 * p0 + h10 * t0 + h01 * p1 + h11 * t1


def route_arc_lengths(s0) -> np.ndarray:
    """`(..., P)` float64: arc lengths `s0 + i * MAP_STEP_M` of the route samples [m]."""
    return np.asarray(s0, np.float64)[..., None] + MAP_STEP_M * np.arange(ROUTE_POINTS)


def lane_sample_count(length_m) -> np.ndarray:
    """Samples `s = 0, MAP_STEP_M, ...` within `[0, length_m]` of a lane (int64)."""
    return np.floor(np.asarray(length_m, np.float64) / MAP_STEP_M + 1e-9).astype(np.int64) + 1


def straight_range_window(along, lateral, length_m) -> tuple[np.ndarray, np.ndarray]:
    """First and last sample index within `MAP_RANGE_M` of a point on a straight lane.

    Args:
        along, lateral: the point's lane coordinates [m] (any shape, broadcast together).
        length_m: the lane's length [m].

    Returns:
        `(first, last)` int64 sample indices; `first > last` where no sample is in range.
    """
    along, lateral = np.asarray(along, np.float64), np.asarray(lateral, np.float64)
    half = np.sqrt(np.maximum(MAP_RANGE_M ** 2 - lateral ** 2, 0.0))
    inside = np.abs(lateral) <= MAP_RANGE_M
    first = np.maximum(np.ceil((along - half) / MAP_STEP_M - 1e-9), 0).astype(np.int64)
    last = np.minimum(np.floor((along + half) / MAP_STEP_M + 1e-9),
                      lane_sample_count(length_m) - 1).astype(np.int64)
    return np.where(inside, first, 1), np.where(inside, last, 0)


def straight_nearest(along, lateral, first, last) -> np.ndarray:
    """Distance [m] from a point at lane coordinates `(along, lateral)` to the nearest
    sample of the window `first..last` of a straight lane (inf where the window is empty)."""
    before = first * MAP_STEP_M - np.asarray(along, np.float64)
    after = np.asarray(along, np.float64) - last * MAP_STEP_M
    gap = np.maximum(np.maximum(before, after), 0.0)
    # between two samples the nearest is at most half a step away along the lane
    gap = np.where((before < 0) & (after < 0),
                   np.abs(np.asarray(along) - np.round(np.asarray(along) / MAP_STEP_M)
                          * MAP_STEP_M), gap)
    return np.where(first <= last, np.hypot(gap, lateral), np.inf)


def keep_nearest_lanes(nearest: np.ndarray, in_range: np.ndarray) -> np.ndarray:
    """`(B, m)` int64 lane indices to put in the map, `-1` padding, `m = min(L, MAP_LANES)`
    (`finish_map` pads the map to `MAP_LANES`: fewer slots, less work per step).

    Args:
        nearest: `(B, L)` distance of each lane's nearest in-range sample [m] (any value
            where not in range).
        in_range: `(B, L)` bool.

    Returns:
        The in-range lanes in network order; when more than `MAP_LANES` are, the nearest
        ones (ties: network order).
    """
    batch, lanes = in_range.shape
    key = np.where(in_range, nearest, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :MAP_LANES]
    chosen = np.sort(np.where(np.take_along_axis(in_range, order, 1), order, lanes), axis=1)
    return np.where(chosen < lanes, chosen, -1)


def lane_window_points(first, last) -> tuple[np.ndarray, np.ndarray]:
    """`(..., Q)` sample indices `first + q` and whether each is within `[first, last]`."""
    index = np.asarray(first)[..., None] + np.arange(LANE_POINTS)
    return index, index <= np.asarray(last)[..., None]


def finish_map(route_world, route_heading_world, route_width, lanes, lane_width,
               lane_valid, lane_priority, lane_on_route, ego_position,
               ego_heading, route_speed_limit=None, lane_speed_limit=None,
               lanes_drawn: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """World-frame route and lane arrays (batch-first, NaN where absent) -> `info["map"]`
    (absent points +inf).

    Args:
        route_world: `(B, P, 2)` route points [m]; `route_heading_world`, `route_width`:
            `(B, P)` lane heading [rad] and width [m] there.
        lanes: `(B, m, Q, 2)` [m] already in the ego frame (`lanes_in_ego_frame`), `m <=
            MAP_LANES` slots (the rest: no lane);
            `lane_width (B, m)`, `lane_valid (B, m)`, `lane_priority (B, m)`,
            `lane_on_route (B, m)`.
        ego_position: `(B, 2)` [m]; ego_heading: `(B,)` [rad].
        route_speed_limit: `(B, P)` [m/s], lane_speed_limit: `(B, m)` [m/s] (None, or
            NaN / inf entries: no limit).
        lanes_drawn: None, or the map's `(B, MAP_LANES, Q, 2)` float32 `lanes` already
            drawn (`lanes` is its first `m` slots, written by `map_kernels.ego_frame_lanes`,
            +inf at every absent point, the other slots +inf): taken as it is, with no
            copy and no pass over it (~50 MB at B = 4096).
    """
    ego_position = np.asarray(ego_position, np.float64)
    ego_heading = np.asarray(ego_heading, np.float64)
    heading = wrap_angle(np.asarray(route_heading_world, np.float64) - ego_heading[:, None])
    valid = np.asarray(lane_valid, bool)
    road_map = empty_map(len(ego_position), lanes=lanes_drawn)
    slots = valid.shape[1]
    road_map["route"][:] = to_ego_frame(np.asarray(route_world, np.float64), ego_position,
                                        ego_heading)
    road_map["route_heading"][:] = heading
    road_map["route_width"][:] = route_width
    if lanes_drawn is None:
        road_map["lanes"][:, :slots] = lanes
    road_map["lane_width"][:, :slots] = np.where(valid, lane_width, 0.0)
    road_map["lane_valid"][:, :slots] = valid
    road_map["lane_priority"][:, :slots] = np.where(valid, lane_priority, 0)
    road_map["lane_on_route"][:, :slots] = valid & np.asarray(lane_on_route, bool)
    if route_speed_limit is not None:
        road_map["route_speed_limit"][:] = route_speed_limit
    if lane_speed_limit is not None:
        road_map["lane_speed_limit"][:, :slots] = np.where(valid, lane_speed_limit, np.inf)
    for key in ("route", "route_heading", "route_width", "route_speed_limit", "lanes",
                "lane_speed_limit"):                                    # absent: +inf
        if key == "lanes" and lanes_drawn is not None:
            continue
        value = road_map[key]
        value[~np.isfinite(value)] = np.inf
    return road_map


def lanes_in_ego_frame(lanes_world, ego_position, ego_heading) -> np.ndarray:
    """`(B, m, Q, 2)` world-frame lane samples [m] -> float32 in each world's ego frame."""
    return to_ego_frame(np.asarray(lanes_world, np.float64), np.asarray(ego_position, np.float64),
                        np.asarray(ego_heading, np.float64)).astype(np.float32)


def straight_road_map(ego_position, ego_heading, ego_lane, lane_count, length_m,
                      lane_width: float, speed_limit=None) -> dict[str, np.ndarray]:
    """`info["map"]` of `B` straight roads as `RoadNetwork.straight_road_network` builds them.

    Lane `i` runs from `(0, i * lane_width)` to `(length_m, i * lane_width)`; a straight road
    has one edge, so the route is the ego's current lane straight ahead to the road's end.

    Args:
        ego_position: `(B, 2)` [m]; ego_heading: `(B,)` [rad].
        ego_lane: `(B,)` the ego's current (closest) lane; lane_count: `(B,)`;
        length_m: `(B,)` road length [m]; lane_width: [m]; speed_limit: `(B,)` every
            lane's [m/s] (None: none).

    Returns:
        `info["map"]` with a leading `B`.
    """
    position = np.asarray(ego_position, np.float64)
    heading = np.asarray(ego_heading, np.float64)
    ego_lane = np.asarray(ego_lane, np.int64)
    lane_count = np.asarray(lane_count, np.int64)
    length = np.asarray(length_m, np.float64)
    width = float(lane_width)
    # the route: the ego's lane from its projection onward
    s = route_arc_lengths(position[:, 0])                                   # (B, P)
    on_road = s <= length[:, None]
    route = np.stack([np.where(on_road, s, np.nan),
                      np.where(on_road, (ego_lane * width)[:, None], np.nan)], -1)
    route_heading = np.where(on_road, 0.0, np.nan)
    route_width = np.where(on_road, width, np.nan)
    # the lanes: lane i's samples within range of the ego
    lanes = max(int(lane_count.max(initial=0)), 1)
    lane_id = np.arange(lanes)
    lateral = position[:, 1:2] - lane_id * width                             # (B, L)
    first, last = straight_range_window(position[:, 0:1], lateral, length[:, None])
    in_range = (first <= last) & (lane_id < lane_count[:, None])
    nearest = straight_nearest(position[:, 0:1], lateral, first, last)
    chosen = keep_nearest_lanes(nearest, in_range)                  # (B, m)
    valid = chosen >= 0
    pick = np.maximum(chosen, 0)
    index, inside = lane_window_points(np.take_along_axis(first, pick, 1),
                                       np.take_along_axis(last, pick, 1))    # (B, m, Q)
    inside &= valid[..., None]
    # `to_ego_frame` written out for points (2 q, y_lane): one pass over (B, m, Q)
    cos, sin = np.cos(heading)[:, None, None], np.sin(heading)[:, None, None]
    dx = index * MAP_STEP_M - position[:, 0, None, None]
    dy = (pick * width)[..., None] - position[:, 1, None, None]
    lanes = np.empty(inside.shape + (2,), np.float32)
    lanes[..., 0] = np.where(inside, dx * cos + dy * sin, np.nan)
    lanes[..., 1] = np.where(inside, dy * cos - dx * sin, np.nan)
    limit = np.full(len(position), np.inf) if speed_limit is None else np.asarray(
        speed_limit, np.float64)
    return finish_map(
        route, route_heading, route_width, lanes,
        lane_width=np.full(chosen.shape, width), lane_valid=valid,
        lane_priority=np.zeros(chosen.shape, np.int8),
        lane_on_route=chosen == ego_lane[:, None], ego_position=position, ego_heading=heading,
        route_speed_limit=np.where(on_road, limit[:, None], np.nan),
        lane_speed_limit=np.broadcast_to(limit[:, None], chosen.shape))


def route_targets(route) -> np.ndarray:
    """`obs["route"]`: the route's points at `ROUTE_TARGETS_M` ahead.

    Args:
        route: `(..., P, 2)` `info["map"]["route"]`.

    Returns:
        `(..., K, 2)` float32 [m], `K = len(ROUTE_TARGETS_M)`; a target past the route's end
        is its last finite point, and a route with no finite point gives zeros (the ego is
        past the road's end: the episode is ending).
    """
    route = np.asarray(route, np.float32)
    finite = np.isfinite(route[..., 0])
    rows = np.arange(route.shape[-2])
    last = np.max(np.where(finite, rows, -1), axis=-1)                      # (...)
    index = np.minimum(np.asarray(ROUTE_TARGET_INDEX), np.maximum(last, 0)[..., None])
    targets = np.take_along_axis(route, index[..., None].repeat(2, -1), axis=-2)
    return np.where((last >= 0)[..., None, None], targets, np.float32(0.0)).astype(np.float32)
