"""Hazards on curves and at crossings (`envs.curved_scenarios`) on the highway backend:
the layouts against the straight scenario and highway-env's geometry, onsets, the
criticality along the lanes, and the twins."""

import dataclasses
import math

import numpy as np
import pytest
from reflexdrive.envs.backends.highway import HighwayBackend, build_road
from reflexdrive.envs.criticality import crossing_criticality
from reflexdrive.envs.curved_scenarios import (
    CURVE_ARC_M,
    R157_RADII_M,
    commit_substep,
    curve_lane_radius,
)
from reflexdrive.envs.gym.single import DrivingEnv
from reflexdrive.envs.hazards import HazardTracker, sensor_reach
from reflexdrive.envs.lane_paths import RoadLanes, centreline_crossing, route_path
from reflexdrive.envs.scenarios import (
    HazardPlan,
    generate,
    make_config,
    without_hazard,
)

from reflexdrive.common.validation import ConfigError

CURVE, CROSS = "stopped-vehicle-curve", "intersection-cross-traffic"
F = 50


def _gen(name, seed=0, **overrides):
    return generate(name, make_config(name, overrides), seed, F)


def test_the_curve_episode_is_the_straight_one_bent_onto_the_arc():
    for seed in range(6):
        curve, straight = _gen(CURVE, seed), _gen("stopped-vehicle", seed)
        assert curve.hazard == straight.hazard and len(curve.vehicles) == len(straight.vehicles)
        for bent, flat in zip(curve.vehicles, straight.vehicles):
            assert bent.lane[2] == flat.lane[2] and bent.speed_mps == flat.speed_mps
            lead_in = 0.0 if bent.lane[:2] == ("0", "1") else curve.road.lead_in_m
            arc = 0.0 if bent.lane[:2] != ("2", "3") else \
                curve_lane_radius(curve.road, bent.lane[2]) * abs(curve.road.arc_rad)
            assert bent.s_m + lead_in + arc == pytest.approx(flat.s_m)
            assert bent.destination == "3"
        ego, stopped = curve.vehicles[:2]
        assert ego.lane == ("1", "2", ego.lane[2]) and ego.s_m == 0.0       # the arc's start
        assert stopped.lane == ego.lane and 0 < stopped.s_m < CURVE_ARC_M     # on the arc
        radius = curve_lane_radius(curve.road, ego.lane[2])
        assert 250.0 <= radius <= 1000.0
        assert abs(curve.road.arc_rad) * radius == pytest.approx(CURVE_ARC_M)
    turns = {math.copysign(1, _gen(CURVE, seed).road.arc_rad) for seed in range(12)}
    assert turns == {-1.0, 1.0}


@pytest.mark.parametrize("radius", R157_RADII_M)
@pytest.mark.parametrize("direction", ["left", "right"])
def test_r157_curves_are_reachable_and_built_as_highway_env_lanes(radius, direction):
    init = _gen(CURVE, 3, radius_m=(radius, radius), direction=direction)
    network = build_road(init.road, init.seed).network
    ego_lane = init.vehicles[0].lane[2]
    arc = network.get_lane(("1", "2", ego_lane))
    assert arc.radius == radius and arc.length == pytest.approx(CURVE_ARC_M)
    assert arc.clockwise is (direction == "right")
    straight = build_road(dataclasses.replace(init.road, kind="straight"), 0).network
    for lane in range(init.road.lanes):
        lead_in, bend, exit_ = (network.get_lane((a, b, lane))
                                for a, b in (("0", "1"), ("1", "2"), ("2", "3")))
        np.testing.assert_allclose(lead_in.position(lead_in.length, 0), bend.position(0, 0))
        np.testing.assert_allclose(bend.position(bend.length, 0), exit_.position(0, 0),
                                   atol=1e-9)
        assert bend.heading_at(bend.length) == pytest.approx(exit_.heading)
        reference = straight.get_lane(("0", "1", lane))
        for built in (lead_in, bend, exit_):          # the straight road's widths, markings
            assert built.width == 4.0 and built.line_types == reference.line_types
    # out of sensor range at the start
    backend = HighwayBackend(F)
    backend.reset(init)
    snap = backend.snapshot()
    offset = snap.position[0, 1] - snap.position[0, 0]
    assert sensor_reach(offset[0], offset[1], snap.heading[0, 0], snap.heading[0, 1], 5.0,
                        2.0) > init.hazard.trigger_range_m


