"""Criticality at onset (`envs.criticality`): the closed forms against kinematics."""

import math

import numpy as np
import pytest
from reflexdrive.envs.criticality import (
    CRITICAL_HORIZON_S,
    contact_time,
    criticality,
    hazard_motion,
    idm_equivalent_deceleration,
    lane_longitudinal,
    required_deceleration,
)
from reflexdrive.envs.scenarios import HAZARD_KINDS

LEAD_BRAKE, CUT_IN, STOPPED = (HAZARD_KINDS.index(k)
                               for k in ("lead_brake", "cut_in", "stopped_vehicle"))


def _positions(t, v_e, a, v_h, b, v_f):
    """Exact ego (constant deceleration `a` to standstill) and hazard (deceleration `b` to
    `v_f`, then `v_f`) positions at times `t`."""
    t_e = v_e / a if a > 0 else np.inf
    x_e = np.where(t < t_e, v_e * t - a * t * t / 2, v_e * t_e - a * t_e * t_e / 2)
    t_s = (v_h - v_f) / b if b > 0 else 0.0
    x_s = v_h * t_s - b * t_s * t_s / 2
    x_h = np.where(t < t_s, v_h * t - b * t * t / 2, x_s + v_f * (t - t_s))
    return x_e, x_h


def _min_gap(g, v_e, a, v_h, b, v_f):
    t = np.linspace(0.0, 120.0, 240_001)
    x_e, x_h = _positions(t, v_e, a, v_h, b, v_f)
    return float(np.min(g + x_h - x_e))


def _brute_required(g, v_e, v_h, b, v_f):
    """The least `a` with a non-negative min gap, by bisection on a dense time grid."""
    if _min_gap(g, v_e, 0.0, v_h, b, v_f) >= 0:
        return 0.0
    low, high = 0.0, 200.0
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (low, mid) if _min_gap(g, v_e, mid, v_h, b, v_f) >= 0 else (mid, high)
    return high


def _brute_contact(g, v_e, v_h, b, v_f):
    t = np.linspace(0.0, 120.0, 1_200_001)
    x_e, x_h = _positions(t, v_e, 0.0, v_h, b, v_f)
    touching = np.flatnonzero(g + x_h - x_e <= 0)
    return float(t[touching[0]]) if touching.size else math.inf


def test_stationary_target_needs_v_squared_over_twice_the_gap():
    # 20 m/s towards a standstill 40 m ahead: a = v^2 / (2 g) = 5, contact after g / v = 2 s
    assert required_deceleration(40.0, 20.0, 0.0, 0.0, 0.0) == pytest.approx(5.0)
    assert contact_time(40.0, 20.0, 0.0, 0.0, 0.0) == pytest.approx(2.0)


def test_lead_braking_to_a_stop_before_the_ego_adds_its_stopping_distance():
    # lead and ego at 20 m/s, 20 m apart, lead brakes at 8: it stops after 25 m, the ego
    # must stop within 45 m: a = 400 / 90 (the speeds never meet while the lead moves)
    assert required_deceleration(20.0, 20.0, 20.0, 8.0, 0.0) == pytest.approx(400.0 / 90.0)
    # no response: gap 20 - 4 t^2 closes at t = sqrt(5) < 2.5 s, while the lead still moves
    assert contact_time(20.0, 20.0, 20.0, 8.0, 0.0) == pytest.approx(math.sqrt(5.0))


def test_gentle_lead_braking_meets_speeds_while_both_move():
    # ego 30, lead 20 braking at 1, gap 50: speeds meet at t* = 2 g / dv = 10 s < 20 s
    # (the lead's stop): a = b + dv^2 / (2 g) = 1 + 100 / 100 = 2
    assert required_deceleration(50.0, 30.0, 20.0, 1.0, 0.0) == pytest.approx(2.0)


def test_equal_speeds_and_no_braking_need_nothing_and_never_touch():
    assert required_deceleration(10.0, 20.0, 20.0, 0.0, 20.0) == 0.0
    assert contact_time(10.0, 20.0, 20.0, 0.0, 20.0) == math.inf
    # a slower ego never closes in on a lead that slows to a speed above its own
    assert required_deceleration(10.0, 15.0, 20.0, 3.0, 16.0) == 0.0
    assert contact_time(10.0, 15.0, 20.0, 3.0, 16.0) == math.inf


def test_contact_already_made_is_infinitely_critical():
    assert required_deceleration(0.0, 20.0, 0.0, 0.0, 0.0) == math.inf
    assert contact_time(-1.0, 20.0, 0.0, 0.0, 0.0) == 0.0


def test_cut_in_slowing_to_a_nonzero_speed_is_the_same_problem_in_its_frame():
    # in the frame moving at v_f = 15 this is test_lead_braking_..._stopping_distance
    assert required_deceleration(20.0, 35.0, 35.0, 8.0, 15.0) == pytest.approx(400.0 / 90.0)
    assert contact_time(20.0, 35.0, 35.0, 8.0, 15.0) == pytest.approx(math.sqrt(5.0))


