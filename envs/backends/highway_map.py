"""`info["map"]` on highway-env road networks (the contract: `envs.road_map`).

`HighwayRoadMap` is built once per road (lanes do not move) and caches what does not depend
on the ego: every lane as a vectorised centreline (`LaneCurve`), its samples on the grid
`s = 0, MAP_STEP_M, ...`, and for each lane the ego may be on, the chain of lanes its route
follows. Per observation it projects the ego on its lane, reads the route off the chain and
picks the lanes within range (straight lanes analytically, curved ones by their samples).
`observe_many` does the same for many egos at once (the batched backend's worlds), array by
array and with the numba kernels of `map_kernels` where it touches every lane sample, with
the same float64 operations: its rows equal `observe`'s bit for bit.

The chain follows highway-env's own rule: `RoadNetwork.next_lane` with the route
`[lane] + shortest path to the destination` (what `ControlledVehicle.plan_route_to` builds),
each lane's successor chosen at its end point. Past the destination node it follows the
road on (the closest next lane) while the road continues straight on (`ROAD_CONTINUES_RAD`:
an ego that has left the roundabout keeps a route along its exit road). It stops at a dead
end, at a turn back, or once it covers the route's length.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from highway_env.road.lane import AbstractLane, CircularLane, SineLane, StraightLane
from highway_env.road.road import RoadNetwork
from highway_env.utils import wrap_to_pi
from reflexdrive.envs.backends.map_kernels import (
    curved_windows,
    ego_frame_lanes,
    sample_bounds,
)
from reflexdrive.envs.road_map import (
    LANE_POINTS,
    MAP_LANES,
    MAP_RANGE_M,
    MAP_STEP_M,
    ROUTE_POINTS,
    cubic_hermite,
    finish_map,
    keep_nearest_lanes,
    lane_sample_count,
    lane_window_points,
    lanes_in_ego_frame,
    route_arc_lengths,
    straight_nearest,
    straight_range_window,
)
from reflexdrive.envs.sensors.frames import wrap_angle
from reflexdrive.envs.sensors.threads import kernel_threads_for

LaneIndex = tuple[str, str, int]

ROAD_CONTINUES_RAD = np.pi / 4
"""Past its destination node the route follows the road on where the next lane starts
within this angle of the last one's end heading [rad] (the roundabout's exit road goes on
after its `nxs` node; the intersection's `o1` leads only back in, a U-turn)."""
BRANCH_CATCH_M = 6.5
"""An ego less than this far along its closest lane from the node where its route branches
off, and within this distance of the branch lane (highway-env's L1 `lane.distance`: lateral
offset plus the distance before the lane's start), is on its way into the branch: the map's
route goes on along it [m]. The roundabout's exits start 5.6 m from the ring lane's end."""
APPROACH_MIN_M = 0.5
"""A branch starting at least this far from the node it leaves from is reached along a
curved approach from the node (`HighwayRoadMap.approach`) [m]."""
APPROACH_SAMPLES = 33
"""Points of an approach curve (`HighwayRoadMap.approach`), node and branch start included."""
Curve = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def lane_curve(lane: AbstractLane) -> Curve:
    """`s (n,) -> (points (n, 2), heading (n,), width (n,))` of `lane`'s centreline, float64.

    The same formulas as highway-env's `position(s, 0)`, `heading_at`, `width_at` for
    `StraightLane`, `SineLane` and `CircularLane`, on arrays; other lane types call the
    lane's own methods point by point.
    """
    kind = type(lane)
    if kind is StraightLane or kind is SineLane:
        start, direction, normal = lane.start, lane.direction, lane.direction_lateral
        sine = kind is SineLane

        def straight(s):
            lateral = lane.amplitude * np.sin(lane.pulsation * s + lane.phase) if sine else 0.0
            points = start + s[:, None] * direction + np.asarray(lateral)[..., None] * normal
            heading = np.full(s.shape, lane.heading, np.float64)
            if sine:
                heading = heading + np.arctan(
                    lane.amplitude * lane.pulsation * np.cos(lane.pulsation * s + lane.phase))
            return points, heading, np.full(s.shape, lane.width, np.float64)
        return straight
    if kind is CircularLane:
        def circular(s):
            phi = lane.direction * s / lane.radius + lane.start_phase
            points = lane.center + lane.radius * np.stack([np.cos(phi), np.sin(phi)], -1)
            return points, phi + np.pi / 2 * lane.direction, np.full(s.shape, lane.width)
        return circular

    def generic(s):
        points = np.array([lane.position(float(x), 0.0) for x in s]).reshape(-1, 2)
        heading = np.array([lane.heading_at(float(x)) for x in s], np.float64)
        return points, heading, np.array([lane.width_at(float(x)) for x in s], np.float64)
    return generic


