"""The planner on a map route: straight routes plan as without a map, curved ones in the
route frame (tracks, path, curve speed, neighbour lanes); hand-built maps."""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.agents.staged.planner_config import PlannerConfig
from reflexdrive.agents.staged.planning import MobilFrenetPlanner
from reflexdrive.agents.staged.route_frame import project_to_route, smooth_route_gaps
from reflexdrive.agents.staged.route_planning import (
    bend_deceleration,
    brake_when_needed,
    crossing_tracks,
    footprint_extents,
    neighbour_lanes,
    route_frame_tracks,
    slip_angle,
    smoothed_curvature,
)
from reflexdrive.agents.staged.types import Tracks
from reflexdrive.envs.config import EGO_FEATURES

STEP, P, M, Q = 2.0, 40, 4, 64


def ego_state(speed, lane=0, lanes=1):
    ego = np.zeros((1, len(EGO_FEATURES)), np.float32)
    ego[0, EGO_FEATURES.index("speed_mps")] = speed
    ego[0, EGO_FEATURES.index("lane_index")] = lane
    ego[0, EGO_FEATURES.index("lane_count")] = lanes
    return ego


def arc(radius, offset=0.0, points=P):
    """A left arc of `radius` through (0, -offset)... sampled every STEP: `(points, 2)` and
    headings `(points,)` (radius None: a straight line along +x)."""
    if radius is None:
        s = np.arange(points) * STEP
        return np.stack([s, np.full(points, -offset)], -1), np.zeros(points)
    angle = np.arange(points) * STEP / radius
    r = radius + offset
    return np.stack([r * np.sin(angle), radius - r * np.cos(angle)], -1), angle


def rotate(points, angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * points[..., 0] - s * points[..., 1],
                     s * points[..., 0] + c * points[..., 1]], -1)


def road_map(radius, neighbours=(), yaw=0.0):
    """A map whose route is the lane `arc(radius)` seen from an ego heading `yaw` right of
    the lane (the map turned by +yaw); `neighbours`: offsets of lanes beside it (+ left)."""
    route, heading = arc(radius)
    route, heading = rotate(route, yaw), heading + yaw
    lanes = np.full((1, M, Q, 2), np.nan, np.float32)
    valid = np.zeros((1, M), bool)
    lanes[0, 0, :P] = route
    valid[0, 0] = True
    for i, side in enumerate(neighbours, start=1):
        lanes[0, i, :P] = rotate(arc(radius, -side)[0], yaw)
        valid[0, i] = True
    return {"route": route[None].astype(np.float32),
            "route_heading": heading[None].astype(np.float32),
            "route_width": np.full((1, P), 4.0, np.float32), "lanes": lanes,
            "lane_width": np.full((1, M), 4.0, np.float32), "lane_valid": valid,
            "lane_priority": np.zeros((1, M), np.int8),
            "lane_on_route": valid & (np.arange(M) == 0)}


def tracks(rows):
    rows = np.array(rows, dtype=np.float64).reshape(-1, 4)
    n = rows.shape[0]
    return Tracks(position=rows[None, :, :2], velocity=rows[None, :, 2:],
                  size=np.tile([5.0, 2.0], (1, n, 1)), track_id=np.arange(n)[None],
                  valid=np.ones((1, n), bool))


def test_a_straight_route_plans_exactly_as_without_a_map():
    scene = tracks([[30.0, 0.3, 20.0, 0.0], [10.0, 4.0, 24.0, -0.5]])
    ego = ego_state(25.0, lane=1, lanes=3)
    without = MobilFrenetPlanner()(scene, ego, np.zeros(1))
    straight = road_map(None)
    straight["route_speed_limit"] = np.full((1, P), 10.0, np.float32)    # not read here
    with_map = MobilFrenetPlanner()(scene, ego, np.zeros(1), road_map=straight)
    for name in ("acceleration", "target_speed", "path", "path_speed", "lane_change",
                 "emergency", "lead_track", "lead_gap"):
        np.testing.assert_array_equal(getattr(with_map, name), getattr(without, name))
    np.testing.assert_array_equal(with_map.path_curvature, [0.0])
    assert without.path_curvature is None


