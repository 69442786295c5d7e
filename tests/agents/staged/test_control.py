"""Controllers: PID speed control, pure-pursuit and Stanley steering on highway-env's
kinematic bicycle, checked against hand-computed values and in closed loop."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from highway_env.vehicle.kinematics import Vehicle
from reflexdrive.agents.staged import (
    CONTROLLERS,
    Controller,
    OraclePerception,
    StagedAgent,
    make_controller,
)
from reflexdrive.agents.staged.control import (
    PIDSpeedController,
    PurePursuitController,
    StanleyController,
    lookahead_point,
    pure_pursuit_curvature,
    steering_for_curvature,
)
from reflexdrive.agents.staged.planning import MobilFrenetPlanner, straight_plan
from reflexdrive.agents.staged.tracking import KalmanTracker
from reflexdrive.agents.staged.types import Plan, Tracks
from reflexdrive.envs.config import ACCELERATION_BOUNDS, EGO_FEATURES, STEERING_BOUNDS
from reflexdrive.envs.sensors import OBJECT_FIELDS

from reflexdrive.common.validation import ConfigError

SPEED = EGO_FEATURES.index("speed_mps")
LANE_OFFSET = EGO_FEATURES.index("lane_offset_m")
HEADING_ERROR = EGO_FEATURES.index("heading_error_rad")


def ego_state(speed, lane_offset=0.0, heading_error=0.0):
    speed = np.atleast_1d(np.asarray(speed, np.float64))
    ego = np.zeros((speed.shape[0], len(EGO_FEATURES)), dtype=np.float32)
    ego[:, SPEED] = speed
    ego[:, LANE_OFFSET] = lane_offset
    ego[:, HEADING_ERROR] = heading_error
    ego[:, EGO_FEATURES.index("lane_count")] = 3
    ego[:, EGO_FEATURES.index("lane_index")] = 1
    return ego


def plan_of(path, target_speed=25.0, acceleration=0.0, emergency=False):
    """A `Plan` for `N` envs along `path` `(N, P, 2)`."""
    path = np.asarray(path, np.float64)
    n, p = path.shape[:2]
    full = lambda value, dtype=np.float64: np.broadcast_to(np.asarray(value, dtype), (n,)).copy()  # noqa: E731
    return Plan(acceleration=full(acceleration), target_speed=full(target_speed), path=path,
                path_speed=np.repeat(full(target_speed)[:, None], p, 1),
                lateral_target=np.zeros(n), lane_change=np.zeros(n, np.int64),
                emergency=full(emergency, bool), lead_track=np.full(n, -1),
                lead_gap=np.full(n, np.inf))


def line(heading=0.0, offset=(0.0, 0.0), length=60.0, points=31):
    """Straight path `(1, P, 2)` from `offset` in direction `heading`."""
    s = np.linspace(0.0, length, points)
    return (np.asarray(offset) + s[:, None] * [np.cos(heading), np.sin(heading)])[None]


# ----------------------------------------------------------------------------- geometry


def circle(radius, step_rad, points=31):
    """Points on the circle of signed `radius` through the origin, tangent to x (centre at
    (0, radius): a left turn towards +y for radius > 0), `step_rad` apart."""
    theta = np.arange(points) * step_rad
    return np.stack([abs(radius) * np.sin(theta), radius * (1.0 - np.cos(theta))], -1)[None]


@pytest.mark.parametrize("radius", [50.0, -50.0, 120.0, -300.0])
def test_pure_pursuit_on_a_circle(radius):
    """Lookahead on a sample of the circle: `kappa = 2 y / d^2 = 1 / R` to float precision,
    and the steering angle `arctan(2 tan(arcsin(L / (2 R))))`."""
    step = 2.5 / abs(radius)
    chord = 2.0 * abs(radius) * np.sin(step / 2.0)
    path = circle(radius, step)
    # the lookahead arc length lands on the 8th sample (independent of the float32 speed)
    controller = PurePursuitController(lookahead_gain_s=0.0, lookahead_base_m=8 * chord)
    kappa = pure_pursuit_curvature(path, controller.lookahead_m(np.array([25.0])))
    assert kappa[0] == pytest.approx(1.0 / radius, rel=1e-12)
    steering = controller(plan_of(path), ego_state(25.0))
    expected = np.arctan(2.0 * np.tan(np.arcsin(5.0 / (2.0 * radius))))
    assert steering[0] == pytest.approx(expected, rel=1e-12)
    # finely sampled, the interpolated lookahead is within the sagitta of the circle
    fine = circle(radius, 0.1 / abs(radius), points=400)
    kappa = pure_pursuit_curvature(fine, np.array([17.3]))
    assert kappa[0] == pytest.approx(1.0 / radius, rel=1e-4)


def test_steering_for_curvature_matches_highway_env_bicycle():
    """Hold the steering for a curvature on highway-env's `Vehicle`: after a quarter turn
    its centre has moved like a circle of that radius, and its yaw rate is `v kappa`."""
    radius, speed = 40.0, 20.0
    steering = float(steering_for_curvature(np.array([1.0 / radius]), Vehicle.LENGTH)[0])
    vehicle = Vehicle(None, np.zeros(2), heading=0.0, speed=speed)
    vehicle.act({"steering": steering, "acceleration": 0.0})
    dt, steps = 1e-3, int(round(0.5 * np.pi * radius / speed / 1e-3))
    for _ in range(steps):
        vehicle.step(dt)
    assert vehicle.heading == pytest.approx(speed / radius * steps * dt, rel=1e-9)
    # its centre runs on a circle of radius R (centre to its left, i.e. at +y)
    beta = np.arctan(0.5 * np.tan(steering))
    centre = np.array([-radius * np.sin(beta), radius * np.cos(beta)])
    assert np.linalg.norm(vehicle.position - centre) == pytest.approx(radius, rel=1e-3)
    assert steering_for_curvature(np.array([10.0]), 5.0)[0] == STEERING_BOUNDS[1]
    assert steering_for_curvature(np.array([-10.0]), 5.0)[0] == STEERING_BOUNDS[0]


def test_lookahead_interpolates_and_stops_at_the_end():
    path = np.array([[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]])
    np.testing.assert_allclose(lookahead_point(path, np.array([5.0])), [[5.0, 0.0]])
    np.testing.assert_allclose(lookahead_point(path, np.array([14.0])), [[10.0, 4.0]])
    np.testing.assert_allclose(lookahead_point(path, np.array([50.0])), [[10.0, 10.0]])
    still = np.zeros((1, 5, 2))                                   # a stopped plan
    assert pure_pursuit_curvature(still, np.array([10.0]))[0] == 0.0


def test_pure_pursuit_straight_paths():
    controller = PurePursuitController()
    # Ld = clip(0.6 v + 3, 5, 40)
    np.testing.assert_allclose(controller.lookahead_m(np.array([0.0, 25.0, 100.0, -3.0])),
                               [5.0, 18.0, 40.0, 5.0])
    assert controller(plan_of(line()), ego_state(25.0))[0] == 0.0
    left = controller(plan_of(line(offset=(0.0, 1.0))), ego_state(25.0))[0]
    right = controller(plan_of(line(offset=(0.0, -1.0))), ego_state(25.0))[0]
    assert left > 0.0 > right and left == pytest.approx(-right)
    # Ld = 0.6 * 25 + 3 = 18 m: the point (18, 1)
    kappa = 2.0 * 1.0 / (18.0 ** 2 + 1.0)
    assert left == pytest.approx(np.arctan(2.0 * np.tan(np.arcsin(2.5 * kappa))))


@pytest.mark.parametrize("preview_s", [0.0, 0.4])
def test_stanley(preview_s):
    controller = StanleyController(gain=1.0, softening_speed_mps=1.0, preview_s=preview_s)
    ego = ego_state(20.0)
    assert controller(plan_of(line()), ego)[0] == 0.0                       # on the path
    # a path 1 m to the +y side: atan(k e / (v + v_soft)), positive (steer towards +y)
    left = controller(plan_of(line(offset=(0.0, 1.0))), ego)[0]
    assert left == pytest.approx(np.arctan(1.0 / 21.0))
    right = controller(plan_of(line(offset=(0.0, -1.0))), ego)[0]
    assert right == pytest.approx(-np.arctan(1.0 / 21.0))
    # a path at 0.1 rad through the reference point (the front axle, 2.5 m ahead, plus the
    # preview 20 m/s * preview_s): only the heading term
    ahead = 2.5 + 20.0 * preview_s
    turned = line(heading=0.1, offset=(ahead - 10.0 * np.cos(0.1), -10.0 * np.sin(0.1)))
    assert controller(plan_of(turned), ego)[0] == pytest.approx(0.1, abs=1e-12)
    # heading and cross-track terms add: the same path shifted 0.5 m to +y
    shifted = turned + np.array([0.0, 0.5])
    e = 0.5 * np.cos(0.1)                        # distance from the point to the shifted line
    assert controller(plan_of(shifted), ego)[0] == pytest.approx(0.1 + np.arctan(e / 21.0))
    assert controller(plan_of(line(offset=(0.0, 50.0))), ego)[0] == STEERING_BOUNDS[1]


# ----------------------------------------------------------------------------- speed


def test_pid_step_integral_and_reset():
    pid = PIDSpeedController(kp=0.5, ki=0.1, kd=0.0, tick_s=0.1, max_integral_mps2=2.0)
    plan = plan_of(np.repeat(line(), 2, 0), target_speed=25.0, acceleration=0.2)
    ego = ego_state([20.0, 24.0])
    # a = a_ff + kp e + ki (e dt): 0.2 + 2.5 + 0.05, then the integral doubles
    np.testing.assert_allclose(pid(plan, ego), [0.2 + 2.5 + 0.05, 0.2 + 0.5 + 0.01])
    np.testing.assert_allclose(pid(plan, ego), [0.2 + 2.5 + 0.10, 0.2 + 0.5 + 0.02])
    np.testing.assert_allclose(pid.integral, [1.0, 0.2])
    pid.reset(np.array([True, False]))
    np.testing.assert_allclose(pid(plan, ego), [0.2 + 2.5 + 0.05, 0.2 + 0.5 + 0.03])


def test_pid_derivative_on_measurement():
    pid = PIDSpeedController(kp=0.0, ki=0.0, kd=0.2, tick_s=0.1)
    plan = plan_of(line(), target_speed=25.0)
    assert pid(plan, ego_state(20.0))[0] == 0.0              # first call: no derivative
    assert pid(plan, ego_state(20.5))[0] == pytest.approx(-0.2 * 5.0)   # dv/dt = 5 m/s^2


def test_pid_anti_windup():
    pid = PIDSpeedController(kp=0.5, ki=0.1, max_integral_mps2=2.0)
    far = plan_of(line(), target_speed=60.0)
    for _ in range(100):                                    # saturated: no integration
        assert pid(far, ego_state(20.0))[0] == ACCELERATION_BOUNDS[1]
    assert pid.integral[0] == 0.0
    near = plan_of(line(), target_speed=21.0)
    for _ in range(400):                                    # unsaturated: integral bounded
        command = pid(near, ego_state(20.0))[0]
    assert pid.integral[0] == pytest.approx(20.0) and command == pytest.approx(0.5 + 2.0)


def test_pid_closed_loop_step_response():
    """v' = a, 20 -> 25 m/s with the default gains: within 0.1 m/s of the target in 3 s,
    one small overshoot (< 0.2 m/s, the integral discharging), no ringing."""
    pid = PIDSpeedController()
    plan = plan_of(line(), target_speed=25.0)
    speed, history = 20.0, []
    for _ in range(200):
        speed += pid(plan, ego_state(speed))[0] * 0.1
        history.append(speed)
    history = np.array(history)
    assert history.max() < 25.2 and abs(history[30] - 25.0) < 0.1
    assert np.count_nonzero(np.diff(np.sign(history - 25.0))) == 1     # crosses once
    assert abs(history[-1] - 25.0) < 0.1


def test_emergency_passes_braking_through_and_bounds():
    pid = PIDSpeedController()
    ego = ego_state([20.0, 20.0, 20.0])
    plan = plan_of(np.repeat(line(), 3, 0), target_speed=30.0,
                   acceleration=np.array([-6.0, -12.0, 10.0]),
                   emergency=np.array([True, True, False]))
    pid(plan_of(np.repeat(line(), 3, 0), target_speed=21.0), ego)   # some integral first
    np.testing.assert_allclose(pid(plan, ego), [-6.0, ACCELERATION_BOUNDS[0],
                                                ACCELERATION_BOUNDS[1]])
    np.testing.assert_allclose(pid.integral[:2], 0.0)                # cleared while braking


# ----------------------------------------------------------------------------- combined


def test_make_controller():
    assert CONTROLLERS == ("pure-pursuit", "stanley")
    for name, steering in zip(CONTROLLERS, (PurePursuitController, StanleyController)):
        controller = make_controller(name)
        assert isinstance(controller, Controller) and controller.name == name
        assert isinstance(controller.steering, steering)
        actions = controller(plan_of(np.repeat(line(offset=(0.0, 1.0)), 2, 0)),
                             ego_state([20.0, 30.0]))
        assert actions.shape == (2, 2) and actions.dtype == np.float32
        assert (actions[:, 1] > 0).all()
        controller.reset(np.array([True, False]))
    with pytest.raises(ConfigError, match="controller='mpc' is invalid: allowed values are "
                                          "pure-pursuit, stanley"):
        make_controller("mpc")
    with pytest.raises(ConfigError, match="pure_pursuit.lookahead_max_m"):
        PurePursuitController(lookahead_min_m=10.0, lookahead_max_m=5.0)
    with pytest.raises(ConfigError, match="pid.kp"):
        PIDSpeedController(kp=-1.0)


@pytest.mark.parametrize("cls, field, prefix", [
    (PIDSpeedController, "kp", "pid."), (PIDSpeedController, "tick_s", "pid."),
    (PurePursuitController, "lookahead_max_m", "pure_pursuit."),
    (PurePursuitController, "vehicle_length_m", "pure_pursuit."),
    (StanleyController, "gain", "stanley."), (StanleyController, "preview_s", "stanley.")])
@pytest.mark.parametrize("value", [True, "3"])
def test_controller_gains_reject_bools_and_strings(cls, field, prefix, value):
    with pytest.raises(ConfigError, match=f"^{prefix}{field}={value!r} is invalid: must be a "
                                          "number$"):
        cls(**{field: value})


def lane_centre_plan(vehicle, target_speed, points=31, spacing_m=2.5):
    """The lane centre (world y = 0) from abeam `vehicle` ahead, in its ego frame: the
    reference line itself (a planner's path would start at the ego and blend into it)."""
    offset = np.stack([np.arange(points) * spacing_m, np.full(points, -vehicle.position[1])],
                      -1)
    c, s = np.cos(vehicle.heading), np.sin(vehicle.heading)
    path = np.stack([offset[:, 0] * c + offset[:, 1] * s,
                     offset[:, 1] * c - offset[:, 0] * s], -1)
    return plan_of(path[None], target_speed=target_speed)


@pytest.mark.parametrize("name", CONTROLLERS)
def test_closed_loop_converges_to_the_lane_centre(name):
    """highway-env's `Vehicle` (kinematic bicycle, 50 Hz substeps, commands held for a
    0.1 s tick) starts 1.5 m off the lane centre, heading away from it at 20 m/s; the
    controller follows the lane-centre plan and accelerates to 25 m/s. It converges without
    crossing far to the other side and stays there."""
    controller = make_controller(name)
    vehicle = Vehicle(None, np.array([0.0, 1.5]), heading=0.05, speed=20.0)
    offsets, steering = [], []
    for _ in range(100):
        ego = ego_state(vehicle.speed, vehicle.position[1], vehicle.heading)
        action = controller(lane_centre_plan(vehicle, 25.0), ego)[0]
        steering.append(action[1])
        vehicle.act({"acceleration": float(action[0]), "steering": float(action[1])})
        for _ in range(5):
            vehicle.step(0.02)
        offsets.append(vehicle.position[1])
    offsets = np.array(offsets)
    assert offsets.max() < 2.0 and offsets.min() > -0.3          # little overshoot
    assert np.abs(offsets[-30:]).max() < 0.02                    # settled on the centre
    assert abs(vehicle.heading) < 1e-3
    assert vehicle.speed == pytest.approx(25.0, abs=0.2)
    assert max(np.abs(steering)) <= STEERING_BOUNDS[1]


def test_stack_with_kalman_tracker_and_path_following():
    """The staged stack with the Kalman tracker and a path-following controller, on a
    one-lane road (no way around): a lead at the ego's speed 15 m ahead makes it brake,
    one 200 m away does not."""
    agent = StagedAgent(OraclePerception(range_m=None), KalmanTracker(), MobilFrenetPlanner(),
                        make_controller("pure-pursuit"))
    n, column = 2, {name: i for i, name in enumerate(OBJECT_FIELDS)}
    objects = np.zeros((n, 2, len(OBJECT_FIELDS)), dtype=np.float32)
    objects[:, 0, column["x_m"]] = [15.0, 200.0]
    objects[:, 0, column["vx_mps"]] = 20.0
    objects[:, :, column["length_m"]] = 5.0
    objects[:, :, column["width_m"]] = 2.0
    valid = np.zeros((n, 2), bool)
    valid[:, 0] = True
    obs = {"ego": np.repeat(ego_state(20.0), n, 0), "bev": np.zeros((n, 4, 8, 8), np.uint8),
           "lidar": np.zeros((n, 8, 2), np.float32)}
    obs["ego"][:, EGO_FEATURES.index("lane_count")] = 1
    obs["ego"][:, EGO_FEATURES.index("lane_index")] = 0
    for k in range(3):
        decision = agent.act(obs, {"gt_objects": objects, "gt_valid": valid,
                                   "time_s": np.full(n, 0.1 * k)})
    tracks = decision.products["tracks"]
    assert tracks.valid[:, :1].all() and tracks.track_id[:, 0].tolist() == [0, 0]
    assert decision.actions[0, 0] < -1.0 < decision.actions[1, 0]
    assert decision.actions[1, 1] == 0.0                      # free road: straight ahead
    agent.reset(np.array([True, False]))


@pytest.mark.parametrize("name", CONTROLLERS)
def test_closed_loop_with_the_frenet_planner(name):
    """The same start, now following `MobilFrenetPlanner`'s path, replanned every tick from
    the measured state (a free road): within 0.2 m of the lane centre after 4 s, within
    2 cm after 10 s."""
    controller, planner = make_controller(name), MobilFrenetPlanner()
    empty = Tracks(*(np.zeros((1, 0, 2)),) * 3, np.zeros((1, 0), int), np.zeros((1, 0), bool))
    vehicle = Vehicle(None, np.array([0.0, 1.5]), heading=0.05, speed=20.0)
    offsets = []
    for k in range(100):
        ego = ego_state(vehicle.speed, vehicle.position[1], vehicle.heading)
        action = controller(planner(empty, ego, np.array([0.1 * k])), ego)[0]
        vehicle.act({"acceleration": float(action[0]), "steering": float(action[1])})
        for _ in range(5):
            vehicle.step(0.02)
        offsets.append(vehicle.position[1])
    offsets = np.array(offsets)
    assert offsets.max() < 2.0 and offsets.min() > -0.3
    assert np.abs(offsets[40:]).max() < 0.2 and abs(offsets[-1]) < 0.02


def test_straight_plan_is_followed_when_the_ego_is_aligned():
    """`straight_plan` in a 1 m offset with no heading error: both followers steer back
    towards the centre (-y), the speed controller adds its feed-forward."""
    plan = straight_plan(np.array([25.0]), np.array([1.0]), np.array([1.0]), np.array([-1]),
                         np.array([np.inf]))
    for name in CONTROLLERS:
        action = make_controller(name)(plan, ego_state(25.0, lane_offset=1.0))[0]
        assert action[1] < 0.0 and action[0] > 1.0


@pytest.mark.parametrize("radius,speed", [(25.0, 10.0), (15.0, 8.0)])
def test_pure_pursuit_runs_on_a_circle(radius, speed):
    """highway-env's bicycle follows a circular path (re-sampled from the ego's projection
    every 0.1 s, as a route-following planner gives it) with pure pursuit. Told the path's
    curvature, the controller steers for the slip angle and settles within 0.15 m of the
    circle; without it the circle through the lookahead point is tangent to the heading,
    not to the velocity, and the ego runs inside by half a metre or more."""
    def settle(curvature_known: bool) -> float:
        vehicle = Vehicle(None, [0.0, 0.0], 0.0, speed)
        controller = PurePursuitController(vehicle_length_m=vehicle.LENGTH)
        centre = np.array([0.0, radius])
        for _ in range(300):
            offset = vehicle.position - centre
            angle = np.arctan2(offset[0], -offset[1]) + np.arange(40) / radius
            world = centre + radius * np.stack([np.sin(angle), -np.cos(angle)], -1)
            c, s = np.cos(vehicle.heading), np.sin(vehicle.heading)
            rel = world - vehicle.position
            path = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]], -1)
            path[0] = 0.0
            plan = plan_of(path[None], target_speed=speed)
            if curvature_known:
                plan = dataclasses.replace(plan, path_curvature=np.array([1.0 / radius]))
            steering = float(controller(plan, ego_state(speed))[0])
            for _ in range(5):
                vehicle.act({"acceleration": 0.0, "steering": steering})
                vehicle.step(0.02)
        return float(np.linalg.norm(vehicle.position - centre) - radius)

    assert abs(settle(True)) < 0.15
    assert settle(False) < -0.5
