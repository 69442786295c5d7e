"""Yielding: conflict points, lane assignment and gap acceptance on hand-built maps."""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.agents.staged.car_following import IDMParams, idm_acceleration
from reflexdrive.agents.staged.yielding import (
    YieldConfig,
    conflict_points,
    lanes_of_tracks,
    ranked_lanes,
    stop_line_acceleration,
    time_to_travel,
    tracks_on_lanes,
    yield_acceleration,
)

from reflexdrive.common.validation import ConfigError

STEP, P, M, Q = 2.0, 40, 4, 64
CONFIG = YieldConfig()


def line(start, direction, points):
    return np.asarray(start, float) + np.arange(points)[:, None] * STEP * np.asarray(direction,
                                                                                       float)


def crossing_map(route_priority=0, cross_priority=1):
    """The route runs along +x from the ego; lane 1 crosses it at 90 deg at x = 30 m,
    driving towards +y from y = -120 m; lane 0 carries the route."""
    route = line([0.0, 0.0], [1.0, 0.0], P)
    lanes = np.full((1, M, Q, 2), np.nan)
    lanes[0, 0, :P] = route
    lanes[0, 1, :Q] = line([30.0, -120.0], [0.0, 1.0], Q)
    valid = np.array([[True, True, False, False]])
    return {"route": route[None], "route_heading": np.zeros((1, P)),
            "lanes": lanes, "lane_valid": valid, "lane_width": np.full((1, M), 4.0),
            "lane_priority": np.array([[route_priority, cross_priority, 0, 0]], np.int8),
            "lane_on_route": np.array([[True, False, False, False]])}


def car_at(y, vy):
    """One track on the crossing lane at (30, y) moving at vy towards +y."""
    return (np.array([[[30.0, y]]]), np.array([[[0.0, vy]]]), np.full((1, 1), 5.0),
            None, np.ones((1, 1), bool))


def idm(v, gap):
    return idm_acceleration(v, gap, v, IDMParams())


def test_config_is_validated():
    with pytest.raises(ConfigError, match="yield.critical_gap_s"):
        YieldConfig(critical_gap_s=-1.0)


def test_conflict_point_of_a_crossing():
    m = crossing_map()
    priority, equal, merging, s_c, q_c, s_end, q_end = conflict_points(m["route"], m, CONFIG)
    assert priority[0].tolist() == [False, True, False, False]
    assert not equal.any()
    assert not merging[0, 1]
    # the first crossing-lane point within 2.5 m of the route: y = -2 (lane arc 118 m)
    assert s_c[0, 1] == pytest.approx(30.0)
    assert q_c[0, 1] == pytest.approx(118.0)


def test_no_right_of_way_for_a_lower_priority_lane():
    m = crossing_map(route_priority=3, cross_priority=1)
    conflicts = conflict_points(m["route"], m, CONFIG)
    assert not conflicts.priority.any() and not conflicts.equal.any()
    # it still conflicts (the ego yields to it only when it is committed)
    assert conflicts.s_c[0, 1] == pytest.approx(30.0)


def test_tracks_are_put_on_the_lane_running_their_way():
    m = crossing_map()
    position = np.array([[[30.3, -20.0], [30.3, -20.0], [10.0, 0.2]]])
    velocity = np.array([[[0.0, 8.0], [0.0, -8.0], [9.0, 0.0]]])
    lane, q = tracks_on_lanes(position, velocity, None, np.ones((1, 3), bool), m["lanes"],
                              m["lane_valid"], CONFIG.lane_match_m)
    assert lane[0].tolist() == [1, -1, 0]
    assert q[0, 0] == pytest.approx(100.0) and q[0, 2] == pytest.approx(10.0)


def test_time_to_travel():
    # from 0 at 2 m/s^2: 9 m in 3 s; past 6 m/s (9 m) at constant speed
    assert time_to_travel(np.array(9.0), np.array(0.0), 2.0, 6.0) == pytest.approx(3.0)
    assert time_to_travel(np.array(21.0), np.array(0.0), 2.0, 6.0) == pytest.approx(5.0)