@pytest.mark.parametrize("case", [
    (20.0, 20.0, 20.0, 8.0, 0.0), (50.0, 30.0, 20.0, 1.0, 0.0), (5.0, 25.0, 22.0, 6.0, 0.0),
    (12.0, 24.0, 24.0, 1.4, 20.0), (8.0, 26.0, 23.0, 2.5, 18.0), (30.0, 10.0, 22.0, 7.0, 0.0),
    (40.0, 22.0, 0.0, 0.0, 0.0), (15.0, 20.0, 25.0, 0.5, 5.0), (3.0, 20.0, 20.0, 4.0, 12.0),
])
def test_closed_forms_match_a_brute_force_search(case):
    g, v_e, v_h, b, v_f = case
    assert required_deceleration(g, v_e, v_h, b, v_f) == pytest.approx(
        _brute_required(g, v_e, v_h, b, v_f), rel=1e-3, abs=1e-3)
    assert contact_time(g, v_e, v_h, b, v_f) == pytest.approx(
        _brute_contact(g, v_e, v_h, b, v_f), abs=2e-4)


def test_the_idm_equivalent_deceleration_loses_the_idms_distance():
    # integrate highway-env's free-road IDM (a = 3, a_max = 6, delta = 4) finely and compare
    # the distance lost on cruising at v0 with the constant-deceleration model's
    for v, v0 in ((24.0, 20.0), (24.0, 18.0), (22.0, 21.0)):
        dt, speed, lost = 1e-3, v, 0.0
        for _ in range(int(40.0 / dt)):
            lost += (speed - v0) * dt
            speed += float(np.clip(3.0 * (1.0 - (speed / v0) ** 4), -6.0, 6.0)) * dt
        b = idm_equivalent_deceleration(v, v0)
        assert (v - v0) ** 2 / (2.0 * b) == pytest.approx(lost, rel=2e-3)
    assert idm_equivalent_deceleration(20.0, 22.0) == 0.0


def test_hazard_motion_per_kind():
    b, v_f = hazard_motion([LEAD_BRAKE, STOPPED, CUT_IN], [20.0, 0.0, 24.0], [6.0, 0.0, 0.0],
                           [0.0, 0.0, 20.0])
    np.testing.assert_allclose(b, [6.0, 0.0, idm_equivalent_deceleration(24.0, 20.0)])
    np.testing.assert_allclose(v_f, [0.0, 0.0, 20.0])


def test_critical_rule_uses_the_horizon_and_the_episode_end():
    # stationary target: contact at g / v
    result = criticality([79.0, 81.0, 40.0, np.nan], 20.0, 0.0, 0.0, 0.0,
                         time_left_s=[10.0, 10.0, 1.5, 10.0])
    assert CRITICAL_HORIZON_S == 4.0
    np.testing.assert_array_equal(result.critical, [True, False, False, False])
    np.testing.assert_allclose(result.contact_time_s[:3], [3.95, 4.05, 2.0])
    np.testing.assert_allclose(result.onset_ttc_s[:3], [3.95, 4.05, 2.0])
    np.testing.assert_allclose(result.onset_headway_s[:3], [3.95, 4.05, 2.0])
    assert np.isnan(result.onset_ttc_s[3]) and np.isnan(result.required_decel_mps2[3])
    lead = criticality(20.0, 20.0, 20.0, 8.0, 0.0, time_left_s=10.0)
    assert lead.onset_ttc_s == math.inf and bool(lead.critical)


def test_lane_longitudinal_projects_on_the_lane():
    gap, v_e, v_h = lane_longitudinal(
        np.array([[0.0, 0.0]]), np.array([0.1]), np.array([20.0]), np.array([5.0]),
        np.array([[30.0, 4.0]]), np.array([0.0]), np.array([15.0]), np.array([5.0]),
        np.array([0.0]))
    np.testing.assert_allclose(gap, [25.0])
    np.testing.assert_allclose(v_e, [20.0 * math.cos(0.1)])
    np.testing.assert_allclose(v_h, [15.0])


# ----------------------------------------------------------------------------- curves, crossings


