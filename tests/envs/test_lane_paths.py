"""Paths along highway-env lanes (`envs.lane_paths`): arc lengths on curves, routes, and
where two centrelines cross, against hand-computed geometry and highway-env's networks."""

import math

import numpy as np
import pytest
from highway_env.road.lane import CircularLane, StraightLane
from reflexdrive.envs.backends.highway import build_road
from reflexdrive.envs.lane_paths import (
    LanePath,
    RoadLanes,
    centreline_crossing,
    route_edges,
    route_path,
)
from reflexdrive.envs.scenarios import RoadSpec, generate, make_config


def _arc_then_straight(radius=100.0):
    arc = CircularLane([0.0, radius], radius, -math.pi / 2, 0.0)      # turns towards +y
    end = arc.position(arc.length, 0.0)
    return LanePath.of([arc, StraightLane(end, end + [0.0, 50.0])])


def test_arc_length_along_a_chain_is_the_radius_times_the_angle_then_the_straight():
    path = _arc_then_straight()
    assert path.starts == (0.0, pytest.approx(50 * math.pi)) and \
        path.length == pytest.approx(50 * math.pi + 50)
    # 0.3 rad round the quarter circle, 1.5 m towards its inside: s = R phi
    point = np.array([0.0, 100.0]) + 98.5 * np.array([math.sin(0.3), -math.cos(0.3)])
    s, lateral, heading = path.coordinates(point)
    assert s == pytest.approx(30.0) and lateral == pytest.approx(1.5) \
        and heading == pytest.approx(0.3)
    # 20 m down the straight exit, 1 m to its side
    s, lateral, heading = path.coordinates([100.0 - 1.0, 100.0 + 20.0])
    assert s == pytest.approx(50 * math.pi + 20.0) and lateral == pytest.approx(1.0) \
        and heading == pytest.approx(math.pi / 2)
    # before the start: the first lane's extension (negative arc length)
    assert path.coordinates([-10.0, 0.0])[0] < 0


def test_routes_follow_the_destination_or_the_only_successor():
    intersection = build_road(RoadSpec(kind="intersection"), 0).network
    assert route_edges(intersection, ("o1", "ir1", 0), "o3") == \
        [("o1", "ir1"), ("ir1", "il3"), ("il3", "o3")]
    assert route_edges(intersection, ("o0", "ir0", 0), "o2") == \
        [("o0", "ir0"), ("ir0", "il2"), ("il2", "o2")]
    init = generate("stopped-vehicle-curve", make_config("stopped-vehicle-curve"), 0, 50)
    curve = build_road(init.road, 0).network
    assert route_edges(curve, ("0", "1", 1), None) == [("0", "1"), ("1", "2"), ("2", "3")]
    straight = build_road(RoadSpec(), 0).network
    assert route_edges(straight, ("0", "1", 2), None) == [("0", "1")]
    # a vehicle that moved to lane 2 on the arc is measured in lane 2, from the arc on
    arc = curve.graph["1"]["2"][2]
    path = route_path(curve, ("0", "1", 0), "3", position=arc.position(10.0, 0.4))
    assert path.lanes == (arc, curve.graph["2"]["3"][2])
    # the ego's path from its start, in its lane: the arc, then the exit
    ego = init.vehicles[0]
    start = curve.get_lane(ego.lane).position(ego.s_m, 0.0)
    assert RoadLanes.of(curve, init).path(0, start).lanes == \
        (curve.get_lane(ego.lane), curve.graph["2"]["3"][ego.lane[2]])


def test_centrelines_cross_where_the_lanes_do():
    a = LanePath.of([StraightLane([0.0, 0.0], [100.0, 0.0])])
    b = LanePath.of([StraightLane([60.0, -30.0], [60.0 + 40 * math.cos(1.0),
                                                 -30.0 + 40 * math.sin(1.0)])])
    s_a, s_b, angle = centreline_crossing(a, b)
    assert s_b == pytest.approx(30.0 / math.sin(1.0))
    assert s_a == pytest.approx(60.0 + s_b * math.cos(1.0)) and angle == pytest.approx(1.0)
    parallel = LanePath.of([StraightLane([0.0, 4.0], [100.0, 4.0])])
    assert centreline_crossing(a, parallel) is None
    # highway-env's intersection: the ego's straight route from the west and the one from
    # the south cross 113 m and 109 m from their approaches' starts, at right angles
    network = build_road(RoadSpec(kind="intersection"), 0).network
    ego = route_path(network, ("o1", "ir1", 0), "o3")
    south = route_path(network, ("o0", "ir0", 0), "o2")
    assert centreline_crossing(ego, south) == pytest.approx((113.0, 109.0, math.pi / 2))
