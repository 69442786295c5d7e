"""Yielding: gap acceptance where the ego's route crosses or joins other lanes (the
intersection's roads, the roundabout's ring), batched over `N` envs. Crossing traffic is
this module's, never the car follower's (`route_planning.crossing_tracks`).

From the map (`info["map"]`, `envs.road_map`, all in the ego frame):

1. **Conflict zones** (`conflict_points`): a lane that is not on the route and whose
   centreline comes within `conflict_distance_m` of the route ahead conflicts with it, from
   its first such point (lane arc `q_c`, route arc `s_c`: the least of the points') to its
   last (`q_end`, `s_end`; at a lane that merges into the route, the first). Its class: it
   has the **right of way** when its `lane_priority` is above that of the route's own lane
   there (highway-env's intersection), or, on a road whose priorities are all equal, when
   the route joins it across a gap between lanes (an entry lane that ends beside the ring
   it feeds: the roundabout), within `entry_reach_m` of the gap's end; it is of **equal
   rank** when its priority is the route lane's on a road with ranks (`ranked_lanes`);
   else the **route has the right of way**. The lanes feeding a conflicting lane
   (`feeder_hops` back, joined end to start) share its class and zone, further along (a
   lane feeding several: the highest class, then the nearest).
2. **Tracks on lanes** (`lanes_of_tracks`): a track is on every lane with a centreline
   point within `lane_match_m` among those running within 60 deg of its direction of
   motion (or of its heading when it hardly moves), at that point's lane arc `q`: near a
   fan of turn lanes it is on each, since where it turns is not known.
3. **Gap acceptance** (`yield_acceleration`), per track and lane: the track arrives at the
   zone (`zone_m` before `q_c`, plus half its length) at `t_arrive = (q_c - zone - q -
   L/2) / v` and leaves it (`zone_m` past `q_end`) at `t_leave`; the ego, accelerating at
   `go_accel_mps2` up to `go_speed_mps`, enters at `t_in` (`s_c`) and is out at `t_out`
   (`s_end`). The gap is safe when the track arrives at least `critical_gap_s` after the
   ego is out (at a crossing) or in (where the lane merges into the route: from there on
   the ego drives ahead of it, its lead), or has left `PASSED_MARGIN_S` before the ego
   comes in. The ego goes when, for every track: the lane has the right of way and the
   gap is safe; or it is of equal rank and the gap is safe or the ego is in
   `first_come_margin_s` before the track arrives (first come, first served); or the route
   has the right of way, unless the track is **committed** (it could no longer stop
   before the zone braking at `committed_decel_mps2`, or is in it) and the gap is not
   safe: a vehicle that ignores the ego's right of way is yielded to (the
   `intersection-cross-traffic` hazard). Otherwise it yields: the IDM towards a virtual
   stopped vehicle at the stop line, `stop_margin_m` before the zone. An ego that could
   not stop before the stop line at `commit_decel_mps2` any more has committed and goes
   on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from reflexdrive.agents.staged.route_frame import project_to_route, route_arc_length, route_point

from reflexdrive.common.validation import integer, real, validate_fields

PASSED_MARGIN_S = 0.5
"""How long before the ego enters a conflict zone a track must have left it [s]."""


@dataclass(frozen=True)
class YieldConfig:
    """Gap acceptance at conflict points (units and bounds in each field's metadata)."""

    critical_gap_s: float = real(
        2.0, low=0.0, help="the ego goes only if the other arrives at least this long after "
                           "the ego has cleared the conflict zone [s]")
    conflict_distance_m: float = real(
        2.5, low=0.0, low_inclusive=False,
        help="a lane whose centreline comes this close to the route conflicts with it [m]")
    zone_m: float = real(
        2.5, low=0.0, help="half length of a conflict zone along the route and the lane [m]")
    stop_margin_m: float = real(0.5, low=0.0,
                                help="the stop line's distance before the zone [m]")
    lane_match_m: float = real(
        3.0, low=0.0, low_inclusive=False,
        help="a track farther than this from every matching lane is on none [m]")
    entry_reach_m: float = real(
        8.0, low=0.0,
        help="on equal-priority roads, a lane conflicting within this distance of the end "
             "of a gap in the route (an entry joining a ring) has the right of way [m]")
    go_accel_mps2: float = real(2.5, low=0.0, low_inclusive=False,
                                help="acceleration the ego crosses with [m/s^2]")
    go_speed_mps: float = real(8.0, low=0.0, low_inclusive=False,
                               help="speed the ego crosses at most with [m/s]")
    commit_decel_mps2: float = real(
        5.0, low=0.0, low_inclusive=False,
        help="an ego that needs harder braking than this to stop at the line goes on [m/s^2]")
    first_come_margin_s: float = real(
        1.0, low=0.0,
        help="at a conflict with a lane of the route's own rank, the ego goes first only if "
             "it enters the zone at least this long before the other arrives [s]")
    committed_decel_mps2: float = real(
        1.5, low=0.0, low_inclusive=False,
        help="a vehicle that would need to brake harder than this to stop before the "
             "conflict zone is committed to it: the ego yields to it whatever the right of "
             "way [m/s^2] (gentle: highway-env's traffic never yields to the ego, so the ego "
             "decides while it can still stop; at 3 the inner ring's cars cutting across to "
             "an exit were committed only once the ego could no longer stop)")
    ego_length_m: float = real(5.0, low=0.0, low_inclusive=False, help="ego length [m]")
    feeder_hops: int = integer(
        2, low=0, high=10,
        help="lanes feeding a right-of-way lane, this many back, count as it (a vehicle "
             "two ring segments upstream of an entry arrives there too) [count]")

    def __post_init__(self) -> None:
        validate_fields(self, "yield.")


RIGHT_OF_WAY, EQUAL, ROUTE_HAS_IT = 1, 0, -1
"""Classes of a conflicting lane: it has the right of way over the route, the same rank,
or the route has it (ordered: a feeder of several takes the highest)."""


class Conflicts(NamedTuple):
    """Where lanes conflict with the route (`conflict_points`), each `(N, M)`."""

    priority: np.ndarray
    """bool: the lane has the right of way over the route."""
    equal: np.ndarray
    """bool: same rank as the route's lane there (first come, first served)."""
    merging: np.ndarray
    """bool: it runs within 45 deg of the route at the conflict point (merges into it)."""
    s_c: np.ndarray
    """route arc of the conflict point [m], NaN where the lane does not conflict."""
    q_c: np.ndarray
    """lane arc of the conflict point [m] (from the lane's first sample in the map)."""
    s_end: np.ndarray
    """route arc of the last lane point near the route [m]: a crossing's zone runs from
    `s_c` to here (an oblique crossing stays near the route for metres); `s_c` where the
    lane merges."""
    q_end: np.ndarray
    """lane arc of that point [m]."""


def _lane_arcs(lanes: np.ndarray) -> np.ndarray:
    """`(N, M, Q)` arc length of each lane point from the lane's first [m] (NaN invalid)."""
    n, m, q, _ = lanes.shape
    return route_arc_length(lanes.reshape(n * m, q, 2)).reshape(n, m, q)


def ranked_lanes(road_map) -> np.ndarray:
    """`(N,)` bool: the map's valid lanes have different `lane_priority` ranks: a junction
    with a right of way (highway-env's intersection), where the route may cross lanes even
    where it runs straight."""
    rank = np.asarray(road_map["lane_priority"], np.int64)
    valid = np.asarray(road_map["lane_valid"], bool)
    first = np.take_along_axis(rank, np.argmax(valid, axis=1)[:, None], 1)
    return (valid & (rank != first)).any(axis=1)


def route_gap_end(route: np.ndarray, step_m: float = 2.0, factor: float = 1.5) -> np.ndarray:
    """`(N,)` route arc [m] of the end of the first segment longer than `factor * step_m`
    (where the route jumps from a lane's end to the next lane's start); NaN if none."""
    arc = route_arc_length(route)
    length = np.diff(arc, axis=1)
    gap = np.nan_to_num(length) > factor * step_m
    has = gap.any(axis=1)
    first = np.argmax(gap, axis=1)
    return np.where(has, arc[np.arange(arc.shape[0]), first + 1], np.nan)


def conflict_points(route: np.ndarray, road_map, config: YieldConfig) -> Conflicts:
    """The lanes that conflict with the route ahead, where, and who has the right of way.

    Args:
        route: `(N, P, 2)` the map's route in the ego frame [m] (raw: its gaps tell the
            entries).
        road_map: `info["map"]`.

    Returns:
        `Conflicts` (`(N, M)` each): `s_c`, `q_c` finite on every conflicting lane, and its
        class: `priority` (it has the right of way), `equal` (the same rank as the route's
        lane there, on a road with ranks: first come, first served) or neither (the route
        has the right of way); `merging` where it runs the route's way.
    """
    lanes = np.asarray(road_map["lanes"], np.float64)
    n, m, q, _ = lanes.shape
    valid = np.asarray(road_map["lane_valid"], bool)
    on_route = np.asarray(road_map["lane_on_route"], bool)
    rank = np.asarray(road_map["lane_priority"], np.int64)
    s, d = project_to_route(route, np.nan_to_num(lanes.reshape(n, m * q, 2), nan=1e6))
    s, d = s.reshape(n, m, q), d.reshape(n, m, q)
    end = np.nanmax(route_arc_length(route), axis=1, initial=0.0)[:, None, None]
    point_ok = np.isfinite(lanes).all(-1)
    near = point_ok & (np.abs(d) < config.conflict_distance_m) & (s > 0.0) & (s <= end)
    first = np.argmax(near, axis=2)                                          # (N, M)
    last = q - 1 - np.argmax(near[..., ::-1], axis=2)
    conflicts = valid & ~on_route & near.any(axis=2)
    pick = np.take_along_axis
    arcs = _lane_arcs(lanes)
    s_c = np.where(conflicts, np.min(np.where(near, s, np.inf), axis=2), np.nan)
    q_c = np.where(conflicts, pick(arcs, first[..., None], 2)[..., 0], np.nan)
    s_end = np.where(conflicts, np.max(np.where(near, s, -np.inf), axis=2), np.nan)
    q_end = np.where(conflicts, pick(arcs, last[..., None], 2)[..., 0], np.nan)
    # the route's own priority at each conflict: its on-route lane nearest there
    route_near = on_route[..., None] & point_ok & (np.abs(d) < 1.0)           # (N, M, Q)
    own = np.full((n, m), -1, np.int64)
    for row in range(n):
        rows, cols = np.nonzero(route_near[row])
        if len(rows) == 0:
            continue
        for lane in np.flatnonzero(conflicts[row]):
            nearest = np.argmin(np.abs(s[row, rows, cols] - s_c[row, lane]))
            own[row, lane] = rank[row, rows[nearest]]
    ranked = conflicts & (own >= 0) & (rank > own)
    equal_road = ~ranked_lanes(road_map)[:, None]
    gap_end = route_gap_end(route)[:, None]
    entry = conflicts & equal_road & np.isfinite(gap_end) & (
        np.abs(s_c - np.nan_to_num(gap_end)) <= config.entry_reach_m)
    priority = ranked | entry
    equal = conflicts & ~equal_road & (own >= 0) & (rank == own)
    # a lane running the route's way at its conflict point merges into it, else crosses it
    step = np.diff(lanes, axis=2)
    direction = np.arctan2(step[..., 1], step[..., 0])
    direction = np.concatenate([direction, direction[..., -1:]], axis=2)
    lane_direction = pick(direction, first[..., None], 2)[..., 0]
    _, route_direction = route_point(route, np.nan_to_num(s_c))
    merging = conflicts & (np.cos(lane_direction - route_direction) > np.cos(np.pi / 4))
    # a merging lane's zone is at its merge point (on it drives along the route, a lead)
    s_end, q_end = np.where(merging, s_c, s_end), np.where(merging, q_c, q_end)
    rank_class = np.where(priority, RIGHT_OF_WAY, np.where(equal, EQUAL, ROUTE_HAS_IT))
    rank_class, merging, (s_c, s_end), (q_c, q_end) = _upstream(
        lanes, valid & ~on_route, conflicts, rank_class, merging, (s_c, s_end),
        (q_c, q_end), config.feeder_hops)
    return Conflicts(priority=rank_class == RIGHT_OF_WAY, equal=rank_class == EQUAL,
                     merging=merging & np.isfinite(s_c), s_c=s_c, q_c=q_c, s_end=s_end,
                     q_end=q_end)


CONNECT_M = 2.5
"""A lane whose last sample lies this close to another's first feeds it [m] (samples lie on
each lane's own 2 m grid: its last one is up to 2 m before its true end)."""


GAP_FEED_M = 9.0
"""A lane whose last sample lies at most this far from another's first, with the chord
between them continuing both (`GAP_TURN_RAD`, 45 deg), feeds it across a gap [m]: the
roundabout's exits start 5.6 m (outer ring lane) and 7.7 m (inner) outside the ring node
they leave from, and a car on the inner lane heading for one crosses the outer lane."""
GAP_TURN_RAD = np.pi / 3
"""How far a lane's end heading may turn onto the chord of a gap it feeds across [rad]."""


def _upstream(lanes: np.ndarray, candidate: np.ndarray, conflicts: np.ndarray,
              rank_class: np.ndarray, merging: np.ndarray, route_arcs: tuple,
              lane_arcs: tuple, hops: int
              ) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """Extend each conflict to the lanes feeding a conflicting lane (`hops` lanes back): a
    vehicle there reaches the same conflict zone (`route_arcs = (s_c, s_end)`) after the
    rest of its lane, the joint and the fed lane's `lane_arcs = (q_c, q_end)`, with the
    fed lane's `rank_class` (`(N, M)` int). Lane `A`
    feeds `B` when `A`'s last sample lies within `CONNECT_M` of `B`'s first and they run
    within 45 deg of each other there, or across a gap of up to `GAP_FEED_M` whose chord
    continues both. A lane feeding several (a fan of turn lanes: where
    its vehicles go is not known) takes the highest class, then the nearest conflict."""
    n, m, q, _ = lanes.shape
    ok = np.isfinite(lanes).all(-1)                                          # (N, M, Q)
    first = np.argmax(ok, axis=2)
    last = q - 1 - np.argmax(ok[..., ::-1], axis=2)
    rows, cols = np.arange(n)[:, None], np.arange(m)[None, :]
    start, end = lanes[rows, cols, first], lanes[rows, cols, last]          # (N, M, 2)
    after = lanes[rows, cols, np.minimum(first + 1, q - 1)]
    before = lanes[rows, cols, np.maximum(last - 1, 0)]
    start_dir = np.arctan2(*(after - start)[..., ::-1].transpose(2, 0, 1))
    end_dir = np.arctan2(*(end - before)[..., ::-1].transpose(2, 0, 1))
    joint = np.linalg.norm(end[:, :, None] - start[:, None, :], axis=-1)    # (N, A, B)
    aligned = np.cos(end_dir[:, :, None] - start_dir[:, None, :]) > np.cos(np.pi / 4)
    # across a gap (a roundabout exit starts 5.6-8 m outside the ring lanes it leaves):
    # the lane turns onto the chord by at most GAP_TURN_RAD and the chord runs along the
    # fed lane's start
    chord = start[:, None, :] - end[:, :, None]                               # (N, A, B, 2)
    chord_dir = np.arctan2(chord[..., 1], chord[..., 0])
    across = ((joint >= CONNECT_M) & (joint < GAP_FEED_M)
              & (np.cos(chord_dir - end_dir[:, :, None]) > np.cos(GAP_TURN_RAD))
              & (np.cos(chord_dir - start_dir[:, None, :]) > np.cos(np.pi / 4)))
    feeds = (((joint < CONNECT_M) & aligned) | across) & ok.any(-1)[:, :, None] & ok.any(
        -1)[:, None, :]
    feeds &= ~np.eye(m, dtype=bool)[None]
    length = np.nan_to_num(_lane_arcs(lanes)[rows, cols, last])              # (N, M)
    reached = conflicts.copy()
    for _ in range(hops):
        own_class = np.where(reached, rank_class, ROUTE_HAS_IT - 1)
        via = (feeds & reached[:, None, :] & candidate[:, :, None]
               & (rank_class[:, None, :] > own_class[:, :, None]))
        base = length[:, :, None] + joint                                    # (N, A, B)
        through = base + np.nan_to_num(lane_arcs[0])[:, None, :]
        # highest class first (classes are small integers; lanes are < 1e5 m), then nearest
        key = np.where(via, through - 1e6 * rank_class[:, None, :], np.inf)
        best = np.argmin(key, axis=2)                                        # (N, A)
        new = via.any(axis=2)
        if not new.any():
            break

        def fed(values):
            return np.take_along_axis(values[:, None, :].repeat(m, 1), best[..., None],
                                      2)[..., 0]

        length_to = np.take_along_axis(base, best[..., None], 2)[..., 0]
        lane_arcs = tuple(np.where(new, length_to + fed(arc), arc) for arc in lane_arcs)
        route_arcs = tuple(np.where(new, fed(arc), arc) for arc in route_arcs)
        merging = np.where(new, fed(merging), merging)
        rank_class = np.where(new, fed(rank_class), rank_class)
        reached = reached | new
    return rank_class, merging, route_arcs, lane_arcs


def tracks_on_lanes(position: np.ndarray, velocity: np.ndarray, heading: np.ndarray | None,
                    valid: np.ndarray, lanes: np.ndarray, lane_valid: np.ndarray,
                    match_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Each track's lane (the nearest of `lanes_of_tracks`) and its arc on it.

    Args:
        position, velocity: `(N, K, 2)` ego frame [m], [m/s]; heading: `(N, K)` relative to
            the ego [rad] (None or NaN: from the velocity only); valid: `(N, K)`.
        lanes: `(N, M, Q, 2)` [m]; lane_valid: `(N, M)`; match_m: [m].

    Returns:
        lane `(N, K)` int (-1: none) and lane arc `q` `(N, K)` [m] (NaN: none).
    """
    arc, distance = lanes_of_tracks(position, velocity, heading, valid, lanes, lane_valid,
                                    match_m)
    lane = np.argmin(distance, axis=-1)                                          # (N, K)
    found = np.isfinite(np.take_along_axis(distance, lane[..., None], -1)[..., 0])
    q = np.take_along_axis(arc, lane[..., None], -1)[..., 0]
    return np.where(found, lane, -1), np.where(found, q, np.nan)


def lanes_of_tracks(position: np.ndarray, velocity: np.ndarray, heading: np.ndarray | None,
                    valid: np.ndarray, lanes: np.ndarray, lane_valid: np.ndarray,
                    match_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Every lane each track may be on: those with a centreline point within `match_m`
    among the points running within 60 deg of its direction of motion (or of its heading
    when it hardly moves). Where lanes fan out from one node (an approach's right, straight
    and left turns) a track near the fan is on all of them: where it goes is not known.

    Args: as `tracks_on_lanes`.

    Returns:
        lane arc `q` `(N, K, M)` [m] of the nearest such point (NaN: not on the lane) and
        its distance `(N, K, M)` [m] (inf: not on the lane).
    """
    n, m, q, _ = lanes.shape
    step = np.diff(lanes, axis=2)
    direction = np.arctan2(step[..., 1], step[..., 0])
    direction = np.concatenate([direction, direction[..., -1:]], axis=2)        # (N, M, Q)
    speed = np.hypot(velocity[..., 0], velocity[..., 1])
    motion = np.arctan2(velocity[..., 1], velocity[..., 0])
    if heading is not None:
        motion = np.where((speed < 1.0) & np.isfinite(heading), heading, motion)
    diff = position[:, :, None, None, :] - lanes[:, None]                      # (N, K, M, Q, 2)
    distance = np.hypot(diff[..., 0], diff[..., 1])
    along = np.cos(direction[:, None] - motion[:, :, None, None]) > 0.5
    ok = (along & np.isfinite(distance) & lane_valid[:, None, :, None]
          & valid[:, :, None, None])
    distance = np.where(ok, distance, np.inf)                                   # (N, K, M, Q)
    point = np.argmin(distance, axis=-1)                                        # (N, K, M)
    nearest = np.take_along_axis(distance, point[..., None], -1)[..., 0]
    found = nearest <= match_m
    arcs = np.broadcast_to(_lane_arcs(lanes)[:, None], distance.shape)
    arc = np.take_along_axis(arcs, point[..., None], -1)[..., 0]
    return np.where(found, arc, np.nan), np.where(found, nearest, np.inf)


def time_to_travel(distance: np.ndarray, speed: np.ndarray, accel: float, max_speed: float
                   ) -> np.ndarray:
    """Time [s] to cover `distance` (broadcast, 0 where <= 0) from `speed` accelerating at
    `accel` up to `max(max_speed, speed)`, then at that speed."""
    distance = np.maximum(distance, 0.0)
    top = np.maximum(max_speed, speed)
    ramp_t = (top - speed) / accel
    ramp_d = speed * ramp_t + 0.5 * accel * ramp_t ** 2
    within = (-speed + np.sqrt(speed ** 2 + 2.0 * accel * distance)) / accel
    return np.where(distance <= ramp_d, within, ramp_t + (distance - ramp_d) / top)


def stop_line_acceleration(speed: np.ndarray, gap: np.ndarray, idm) -> np.ndarray:
    """`(N,)` the acceleration [m/s^2] towards a stop line `gap` `(N,)` [m] ahead of the
    ego's front: the IDM's behind a stopped vehicle there (`idm(speed, gap)`), but never
    braking harder than the constant deceleration `v^2 / (2 gap)` that stops exactly at
    the line (none once the line is reached or passed: the IDM's).

    The IDM brakes for a stopped leader 16 m ahead at 11 m/s with ~9 m/s^2 (its desired
    gap grows with the closing speed); a driver yielding at a roundabout entry slows
    evenly towards the line, so the gap it waits for (a car passing the entry) often
    opens before it has stopped, and it rolls in behind that car."""
    speed = np.maximum(np.asarray(speed, np.float64), 0.0)
    gap = np.asarray(gap, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        even = np.where(gap > 0.0, -speed**2 / (2.0 * np.where(gap > 0.0, gap, 1.0)), -np.inf)
    return np.maximum(idm(speed, gap), even)


def yield_acceleration(route: np.ndarray, road_map, position: np.ndarray,
                       velocity: np.ndarray, length: np.ndarray, heading: np.ndarray | None,
                       valid: np.ndarray, speed: np.ndarray, config: YieldConfig,
                       idm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The acceleration that yields at the nearest unsafe conflict, per env.

    Args:
        route: `(N, P, 2)` raw map route [m]; road_map: `info["map"]`.
        position, velocity: `(N, K, 2)` tracks in the ego frame [m], [m/s]; length: `(N, K)`
            [m]; heading: `(N, K)` [rad] or None; valid: `(N, K)`.
        speed: `(N,)` ego speed [m/s].
        idm: `callable(speed, gap) -> (N,)` acceleration [m/s^2] behind a stopped vehicle
            `gap` metres ahead of the ego's front.

    Returns:
        acceleration `(N,)` [m/s^2] (inf where the ego need not yield), `yielding` `(N,)`
        bool and the stop line's distance ahead of the ego's centre `(N,)` [m] (NaN: none).
    """
    conflicts = conflict_points(route, road_map, config)
    lanes = np.asarray(road_map["lanes"], np.float64)
    q, _ = lanes_of_tracks(position, velocity, heading, valid, lanes,
                           np.asarray(road_map["lane_valid"], bool), config.lane_match_m)
    # every (track, lane) pair it may be on: `(N, K, M)`
    track_s_c = np.broadcast_to(conflicts.s_c[:, None, :], q.shape)
    track_q_c = conflicts.q_c[:, None, :]
    track_s_end, track_q_end = conflicts.s_end[:, None, :], conflicts.q_end[:, None, :]
    on_conflict = np.isfinite(q) & np.isfinite(track_s_c)
    priority = on_conflict & conflicts.priority[:, None, :]
    equal = on_conflict & conflicts.equal[:, None, :]
    v = np.maximum(np.hypot(velocity[..., 0], velocity[..., 1]), 0.1)[..., None]
    to_go = track_q_c - q                                                      # (N, K, M)
    reach = config.zone_m + 0.5 * length[..., None]
    relevant = on_conflict & (track_q_end - q > -reach)
    t_arrive = np.maximum(to_go - reach, 0.0) / v
    t_leave = (track_q_end - q + reach) / v
    ego_reach = config.zone_m + 0.5 * config.ego_length_m
    ego_speed = speed[:, None, None]
    t_in = time_to_travel(track_s_c - ego_reach, ego_speed, config.go_accel_mps2,
                          config.go_speed_mps)
    t_out = time_to_travel(track_s_end + ego_reach, ego_speed, config.go_accel_mps2,
                           config.go_speed_mps)
    # crossing: the ego must be out of the zone; merging: in it and driving the lane's way
    need = np.where(conflicts.merging[:, None, :], t_in, t_out) + config.critical_gap_s
    gap_ok = (t_arrive >= need) | (t_leave + PASSED_MARGIN_S < t_in)
    first_come = t_in + config.first_come_margin_s <= t_arrive
    committed = to_go - reach <= v ** 2 / (2.0 * config.committed_decel_mps2)
    # the right of way: the gap; equal rank: the gap or the ego first; the route's: go,
    # unless the other is committed to the zone while the ego would be in it
    clear = np.where(priority, gap_ok, np.where(equal, gap_ok | first_come, True))
    clear &= gap_ok | ~committed
    stop = track_s_c - ego_reach - config.stop_margin_m                       # (N, K)
    can_stop = stop > ego_speed ** 2 / (2.0 * config.commit_decel_mps2)
    unsafe = relevant & ~clear & can_stop & np.isfinite(stop)
    stop_line = np.min(np.where(unsafe, stop, np.inf), axis=(1, 2), initial=np.inf)
    yielding = np.isfinite(stop_line)
    gap = np.where(yielding, stop_line, np.inf)
    front_gap = gap - 0.5 * config.ego_length_m
    accel = np.where(yielding, stop_line_acceleration(speed, front_gap, idm), np.inf)
    return accel, yielding, np.where(yielding, stop_line, np.nan)
