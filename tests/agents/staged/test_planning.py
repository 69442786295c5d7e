"""The staged planner: quintic lattice, lane-frame neighbours, MOBIL, emergency brake."""

from __future__ import annotations

import numpy as np
import pytest
from reflexdrive.agents.staged import frenet
from reflexdrive.agents.staged.car_following import IDMParams, idm_acceleration
from reflexdrive.agents.staged.lane_frame import (
    lane_neighbours,
    passes_before_contact,
    to_lane_frame,
)
from reflexdrive.agents.staged.planner_config import PlannerConfig
from reflexdrive.agents.staged.planning import MobilFrenetPlanner
from reflexdrive.agents.staged.types import LaneFrameTracks, Tracks
from reflexdrive.envs.config import ACCELERATION_BOUNDS, EGO_FEATURES

from reflexdrive.common.validation import ConfigError

W = IDMParams().lane_width_m


def ego_state(speed=25.0, lane_offset=0.0, heading_error=0.0, lane=1, lanes=3):
    ego = np.zeros((1, len(EGO_FEATURES)), dtype=np.float32)
    for name, value in (("speed_mps", speed), ("lane_offset_m", lane_offset),
                        ("heading_error_rad", heading_error), ("lane_index", lane),
                        ("lane_count", lanes), ("on_road", 1.0)):
        ego[0, EGO_FEATURES.index(name)] = value
    return ego


def tracks(rows):
    """rows: (x, y, vx, vy) in the ego frame, 5 x 2 m cars."""
    rows = np.array(rows, dtype=np.float64).reshape(-1, 4)
    n = rows.shape[0]
    return Tracks(position=rows[None, :, :2], velocity=rows[None, :, 2:],
                  size=np.tile([5.0, 2.0], (1, n, 1)), track_id=np.arange(n)[None],
                  valid=np.ones((1, n), bool))


def test_quintic_meets_its_boundary_conditions():
    c = frenet.quintic_coefficients(np.array(0.3), np.array(0.5), np.array(4.0), np.array(3.0))
    t = 3.0
    d = np.polynomial.polynomial.Polynomial(c)
    assert d(0.0) == pytest.approx(0.3) and d.deriv()(0.0) == pytest.approx(0.5)
    assert d.deriv(2)(0.0) == pytest.approx(0.0)
    assert d(t) == pytest.approx(4.0) and d.deriv()(t) == pytest.approx(0.0, abs=1e-12)
    assert d.deriv(2)(t) == pytest.approx(0.0, abs=1e-12)
    # the closed-form jerk cost equals the integral of the squared third derivative
    times = np.linspace(0.0, t, 20001)
    offset, cost = frenet.lateral_profile(c[None], np.array([t]), times)
    numeric = np.trapezoid(d.deriv(3)(times) ** 2, times)
    assert cost[0] == pytest.approx(numeric, rel=1e-6)
    assert offset[0, -1] == pytest.approx(4.0)


def test_lateral_profile_holds_after_the_manoeuvre():
    c = frenet.quintic_coefficients(np.array(0.0), np.array(0.0), np.array(-4.0), np.array(2.0))
    offset, _ = frenet.lateral_profile(c[None], np.array([2.0]), np.array([0.0, 2.0, 3.0, 5.0]))
    np.testing.assert_allclose(offset[0], [0.0, -4.0, -4.0, -4.0], atol=1e-12)


def test_longitudinal_profile_stops_and_caps():
    s, v = frenet.longitudinal_profile(np.array([10.0, 20.0]), np.array([-5.0, 2.0]),
                                       np.arange(5) * 1.0, max_speed=24.0)
    np.testing.assert_allclose(v[0], [10, 5, 0, 0, 0])
    np.testing.assert_allclose(v[1], [20, 22, 24, 24, 24])
    np.testing.assert_allclose(s[0], [0, 7.5, 10, 10, 10])          # trapezoids of v


def test_lane_frame_rotates_by_the_heading_error():
    """Ego turned by +psi from the lane: a car straight ahead of the ego in the ego frame
    lies at d = x sin(psi) across the lane."""
    psi = 0.1
    frame = to_lane_frame(tracks([[20.0, 0.0, 25.0, 0.0]]), np.array([0.5]), np.array([psi]))
    assert frame.s[0, 0] == pytest.approx(20 * np.cos(psi))
    assert frame.d[0, 0] == pytest.approx(20 * np.sin(psi) + 0.5)
    assert frame.vs[0, 0] == pytest.approx(25 * np.cos(psi))


