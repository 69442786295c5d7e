"""Paths along highway-env lanes, and distances measured along them (the highway backend).

A vehicle's path is the chain of lanes its route follows (`route_path`): from its starting
edge through the edges of `RoadNetwork.shortest_path` to its destination (or, without one,
through the only successor of each edge), in one lane number. `LanePath.coordinates` gives
a world point's arc length along the chain: the lane-local longitudinal coordinate
(`AbstractLane.local_coordinates`) on the lane it projects onto, plus the lengths of the
lanes before it. On a `CircularLane` of radius `R` that is `R` times the angle swept from
the lane's start, whatever the point's lateral offset: the distance along the lane, not a
straight line.

`envs.hazards.HazardTracker` measures the criticality of hazards along these paths when the
world is a highway-env road (`RoadLanes`): the gap to a hazard vehicle ahead along the
ego's lane, and the distances of the ego and a crossing vehicle to the point where their
paths' centrelines cross (`centreline_crossing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from highway_env.road.lane import AbstractLane
from highway_env.road.road import RoadNetwork
from reflexdrive.envs.scenarios import LaneId, ScenarioInit

MAX_EDGES = 16
"""Longest chain `route_path` follows without a destination [edges]."""
ON_LANE_SLACK_M = 1e-6
"""A point projects onto a lane when its longitudinal coordinate lies within the lane's
`[0, length]` widened by this [m] (the joint of two lanes belongs to both)."""


@dataclass(frozen=True)
class LanePath:
    """Lanes end to end (each starts where the one before it ends).

    Attributes:
        lanes: the highway-env lanes, in driving order.
        starts: `(len(lanes),)` arc length at which each lane begins [m] (0 for the first).
    """

    lanes: tuple[AbstractLane, ...]
    starts: tuple[float, ...]

    @classmethod
    def of(cls, lanes: Sequence[AbstractLane]) -> "LanePath":
        starts = np.concatenate([[0.0], np.cumsum([lane.length for lane in lanes])[:-1]])
        return cls(tuple(lanes), tuple(float(s) for s in starts))

    @property
    def length(self) -> float:
        """Total length [m]."""
        return self.starts[-1] + self.lanes[-1].length

    def coordinates(self, position) -> tuple[float, float, float]:
        """`(s [m], lateral [m], lane heading [rad])` of world point `position` `(2,)`.

        The lane is the one whose `[0, length]` holds the point's longitudinal coordinate
        (the first such with the smallest lateral offset); a point before the first lane's
        start or past the last lane's end projects on that lane's extension.
        """
        best = None
        for index, lane in enumerate(self.lanes):
            s, lateral = lane.local_coordinates(np.asarray(position, np.float64))
            outside = not (-ON_LANE_SLACK_M <= s <= lane.length + ON_LANE_SLACK_M)
            if outside and not ((index == 0 and s < 0)
                                or (index == len(self.lanes) - 1 and s > lane.length)):
                continue
            key = (outside, abs(lateral))
            if best is None or key < best[0]:
                best = (key, index, s, lateral)
        if best is None:        # between two lanes that do not meet: the nearest end
            ends = [(min(abs(s), abs(s - lane.length)), i, s, r) for i, lane in
                    enumerate(self.lanes) for s, r in [lane.local_coordinates(position)]]
            best = (None, *min(ends)[1:])
        _, index, s, lateral = best
        lane = self.lanes[index]
        return (self.starts[index] + float(s), float(lateral),
                float(lane.heading_at(min(max(s, 0.0), lane.length))))

    def polyline(self, step_m: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """The centreline sampled about every `step_m` [m]: points `(N, 2)` and their arc
        lengths `(N,)`; every lane's start and end are samples."""
        points, arcs = [], []
        for start, lane in zip(self.starts, self.lanes):
            s = np.linspace(0.0, lane.length, max(1, int(np.ceil(lane.length / step_m))) + 1)
            points.extend(lane.position(si, 0.0) for si in s)
            arcs.extend(start + s)
        return np.asarray(points, np.float64), np.asarray(arcs, np.float64)


