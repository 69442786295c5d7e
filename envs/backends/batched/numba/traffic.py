"""Traffic in the kernel: IDM accelerations, MOBIL lane changes and the abort rule, and
`traffic_act` (highway-env's `road.act()`), on one world's workspace rows."""

from __future__ import annotations

import math

from reflexdrive.envs.backends.batched.numba.jit import jit
from reflexdrive.envs.backends.batched.numba.layout import (
    ACCELERATION,
    BASE,
    BRAKING,
    BRAKING_DECEL,
    COS,
    CRASHED,
    FREE,
    HEADING,
    KIND,
    LANE,
    LANE_CHANGES,
    LENGTH,
    SIN,
    SPEED,
    STEERING,
    TARGET_LANE,
    TARGET_SPEED,
    TIMER,
    VALID,
    VX,
    VY,
    X,
    Y,
)
from reflexdrive.envs.backends.batched.numba.neighbours import front_of, rear_of
from reflexdrive.envs.backends.batched.numba.scalars import clip, cos, sin
from reflexdrive.envs.backends.batched.numba.vehicle import steering_control
from reflexdrive.envs.backends.batched.state import BRAKING_LEAD_KIND, IDM_KIND


@jit()
def fleet_terms(p, F, I, speed_limit):
    """Per-vehicle IDM terms of this substep, rows `COS .. BASE` (valid slots):

        cos, sin = cos(psi), sin(psi);   vx, vy = v cos, v sin          [m/s]
        free = a_max (1 - (max(v, 0) / max(min(max(v0, 0), limit), eps))^delta)   [m/s^2]
        base = d0 + v tau                                                [m]
    """
    for j in range(F.shape[1]):
        if not I[VALID, j]:
            continue
        speed = F[SPEED, j]
        c, s = cos(F[HEADING, j]), sin(F[HEADING, j])
        F[COS, j], F[SIN, j] = c, s
        F[VX, j], F[VY, j] = speed * c, speed * s
        v0 = max(F[TARGET_SPEED, j], 0.0)
        v0 = max(min(v0, speed_limit), p.not_zero_eps)
        ratio = max(speed, 0.0) / v0
        if p.delta == 4.0:                       # IDMVehicle.DELTA: two squarings, no pow
            power = ratio * ratio
            power = power * power
        else:
            power = math.pow(ratio, p.delta)
        F[FREE, j] = (1.0 - power) * p.comfort_acc_max
        F[BASE, j] = speed * p.time_wanted + p.distance_wanted


@jit()
def idm(p, F, follower, front):
    """`IDMVehicle.acceleration(follower, front)` [m/s^2]; 0 without a follower:

        dv = (v cos - v_f cos_f) cos + (v sin - v_f sin_f) sin   (closing speed)
        d* = (d0 + v tau) + v dv / (2 sqrt(a b))
        a  = free - a_max (d* / max(x_f - x, eps))^2              (just `free` without front)
    """
    if follower < 0:
        return 0.0
    if front < 0:
        return F[FREE, follower]
    dv = (F[VX, follower] - F[VX, front]) * F[COS, follower]
    dv = dv + (F[VY, follower] - F[VY, front]) * F[SIN, follower]
    gap = dv * F[SPEED, follower] / p.two_sqrt_ab + F[BASE, follower]
    distance = max(F[X, front] - F[X, follower], p.not_zero_eps)
    ratio = gap / distance
    return F[FREE, follower] - ratio * ratio * p.comfort_acc_max


@jit()
def mobil_target(p, F, I, j, count, lane_count, road_length, self_a, front):
    """`IDMVehicle.change_lane_policy`'s MOBIL decision for vehicle `j`: its new target lane.

    For the left then the right neighbour lane, if it exists and is reachable
    (`|y - lane w| <= 2 w`, `0 <= x < length + l_v` [m]): with `a(f, l)` the IDM
    acceleration of `f` behind `l` (`idm`), `nf, nr` the new front / rear and `of, orr`
    the old ones,

        unsafe if a(nr, j) < -b_safe
        gain = a(j, nf) - a(j, of) + p (a(nr, j) - a(nr, nf) + a(orr, of) - a(orr, j))
        change if not unsafe and not gain < a_th

    (highway-env's `mobil` without a route). The right lane wins if both pass.

    Args:
        self_a: `a(j, of)` [m/s^2]; front: `of`.
    """
    lane = I[LANE, j]
    old_rear = rear_of(I, j, lane)
    old_following_a = idm(p, F, old_rear, j)
    old_following_pred_a = idm(p, F, old_rear, front)
    x, y = F[X, j], F[Y, j]
    target = lane
    for side in (lane - 1, lane + 1):
        if side < 0 or side >= lane_count:
            continue
        if not (abs(y - side * p.lane_width) <= p.reach
                and x >= 0.0 and x < road_length + p.lane_vehicle_length):
            continue
        new_front = front_of(I, j, side, count)
        new_rear = rear_of(I, j, side)
        new_following_pred_a = idm(p, F, new_rear, j)
        if new_following_pred_a < -p.lane_change_max_braking_imposed:
            continue
        self_pred_a = idm(p, F, j, new_front)
        new_following_a = idm(p, F, new_rear, new_front)
        gain = self_pred_a - self_a + p.politeness * (
            new_following_pred_a - new_following_a + old_following_pred_a - old_following_a)
        if not gain < p.lane_change_min_acc_gain:
            target = side
    return target