def ego_times(speed, s_c=30.0):
    reach = CONFIG.zone_m + 0.5 * CONFIG.ego_length_m
    t_out = time_to_travel(np.array(s_c + reach), np.array(speed), CONFIG.go_accel_mps2,
                           CONFIG.go_speed_mps)
    return float(t_out)


@pytest.mark.parametrize("margin,expect_yield", [(-0.3, True), (0.3, False)])
def test_yield_when_the_crossing_car_arrives_inside_the_gap(margin, expect_yield):
    """The ego at 6 m/s, 30 m before a 90 deg crossing; a car on the priority lane at
    10 m/s. It arrives at the zone after `(q_c - zone - L/2 - q) / v`; the ego clears the
    zone at `t_out`. The car placed to arrive `critical_gap_s + margin` after `t_out`: the
    ego yields (the IDM towards a stop line before the zone) when the margin is negative,
    goes when it is positive."""
    speed, v = 6.0, 10.0
    arrival = ego_times(speed) + CONFIG.critical_gap_s + margin
    reach = CONFIG.zone_m + 2.5
    to_go = arrival * v + reach                  # lane arc from the car to the conflict point
    y = -2.0 - to_go                             # the conflict point is at y = -2 (q_c)
    m = crossing_map()
    accel, yielding, stop = yield_acceleration(m["route"], m, *car_at(y, v)[:4],
                                               car_at(y, v)[4], np.array([speed]), CONFIG, idm)
    assert bool(yielding[0]) == expect_yield
    if expect_yield:
        assert stop[0] == pytest.approx(30.0 - reach - CONFIG.stop_margin_m)
        assert accel[0] == pytest.approx(idm(np.array([speed]), stop - 2.5)[0])
    else:
        assert accel[0] == np.inf


def test_a_car_that_has_passed_or_cannot_be_stopped_for_is_not_yielded_to():
    m = crossing_map()
    # the car is past the conflict zone
    accel, yielding, _ = yield_acceleration(m["route"], m, *car_at(8.0, 10.0)[:4],
                                            car_at(8.0, 10.0)[4], np.array([6.0]), CONFIG, idm)
    assert not yielding[0]
    # the ego 30 m before the crossing at 20 m/s cannot stop before the line at 5 m/s^2
    accel, yielding, _ = yield_acceleration(m["route"], m, *car_at(-10.0, 10.0)[:4],
                                            car_at(-10.0, 10.0)[4], np.array([20.0]), CONFIG,
                                            idm)
    assert not yielding[0]


def test_a_merging_ring_lane_only_needs_the_ego_in_ahead():
    """Equal priorities, the route jumps from an entry lane's end onto a ring lane that
    another lane feeds: the feeding lane has the right of way, merging, and its feeder
    two lanes back too."""
    route = np.concatenate([line([0.0, 0.0], [1.0, 0.0], 10),
                            line([24.0, 4.0], [1.0, 0.0], P - 10)])
    lanes = np.full((1, M, Q, 2), np.nan)
    lanes[0, 0, :10] = route[:10]
    lanes[0, 1, :P - 10] = route[10:]
    lanes[0, 2, :12] = line([0.0, 4.0], [1.0, 0.0], 12)          # ring before the entry
    lanes[0, 3, :20] = line([-40.0, 4.0], [1.0, 0.0], 20)        # and before that
    m = {"route": route[None], "route_heading": np.zeros((1, P)), "lanes": lanes,
         "lane_valid": np.ones((1, M), bool), "lane_width": np.full((1, M), 4.0),
         "lane_priority": np.zeros((1, M), np.int8),
         "lane_on_route": np.array([[True, True, False, False]])}
    priority, _, merging, s_c, q_c, _, _ = conflict_points(m["route"], m, CONFIG)
    assert priority[0].tolist() == [False, False, True, True]
    assert merging[0, 2] and merging[0, 3]
    # lane 3 ends at x = -2, 2 m before lane 2 starts: its conflict point lies 40 m on
    assert q_c[0, 3] == pytest.approx(38.0 + 2.0 + q_c[0, 2])


