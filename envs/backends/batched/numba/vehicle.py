"""One vehicle in the kernel: the closest lane, the kinematic bicycle, steering to a lane,
and the motion phases of a substep (`traffic_step`, `ego_step`) on the workspace rows."""

from __future__ import annotations

import math

from reflexdrive.envs.backends.batched.numba.jit import jit
from reflexdrive.envs.backends.batched.numba.layout import (
    ACCELERATION,
    CRASHED,
    HEADING,
    IMPACT_PENDING,
    IMPACT_X,
    IMPACT_Y,
    KIND,
    LANE,
    LENGTH,
    SPEED,
    STEERING,
    TIMER,
    VALID,
    X,
    Y,
)
from reflexdrive.envs.backends.batched.numba.scalars import (
    asin,
    atan,
    clip,
    cos,
    not_zero,
    sin,
    tan,
    wrap_to_pi,
)
from reflexdrive.envs.backends.batched.state import (
    BRAKING_LEAD_KIND,
    CUT_IN,
    EGO_KIND,
    IDM_KIND,
)


@jit()
def closest_lane(x, y, heading, road_length, lane_count, lane_width):
    """`RoadNetwork.get_closest_lane_index` on a straight road (`envs.backends.batched.torch.road`).

    Lane `i < lane_count` (the road's valid lanes, `BatchedRoad.lane_valid`) scores
    `(|y - i w| + max(x - length, 0) + max(-x, 0)) + |wrap(heading)|` [m + rad]; the lowest
    wins, the first one on a tie. The scores fall, then rise with `i` (each operation is
    monotonic), so the scan stops at the first rise.
    """
    off_road = max(x - road_length, 0.0) + max(0.0 - x, 0.0)
    angle = abs(wrap_to_pi(heading - 0.0))
    best, best_distance = 0, math.inf
    for i in range(lane_count):
        distance = abs(y - i * lane_width) + off_road + angle
        if distance < best_distance:
            best, best_distance = i, distance
        elif distance > best_distance:
            break
    return best


@jit()
def bicycle(p, x, y, heading, speed, length, steering, acceleration, crashed,
             impact_x, impact_y, impact_pending, dt):
    """`Vehicle.step` over `dt` [s] (without the lane update): clip, then explicit Euler.

    `clip_actions`: crashed -> `delta = 0`, `a = -v`; `v > v_max` -> `a = min(a, v_max - v)`;
    `v < v_min` -> `a = max(a, v_min - v)`. With `beta = atan(tan(delta) / 2)`:

        p   += v [cos(psi + beta), sin(psi + beta)] dt   (+ the pending impact [m])
        psi += v sin(beta) / (l / 2) dt
        v   += a dt

    Returns:
        x, y [m], heading [rad], speed [m/s], the applied steering [rad] and acceleration
        [m/s^2], crashed (set by an applied impact).
    """
    if crashed:
        steering = 0.0
        acceleration = -1.0 * speed
    if speed > p.max_speed:
        acceleration = min(acceleration, 1.0 * (p.max_speed - speed))
    elif speed < p.min_speed:
        acceleration = max(acceleration, 1.0 * (p.min_speed - speed))
    if steering == 0.0 and heading == 0.0:
        # cruising along +x: beta = 0, cos = 1, sin = 0, so the general formulas below
        # give exactly these values (up to the sign of a zero y or heading)
        x = speed * dt + x
    else:
        beta = atan(tan(steering) * 0.5)
        course = heading + beta
        x = speed * cos(course) * dt + x
        y = speed * sin(course) * dt + y
        heading = sin(beta) * speed / (length / 2) * dt + heading
    if impact_pending:
        x = x + impact_x
        y = y + impact_y
        crashed = True
    speed = acceleration * dt + speed
    return x, y, heading, speed, steering, acceleration, crashed


@jit()
def steering_control(p, y, heading, speed, length, target_lane):
    """`ControlledVehicle.steering_control`: steer to the centre of `target_lane` [rad].

    With `r = y - target_lane w` and `v = not_zero(speed)`:

        psi_ref = clip(asin(clip(-K_lat r / v, -1, 1)), -pi/4, pi/4)
        dpsi    = wrap(psi_ref - psi) K_psi
        delta   = clip(atan(2 tan(asin(clip(l / 2 / v dpsi, -1, 1)))), -delta_max, delta_max)
    """
    r = y - target_lane * p.lane_width
    v = not_zero(speed, p.not_zero_eps)
    if r == 0.0 and heading == 0.0:
        # on the lane centre, aligned: psi_ref = dpsi = 0 and the formulas below give
        # exactly this zero (with the sign of l / 2 / v)
        return math.copysign(0.0, v)
    heading_ref = asin(clip(r * -p.kp_lateral / v, -1.0, 1.0))
    heading_ref = clip(heading_ref, -p.heading_command_limit, p.heading_command_limit)
    heading_rate = wrap_to_pi(heading_ref - heading) * p.kp_heading
    slip_angle = asin(clip(length / 2 / v * heading_rate, -1.0, 1.0))
    steering = atan(tan(slip_angle) * 2)
    return clip(steering, -p.max_steering_angle, p.max_steering_angle)


# ------------------------------------------------------------------------------ motion