def test_a_curved_route_is_planned_along_the_lane():
    """A left circle of radius 30 m, the ego on it at 8 m/s as the bicycle runs a circle
    (heading the slip angle inside the lane's), nothing around: the path keeps to the
    circle, the curvature goes to the controller, the speed stays under the curve's limit
    sqrt(3 m/s^2 * 30 m) = 9.5 m/s (the default lateral acceleration bound) plus braking
    room 2 b s at 2 m/s^2 to the first route point with a curvature, 2 m ahead."""
    radius = 30.0
    beta = float(slip_angle(np.array([1.0 / radius]), 5.0)[0])
    plan = MobilFrenetPlanner()(tracks(np.zeros((0, 4))), ego_state(8.0), np.zeros(1),
                                road_map=road_map(radius, yaw=beta))
    centre = rotate(np.array([0.0, radius]), beta)
    distance = np.linalg.norm(plan.path[0] - centre, axis=-1)
    np.testing.assert_allclose(distance, radius, atol=0.05)
    assert plan.path_curvature[0] == pytest.approx(1.0 / radius, rel=1e-3)
    assert plan.path_speed.max() == pytest.approx(np.sqrt(3.0 * radius + 2 * 2.0 * 2.0),
                                                  rel=1e-3)
    fast = MobilFrenetPlanner()(tracks(np.zeros((0, 4))), ego_state(14.0), np.zeros(1),
                                road_map=road_map(radius))
    assert fast.acceleration[0] < -1.0


def test_a_lead_on_the_curve_is_followed_by_its_arc_length():
    """A stopped car 15 m of arc ahead on the circle (off the ego's x axis): the planner
    measures the gap along the route (15 m minus the car lengths) and brakes."""
    radius = 25.0
    angle = 15.0 / radius
    car = [radius * np.sin(angle), radius * (1.0 - np.cos(angle)), 0.0, 0.0]
    plan = MobilFrenetPlanner()(tracks([car]), ego_state(8.0), np.zeros(1),
                                road_map=road_map(radius))
    assert plan.lead_track[0] == 0
    assert plan.lead_gap[0] == pytest.approx(15.0 - 5.0, abs=0.05)
    assert plan.acceleration[0] < -2.0


def with_heading(scene: Tracks, heading) -> Tracks:
    return Tracks(position=scene.position, velocity=scene.velocity, size=scene.size,
                  track_id=scene.track_id, valid=scene.valid,
                  heading=np.asarray(heading, np.float64).reshape(1, -1))


def test_footprint_extents_are_the_turned_rectangle_along_and_across_the_route():
    """A 5 m x 2 m car: aligned with the route 5 along and 2 across; at 90 deg 2 and 5; at
    30 deg 5 cos + 2 sin = 5.33 along and 5 sin + 2 cos = 4.23 across (the route's own
    heading subtracted); no heading reported: its size."""
    scene = with_heading(tracks(np.zeros((4, 4))), [0.0, np.pi / 2, 0.2 + np.pi / 6, np.nan])
    length, width = footprint_extents(scene, np.array([[0.0, 0.0, 0.2, 0.0]]))
    a = np.pi / 6
    np.testing.assert_allclose(length[0], [5.0, 2.0, 5 * np.cos(a) + 2 * np.sin(a), 5.0],
                               atol=1e-12)
    np.testing.assert_allclose(width[0], [2.0, 5.0, 5 * np.sin(a) + 2 * np.cos(a), 2.0],
                               atol=1e-12)
    plain = footprint_extents(tracks(np.zeros((1, 4))), np.zeros((1, 1)))
    np.testing.assert_array_equal(plain[0], [[5.0]])
    np.testing.assert_array_equal(plain[1], [[2.0]])