def ranked_crossing_map(route_priority, cross_priority):
    """`crossing_map` with a third lane, far away and parallel to the route, of another
    rank than both: the map has ranks (a regulated junction), so equal ranks are equal."""
    m = crossing_map(route_priority, cross_priority)
    m["lanes"][0, 2, :P] = line([0.0, 50.0], [1.0, 0.0], P)
    m["lane_valid"][0, 2] = True
    m["lane_priority"][0, 2] = 7
    return m


def test_ranked_lanes_need_two_ranks_among_valid_lanes():
    assert not ranked_lanes(crossing_map(1, 1))[0]          # the invalid lanes' 0 is no rank
    assert ranked_lanes(crossing_map(0, 1))[0]
    assert ranked_lanes(ranked_crossing_map(1, 1))[0]
    m = ranked_crossing_map(1, 1)
    conflicts = conflict_points(m["route"], m, CONFIG)
    assert conflicts.equal[0].tolist() == [False, True, False, False]
    assert not conflicts.priority.any()
    # the zone of a 90 deg crossing: the lane points within 2.5 m, y = -2, 0, 2
    assert conflicts.s_end[0, 1] == pytest.approx(30.0)
    assert conflicts.q_end[0, 1] == pytest.approx(122.0)


def ego_in(speed, s_c=30.0):
    """When the ego (accelerating at 2.5 m/s^2 up to 8 m/s) enters the zone [s]."""
    reach = CONFIG.zone_m + 0.5 * CONFIG.ego_length_m
    return float(time_to_travel(np.array(s_c - reach), np.array(speed), CONFIG.go_accel_mps2,
                                CONFIG.go_speed_mps))


@pytest.mark.parametrize("margin", [-0.3, 0.3])
@pytest.mark.parametrize("cross_priority", [1, 2])
def test_equal_ranks_first_come_first_served(margin, cross_priority):
    """The ego at 6 m/s, 30 m before a 90 deg crossing (in at t_in = 0.8 + 19.4 / 8 =
    3.225 s); a car at 10 m/s arriving `first_come_margin_s + margin` after t_in, far
    from committed (42 m out) and inside the critical gap (out at 4.475 s, + 2 s). On a
    lane of the ego's rank the ego goes first when it is in `first_come_margin_s` before
    the car (margin +0.3) and yields otherwise; on a lane of higher rank it yields both
    times."""
    assert ego_in(6.0) == pytest.approx(3.225)
    speed, v = 6.0, 10.0
    arrival = ego_in(speed) + CONFIG.first_come_margin_s + margin
    reach = CONFIG.zone_m + 2.5
    y = -2.0 - (arrival * v + reach)
    m = ranked_crossing_map(1, cross_priority)
    _, yielding, stop = yield_acceleration(m["route"], m, *car_at(y, v)[:4], car_at(y, v)[4],
                                           np.array([speed]), CONFIG, idm)
    expect_yield = cross_priority == 2 or margin < 0
    assert bool(yielding[0]) == expect_yield
    if expect_yield:
        assert stop[0] == pytest.approx(30.0 - reach - CONFIG.stop_margin_m)


@pytest.mark.parametrize("front_to_zone,expect_yield", [(31.6, True), (34.6, False)])
def test_a_committed_car_is_yielded_to_despite_the_right_of_way(front_to_zone, expect_yield):
    """The ego (rank 3) has the right of way over the crossing lane (rank 1). A car on it
    at 10 m/s, its front `front_to_zone` from the zone: it can stop before the zone at
    `committed_decel_mps2` (1.5 m/s^2) only from 10^2 / 3 = 33.3 m on. At 31.6 m it is
    committed, arrives at 3.16 s and leaves the zone (lane arc 122 + 5) at (122 - 81.4 + 5)
    / 10 = 4.56 s, not `PASSED_MARGIN_S` (0.5 s) before the ego is in (3.225 s), nor does
    it arrive 2 s after the ego is out: the ego yields. At 34.6 m it could still stop: the
    ego keeps its right of way."""
    assert CONFIG.committed_decel_mps2 == 1.5
    speed, v = 6.0, 10.0
    reach = CONFIG.zone_m + 2.5
    y = -2.0 - (front_to_zone + reach)
    m = crossing_map(route_priority=3, cross_priority=1)
    accel, yielding, stop = yield_acceleration(m["route"], m, *car_at(y, v)[:4],
                                               car_at(y, v)[4], np.array([speed]), CONFIG, idm)
    assert bool(yielding[0]) == expect_yield
    if expect_yield:
        assert stop[0] == pytest.approx(30.0 - reach - CONFIG.stop_margin_m)
        assert accel[0] == pytest.approx(idm(np.array([speed]), stop - 2.5)[0])
    else:
        assert accel[0] == np.inf