def test_lane_neighbours_lead_and_follower_per_lane():
    t = tracks([[30.0, 0.0, 20, 0], [15.0, W, 25, 0], [-12.0, W, 30, 0], [-8.0, 0.0, 20, 0],
                [50.0, -W, 20, 0]])
    frame = to_lane_frame(t, np.zeros(1), np.zeros(1))
    P = IDMParams()
    lead, lead_gap, follower, follower_gap = lane_neighbours(frame, np.array([W]), P)
    assert lead[0] == 1 and lead_gap[0] == pytest.approx(15.0 - 5.0)
    assert follower[0] == 2 and follower_gap[0] == pytest.approx(12.0 - 5.0)
    lead, _, follower, follower_gap = lane_neighbours(frame, np.array([0.0]), P)
    assert lead[0] == 0 and follower[0] == 3 and follower_gap[0] == pytest.approx(3.0)
    lead, _, follower, follower_gap = lane_neighbours(frame, np.array([-W]), P)
    assert lead[0] == 4 and follower[0] == -1 and np.isinf(follower_gap[0])


def test_free_road_keeps_the_lane_at_idm_acceleration():
    planner = MobilFrenetPlanner()
    plan = planner(tracks(np.zeros((0, 4))), ego_state(speed=20.0), np.zeros(1))
    # cruise speed: min(v0, the assured-clear-distance speed)
    cruise = IDMParams(desired_speed_mps=min(IDMParams().desired_speed_mps,
                                             planner.sight_speed_mps))
    expected = idm_acceleration(np.array([20.0]), np.array([np.inf]), np.zeros(1), cruise)
    assert plan.acceleration[0] == pytest.approx(expected[0])
    assert plan.lane_change[0] == 0 and not plan.emergency[0]
    np.testing.assert_allclose(plan.path[0, :, 1], 0.0, atol=1e-12)    # straight ahead
    assert plan.path[0, 0, 0] == 0.0 and np.all(np.diff(plan.path[0, :, 0]) > 0)
    assert plan.target_speed[0] == pytest.approx(20.0 + expected[0] * 0.1)


def test_slow_lead_triggers_a_lane_change_to_the_free_side():
    """A lead 25 m ahead at 15 m/s (ego 25 m/s), the left lane (-1) blocked by a car
    alongside, the right lane (+1) free: MOBIL changes to the right; the path ends one lane
    width to +y."""
    scene = tracks([[30.0, 0.0, 15.0, 0.0], [0.0, -W, 25.0, 0.0]])
    planner = MobilFrenetPlanner()
    plan = planner(scene, ego_state(), np.zeros(1))
    assert plan.lane_change[0] == 1 and plan.lateral_target[0] == pytest.approx(W)
    assert plan.path[0, -1, 1] == pytest.approx(W)
    assert np.all(np.diff(plan.path[0, :, 1]) >= -1e-12)               # moves monotonically
    # the next call continues the same change (state kept), not a new decision
    again = planner(scene, ego_state(lane_offset=-0.0), np.array([0.1]))
    assert again.lane_change[0] == 1


def test_no_lane_change_into_an_unsafe_gap_or_off_the_road():
    """Right lane has a fast car close behind (it would brake harder than b_safe); the
    ego is in the leftmost lane: it stays and follows the slow lead."""
    scene = tracks([[30.0, 0.0, 15.0, 0.0], [-9.0, W, 30.0, 0.0]])
    plan = MobilFrenetPlanner()(scene, ego_state(lane=0, lanes=2), np.zeros(1))
    assert plan.lane_change[0] == 0
    assert plan.acceleration[0] < 0.0


def test_lane_changes_can_be_switched_off():
    scene = tracks([[30.0, 0.0, 15.0, 0.0]])
    plan = MobilFrenetPlanner(PlannerConfig(lane_changes=False))(scene, ego_state(), np.zeros(1))
    assert plan.lane_change[0] == 0