@pytest.mark.parametrize("overrides, field", [
    ({"radius_m": (150.0, 300.0)}, "radius_m"), ({"radius_m": (300.0, 6000.0)}, "radius_m"),
    ({"direction": "up"}, "direction"), ({"onset_s": (2.0, 30.0), "duration_s": 40.0},
                                         "onset_s"),
])
def test_curve_config_names_the_bad_field(overrides, field):
    with pytest.raises(ConfigError) as error:
        make_config(CURVE, overrides)
    assert error.value.field.startswith(field)


def test_arc_length_gap_at_onset_on_the_curve():
    # ego 20 m/s at the arc's start, the stopped car 80 m round the 250 m arc; a trigger
    # range that covers it from the start puts the onset at t = 0
    init = _gen(CURVE, 3, radius_m=(250.0, 250.0), direction="left")
    ego, stopped = init.vehicles[:2]
    init = dataclasses.replace(
        init, vehicles=(dataclasses.replace(ego, speed_mps=20.0),
                        dataclasses.replace(stopped, s_m=80.0), *init.vehicles[2:]),
        hazard=HazardPlan("stopped_vehicle", vehicle=1, trigger_range_m=200.0))
    backend = HighwayBackend(F)
    backend.reset(init)
    tracker = HazardTracker(init.hazard, F, 14.0, lanes=RoadLanes.of(backend.road.network, init))
    state = tracker.update(backend.snapshot(), 0)
    assert state.onset_s == 0.0
    assert state.criticality["onset_gap_m"] == pytest.approx(80.0 - 5.0, abs=1e-9)
    assert state.criticality["onset_ttc_s"] == pytest.approx(75.0 / 20.0)
    assert state.criticality["required_decel_mps2"] == pytest.approx(400.0 / 150.0)
    assert state.criticality["critical"]
    # without the lanes: projected on the ego's heading, R sin(80 / R) - 5 (shorter)
    plain = HazardTracker(init.hazard, F, 14.0).update(backend.snapshot(), 0)
    assert plain.criticality["onset_gap_m"] == pytest.approx(
        250.0 * math.sin(80.0 / 250.0) - 5.0, abs=1e-6)


def test_commit_substep_is_the_first_boundary_past_the_braking_point():
    # front 2.5 m ahead of the centre; 10 m/s at 2.5 m/s^2 needs 20 m: the braking point
    # (centre) is at 100 - 20 - 2.5 = 77.5 m, reached from 10 m after 6.75 s = 337.5 substeps
    assert commit_substep(10.0, 10.0, 2.5, 50) == 338
    assert commit_substep(90.0, 10.0, 2.5, 50) == 0


def test_cross_traffic_layout_and_timing():
    network = build_road(_gen(CROSS).road, 0).network
    sides = set()
    for seed in range(8):
        init = _gen(CROSS, seed, arrival_offset_s=(0.2, 0.2))
        ego, crossing = init.vehicles[:2]
        side = int(crossing.lane[0][1])
        sides.add(side)
        s_e, s_c, angle = centreline_crossing(route_path(network, ego.lane, ego.destination),
                                              route_path(network, crossing.lane,
                                                         crossing.destination))
        assert angle == pytest.approx(math.pi / 2)
        # its centre reaches the conflict point 0.2 s after the ego's would
        assert (s_c - crossing.s_m) / crossing.speed_mps == pytest.approx(
            (s_e - ego.s_m) / ego.speed_mps + 0.2)
        assert init.hazard.commit_substep == commit_substep(crossing.s_m, crossing.speed_mps,
                                                            3.0, F)
        assert crossing.destination == f"o{(side + 2) % 4}" and not crossing.lane_changes
        assert all(v.lane == ("o3", "ir3", 0) and v.destination in ("o1", "o2")
                   for v in init.vehicles[2:])
        twin = without_hazard(init)
        assert twin.vehicles[1] == dataclasses.replace(crossing,
                                                       yield_substep=init.hazard.commit_substep)
        assert twin.vehicles[2:] == init.vehicles[2:] and twin.hazard.kind == "none"
    assert sides == {0, 2}


@pytest.mark.parametrize("overrides, field", [
    ({"crossing_speed_mps": (8.0, 12.0)}, "crossing_speed_mps"),
    ({"crossing_speed_mps": (10.0, 10.0), "ego_speed_mps": (4.0, 5.0)}, "crossing_speed_mps"),
    ({"ego_speed_mps": (0.0, 10.0)}, "ego_speed_mps"),
    ({"onset_s": (1.0, 2.0)}, "intersection-cross-traffic.onset_s"),
])
def test_cross_traffic_config_names_the_bad_field(overrides, field):
    with pytest.raises(ConfigError) as error:
        make_config(CROSS, overrides)
    assert error.value.field.startswith(field)