def test_arc_gap_on_a_circle_is_the_radius_times_the_angle_minus_the_half_lengths():
    from highway_env.road.lane import CircularLane
    from reflexdrive.envs.criticality import arc_longitudinal
    from reflexdrive.envs.lane_paths import LanePath

    radius, phi0, swept = 250.0, 0.1, 0.2        # the stopped car 50 m further round
    path = LanePath.of([CircularLane([0.0, 0.0], radius, 0.0, 1.0)])
    ego_at, hazard_at = path.lanes[0].position(radius * phi0, 0.7), \
        path.lanes[0].position(radius * (phi0 + swept), -0.4)   # off-centre: same arc length
    (ego_s, _, ego_heading), (hazard_s, _, hazard_heading) = \
        path.coordinates(ego_at), path.coordinates(hazard_at)
    gap, v_e, v_h = arc_longitudinal([ego_s], [ego_heading], [20.0], [5.0], ego_heading,
                                     [hazard_s], [hazard_heading + 0.1], [3.0], [5.0],
                                     hazard_heading)
    assert gap[0] == pytest.approx(radius * swept - 5.0, abs=1e-9)
    assert v_e[0] == pytest.approx(20.0) and v_h[0] == pytest.approx(3.0 * math.cos(0.1))
    # the projection on the ego's heading measures the chord's projection instead: the
    # hazard's centre, 0.4 m outside the lane, 0.2 rad round from the ego's radius
    projected, *_ = lane_longitudinal([ego_at], [ego_heading], [20.0], [5.0], [hazard_at],
                                      [hazard_heading], [0.0], [5.0], ego_heading)
    assert projected[0] == pytest.approx((radius + 0.4) * math.sin(swept) - 5.0, abs=1e-9)
    assert gap[0] - projected[0] > 0.25


def _perpendicular(d_e, v_e, d_h, v_h, time_left=10.0, angle=math.pi / 2):
    from reflexdrive.envs.criticality import crossing_criticality

    return crossing_criticality([d_e], [v_e], [5.0], [2.0], [d_h], [v_h], [5.0], [2.0],
                                [angle], [time_left])


def test_crossing_paths_meet_when_the_occupancy_intervals_overlap():
    # zone half length 1 m along each path (the other's half width, at right angles):
    # ego in [26.5 / 10, 33.5 / 10] = [2.65, 3.35] s, crossing [16.5 / 8, 23.5 / 8] s
    found = _perpendicular(30.0, 10.0, 20.0, 8.0)
    assert found.critical[0]
    assert found.contact_time_s[0] == pytest.approx(2.65)
    assert found.onset_ttc_s[0] == pytest.approx(2.65)
    assert found.onset_gap_m[0] == pytest.approx(26.5)
    assert found.onset_headway_s[0] == pytest.approx(2.65)
    # braking so that the ego's front reaches the zone as the crossing rear leaves it
    clear = 23.5 / 8
    assert found.required_decel_mps2[0] == pytest.approx(2 * (10.0 * clear - 26.5) / clear ** 2)


def test_crossing_paths_that_miss_each_other_are_not_critical():
    # the crossing car enters at 36.5 / 8 = 4.56 s, after the ego has left at 3.35 s
    missed = _perpendicular(30.0, 10.0, 40.0, 8.0)
    assert not missed.critical[0] and missed.contact_time_s[0] == math.inf
    assert missed.required_decel_mps2[0] == 0.0 and missed.onset_ttc_s[0] == math.inf
    # overlapping but beyond the horizon, or beyond the episode's end
    late = _perpendicular(50.0, 10.0, 40.0, 8.0)        # ego in at 4.65 s, car 4.56-5.44
    assert late.contact_time_s[0] == pytest.approx(4.65) and not late.critical[0]
    assert not _perpendicular(30.0, 10.0, 20.0, 8.0, time_left=2.0).critical[0]


def test_the_conflict_zone_widens_at_oblique_crossings():
    from reflexdrive.envs.criticality import conflict_half_extents

    h_e, h_h = conflict_half_extents([2.0], [3.0], [math.pi / 3])
    assert h_e[0] == pytest.approx(3.0 / (2 * math.sin(math.pi / 3))
                                   + 2.0 / (2 * math.tan(math.pi / 3)))
    assert h_h[0] == pytest.approx(2.0 / (2 * math.sin(math.pi / 3))
                                   + 3.0 / (2 * math.tan(math.pi / 3)))
    # at 60 degrees the ego (10 m/s, 30 m out) enters the 2 * 1.732 m zone earlier
    found = _perpendicular(30.0, 10.0, 20.0, 8.0, angle=math.pi / 3)
    assert found.onset_gap_m[0] == pytest.approx(30.0 - 2.5 - math.sqrt(3.0))


def test_a_car_standing_in_the_conflict_zone_needs_stopping_before_it():
    standing = _perpendicular(30.0, 10.0, 0.0, 0.0)
    assert standing.critical[0] and standing.contact_time_s[0] == pytest.approx(2.65)
    assert standing.required_decel_mps2[0] == pytest.approx(100.0 / (2 * 26.5))
    inside = _perpendicular(2.0, 10.0, 1.0, 8.0)        # both already in the zone
    assert inside.contact_time_s[0] == 0.0 and inside.required_decel_mps2[0] == math.inf
    unknown = _perpendicular(30.0, 10.0, math.nan, 8.0)
    assert not unknown.critical[0] and math.isnan(unknown.onset_gap_m[0])