def _dot_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`np.dot(a[i], b[i])` of `(n, 2)` rows, bit for bit: `np.matmul` of `(n, 1, 2) @
    (n, 2, 1)` runs the same dot product (BLAS, which may fuse the multiply-add), where
    `a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]` would round twice."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    return np.matmul(a[:, None, :], b[:, :, None])[:, 0, 0]


def local_coordinates_many(lane: AbstractLane, position: np.ndarray):
    """`lane.local_coordinates` of `(n, 2)` positions: `(longitudinal (n,), lateral (n,))`
    [m], equal to highway-env's per point for `StraightLane`, `SineLane` and `CircularLane`
    (other lane types: point by point)."""
    kind = type(lane)
    if kind is StraightLane or kind is SineLane:
        delta = position - lane.start
        longitudinal, lateral = _dot_rows(delta, lane.direction), _dot_rows(
            delta, lane.direction_lateral)
        if kind is SineLane:
            lateral = lateral - lane.amplitude * np.sin(lane.pulsation * longitudinal
                                                        + lane.phase)
        return longitudinal, lateral
    if kind is CircularLane:
        delta = position - lane.center
        phi = np.arctan2(delta[:, 1], delta[:, 0])
        phi = lane.start_phase + wrap_to_pi(phi - lane.start_phase)
        r = np.sqrt(_dot_rows(delta, delta))                      # `np.linalg.norm`
        return (lane.direction * (phi - lane.start_phase) * lane.radius,
                lane.direction * (lane.radius - r))
    pairs = np.array([lane.local_coordinates(p) for p in position], np.float64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def distance_many(lane: AbstractLane, position: np.ndarray) -> np.ndarray:
    """`lane.distance` of `(n, 2)` positions [m]: `|lateral| + max(s - length, 0) +
    max(-s, 0)`, highway-env's L1 distance to the lane."""
    longitudinal, lateral = local_coordinates_many(lane, position)
    return (np.abs(lateral) + np.maximum(longitudinal - lane.length, 0.0)
            + np.maximum(-longitudinal, 0.0))


def on_lane_many(lane: AbstractLane, position: np.ndarray) -> np.ndarray:
    """`lane.on_lane` of `(n, 2)` positions, `(n,)` bool."""
    longitudinal, lateral = local_coordinates_many(lane, position)
    width = np.array([lane.width_at(x) for x in longitudinal], np.float64)
    return ((np.abs(lateral) <= width / 2) & (-lane.VEHICLE_LENGTH <= longitudinal)
            & (longitudinal < lane.length + lane.VEHICLE_LENGTH))


def _project_on_polyline(points: np.ndarray, arc: np.ndarray, position: np.ndarray
                         ) -> np.ndarray:
    """`(n,)` arc length [m] of the foot of each of `position` `(n, 2)` on the polyline
    `points` `(K, 2)` with cumulative arc `arc` `(K,)` (nearest segment, clamped to it)."""
    start, step = points[:-1], np.diff(points, axis=0)                      # (K-1, 2)
    length2 = np.maximum((step**2).sum(-1), 1e-12)
    rel = position[:, None, :] - start[None]                                # (n, K-1, 2)
    t = np.clip((rel * step[None]).sum(-1) / length2, 0.0, 1.0)
    distance = np.hypot(*(rel - t[..., None] * step[None]).transpose(2, 0, 1))
    best = distance.argmin(axis=1)
    rows = np.arange(len(position))
    return arc[best] + t[rows, best] * np.sqrt(length2[best])


class HighwayRoadMap:
    """The HD map of one highway-env `RoadNetwork` for an ego heading to `destination`.

    Args:
        network: the road network (its lanes must not change afterwards).
        destination: the ego's destination node (`VehicleInit.destination`), or None to
            follow the road (the next lane closest to each lane's end).
    """

    def __init__(self, network: RoadNetwork, destination: str | None = None):
        self.network = network
        self.destination = destination
        self.index: list[LaneIndex] = [(a, b, i) for a, to in network.graph.items()
                                       for b, lanes in to.items() for i in range(len(lanes))]
        self.slot = {index: k for k, index in enumerate(self.index)}
        self.lanes = [network.get_lane(index) for index in self.index]
        self.curves = [lane_curve(lane) for lane in self.lanes]
        self.length = np.array([lane.length for lane in self.lanes], np.float64)
        self.width = np.array([lane.width_at(0.0) for lane in self.lanes], np.float64)
        self.priority = np.array([getattr(lane, "priority", 0) for lane in self.lanes], np.int8)
        self.speed_limit = np.array([np.inf if getattr(lane, "speed_limit", None) is None
                                     else lane.speed_limit for lane in self.lanes], np.float64)
        count = lane_sample_count(self.length)
        self.samples = np.full((len(self.lanes), int(count.max()), 2), np.nan)
        for k, curve in enumerate(self.curves):
            self.samples[k, :count[k]] = curve(MAP_STEP_M * np.arange(count[k]))[0]
        straight = np.array([type(lane) is StraightLane for lane in self.lanes])
        self.straight = np.flatnonzero(straight)
        self.curved = np.flatnonzero(~straight)
        self._curved_samples = np.ascontiguousarray(self.samples[self.curved])
        self._curved_bounds = sample_bounds(self._curved_samples, MAP_RANGE_M)
        self.start = np.array([self.lanes[k].start for k in self.straight]).reshape(-1, 2)
        self.direction = np.array([self.lanes[k].direction for k in self.straight]).reshape(-1, 2)
        self._chains: dict[LaneIndex, tuple[np.ndarray, np.ndarray]] = {}
        self._next_node: dict[str, str | None] = {}
        self._approaches: dict[tuple[LaneIndex, LaneIndex], tuple | None] = {}

    def route_lane(self, position: np.ndarray, lane_index: LaneIndex) -> LaneIndex:
        """The lane the ego's route goes on from: its closest lane `lane_index`, unless the
        ego also lies on another lane from the same node that leads along the shortest
        path to the destination, or has just passed that node and is still near that
        lane's start (`BRANCH_CATCH_M`).

        Lanes that fan out from one node (the intersection's right, straight and left
        lanes) start at the same point with the same heading, so the closest one is merely
        the first in the graph, and a route read from it would lead straight on where the
        ego's route turns. A branch may also start metres away from its node (the
        roundabout's exits begin ~6 m outside the ring): an ego turning off towards it is
        still closest to the ring lane past the node for a few metres, and a route read
        from that lane would lead once more round the ring, back the way the ego came."""
        return self.route_lanes(np.asarray(position, np.float64).reshape(1, 2), lane_index)[0]

    def route_lanes(self, position: np.ndarray, lane_index: LaneIndex) -> list[LaneIndex]:
        """`route_lane` of `(n, 2)` positions whose closest lane is `lane_index`."""
        origin, to, _ = lane_index
        chosen = [lane_index] * len(position)
        if self.destination is None:
            return chosen
        if origin not in self._next_node:
            path = self.network.shortest_path(origin, self.destination)
            self._next_node[origin] = path[1] if len(path) > 1 else None
        wanted = self._next_node[origin]
        if wanted is None or wanted == to or wanted not in self.network.graph[origin]:
            return chosen
        own_s, _ = local_coordinates_many(self.lanes[self.slot[lane_index]], position)
        just_past = own_s < BRANCH_CATCH_M
        open_ = np.ones(len(position), bool)
        for lane_id, lane in enumerate(self.network.graph[origin][wanted]):
            hit = open_ & (on_lane_many(lane, position)
                           | (just_past & (distance_many(lane, position) <= BRANCH_CATCH_M)))
            for i in np.flatnonzero(hit):
                chosen[i] = (origin, wanted, lane_id)
            open_ &= ~hit
        return chosen

    def approach(self, closest: LaneIndex, branch: LaneIndex):
        """The approach from the node where `branch` leaves the ego's closest lane
        `closest` (that lane's start) to `branch`'s start: `(points (K, 2), arc (K,))`, a
        cubic Hermite curve leaving the node along `closest` and meeting `branch` along it
        (tangents scaled by the chord, as the planner bridges the gap before the node:
        `agents.staged.route_frame.smooth_route_gaps`) and its arc length from the node
        [m]; None where the two lanes start within `APPROACH_MIN_M` of each other (the
        intersection's fanned-out lanes). Cached per pair.

        A branch caught past its node (`route_lanes`, `BRANCH_CATCH_M`) starts metres
        outside the ring lane the ego is still on; its own curve extrapolated backwards
        runs 3-4 m beside the ego, so a route read from it jumped sideways as the ego
        passed the node and the planner steered off the road after it. Along the approach
        the route stays continuous with the one before the node (ring, gap, branch)."""
        key = (closest, branch)
        if key not in self._approaches:
            first, second = self.lanes[self.slot[closest]], self.lanes[self.slot[branch]]
            node = np.asarray(first.position(0.0, 0.0), np.float64)
            start = np.asarray(second.position(0.0, 0.0), np.float64)
            chord = float(np.hypot(*(start - node)))
            curve = None
            if closest != branch and chord >= APPROACH_MIN_M:
                t0 = chord * np.array([np.cos(first.heading_at(0.0)),
                                       np.sin(first.heading_at(0.0))])
                t1 = chord * np.array([np.cos(second.heading_at(0.0)),
                                       np.sin(second.heading_at(0.0))])
                points = cubic_hermite(node, t0, start, t1,
                                       np.linspace(0.0, 1.0, APPROACH_SAMPLES)[:, None])
                arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
                curve = (points, arc)
            self._approaches[key] = curve
        return self._approaches[key]

    def route_from(self, branch: LaneIndex, closest: list[LaneIndex], position: np.ndarray):
        """`route_many` of egos at `position` `(n, 2)` [m] whose route goes on from lane
        `branch` and whose closest lanes are `closest`: from their arc on `branch`, or,
        where `branch` leaves their closest lane metres from its start (`approach`) and
        they have not reached it yet, from their place on the approach (its arc minus its
        length: negative), whose route samples lie on the approach."""
        lane = self.lanes[self.slot[branch]]
        along, _ = local_coordinates_many(lane, position)
        curves = []
        for index in set(closest):
            curve = self.approach(index, branch)
            if curve is not None:
                rows = np.array([k == index for k in closest])
                points, arc = curve
                on_curve = _project_on_polyline(points, arc, position[rows])
                along[rows] = np.where(on_curve < arc[-1], on_curve - arc[-1], along[rows])
                curves.append((rows, points, arc))
        route, heading, width, on_route, limit = self.route_many(branch, along)
        samples = route_arc_lengths(along)                                    # (n, P)
        for rows, points, arc in curves:
            behind = rows[:, None] & (samples < 0.0)
            s = np.clip(samples[behind] + arc[-1], 0.0, arc[-1])
            route[behind] = np.stack([np.interp(s, arc, points[:, 0]),
                                      np.interp(s, arc, points[:, 1])], axis=-1)
            step = np.diff(points, axis=0)
            segment = np.clip(np.searchsorted(arc, s, side="right") - 1, 0, len(step) - 1)
            heading[behind] = np.arctan2(step[segment, 1], step[segment, 0])
            width[behind] = lane.width_at(0.0)
            limit[behind] = self.speed_limit[self.slot[branch]]
        return route, heading, width, on_route, limit

    # -- the route --------------------------------------------------------------------------

    def chain(self, lane_index: LaneIndex) -> tuple[np.ndarray, np.ndarray]:
        """Lanes the route follows from `lane_index` on (slots, int64) and the arc length at
        which each starts, from the start of `lane_index` [m] (cached per lane)."""
        cached = self._chains.get(lane_index)
        if cached is not None:
            return cached
        network, destination = self.network, self.destination
        route = [lane_index]
        if destination is not None:
            path = network.shortest_path(lane_index[1], destination)
            route += [(a, b, None) for a, b in zip(path[:-1], path[1:])]
        slots, starts = [self.slot[lane_index]], [0.0]
        reach = self.length[slots[0]] + (ROUTE_POINTS - 1) * MAP_STEP_M
        current, past_destination = lane_index, False
        while starts[-1] + self.length[slots[-1]] < reach:
            lane = self.lanes[slots[-1]]
            past_destination |= current[1] == destination
            following = network.next_lane(current, route=None if past_destination else route,
                                          position=lane.position(lane.length, 0.0))
            if following == current:
                break
            if past_destination and abs(wrap_angle(
                    self.lanes[self.slot[following]].heading_at(0.0)
                    - lane.heading_at(lane.length))) > ROAD_CONTINUES_RAD:
                break                   # past the destination only where the road goes on
            starts.append(starts[-1] + self.length[slots[-1]])
            slots.append(self.slot[following])
            current = following
        cached = (np.array(slots, np.int64), np.array(starts, np.float64))
        self._chains[lane_index] = cached
        return cached

    def route(self, lane_index: LaneIndex, along: float):
        """Route samples from arc length `along` on `lane_index`, world frame, float64.

        Returns:
            `(points (P, 2), heading (P,), width (P,), on_route (L,) bool, speed_limit (P,))`:
            NaN past the chain's end; `on_route` marks the lanes carrying a finite sample;
            `speed_limit` [m/s] is each sample's lane's (inf: none).
        """
        slots, starts = self.chain(lane_index)
        s = route_arc_lengths(along)
        end = starts[-1] + self.length[slots[-1]]
        link = np.clip(np.searchsorted(starts, s, side="right") - 1, 0, len(slots) - 1)
        points = np.full((ROUTE_POINTS, 2), np.nan)
        heading = np.full(ROUTE_POINTS, np.nan)
        width = np.full(ROUTE_POINTS, np.nan)
        on_route = np.zeros(len(self.lanes), bool)
        inside = s <= end + 1e-9
        for k in np.unique(link[inside]):
            rows = inside & (link == k)
            points[rows], heading[rows], width[rows] = self.curves[slots[k]](s[rows] - starts[k])
            on_route[slots[k]] = True
        limit = np.where(inside, self.speed_limit[slots[link]], np.nan)
        return points, heading, width, on_route, limit

    def route_many(self, lane_index: LaneIndex, along: np.ndarray):
        """`route` of `(n,)` arc lengths on one lane: `(points (n, P, 2), heading (n, P),
        width (n, P), on_route (n, L), speed_limit (n, P))`."""
        slots, starts = self.chain(lane_index)
        s = route_arc_lengths(along)                                          # (n, P)
        end = starts[-1] + self.length[slots[-1]]
        link = np.clip(np.searchsorted(starts, s, side="right") - 1, 0, len(slots) - 1)
        points = np.full(s.shape + (2,), np.nan)
        heading = np.full(s.shape, np.nan)
        width = np.full(s.shape, np.nan)
        on_route = np.zeros((len(s), len(self.lanes)), bool)
        inside = s <= end + 1e-9
        for k in np.unique(link[inside]):
            rows = inside & (link == k)
            points[rows], heading[rows], width[rows] = self.curves[slots[k]](s[rows] - starts[k])
            on_route[:, slots[k]] = rows.any(1)
        limit = np.where(inside, self.speed_limit[slots[link]], np.nan)
        return points, heading, width, on_route, limit

    # -- the lanes in range -----------------------------------------------------------------

    def lanes_in_range(self, position: np.ndarray):
        """`(first, last, nearest)` per lane: the sample window within `MAP_RANGE_M` of
        `position` (`first > last`: none) and the distance to its nearest sample [m]."""
        count = len(self.lanes)
        first = np.ones(count, np.int64)
        last = np.zeros(count, np.int64)
        nearest = np.full(count, np.inf)
        if len(self.straight):
            offset = position - self.start
            along = offset[:, 0] * self.direction[:, 0] + offset[:, 1] * self.direction[:, 1]
            lateral = offset[:, 1] * self.direction[:, 0] - offset[:, 0] * self.direction[:, 1]
            f, l_ = straight_range_window(along, lateral, self.length[self.straight])
            first[self.straight], last[self.straight] = f, l_
            nearest[self.straight] = straight_nearest(along, lateral, f, l_)
        if len(self.curved):
            squared = np.sum((self.samples[self.curved] - position) ** 2, -1)
            within = squared <= MAP_RANGE_M ** 2                              # NaN: False
            any_within = within.any(-1)
            size = within.shape[1]
            first[self.curved] = np.where(any_within, within.argmax(-1), 1)
            last[self.curved] = np.where(any_within, size - 1 - within[:, ::-1].argmax(-1), 0)
            nearest[self.curved] = np.sqrt(np.where(within, squared, np.inf).min(-1))
        return first, last, nearest

    def lanes_in_range_many(self, position: np.ndarray):
        """`lanes_in_range` of `(n, 2)` positions, each result `(n, L)`."""
        count, n = len(self.lanes), len(position)
        first = np.ones((n, count), np.int64)
        last = np.zeros((n, count), np.int64)
        nearest = np.full((n, count), np.inf)
        if len(self.straight):
            offset = position[:, None, :] - self.start                        # (n, Ls, 2)
            along = offset[..., 0] * self.direction[:, 0] + offset[..., 1] * self.direction[:, 1]
            lateral = offset[..., 1] * self.direction[:, 0] - offset[..., 0] * self.direction[:, 1]
            f, l_ = straight_range_window(along, lateral, self.length[self.straight])
            first[:, self.straight], last[:, self.straight] = f, l_
            nearest[:, self.straight] = straight_nearest(along, lateral, f, l_)
        if len(self.curved):
            shape = (n, len(self.curved))
            windows = (np.empty(shape, np.int64), np.empty(shape, np.int64), np.empty(shape))
            with kernel_threads_for(n):
                curved_windows(self._curved_samples, self._curved_bounds, position,
                               MAP_RANGE_M ** 2, *windows)
            first[:, self.curved], last[:, self.curved], nearest[:, self.curved] = windows
        return first, last, nearest

    # -- the map ----------------------------------------------------------------------------

    def observe(self, position, heading: float, lane_index: LaneIndex) -> dict[str, np.ndarray]:
        """`info["map"]` with a leading batch dimension of 1, for an ego at `position` [m]
        heading `heading` [rad] whose closest lane is `lane_index` (`Vehicle.lane_index`)."""
        position = np.asarray(position, np.float64)
        branch = self.route_lane(position, lane_index)
        route, route_heading, route_width, on_route, limit = (
            value[0] for value in self.route_from(branch, [lane_index], position[None]))
        first, last, nearest = self.lanes_in_range(position)
        in_range = first <= last
        chosen = keep_nearest_lanes(nearest[None], in_range[None])[0]           # (m,)
        valid = chosen >= 0
        pick = np.maximum(chosen, 0)
        index, inside = lane_window_points(first[pick], last[pick])
        inside &= valid[:, None]
        index = np.minimum(index, self.samples.shape[1] - 1)
        lanes_world = np.where(inside[..., None], self.samples[pick[:, None], index], np.nan)
        lanes = lanes_in_ego_frame(lanes_world[None], position[None], np.array([heading]))
        return finish_map(route[None], route_heading[None], route_width[None], lanes,
                          self.width[pick][None], valid[None], self.priority[pick][None],
                          on_route[pick][None], position[None], np.array([heading]),
                          limit[None], self.speed_limit[pick][None])

    def observe_many(self, position: np.ndarray, heading: np.ndarray,
                     lane_index: list[LaneIndex]) -> dict[str, np.ndarray]:
        """`observe` of `n` egos at once: `position (n, 2)` [m], `heading (n,)` [rad],
        `lane_index` their closest lanes; the map with a leading `n`, row `i` equal to
        `observe(position[i], heading[i], lane_index[i])`. Egos are grouped by lane (the
        route's chain and the ego's lane coordinates are per lane)."""
        position = np.asarray(position, np.float64).reshape(-1, 2)
        heading = np.asarray(heading, np.float64).reshape(-1)
        n, count = len(position), len(self.lanes)
        route = np.full((n, ROUTE_POINTS, 2), np.nan)
        route_heading = np.full((n, ROUTE_POINTS), np.nan)
        route_width = np.full((n, ROUTE_POINTS), np.nan)
        limit = np.full((n, ROUTE_POINTS), np.nan)
        on_route = np.zeros((n, count), bool)
        closest = np.array([self.slot[index] for index in lane_index], np.int64)
        route_lane = np.empty(n, np.int64)
        for slot in np.unique(closest):
            rows = np.flatnonzero(closest == slot)
            route_lane[rows] = [self.slot[index] for index in
                                self.route_lanes(position[rows], self.index[slot])]
        for slot in np.unique(route_lane):
            rows = np.flatnonzero(route_lane == slot)
            (route[rows], route_heading[rows], route_width[rows],
             on_route[rows], limit[rows]) = self.route_from(
                 self.index[slot], [lane_index[i] for i in rows], position[rows])
        first, last, nearest = self.lanes_in_range_many(position)
        return self._finish(route, route_heading, route_width, on_route, first, last, nearest,
                            position, heading, limit)

    def _finish(self, route, route_heading, route_width, on_route, first, last, nearest,
                position, heading, route_speed_limit) -> dict[str, np.ndarray]:
        """`observe`'s last steps for `n` egos (the lanes' samples by `map_kernels`), from
        their world-frame route `(n, P, ...)`, the lanes it runs on `(n, L)` and the lanes'
        sample windows in range `(n, L)` (`lanes_in_range`)."""
        in_range = first <= last
        chosen = keep_nearest_lanes(nearest, in_range)                        # (n, m)
        valid = chosen >= 0
        pick = np.maximum(chosen, 0)
        # drawn straight into the map's lanes (the slots past `m`: no lane, +inf)
        drawn = np.empty((len(pick), MAP_LANES, LANE_POINTS, 2), np.float32)
        drawn[:, pick.shape[1]:] = np.inf
        lanes = drawn[:, :pick.shape[1]]
        with kernel_threads_for(len(pick)):
            ego_frame_lanes(self.samples, pick, np.take_along_axis(first, pick, 1),
                            np.take_along_axis(last, pick, 1), valid, position,
                            np.cos(heading), np.sin(heading), lanes)
        return finish_map(route, route_heading, route_width, lanes, self.width[pick], valid,
                          self.priority[pick], np.take_along_axis(on_route, pick, 1),
                          position, heading, route_speed_limit, self.speed_limit[pick],
                          lanes_drawn=drawn)