def route_edges(network: RoadNetwork, start: LaneId, destination: str | None) -> list:
    """The edges `(from, to)` of a route from lane `start`'s edge: through
    `network.shortest_path` to `destination`, or, without one (or none reachable), on
    through each edge's only successor (at most `MAX_EDGES`)."""
    edges = [start[:2]]
    if destination is not None and destination != start[1]:
        nodes = network.shortest_path(start[1], destination)     # [start[1], ..., dest]
        if nodes:
            return edges + list(zip(nodes[:-1], nodes[1:]))
    while len(edges) < MAX_EDGES:
        successors = list(network.graph.get(edges[-1][1], {}))
        if len(successors) != 1:
            break
        edges.append((edges[-1][1], successors[0]))
    return edges


def route_path(network: RoadNetwork, start: LaneId, destination: str | None,
               position=None) -> LanePath:
    """The path of a vehicle that started on lane `start` with `destination` (`route_edges`).

    Args:
        position: the vehicle's position now `(2,)`: the path runs from the route's edge it
            is on, in the lane number it is in (the lane of the route's edges that it
            projects onto with the smallest lateral offset), so a vehicle that changed lanes
            is measured in its new lane. None: from `start`.
    """
    edges = route_edges(network, start, destination)
    first, number = 0, start[2]
    if position is not None:
        best = None
        for k, edge in enumerate(edges):
            for i, lane in enumerate(network.graph[edge[0]][edge[1]]):
                s, lateral = lane.local_coordinates(np.asarray(position, np.float64))
                if -ON_LANE_SLACK_M <= s <= lane.length + ON_LANE_SLACK_M \
                        and (best is None or abs(lateral) < best[0]):
                    best = (abs(lateral), k, i)
        if best is not None:
            _, first, number = best
    lanes = []
    for edge in edges[first:]:
        parallel = network.graph[edge[0]][edge[1]]
        lanes.append(parallel[min(number, len(parallel) - 1)])
    return LanePath.of(lanes)


def centreline_crossing(a: LanePath, b: LanePath, step_m: float = 0.5
                        ) -> tuple[float, float, float] | None:
    """Where the centrelines of paths `a` and `b` first cross along `a`: `(s_a, s_b [m],
    crossing angle [rad] in (0, pi))`, or None if they do not cross. The centrelines are
    sampled every `step_m` (exact on straight lanes); a crossing that touches a joint of `b`
    is found on one of the two segments."""
    pa, sa = a.polyline(step_m)
    pb, sb = b.polyline(step_m)
    p, r = pa[:-1, None, :], (pa[1:] - pa[:-1])[:, None, :]
    q, t = pb[None, :-1, :], (pb[1:] - pb[:-1])[None, :, :]

    def cross(u, v):
        return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

    denominator = cross(r, t)
    with np.errstate(divide="ignore", invalid="ignore"):
        along_a = cross(q - p, t) / denominator
        along_b = cross(q - p, r) / denominator
    hits = (denominator != 0) & (along_a >= 0) & (along_a <= 1) & (along_b >= 0) \
        & (along_b <= 1)
    if not hits.any():
        return None
    i, j = np.argwhere(hits)[0]
    s_a = sa[i] + along_a[i, j] * (sa[i + 1] - sa[i])
    s_b = sb[j] + along_b[i, j] * (sb[j + 1] - sb[j])
    angle = abs(np.arctan2(denominator[i, j], float(np.dot(r[i, 0], t[0, j]))))
    return float(s_a), float(s_b), float(angle)


@dataclass(frozen=True)
class RoadLanes:
    """A highway-env world's road and its vehicles' routes: what `HazardTracker` measures
    along (`paths`).

    Attributes:
        network: the road network.
        routes: per slot, `(starting lane, destination or None)` (`VehicleInit`'s).
    """

    network: RoadNetwork
    routes: tuple[tuple[LaneId, str | None], ...]

    @classmethod
    def of(cls, network: RoadNetwork, init: ScenarioInit) -> "RoadLanes":
        return cls(network, tuple((v.lane, v.destination) for v in init.vehicles))

    def path(self, slot: int, position) -> LanePath:
        """Slot `slot`'s path from where it is now (`route_path`)."""
        start, destination = self.routes[slot]
        return route_path(self.network, start, destination, position)


__all__ = ["LanePath", "RoadLanes", "centreline_crossing", "route_edges", "route_path"]