def test_a_track_near_a_fan_of_lanes_is_on_every_one():
    """Two lanes leave (30, -20) along +y, one bending off to +x after 6 m: a car at
    (30.3, -16) moving +y is within `lane_match_m` of both, at lane arc 4 m on each;
    `tracks_on_lanes` keeps the nearest (the first of equals)."""
    lanes = np.full((1, M, Q, 2), np.nan)
    lanes[0, 0, :10] = line([30.0, -20.0], [0.0, 1.0], 10)
    lanes[0, 1, :4] = line([30.0, -20.0], [0.0, 1.0], 4)
    lanes[0, 1, 4:10] = line([32.0, -13.0], [np.sqrt(0.5), np.sqrt(0.5)], 6)
    valid = np.array([[True, True, False, False]])
    args = (np.array([[[30.3, -16.0]]]), np.array([[[0.0, 8.0]]]), None, np.ones((1, 1), bool),
            lanes, valid, CONFIG.lane_match_m)
    arc, distance = lanes_of_tracks(*args)
    np.testing.assert_allclose(arc[0, 0, :2], [4.0, 4.0])
    np.testing.assert_allclose(distance[0, 0, :2], [0.3, 0.3])
    assert np.isnan(arc[0, 0, 2:]).all() and np.isposinf(distance[0, 0, 2:]).all()
    lane, q = tracks_on_lanes(*args)
    assert lane[0, 0] == 0 and q[0, 0] == pytest.approx(4.0)


def test_a_stop_line_is_approached_braking_evenly_never_harder():
    """At 11 m/s with the line 16 m ahead of the front the IDM (behind a stopped car there)
    brakes harder than the even v^2 / (2 gap) = 121/32 m/s^2 that stops at the line: that
    is returned. Slow and far from the line the IDM's own (gentler) value; at and past the
    line the IDM's."""
    speed, gap = np.array([11.0, 2.0, 3.0, 3.0]), np.array([16.0, 30.0, 0.0, -1.0])
    reference = idm(speed, gap)
    out = stop_line_acceleration(speed, gap, idm)
    assert reference[0] < -121.0 / 32.0
    assert out[0] == pytest.approx(-121.0 / 32.0, rel=1e-12)
    assert out[1] == reference[1] and reference[1] > -4.0 / 60.0
    assert out[2] == reference[2] and out[3] == reference[3]


def test_a_lane_feeds_another_across_a_gap_whose_chord_continues_both():
    """A roundabout exit starts metres outside the ring lane it leaves. Lane 2 ends 6 m
    before lane 1 (which crosses the route) starts, running its way: a car on it reaches
    the conflict after the rest of lane 2, the 6 m gap and lane 1's arc to it. Lane 3 ends
    6 m before lane 1 too, but the chord from it runs at 90 deg to lane 1: no feeder."""
    m = crossing_map()
    m["lanes"][0, 1] = np.nan
    m["lanes"][0, 1, :Q] = line([30.0, -12.0], [0.0, 1.0], Q)
    m["lanes"][0, 2, :20] = line([30.0, -56.0], [0.0, 1.0], 20)        # ends at y = -18
    m["lanes"][0, 3, :18] = line([-10.0, -12.0], [1.0, 0.0], 18)       # ends at x = 24
    m["lane_valid"][0] = True
    m["lane_priority"][0] = 1
    m["lane_priority"][0, 0] = 0
    priority, _, _, s_c, q_c, _, _ = conflict_points(m["route"], m, CONFIG)
    assert q_c[0, 1] == pytest.approx(10.0)                             # y = -2: 2.5 m off
    assert q_c[0, 2] == pytest.approx(38.0 + 6.0 + 10.0)
    assert s_c[0, 2] == s_c[0, 1] and priority[0, 2]
    assert np.isnan(q_c[0, 3])