@jit()
def aborts(p, F, I, j):
    """The abort rule of `change_lane_policy` for `j`, changing lanes into its target.

    True if another controlled (IDM) vehicle `v`, not yet in that lane, targets it too
    (`I[TARGET_LANE]` as the act loop has left it so far) and is ahead within the desired
    gap: `0 < x_v - x_j < d*(j behind v)` [m].
    """
    target = I[TARGET_LANE, j]
    for v in range(F.shape[1]):
        if (v == j or not I[VALID, v]
                or (I[KIND, v] != IDM_KIND and I[KIND, v] != BRAKING_LEAD_KIND)
                or I[LANE, v] == target or I[TARGET_LANE, v] != target):
            continue
        distance = F[X, v] - F[X, j]
        dv = (F[VX, j] - F[VX, v]) * F[COS, j] + (F[VY, j] - F[VY, v]) * F[SIN, j]
        gap = F[BASE, j] + F[SPEED, j] * dv / p.two_sqrt_ab
        if 0.0 < distance < gap:
            return True
    return False


@jit()
def traffic_act(p, F, I, count, lane_count, road_length, lane_slots):
    """`road.act()`: every IDM vehicle, in slot order (highway-env's loop).

    - crashed: nothing;
    - a braking lead told to brake: steer to its target lane, `a = -min(decel, max(v, 0) / dt)`;
    - otherwise, with MOBIL enabled: while changing lanes the abort rule (`aborts`), else
      every `LANE_CHANGE_DELAY` (`timer > delay`; then `timer = 0`) MOBIL if `|v| >= 1 m/s`
      (`mobil_target`); then steer to the target lane (`steering_control`) and
      `a = clip(min(IDM on its lane, IDM on the target lane if changing), -a_max, a_max)`
      (a target lane outside `0 .. L-1` is searched as the nearest of them).

    Updates the rows `TARGET_LANE`, `TIMER` [s], `STEERING` [rad], `ACCELERATION` [m/s^2].
    """
    for j in range(F.shape[1]):
        kind = I[KIND, j]
        if not I[VALID, j] or (kind != IDM_KIND and kind != BRAKING_LEAD_KIND) or I[CRASHED, j]:
            continue
        if kind == BRAKING_LEAD_KIND and I[BRAKING, j]:
            F[STEERING, j] = steering_control(p, F[Y, j], F[HEADING, j], F[SPEED, j],
                                               F[LENGTH, j], I[TARGET_LANE, j])
            F[ACCELERATION, j] = -min(F[BRAKING_DECEL, j], max(F[SPEED, j], 0.0) / p.dt)
            continue
        lane = I[LANE, j]
        front = front_of(I, j, lane, count)
        self_a = idm(p, F, j, front)
        if I[LANE_CHANGES, j]:
            if lane != I[TARGET_LANE, j]:
                if aborts(p, F, I, j):
                    I[TARGET_LANE, j] = lane
            elif F[TIMER, j] > p.lane_change_delay:
                F[TIMER, j] = F[TIMER, j] * 0.0
                if abs(F[SPEED, j]) >= p.mobil_min_speed:
                    I[TARGET_LANE, j] = mobil_target(p, F, I, j, count, lane_count,
                                                      road_length, self_a, front)
        target = I[TARGET_LANE, j]
        F[STEERING, j] = steering_control(p, F[Y, j], F[HEADING, j], F[SPEED, j],
                                           F[LENGTH, j], target)
        acceleration = self_a
        if lane != target:
            target_front = front_of(I, j, min(max(target, 0), lane_slots - 1), count)
            acceleration = min(acceleration, idm(p, F, j, target_front))
        F[ACCELERATION, j] = clip(acceleration, -p.acc_max, p.acc_max)