def test_emergency_brake_on_time_to_collision():
    """Stopped car 20 m (gap 15 m) ahead at 25 m/s: TTC 0.6 s < 1.2 s -> brake at the bound."""
    plan = MobilFrenetPlanner()(tracks([[20.0, 0.0, 0.0, 0.0]]), ego_state(lane=0, lanes=1),
                                np.zeros(1))
    assert plan.emergency[0] and plan.acceleration[0] == ACCELERATION_BOUNDS[0]
    far = MobilFrenetPlanner()(tracks([[80.0, 0.0, 0.0, 0.0]]), ego_state(lane=0, lanes=1),
                               np.zeros(1))
    assert not far.emergency[0] and far.acceleration[0] < 0.0        # IDM brakes, no emergency


def test_reset_forgets_a_lane_change_per_env():
    planner = MobilFrenetPlanner()
    scene = tracks([[30.0, 0.0, 15.0, 0.0], [0.0, -W, 25.0, 0.0]])
    both = Tracks(*(np.concatenate([a, a]) for a in (scene.position, scene.velocity,
                                                     scene.size, scene.track_id, scene.valid)))
    ego = np.concatenate([ego_state(), ego_state()])
    assert list(planner(both, ego, np.zeros(2)).lane_change) == [1, 1]
    planner.reset(np.array([True, False]))
    # a free road now: env 0 has forgotten its change, env 1 keeps going
    empty = Tracks(*(a[:, :0] for a in (both.position, both.velocity, both.size,
                                        both.track_id, both.valid)))
    assert list(planner(empty, ego, np.full(2, 0.1)).lane_change) == [0, 1]


def test_assured_clear_distance_speed():
    """v t_r + v^2 / (2 b) equals the clear sight distance at the capped cruise speed."""
    config = PlannerConfig(sight_distance_m=60.0, sight_decel_mps2=6.0, sight_reaction_s=0.5)
    v = MobilFrenetPlanner(config).sight_speed_mps
    clear = 60.0 - config.idm.ego_length_m - config.idm.min_gap_m
    assert v * 0.5 + v * v / 12.0 == pytest.approx(clear)


def test_planner_config_is_validated():
    with pytest.raises(ConfigError, match="emergency_ttc_s"):
        PlannerConfig(emergency_ttc_s=0.0)
    with pytest.raises(ConfigError, match="change_durations_s"):
        PlannerConfig(change_durations_s=())


@pytest.mark.parametrize("cls, kwargs, message", [
    (PlannerConfig, {"horizon_s": True}, "horizon_s=True is invalid: must be a number"),
    (PlannerConfig, {"politeness": "3"}, "politeness='3' is invalid: must be a number"),
    (PlannerConfig, {"lane_changes": 1}, "lane_changes=1 is invalid: must be true or false"),
    (PlannerConfig, {"keep_durations_s": (1.5, "2")},
     "keep_durations_s[1]='2' is invalid: must be a number"),
    (PlannerConfig, {"change_durations_s": (3.0, 0.0)},
     "change_durations_s[1]=0.0 is invalid: must lie in (0, inf]"),
    (PlannerConfig, {"coolness": 1.5}, "coolness=1.5 is invalid: must lie in [0, 1]"),
    (PlannerConfig, {"anticipation": "yes"},
     "anticipation='yes' is invalid: must be true or false"),
    (PlannerConfig, {"cah_margin_m": -1.0}, "cah_margin_m=-1.0 is invalid: must lie in [0, inf]"),
    (IDMParams, {"delta": True}, "delta=True is invalid: must be a number"),
    (IDMParams, {"comfort_decel_mps2": 0.0},
     "comfort_decel_mps2=0.0 is invalid: must lie in (0, inf]"),
])
def test_planner_and_idm_reject_bools_strings_and_bad_values(cls, kwargs, message):
    with pytest.raises(ConfigError) as error:
        cls(**kwargs)
    assert str(error.value) == message