@jit()
def lane_change_slot(p, I, substep, hazard_kind, vehicle, onset, lateral_speed):
    """The slot of the world's cut-in vehicle if it follows its lateral profile in this
    substep (`torch.lane_change.profiled_cut_ins`' rule: a cut-in with `lateral_speed > 0`
    [m/s], `substep >= onset`, a valid, uncrashed IDM vehicle, and the profile's phase
    `2 v / w * ((substep - onset) dt) < pi`), else -1."""
    if hazard_kind != CUT_IN or not lateral_speed > 0.0 or onset < 0 or substep < onset:
        return -1
    if vehicle < 0 or vehicle >= I.shape[1]:
        return -1
    if not I[VALID, vehicle] or I[CRASHED, vehicle] or I[KIND, vehicle] != IDM_KIND:
        return -1
    if not 2.0 * lateral_speed / p.lane_width * ((substep - onset) * p.dt) < math.pi:
        return -1
    return vehicle


@jit()
def lane_change(p, x, y, heading, speed, acceleration, impact_x, impact_y, impact_pending,
                steps, lateral_speed, target_lane):
    """One substep of a cut-in vehicle on its lateral profile, `steps` whole substeps after
    its start (`torch.lane_change.profiled_cut_ins`, same operations): returns x, y [m],
    heading [rad], speed [m/s]."""
    u = speed * cos(heading)
    x = u * p.dt + x
    phase = min(2.0 * lateral_speed / p.lane_width * ((steps + 1.0) * p.dt), math.pi)
    to_go = p.lane_width * ((1.0 + cos(phase)) * 0.5)
    target_y = target_lane * p.lane_width
    difference = target_y - y
    side = 1.0 if difference > 0.0 else (-1.0 if difference < 0.0 else 0.0)
    y = target_y - side * to_go
    if impact_pending:
        x = x + impact_x
        y = y + impact_y
    u = acceleration * p.dt + u
    lateral = side * (lateral_speed * sin(phase) if phase < math.pi else 0.0)
    return x, y, math.atan2(lateral, u), math.hypot(u, lateral)


@jit()
def traffic_step(p, F, I, road_length, lane_count, cutter, steps, lateral_speed, target_lane):
    """Every valid vehicle but the ego steps `dt` (`IDMVehicle.step` / `Vehicle.step`):
    IDM vehicles first advance their MOBIL timer `+= dt` [s]; then `bicycle` with the
    action of `traffic_act`, a pending impact applied, and the closest lane. The vehicle in
    slot `cutter` (-1: none) moves along its lane-change profile instead (`lane_change`,
    `steps` substeps after its start, at peak `lateral_speed` [m/s] to `target_lane`)."""
    for j in range(F.shape[1]):
        kind = I[KIND, j]
        if not I[VALID, j] or kind == EGO_KIND:
            continue
        if kind == IDM_KIND or kind == BRAKING_LEAD_KIND:
            F[TIMER, j] = F[TIMER, j] + p.dt
        x, y, heading, speed, steering, acceleration, crashed = bicycle(
            p, F[X, j], F[Y, j], F[HEADING, j], F[SPEED, j], F[LENGTH, j], F[STEERING, j],
            F[ACCELERATION, j], I[CRASHED, j] != 0, F[IMPACT_X, j], F[IMPACT_Y, j],
            I[IMPACT_PENDING, j] != 0, p.dt)
        if j == cutter:
            x, y, heading, speed = lane_change(
                p, F[X, j], F[Y, j], F[HEADING, j], F[SPEED, j], acceleration, F[IMPACT_X, j],
                F[IMPACT_Y, j], I[IMPACT_PENDING, j] != 0, steps, lateral_speed, target_lane)
        F[X, j], F[Y, j], F[HEADING, j], F[SPEED, j] = x, y, heading, speed
        F[STEERING, j], F[ACCELERATION, j] = steering, acceleration
        I[CRASHED, j], I[IMPACT_PENDING, j] = crashed, False
        I[LANE, j] = closest_lane(x, y, heading, road_length, lane_count, p.lane_width)


@jit()
def ego_step(p, F, I, first_s, first_a, first_steering, second_a, second_steering,
              road_length, lane_count):
    """The ego (slot 0): `[first_a m/s^2, first_steering rad]` for `first_s` [s], then the
    second command for `dt - first_s` (a zero-length piece does nothing). Brakes stop the
    car, they do not reverse it: `a = max(a_cmd, -max(v, 0) / duration)`, then `bicycle`
    (a pending impact is applied in the first piece). Then the closest lane."""
    x, y, heading, speed = F[X, 0], F[Y, 0], F[HEADING, 0], F[SPEED, 0]
    steering, acceleration = F[STEERING, 0], F[ACCELERATION, 0]
    crashed, pending = I[CRASHED, 0] != 0, I[IMPACT_PENDING, 0] != 0
    for piece in range(2):
        duration = first_s if piece == 0 else p.dt - first_s
        if duration > 0:
            command_a = first_a if piece == 0 else second_a
            command_steering = first_steering if piece == 0 else second_steering
            acceleration = max(command_a, -max(speed, 0.0) / duration)
            x, y, heading, speed, steering, acceleration, crashed = bicycle(
                p, x, y, heading, speed, F[LENGTH, 0], command_steering, acceleration, crashed,
                F[IMPACT_X, 0], F[IMPACT_Y, 0], pending, duration)
            pending = False
    F[X, 0], F[Y, 0], F[HEADING, 0], F[SPEED, 0] = x, y, heading, speed
    F[STEERING, 0], F[ACCELERATION, 0] = steering, acceleration
    I[CRASHED, 0], I[IMPACT_PENDING, 0] = crashed, pending
    I[LANE, 0] = closest_lane(x, y, heading, road_length, lane_count, p.lane_width)

