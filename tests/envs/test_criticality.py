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
