"""R157's stationary obstacle on 250 m and 1000 m curves: the grid points (OSC-ALKS 4.2_1's
curved roads), the rig's steering on them, and their run on the highway backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reflexdrive.agents.base import Decision
from reflexdrive.agents.reference.lane_keeping import keep_lane
from reflexdrive.agents.registry import STACKS
from reflexdrive.agents.staged.control import LaneKeepingController
from reflexdrive.envs.curved_scenarios import CURVE_ARC_M, curve_lane_radius
from reflexdrive.envs.scenarios import EGO_START_S, VEHICLE_LENGTH_M

from reflexdrive.protocol.grid import EGO_LANE
from reflexdrive.protocol.harness import ProtocolConfig, run_protocol
from reflexdrive.protocol.hold_speed import rig_actions
from reflexdrive.protocol.r157 import (
    AFTER_EVENT_S,
    PRE_ONSET_S,
    STATIONARY_CURVES,
    STATIONARY_SPEEDS_KPH,
    r157_grid,
    stationary_reach_distance_m,
)


def _curved():
    return [p for p in r157_grid() if p.test == "stationary-curve"]


def test_curved_stationary_points_are_osc_alks_roads_times_its_speeds():
    points = _curved()
    assert STATIONARY_CURVES == (("left", 250.0), ("right", 250.0), ("left", 1000.0),
                                 ("right", 1000.0))
    assert len(points) == 4 * 12 == 48
    assert [p.point for p in points[:2]] == ["SO-v5-left250", "SO-v10-left250"]
    assert points[-1].point == "SO-v60-right1000"
    assert [p.ego_speed_kph for p in points[:12]] == list(STATIONARY_SPEEDS_KPH)
    assert len({p.point for p in r157_grid()}) == len(r157_grid())
    for p in points:
        road = p.init.road
        ego, target = p.init.vehicles
        radius = p.parameters["radius_m"]
        # the ego lane's centreline has the test's radius; left turns have arc_rad < 0
        assert curve_lane_radius(road, EGO_LANE) == pytest.approx(radius, abs=1e-12)
        assert math.copysign(1.0, road.arc_rad) == (1.0 if p.parameters["turn_right"] else -1.0)
        assert abs(road.arc_rad) * radius == pytest.approx(CURVE_ARC_M)
        # the VUT starts where the arc begins, the target stands on the arc in its lane
        assert ego.lane == ("1", "2", EGO_LANE) and ego.s_m == 0.0 and target.lane == ego.lane
        assert ego.speed_mps == pytest.approx(p.test_speed_mps) and target.speed_mps == 0.0
        # its footprint reaches 48 m ahead (ego frame) after 2 s at the test speed
        centre = stationary_reach_distance_m(48.0, radius) + p.test_speed_mps * PRE_ONSET_S
        assert target.s_m == pytest.approx(centre, abs=1e-9)
        assert p.parameters["gap_m"] == pytest.approx(centre - VEHICLE_LENGTH_M, abs=1e-9)
        assert p.init.duration_s == pytest.approx(
            PRE_ONSET_S + centre / p.test_speed_mps + AFTER_EVENT_S)
        assert p.init.hazard.kind == "stopped_vehicle"
        assert p.init.hazard.trigger_range_m == 48.0
        assert road.lead_in_m == EGO_START_S
        assert p.steer_from_start and p.needs_highway
    straight = [p for p in r157_grid() if p.test != "stationary-curve"]
    assert not any(p.needs_highway or p.steer_from_start for p in straight)


def test_reach_distance_puts_the_footprint_at_the_sensor_range():
    # straight: the rear bumper at 48 m, so the centre 50.5 m ahead
    assert stationary_reach_distance_m(48.0) == 50.5
    for radius in (250.0, 1000.0):
        d = stationary_reach_distance_m(48.0, radius)
        a = d / radius                      # the angle between the two cars on the arc
        forward = radius * math.sin(a)      # the target's centre along the ego's heading
        half_x = 0.5 * (5.0 * math.cos(a) + 2.0 * math.sin(a))
        assert forward - half_x == pytest.approx(48.0, abs=1e-9)
        assert radius * (1 - math.cos(a)) - 0.5 * (5.0 * math.sin(a) + 2.0 * math.cos(a)) < 48
    # the arc is longer than its chord, the footprint turned: further along the lane
    assert 50.5 < stationary_reach_distance_m(48.0, 1000.0) < stationary_reach_distance_m(
        48.0, 250.0) < 51.1


def test_rig_lets_the_stack_steer_from_the_start_where_asked():
    stack = np.array([[-3.0, 0.1], [-3.0, 0.1], [2.0, -0.2]])
    hold = np.array([0.5, 0.5, 0.0])
    applied = rig_actions(stack, hold, np.array([False, False, True]),
                          np.array([True, False, True]))
    np.testing.assert_array_equal(applied, [[0.5, 0.1], [0.5, 0.0], [0.0, -0.2]])


class _LaneKeeper:
    """Keeps the lane centre (the reference drivers' steering); brakes at -8 m/s^2 at
    every tick the target (vehicle 1) is in the ground truth when `brakes`, else asks for
    +4 m/s^2 (which the rig caps at the test speed)."""

    name = "lane-keeper"
    stage_names = ("policy",)

    def __init__(self, brakes: bool):
        self.brakes = brakes
        self.steering = LaneKeepingController(vehicle_length_m=VEHICLE_LENGTH_M)

    def reset(self, done):
        pass

    def act(self, obs, info):
        sees = (info["gt_valid"] & (info["gt_objects"][..., -1] == 1)).any(axis=1)
        accel = np.where(sees & self.brakes, -8.0, 4.0)
        actions, _ = keep_lane(self.steering, accel, obs["ego"], np.full(len(accel), np.inf))
        return Decision(actions.astype(np.float32), {"policy": 0.0})


def test_curved_points_run_on_the_highway_backend_and_score_exactly(monkeypatch):
    monkeypatch.setitem(STACKS, "brakes", lambda **kw: _LaneKeeper(brakes=True))
    monkeypatch.setitem(STACKS, "never", lambda **kw: _LaneKeeper(brakes=False))
    monkeypatch.delitem(STACKS, "reference-driver")        # not needed here: faster
    points = ("SO-v60-left250", "SO-v60-right1000")
    frame = run_protocol(ProtocolConfig(suite="r157", stacks=("brakes", "never"),
                                        points=points, latency="fixed:0.03")
                         ).set_index(["stack", "point"])
    for point in points:
        never, brakes = frame.loc[("never", point)], frame.loc[("brakes", point)]
        # held at the test speed along the lane, the stack that never brakes hits the
        # target at about that speed (the target stands on the arc: the VUT followed the
        # curve; steering on the arc, the speed holder's P control sits within 1 km/h)
        assert never.collided and never.impact_speed_kph == pytest.approx(60.0, abs=1.0)
        # the target's footprint reaches the sensors at 2 s (the release), give or take
        # the substep the lane keeper's path along the arc moves it by
        assert brakes.hazard_onset_s == pytest.approx(PRE_ONSET_S, abs=0.021)
        # the target enters the ground truth at the onset, the rig releases at 2 s:
        # reaction = (t_k* - t_h) + L, t_k* the first tick at or after both
        first_tick = max(math.ceil(brakes.hazard_onset_s * 10 - 1e-9) / 10, PRE_ONSET_S)
        assert not brakes.collided
        assert brakes.reaction_time_s == pytest.approx(
            first_tick - brakes.hazard_onset_s + 0.03, abs=1e-9)