def _run(name, seed, counterfactual, steer, config=None, ticks=200):
    env = DrivingEnv(name, scenario_config=config, counterfactual=counterfactual)
    obs, info = env.reset(seed=seed)
    out = [(0.0, obs, info, env.backend.snapshot())]
    for _ in range(ticks):
        obs, _, terminated, truncated, info = env.step(steer(obs))
        out.append((info["time_s"], obs, info, env.backend.snapshot()))
        if terminated or truncated:
            break
    return out


def _keep_lane(obs):
    """Hold the speed, steer back to the lane centre (enough for R >= 250 m)."""
    ego = obs["ego"]
    return np.array([0.0, -1.5 * ego[4] - 0.15 * ego[3]])


@pytest.mark.parametrize("name, steer", [(CURVE, _keep_lane), (CROSS, lambda obs: np.zeros(2))])
def test_highway_twins_observe_the_same_world_before_onset(name, steer):
    config = {"duration_s": 6.0} if name == CURVE else {"duration_s": 6.0}
    for seed in (5, 6):
        episode = _run(name, seed, False, steer, config)
        twin = _run(name, seed, True, steer, config)
        onset = episode[-1][2]["hazard"]["onset_s"]
        assert 0 < onset < 6.0
        assert all(not info["offroad"] for _, _, info, _ in episode)
        compared = 0
        for (t, obs, _, _), (_, twin_obs, _, _) in zip(episode, twin):
            if t < onset - 1e-9:
                compared += 1
                assert all(np.array_equal(obs[key], twin_obs[key]) for key in obs), t
        assert compared >= 5
        after = [(obs, twin_obs) for (t, obs, _, _), (_, twin_obs, _, _) in zip(episode, twin)
                 if onset <= t < onset + 1.5]
        assert any(not np.array_equal(a[k], b[k]) for a, b in after for k in a)


def test_cross_traffic_onset_criticality_and_the_yielding_twin():
    seed = 7
    episode = _run(CROSS, seed, False, lambda obs: np.zeros(2))
    twin = _run(CROSS, seed, True, lambda obs: np.zeros(2))
    init = _gen(CROSS, seed)
    hazard = episode[-1][2]["hazard"]
    onset = hazard["onset_s"]
    k = round(onset * F)
    assert k >= init.hazard.commit_substep
    at_onset = next(snap for t, _, _, snap in episode if t >= onset - 1e-9)   # next tick
    offset = at_onset.position[0, 1] - at_onset.position[0, 0]
    assert sensor_reach(offset[0], offset[1], at_onset.heading[0, 0],
                        at_onset.heading[0, 1], 5.0, 2.0) <= init.hazard.trigger_range_m + 1e-3
    # both at constant speed (the ego coasts straight): distances to the conflict point
    ego, crossing = init.vehicles[:2]
    side = int(crossing.lane[0][1])
    d_e = (113.0 if side == 0 else 109.0) - (ego.s_m + ego.speed_mps * onset)
    d_c = (109.0 if side == 0 else 113.0) - (crossing.s_m + crossing.speed_mps * onset)
    expected = crossing_criticality([d_e], [ego.speed_mps], [5.0], [2.0], [d_c],
                                    [crossing.speed_mps], [5.0], [2.0], [math.pi / 2],
                                    [10.0 - onset]).row(0)
    for key in ("onset_gap_m", "onset_ttc_s", "onset_headway_s", "required_decel_mps2"):
        assert hazard[key] == pytest.approx(expected[key], abs=1e-6), key
    assert hazard["critical"] is expected["critical"] is True
    # an ego that keeps its speed hits it about when the occupancy intervals say
    assert episode[-1][2]["crashed"]
    assert episode[-1][0] == pytest.approx(onset + hazard["onset_ttc_s"], abs=0.15)
    # the twin's crossing vehicle: the same until committed, then it stops at its line
    assert not twin[-1][2]["crashed"]
    ticks = init.hazard.commit_substep // 5
    np.testing.assert_array_equal(episode[ticks][3].position, twin[ticks][3].position)
    stopped = twin[-1][3]
    stop_line_y = 11.0 if side == 0 else -11.0
    front = stopped.position[0, 1, 1] + (-2.5 if side == 0 else 2.5)
    assert abs(stopped.speed[0, 1]) < 1e-9 and abs(front - stop_line_y) < 0.3