def braking_lead_commands(tracker, config, frames=10, brake_from=5, decel=6.0, speed=15.0):
    """Commanded accelerations `(frames, 2)` of planner + PID behind a lead 30 m ahead
    (bumper gap), both at `speed` [m/s] on a one-lane road, 0.1 s frames, from oracle detections
    through `tracker`: world 0's lead brakes at `decel` from frame `brake_from`'s instant
    (frame `brake_from + 1` is the first to show it), world 1's keeps its speed. The ego is
    held at `speed` in both (synthetic tracks, no feedback)."""
    from reflexdrive.agents.staged.control import make_controller
    from reflexdrive.agents.staged.types import Detections

    planner, controller = MobilFrenetPlanner(config), make_controller("pure-pursuit")
    ego = np.repeat(ego_state(speed=speed, lane=0, lanes=1), 2, axis=0)
    x, v = np.full(2, 35.0), np.full(2, speed)
    commands = []
    for k in range(frames):
        detections = Detections(
            position=np.stack([x, np.zeros(2)], -1)[:, None], velocity=np.stack(
                [v, np.zeros(2)], -1)[:, None], size=np.tile([5.0, 2.0], (2, 1, 1)),
            heading=np.zeros((2, 1)), object_id=np.full((2, 1), 1), valid=np.ones((2, 1), bool))
        time_s = np.full(2, 0.1 * k)
        plan = planner(tracker(detections, ego, time_s), ego, time_s)
        commands.append(controller(plan, ego)[:, 0])
        a = np.array([-decel if k >= brake_from else 0.0, 0.0])
        x, v = x + (v - speed) * 0.1 + 0.5 * a * 0.01, v + a * 0.1
    return np.array(commands)


@pytest.mark.parametrize("tracker", ["identity", "kalman-oracle"])
def test_braking_lead_moves_the_command_within_a_tick(tracker):
    """A lead starting to brake at 6 m/s^2: the command departs from the no-braking twin's
    by >= 0.5 m/s^2 at the first frame that shows it (frame 6), with either oracle tracker;
    before, the twins agree exactly. The plain IDM (anticipation off) is still within
    0.5 m/s^2 of its twin one tick later (frame 7): it waits for the gap to shrink."""
    from reflexdrive.agents.registry import ORACLE_TRACKER
    from reflexdrive.agents.staged.tracking import IdentityTracker, KalmanTracker

    def make():
        return IdentityTracker() if tracker == "identity" else KalmanTracker(ORACLE_TRACKER)

    commands = braking_lead_commands(make(), PlannerConfig())
    departure = commands[:, 1] - commands[:, 0]
    assert departure[:6] == pytest.approx(np.zeros(6), abs=1e-12)
    assert departure[6] >= 0.5
    plain = braking_lead_commands(make(), PlannerConfig(anticipation=False))
    assert np.all(plain[:8, 1] - plain[:8, 0] < 0.5)


def entering_track(s, d, vs, vd, length=5.0, width=2.0):
    """One track in the lane frame (`N = K = 1`)."""
    one = lambda value: np.array([[value]], dtype=np.float64)  # noqa: E731
    return LaneFrameTracks(s=one(s), d=one(d), vs=one(vs), vd=one(vd), length=one(length),
                           width=one(width), valid=np.ones((1, 1), bool), accel_s=one(0.0))


def test_an_entering_vehicle_the_ego_passes_before_it_can_touch_is_not_a_lead():
    """A slow car drifting in from the next lane, its centre 6.2 m ahead, the ego 11.1 m/s
    faster: the ego's rear is past its front after (6.2 + 5) / 11.1 = 1.01 s; at 0.45 m/s
    towards the lane it needs (2.91 - 2) / 0.45 = 2.02 s to reach the ego's body. The ego
    passes (1.01 + 0.5 < 2.02): not a lead. Drifting at 1 m/s (0.91 s) it would be."""
    params = IDMParams()
    slow = entering_track(s=6.2, d=2.91, vs=5.6, vd=-0.45)
    half = 0.5 * (slow.length + params.ego_length_m)
    assert passes_before_contact(slow, slow.d, half, np.array([[16.7]]), 2.0)[0, 0]
    lead, gap, _, _ = lane_neighbours(slow, np.zeros(1), params)
    assert lead[0] == 0 and gap[0] == pytest.approx(1.2)            # without the ego's speed
    lead, gap, _, _ = lane_neighbours(slow, np.zeros(1), params, np.array([16.7]), 2.0)
    assert lead[0] == -1 and np.isinf(gap[0])
    fast = entering_track(s=6.2, d=2.91, vs=5.6, vd=-1.0)
    assert lane_neighbours(fast, np.zeros(1), params, np.array([16.7]), 2.0)[0][0] == 0
    inside = entering_track(s=6.2, d=1.0, vs=5.6, vd=-0.45)        # in the lane now
    assert lane_neighbours(inside, np.zeros(1), params, np.array([16.7]), 2.0)[0][0] == 0
    slower_ego = lane_neighbours(slow, np.zeros(1), params, np.array([5.0]), 2.0)
    assert slower_ego[0][0] == 0                                    # never overtakes it