def test_a_car_standing_at_an_angle_beside_the_lane_is_a_lead():
    """A stopped car 20 m ahead on the route's curve, its centre 3 m to the left of the
    ego lane's centre: aligned with the lane its body ends 2 m from the centre, outside the
    ego lane; turned 30 deg towards the lane (a car stopped where its lane forks off) its
    footprint reaches 3 - 4.23 / 2 = 0.9 m from the centre, into the ego lane: a lead."""
    radius = 40.0
    angle = 20.0 / radius
    centre = [(radius - 3.0) * np.sin(angle), radius - (radius - 3.0) * np.cos(angle)]
    car = tracks([centre + [0.0, 0.0]])
    for turn, is_lead in ((0.0, False), (-np.pi / 6, True)):
        plan = MobilFrenetPlanner()(with_heading(car, [angle + turn]), ego_state(8.0),
                                    np.zeros(1), road_map=road_map(radius))
        assert (plan.lead_track[0] == 0) == is_lead, turn


def test_route_frame_tracks_turn_velocities_into_the_route():
    """A car on a left circle moving along it at 10 m/s has vs = 10, vd = 0."""
    radius = 25.0
    route = arc(radius)[0][None]
    angle = 0.6
    position = [radius * np.sin(angle), radius * (1.0 - np.cos(angle))]
    velocity = [10.0 * np.cos(angle), 10.0 * np.sin(angle)]
    frame = route_frame_tracks(tracks([position + velocity]), route, np.zeros(1))
    assert frame.s[0, 0] == pytest.approx(radius * angle, abs=0.05)
    assert frame.vs[0, 0] == pytest.approx(10.0, abs=0.01)
    assert frame.vd[0, 0] == pytest.approx(0.0, abs=0.25)


@pytest.mark.parametrize("neighbours,expected", [((), (False, False)), ((4.0,), (False, True)),
                                                 ((-4.0, 4.0), (True, True))])
def test_neighbour_lanes_come_from_the_map(neighbours, expected):
    m = road_map(40.0, neighbours)
    beside = neighbour_lanes(m, m["route"].astype(np.float64), np.zeros(1), 4.0)
    assert (bool(beside[-1][0]), bool(beside[1][0])) == expected


def test_a_curved_route_without_a_neighbour_lane_never_changes_lanes():
    """A slow car ahead on a single-lane curve (the ego vector says lane 1 of 3: on a
    curved route the map decides): no lane change."""
    radius = 60.0
    angle = 20.0 / radius
    car = [radius * np.sin(angle), radius * (1.0 - np.cos(angle)),
           3.0 * np.cos(angle), 3.0 * np.sin(angle)]
    planner = MobilFrenetPlanner(PlannerConfig())
    plan = planner(tracks([car]), ego_state(12.0, lane=1, lanes=3), np.zeros(1),
                   road_map=road_map(radius))
    assert plan.lane_change[0] == 0


def test_a_gap_between_lanes_is_bridged_smoothly():
    """A lane ends 6 m beside where the next begins (a roundabout entry): the bridged route
    keeps its ends, and its sharpest turn between segments is under 0.6 of the raw kink's
    (0.84 rad here: the bridge spreads it over three points)."""
    first = np.stack([np.arange(10) * STEP, np.zeros(10)], -1)
    second = first[-1] + np.array([4.0, 4.5]) + np.stack(
        [np.arange(30) * STEP * np.cos(0.6), np.arange(30) * STEP * np.sin(0.6)], -1)
    route = np.concatenate([first, second])[None]
    smooth = smooth_route_gaps(route, np.zeros(1))

    def turns(r):
        heading = np.arctan2(*np.diff(r[0], axis=0)[:, ::-1].T)
        return np.abs(np.diff(heading))

    assert turns(route).max() > 0.8
    assert turns(smooth).max() < 0.6 * turns(route).max()
    np.testing.assert_array_equal(smooth[0, :10], route[0, :10])
    np.testing.assert_array_equal(smooth[0, 13:], route[0, 13:])
    s, d = project_to_route(smooth, route[:, 9:10])
    assert abs(d[0, 0]) < 1e-9


def test_slip_angle_of_the_bicycle():
    assert slip_angle(np.array([0.0, 0.1]), 5.0) == pytest.approx([0.0, np.arcsin(0.25)])


def kinked(kinks):
    """`(1, P, 2)` a route along +x every STEP that turns left by `angle` [rad] at point
    `index` for each `(index, angle)` in `kinks`: the curvature there is `angle / STEP`."""
    heading = np.zeros(P - 1)
    for index, angle in kinks:
        heading[index:] += angle
    steps = STEP * np.stack([np.cos(heading), np.sin(heading)], -1)
    return np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])[None]


def test_bend_deceleration_reaches_the_bend_at_its_speed():
    """Unsmoothed (window 1): a kink of 0.2 rad at point 10 (s = 20 m) has curvature 0.1 /m,
    so at a_lat = 3 m/s^2 the bend's speed is sqrt(30) m/s; from 10 m/s that takes
    (30 - 100) / (2 * 20) = -1.75 m/s^2. A gentler bend nearer (0.02 rad at point 2,
    s = 4 m: v^2 = 300) does not bind; for an ego already slower than every bend the term
    is inf (no braking needed)."""
    route = kinked([(2, 0.02), (10, 0.2)])
    speed = np.array([10.0])
    assert bend_deceleration(route, speed, 3.0, window=1)[0] == pytest.approx(-1.75, rel=1e-9)
    assert bend_deceleration(route, np.array([5.0]), 3.0, window=1)[0] == np.inf
    nearer = kinked([(5, 0.2)])                      # the same bend 10 m ahead: twice as hard
    assert bend_deceleration(nearer, speed, 3.0, window=1)[0] == pytest.approx(-3.5, rel=1e-9)


def test_a_single_kink_is_spread_over_the_window_a_bend_is_kept():
    """Window 5: one 0.2 rad kink at point 10 reads 0.1 / 5 = 0.02 /m at points 8..12; a
    circle of radius 10 (0.2 rad at every point from 10 on) keeps 0.1 /m from point 12,
    the first whose window lies on it, 24 m ahead: (30 - 100) / (2 * 24) m/s^2 from 10 m/s
    (point 11, 0.08 /m at 22 m, needs -1.42; point 10, 0.06 /m at 20 m, -1.25)."""
    kink = smoothed_curvature(kinked([(10, 0.2)]), 5)[0]
    np.testing.assert_allclose(kink[8:13], 0.02, rtol=1e-9)
    np.testing.assert_allclose(np.delete(kink, range(8, 13)), 0.0, atol=1e-12)
    circle = kinked([(i, 0.2) for i in range(10, P - 1)])
    assert bend_deceleration(circle, np.array([10.0]), 3.0)[0] == pytest.approx(
        (30.0 - 100.0) / 48.0, rel=1e-6)


def test_bend_deceleration_ignores_straight_and_absent_points():
    straight = kinked([])
    assert bend_deceleration(straight, np.array([20.0]), 3.0)[0] == np.inf
    cut = kinked([(10, 0.2)])
    cut[:, 8:] = np.nan                              # the route ends before the bend
    assert bend_deceleration(cut, np.array([20.0]), 3.0, window=1)[0] == np.inf


def test_the_planner_brakes_for_a_bend_ahead_as_hard_as_it_needs():
    """The radius-10 circle from 20 m ahead (above) at 10 m/s: the plan's acceleration is at
    most the kinematic (30 - 100) / 48 m/s^2 (the IDM term towards the curve speed limit
    alone brakes less)."""
    route = kinked([(i, 0.2) for i in range(10, P - 1)])
    heading = np.concatenate([[0.0], np.arctan2(np.diff(route[0, :, 1]),
                                                np.diff(route[0, :, 0]))])
    lanes = np.full((1, M, Q, 2), np.nan)
    lanes[0, 0, :P] = route[0]
    valid = np.arange(M)[None] == 0
    the_map = {"route": route, "route_heading": heading[None],
               "route_width": np.full((1, P), 4.0), "lanes": lanes,
               "lane_width": np.full((1, M), 4.0), "lane_valid": valid,
               "lane_priority": np.zeros((1, M), np.int8), "lane_on_route": valid}
    plan = MobilFrenetPlanner()(tracks(np.zeros((0, 4))), ego_state(10.0), np.zeros(1),
                                road_map=the_map)
    assert plan.acceleration[0] <= (30.0 - 100.0) / 48.0 + 1e-9


def junction_map(speed_limit=np.inf, limit_from=0):
    """A straight route along +x (rank 3) crossed at x = 8 m by a lane driving +y (rank 1):
    a junction with ranks, so the planner plans on the map though the route is straight.
    `speed_limit` [m/s] on the route from point `limit_from` on (+inf before)."""
    m = road_map(None)
    m["lanes"][0, 1, :Q] = np.stack([np.full(Q, 8.0), -60.0 + STEP * np.arange(Q)], -1)
    m["lane_valid"][0, 1] = True
    m["lane_priority"][0] = [3, 1, 0, 0]
    limit = np.full((1, P), np.inf, np.float32)
    limit[0, limit_from:] = speed_limit
    m["route_speed_limit"] = limit
    return m


def test_a_crossing_car_is_yielded_to_not_followed():
    """The ego stands 8 m before the crossing; a car crosses its path there at 8 m/s,
    drifting back along the route at 3 m/s (110 deg off the route). As a lead (3 m bumper
    gap, closing at 3 m/s: time to collision 1 s) it made the ego brake at the action
    bound at standstill; now it is crossing traffic, no lead, and the yielding rule holds
    the ego at its stop line (8 - 2.5 - 2.5 - 0.5 = 2.5 m ahead)."""
    scene = tracks([[8.0, -1.0, -3.0, 8.0]])
    plan = MobilFrenetPlanner()(scene, ego_state(0.0), np.zeros(1), road_map=junction_map())
    assert plan.lead_track[0] == -1 and not plan.emergency[0]
    assert plan.acceleration[0] < 0.0
    frame = route_frame_tracks(tracks([[8.0, -1.0, -3.0, 8.0], [8.0, -1.0, 8.0, 3.0],
                                       [20.0, 0.0, -8.0, 0.0], [20.0, 0.0, 0.0, 0.3]]),
                               junction_map()["route"].astype(np.float64), np.zeros(1))
    # crossing: more than 60 deg off the route, moving (> 0.5 m/s)
    assert crossing_tracks(frame)[0].tolist() == [True, False, True, False]


@pytest.mark.parametrize("speed,limit,limit_from,expected", [
    (10.0, 10.0, 0, 0.0),                                   # at the limit: hold it
    (8.0, 10.0, 0, 3.0 * (1.0 - 0.8 ** 4)),                 # the IDM towards it
    (10.0, 5.0, 10, (5.0 ** 2 - 10.0 ** 2) / (2 * 20.0)),   # 5 m/s from 20 m on
])
def test_the_route_speed_limit_caps_and_brakes(speed, limit, limit_from, expected):
    """On a mapped route the lane's limit here is the cruise speed (the IDM's free-road
    term towards it), a lower limit ahead is braked for at the kinematic deceleration
    (`deceleration_to_speeds`); on a straight road without ranks the limit is not read
    (`test_a_straight_route_plans_exactly_as_without_a_map`)."""
    plan = MobilFrenetPlanner()(tracks(np.zeros((0, 4))), ego_state(speed), np.zeros(1),
                                road_map=junction_map(limit, limit_from))
    assert plan.acceleration[0] == pytest.approx(expected, abs=1e-9)


def test_braking_for_a_bend_ahead_starts_at_the_comfortable_rate():
    """A deceleration of a few cm/s^2 towards a bend far ahead is not applied (+inf); from
    `min_decel` on it is, exactly; none stays none."""
    needed = np.array([-0.03, -0.99, -1.0, -2.5, np.inf])
    out = brake_when_needed(needed, 1.0)
    assert out.tolist() == [np.inf, np.inf, -1.0, -2.5, np.inf]
    assert brake_when_needed(needed, 0.0).tolist() == needed.tolist()
